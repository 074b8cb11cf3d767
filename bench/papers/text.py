"""Numbers as the paper tables and captions write them: mean ± std, error in %, short parameter values,
seed lists and file-safe experiment names."""
from __future__ import annotations

from typing import Any


def pm(mean: float, std: float) -> str:
    """"mean ± std" with two decimals, the form every paper table uses."""
    return f"{mean:.2f} ± {std:.2f}"


def error_pct(acc: Any) -> Any:
    """Top-1 accuracy (a fraction) as test error in %."""
    return 100.0 * (1.0 - acc)


def num(text: Any) -> str:
    """A parameter value as logged ("1.0") in its short form ("1"); non-numbers unchanged."""
    try:
        return f"{float(text):g}"
    except (TypeError, ValueError):
        return str(text)


def epochs_text(n: int) -> str:
    """"1 epoch", "5 epochs"."""
    return f"{n} epoch{'s' if n != 1 else ''}"


def seed_list(comp: "pandas.DataFrame") -> list[int]:
    """The distinct seeds of ``comp``, sorted, for captions."""
    return sorted(int(s) for s in comp["seed"].dropna().unique())


def experiment_slug(experiment: str) -> str:
    """A "dataset/model" experiment name as one file or folder name."""
    return experiment.replace("/", "__")
