"""Which of a figure's variants a tracked run is: a method's configuration told by its logged parameters
(compared with the method's defaults plus the variant's overrides), and series labels named from them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.papers.text import num

VariantSpec = tuple[str, dict[str, Any], tuple[str, ...]]  # (method, overrides of its defaults, free parameters)


def default_params(method: str) -> dict[str, Any]:
    """The method's default parameters (its dataclass fields, typed): the one place a paper reads them."""
    import methods

    return dataclasses.asdict(methods.get(method)())


@dataclass(frozen=True)
class Variant:
    """A labelled method configuration: its CLI overrides identify its runs in the store."""

    label: str
    method: str
    overrides: tuple[tuple[str, str], ...] = ()
    style: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def param_args(self) -> list[str]:
        return [a for k, v in self.overrides for a in ("--param", f"{k}={v}")]

    def expected(self) -> dict[str, str]:
        """Every method parameter as tracking records it (``str`` of the built dataclass field)."""
        import methods

        built = methods.build(self.method, dict(self.overrides))
        return {k: str(v) for k, v in dataclasses.asdict(built).items()}

    def matches(self, method: str, params: dict[str, str]) -> bool:
        if method != self.method:
            return False
        return all(params.get(k, v) == v for k, v in self.expected().items())


def same_value(a: Any, b: Any) -> bool:
    """Tracked parameters are strings: compare as numbers where both are numbers."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def expected_params(method: str, overrides: dict[str, Any], free: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method's defaults with ``overrides`` applied, leaving out the ``free`` parameters."""
    return {k: v for k, v in {**default_params(method), **overrides}.items() if k not in free}


def label_variants(runs: "pandas.DataFrame", variants: dict[str, VariantSpec]) -> "pandas.Series":
    """Each run's variant label, or None: a compressed run of the variant's method whose parameters are the
    method's defaults with exactly the variant's overrides (the first variant that fits wins).

    The variant's free parameters (e.g. a student's training epochs) are not compared here; the figure fixes
    them when it picks one budget. Tuned (TPE) runs never match.
    """
    import pandas as pd

    expected = {label: (method, expected_params(method, o, free)) for label, (method, o, free) in variants.items()}
    tuned = runs["study"].fillna("").astype(str).str.contains("/tpe-")

    def label(row: Any, is_tuned: bool) -> str | None:
        if row.kind != "compressed" or is_tuned:
            return None
        params = row.method_params if isinstance(row.method_params, dict) else {}
        for name, (method, want) in expected.items():
            if row.method == method and all(k in params and same_value(params[k], v) for k, v in want.items()):
                return name
        return None

    return pd.Series([label(r, t) for r, t in zip(runs.itertuples(index=False), tuned)], index=runs.index,
                     dtype=object)


def method_defaults(method: str) -> dict[str, str]:
    """The method's default parameters as tracking logs them (``str`` of each field)."""
    return {k: str(v) for k, v in default_params(method).items()}


def changed_params(method: str, params: dict[str, str], named: set[str]) -> str:
    """" [k=v, ...]" for parameters outside ``named`` that differ from the method's defaults, else ""."""
    defaults = method_defaults(method)
    extra = [f"{k}={num(v)}" for k, v in sorted(params.items())
             if k in defaults and k not in named and num(defaults[k]) != num(v)]
    return f" [{', '.join(extra)}]" if extra else ""


def magnitude_label(params: dict[str, str], prefix: str = "magnitude") -> str | None:
    """One-shot or iterative magnitude (None for the random control or bias pruning: not a baseline here)."""
    if params.get("random", "False") == "True" or params.get("prune_bias", "False") == "True":
        return None
    iterative = params.get("schedule", "one-shot") == "iterative"
    base = f"{prefix}, iterative (≈20 %/round)" if iterative else f"{prefix}, one-shot"
    # rounds vary with the ratio by design (lt_rounds), so they do not split the curve
    return base + changed_params("magnitude", params, {"schedule", "rounds"})


def labelled_runs(runs: "pandas.DataFrame", label: Callable[[str, dict[str, str]], str | None]) -> "pandas.DataFrame":
    """Compressed runs with a ``series`` (from ``label(method, params)``; unlabelled runs dropped),
    ``remaining_pct`` = 100/ratio and ``requested`` (the requested ratio, rounded)."""
    comp = runs[runs["kind"] == "compressed"].copy()
    if comp.empty:
        return comp.assign(series=[], remaining_pct=[], requested=[])
    comp["series"] = [label(m, p) for m, p in zip(comp["method"], comp["method_params"])]
    comp = comp[comp["series"].notna()].copy()
    comp["remaining_pct"] = 100.0 / comp["compression_ratio"]
    comp["requested"] = comp["requested_ratio"].round(3)
    return comp


def ordered(series: Any, known: tuple[str, ...]) -> list[str]:
    """The distinct series names, the ``known`` ones first in their order, then the rest alphabetically."""
    return sorted(set(series), key=lambda s: (known.index(s) if s in known else len(known), s))
