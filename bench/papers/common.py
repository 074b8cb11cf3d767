"""What the paper modules share: building their ``python -m bench`` argument lists, telling which tracked run
belongs to which of a figure's variants, keeping one training budget per figure, summarising over seeds, and
the drawing pieces more than one figure uses.

This module registers no paper (the registry's auto-loader imports it and finds nothing to register). Three
figure families use it:

- error vs fraction removed, rows = datasets (``coreset``, ``magnitude``): ``Budget``, ``Variant``,
  ``study_argv``, ``collect`` -> ``Section``, ``error_figure``, ``points_table``, ``published_beside_ours``;
- accuracy vs compression ratio per dataset/model, variants picked by their parameters (``lma``,
  ``multihash``): ``label_variants``, ``select_per_experiment``, ``variant_accuracy_table``,
  ``draw_variant_accuracy``, ``draw_dense_accuracy``, ``log2_ratio_axis``;
- series named from the method's parameters, with per-round step metrics (``sap``, ``surp``):
  ``common_args``, ``iterative_magnitude``, ``lt_rounds``, ``labelled_runs``, ``budget_runs``,
  ``step_history``, ``draw_each_experiment``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# ================================================================ numbers as text


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


# ================================================================ experiments (argv lists for python -m bench)

@dataclass(frozen=True)
class Budget:
    """Dense-baseline epochs and the shared fine-tune epochs of one dataset's runs."""

    epochs: int
    finetune_epochs: int


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


def ratios_arg(ratios: Sequence[float]) -> list[str]:
    """``--ratios 2,4,8``."""
    return ["--ratios", ",".join(f"{r:g}" for r in ratios)]


def study_argv(dataset: str, variant: Variant, ratios: Sequence[float], model: str) -> list[str]:
    """The ``python -m bench`` arguments of one grid study of ``variant`` (seeds and budgets: the paper
    protocol's, added by ``bench.papers.experiments``)."""
    return ["bench", "--method", variant.method, "--dataset", dataset, "--model", model, *ratios_arg(ratios),
            *variant.param_args()]


def common_args(dataset: str, model: str) -> list[str]:
    """The arguments every study of one figure shares (data and model)."""
    return ["--dataset", dataset, "--model", model]


def stand_in(dataset: str, model: str, cifar_model: str | None = None) -> tuple[str, str]:
    """The paper's data where it is here: CIFAR-10 with ``cifar_model`` when ``$CIFAR10_DIR`` is set (and the
    paper used CIFAR-10), else the offline stand-in ``dataset``/``model``."""
    import os

    if cifar_model is not None and os.environ.get("CIFAR10_DIR"):
        return "cifar10", cifar_model
    return dataset, model


def budgets_in(runs: "pandas.DataFrame", model: str) -> dict[str, Budget]:
    """Per dataset of ``model``'s compressed runs, the (baseline, fine-tune) epochs most of them used: under a
    paper protocol every run of a figure shares them."""
    import pandas as pd

    comp = runs[(runs["kind"] == "compressed") & (runs["model"] == model)]
    out = {}
    for dataset, group in comp.groupby("dataset"):
        base = pd.to_numeric(group.get("baseline.epochs"), errors="coerce").dropna()
        ft = pd.to_numeric(group.get("finetune.epochs"), errors="coerce").dropna()
        if len(base) and len(ft):
            out[str(dataset)] = Budget(int(base.mode().iloc[0]), int(ft.mode().iloc[0]))
    return out


LT_FRACTION = 0.2  # lottery-ticket pruning rate per round (SAP's "lt" baseline, P = 0.2)


def lt_rounds(model: str, ratio: float, fraction: float = LT_FRACTION, input_shape: tuple[int, ...] = (1, 28, 28),
              num_classes: int = 10, **model_kwargs: Any) -> int:
    """Rounds of "remove ``fraction`` of the surviving prunable weights" needed to reach ``ratio``.

    Counts the schedule keep_k = round(N·(1 − fraction)^k) while it stays above the budget, plus the final
    (trimmed) round: the count of SuRP's iterative mode (s_k = 1 − 0.8^k), so iterative magnitude run with
    this many geometric rounds gets as many fine-tunes and removes ≈``fraction`` per round. The default
    input is a 28x28 greyscale, 10-class dataset (Fashion-MNIST, the SAP and SuRP figures' data).
    """
    from bench.models import create_model
    from methods.common.pruning import keep_count, prunable_tensors

    net = create_model(model, input_shape, num_classes, **model_kwargs)
    tensors = prunable_tensors(net)
    total = sum(getattr(m, n).numel() for m, n in tensors)
    final = keep_count(net, ratio, tensors)
    k = 1
    while round(total * (1 - fraction) ** k) > final:
        k += 1
    return k


def iterative_magnitude(model: str, ratios: tuple[float, ...], common: list[str],
                        input_shape: tuple[int, ...] = (1, 28, 28)) -> list[list[str]]:
    """One ``bench`` call per ratio: ``rounds`` differs by ratio so each round removes ≈20 % of survivors."""
    return [["bench", "--method", "magnitude", "--param", "schedule=iterative", "--param",
             f"rounds={lt_rounds(model, r, input_shape=input_shape)}", *ratios_arg((r,)), *common] for r in ratios]


# ================================================================ which variant a run is

VariantSpec = tuple[str, dict[str, Any], tuple[str, ...]]  # (method, overrides of its defaults, free parameters)


def same_value(a: Any, b: Any) -> bool:
    """Tracked parameters are strings: compare as numbers where both are numbers."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def expected_params(method: str, overrides: dict[str, Any], free: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method's defaults with ``overrides`` applied, leaving out the ``free`` parameters."""
    import methods

    defaults = dataclasses.asdict(methods.get(method)())
    return {k: v for k, v in {**defaults, **overrides}.items() if k not in free}


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
    import methods

    return {k: str(v) for k, v in dataclasses.asdict(methods.get(method)()).items()}


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


# ================================================================ one training budget per figure

def budget_rows(runs: "pandas.DataFrame", dataset: str, model: str, budget: Budget) -> "pandas.DataFrame":
    """Runs of the dataset/model trained with this budget (baselines have no fine-tune epochs)."""
    import pandas as pd

    sel = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    epochs = pd.to_numeric(sel.get("baseline.epochs"), errors="coerce")
    ft = pd.to_numeric(sel.get("finetune.epochs"), errors="coerce")
    ok = (epochs == budget.epochs) & ((ft == budget.finetune_epochs) | (sel["kind"] == "baseline"))
    return sel[ok]


def select_runs(runs: "pandas.DataFrame", dataset: str, model: str, budget: Budget,
                variant_list: Sequence[Variant]) -> tuple["pandas.DataFrame", "pandas.DataFrame"]:
    """(compressed runs labelled with their variant, the dense baseline and control runs).

    One run per (variant, requested ratio, seed): the store lists newest first, so a repeated
    experiment counts once, with its latest result.
    """
    sel = budget_rows(runs, dataset, model, budget)
    dense = sel[sel["kind"].isin(["baseline", "control"])]
    comp = sel[sel["kind"] == "compressed"].copy()
    labels = [next((v.label for v in variant_list if v.matches(m, p)), None)
              for m, p in zip(comp["method"], comp["method_params"])]
    comp["label"] = labels
    comp = comp[comp["label"].notna()].copy()
    comp["requested"] = comp["requested_ratio"].round(3)
    comp = comp.drop_duplicates(["label", "requested", "seed"], keep="first")
    return comp, dense


def most_frequent(values: "pandas.Series") -> Any:
    """The most frequent value; a tie goes to the largest value (so the larger budget wins)."""
    return values.value_counts().sort_index(ascending=False).idxmax()


def dense_runs(group: "pandas.DataFrame", comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """The baseline and control runs behind ``comp``: same seeds, same baseline and fine-tune epochs."""
    dense = group[group["kind"].isin(["baseline", "control"]) & group["seed"].isin(comp["seed"].unique())]
    dense = dense[dense["baseline.epochs"].astype(str).isin(comp["baseline.epochs"].astype(str).unique())]
    same_ft = dense["finetune.epochs"].astype(str).isin(comp["finetune.epochs"].astype(str).unique())
    return dense[(dense["kind"] == "baseline") | same_ft]


Selected = dict[str, tuple["pandas.DataFrame", "pandas.DataFrame", str]]  # experiment -> (comp, dense, budget)


def select_per_experiment(runs: "pandas.DataFrame", variants: dict[str, VariantSpec],
                          pick_budget: Callable[["pandas.DataFrame"], tuple["pandas.DataFrame", str]]) -> Selected:
    """Per dataset/model: (compressed runs of the variants at one budget, its dense runs, the budget described).

    ``pick_budget(comp)`` keeps the runs of one budget and says which, so variants are only ever compared at
    equal budgets. Repeated runs of one configuration and seed are deterministic replicas: only one is kept.
    The variant's label is in ``paper_variant``, the rounded requested ratio in ``requested``.
    """
    if runs.empty or "method_params" not in runs:
        return {}
    runs = runs.copy()
    runs["paper_variant"] = label_variants(runs, variants)
    out = {}
    for experiment, group in runs.groupby("experiment"):
        comp = group[group["paper_variant"].notna()].copy()
        if comp.empty:
            continue
        comp, budget = pick_budget(comp)
        comp = comp.assign(requested=comp["requested_ratio"].round(3))
        comp = comp.drop_duplicates(["paper_variant", "requested", "seed"])
        out[experiment] = (comp, dense_runs(group, comp), budget)
    return out


def budget_runs(runs: "pandas.DataFrame", comp: "pandas.DataFrame") -> tuple["pandas.DataFrame", "pandas.DataFrame", str]:
    """Keep the (baseline epochs, fine-tune epochs) budget most of ``comp`` used, for compressed runs and the
    dense references alike, so curves never mix budgets. Returns (runs, comp, a caption fragment)."""
    def key(df: "pandas.DataFrame") -> "pandas.Series":
        return df["baseline.epochs"].astype(str) + "/" + df["finetune.epochs"].astype(str)

    if comp.empty or "finetune.epochs" not in comp or "baseline.epochs" not in comp:
        return runs, comp, ""
    chosen = key(comp).value_counts().index[0]
    comp = comp[key(comp) == chosen]
    base, ft = chosen.split("/")
    dense_ok = (runs["kind"] == "baseline") & (runs["baseline.epochs"].astype(str) == base)
    control_ok = (runs["kind"] == "control") & (key(runs) == chosen)
    runs = runs[dense_ok | control_ok | runs["run_id"].isin(comp["run_id"])]
    return runs, comp, f"baseline {base} epochs, fine-tune {ft} epochs"


# ================================================================ summaries over seeds

def summarise(comp: "pandas.DataFrame", labels_in_order: Sequence[str] | None = None) -> "pandas.DataFrame":
    """Mean ± std over seeds per (variant, requested ratio): errors in %, before and after fine-tuning;
    rows in ``labels_in_order`` order, then by ratio."""
    comp = comp.assign(err_after=error_pct(comp["acc_top1"]), err_before=error_pct(comp["acc_top1_before_finetune"]))
    agg = comp.groupby(["label", "requested"], sort=False).agg(
        n_seeds=("seed", "nunique"), ratio=("compression_ratio", "mean"), params_after=("params_effective", "mean"),
        params_before=("params_total", "mean"),
        err_before_mean=("err_before", "mean"), err_before_std=("err_before", "std"),
        err_after_mean=("err_after", "mean"), err_after_std=("err_after", "std"),
    ).reset_index()
    agg["removed_pct"] = 100.0 * (1.0 - agg["params_after"] / agg["params_before"])
    order = {label: i for i, label in enumerate(dict.fromkeys(labels_in_order or []))}
    agg["_order"] = [order.get(label, len(order)) for label in agg["label"]]
    agg = agg.sort_values(["_order", "requested"]).drop(columns="_order").reset_index(drop=True)
    for col in ("err_before_std", "err_after_std"):
        agg[col] = agg[col].fillna(0.0)
    return agg


def dense_errors(dense: "pandas.DataFrame") -> dict[str, tuple[float, float, int]]:
    """(mean, std, n) test error in % of the dense baseline and the dense + fine-tune control, per seed once."""
    out = {}
    for kind in ("baseline", "control"):
        err = error_pct(dense[dense["kind"] == kind].drop_duplicates("seed")["acc_top1"])
        if len(err):
            out[kind] = (float(err.mean()), float(err.std()) if len(err) > 1 else 0.0, len(err))
    return out


def variant_accuracy_table(comp: "pandas.DataFrame", order: Sequence[str],
                           params_column: str = "params") -> "pandas.DataFrame":
    """Mean ± std over seeds (accuracy in %) per ``paper_variant`` and requested ratio; rows by ratio, then
    variants in ``order``. ``params_column`` names the mean parameter count's column."""
    comp = comp.assign(acc_pct=100 * comp["acc_top1"], before_pct=100 * comp["acc_top1_before_finetune"])
    agg = comp.groupby(["paper_variant", "requested"]).agg(
        n_seeds=("acc_pct", "size"), achieved_ratio=("compression_ratio", "mean"),
        **{params_column: ("params_effective", "mean")}, acc_mean_pct=("acc_pct", "mean"),
        acc_std_pct=("acc_pct", "std"), acc_before_finetune_pct=("before_pct", "mean"),
    ).reset_index().rename(columns={"paper_variant": "variant", "requested": "requested_ratio"})
    agg["acc_std_pct"] = agg["acc_std_pct"].fillna(0.0)
    agg["acc (mean ± std)"] = [pm(m, s) for m, s in zip(agg["acc_mean_pct"], agg["acc_std_pct"])]
    rank = {v: i for i, v in enumerate(order)}
    return agg.sort_values(["requested_ratio", "variant"], key=lambda c: c.map(rank) if c.name == "variant" else c,
                           ignore_index=True)


# ================================================================ step metrics

def tracker_for(runs: "pandas.DataFrame") -> Any:
    """The store ``runs`` came from: ``runs.attrs['tracking_uri']`` when set, else the default store."""
    from bench.tracking import Tracker

    return Tracker(runs.attrs.get("tracking_uri"))


def step_history(tracker: Any, run_id: str, keys: Sequence[str]) -> dict[int, dict[str, float]]:
    """{step: {key: value}} of a run's step metrics ``keys``; a key a step did not log is absent there."""
    history: dict[int, dict[str, float]] = {}
    for key in keys:
        for m in tracker.client.get_metric_history(run_id, key):
            history.setdefault(int(m.step), {})[key] = float(m.value)
    return history


# ================================================================ drawing: error vs fraction removed (coreset, magnitude)

PUBLISHED_STAR = {"marker": "*", "ms": 12, "color": "gold", "mec": "k"}  # a published operating point


def removed_ticks(ax: Any, ratios: Sequence[float]) -> None:
    """x = log2(ratio), labelled as % removed with the ratio beside it."""
    ax.set_xticks([np.log2(r) for r in ratios])
    ax.set_xticklabels([f"{100 * (1 - 1 / r):.0f}%\n({r:g}x)" for r in ratios], fontsize=7)


def draw_panel(ax: Any, comp: "pandas.DataFrame", points: "pandas.DataFrame", variant_list: Sequence[Variant],
               column: str, dense: dict[str, tuple[float, float, int]], log_y: bool = True) -> None:
    """One error panel: per variant mean ± std (error bars) and every seed's point, dense lines."""
    present = [v for v in variant_list if v.label in set(points["label"])]
    offsets = np.linspace(-0.12, 0.12, max(len(present), 1))
    raw = "acc_top1" if column == "err_after" else "acc_top1_before_finetune"
    for off, v in zip(offsets, present):
        grp = points[points["label"] == v.label].sort_values("ratio")
        style = {"color": v.style.get("color"), "marker": v.style.get("marker", "o"), "ls": v.style.get("ls", "-"),
                 "mfc": v.style.get("mfc", v.style.get("color"))}
        ax.errorbar(np.log2(grp["ratio"]) + off, grp[f"{column}_mean"], yerr=grp[f"{column}_std"], capsize=2,
                    ms=4, lw=1.2, label=v.label, **style)
        seeds = comp[comp["label"] == v.label]
        ax.scatter(np.log2(seeds["compression_ratio"]) + off, error_pct(seeds[raw]), color=style["color"],
                   alpha=0.35, s=9, zorder=3)
    lines = {"baseline": ("k", "--", "dense"), "control": ("0.45", ":", "dense + fine-tune")}
    for kind, (mean, std, n) in dense.items():
        color, ls, name = lines[kind]
        ax.axhline(mean, color=color, ls=ls, lw=1, label=f"{name} ({pm(mean, std)} %, n={n})")
    if log_y:
        from matplotlib.ticker import FormatStrFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=6)
    ax.grid(alpha=0.3, which="both")


def runcaption(comp: "pandas.DataFrame", dense: "pandas.DataFrame") -> str:
    return f"seeds {seed_list(comp)}, {len(comp)} compressed + {len(dense)} dense/control runs"


@dataclass
class Section:
    """One dataset's runs for a paper figure: its budget, variants, runs and their summaries."""

    dataset: str
    budget: Budget
    variants: list[Variant]
    comp: "pandas.DataFrame"
    dense: "pandas.DataFrame"
    points: "pandas.DataFrame"
    dense_err: dict[str, tuple[float, float, int]]


def collect(runs: "pandas.DataFrame", budgets: dict[str, Budget], model: str, vlist: list[Variant],
            ratios: Sequence[float] | None = None) -> list[Section]:
    """A Section per dataset with at least one of the figure's compressed runs (at ``ratios``, if given)."""
    sections: list[Section] = []
    if runs.empty:
        return sections
    for dataset, budget in budgets.items():
        comp, dense = select_runs(runs, dataset, model, budget, vlist)
        if ratios is not None:
            comp = comp[np.isclose(comp["requested"].to_numpy()[:, None], np.asarray(ratios, float)[None]).any(axis=1)]
        if not comp.empty:
            sections.append(Section(dataset, budget, vlist, comp, dense, summarise(comp, [v.label for v in vlist]),
                                    dense_errors(dense)))
    return sections


Mark = tuple[float, float, str, dict]  # (compression ratio, test error %, label, matplotlib style)


def error_figure(sections: list[Section], model_name: str, suptitle: str, path: Path,
                 marks: dict[str, list[Mark]] | None = None, hlines: dict[str, list[tuple[float, str]]] | None = None,
                 ) -> list[Path]:
    """Rows = datasets, columns = before / after fine-tuning; published marks go on the after panel of the
    datasets whose name starts with the dict key."""
    from bench.drawing import pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(len(sections), 2, figsize=(12, 4.2 * len(sections)), squeeze=False, sharey="row")
    for row, sec in enumerate(sections):
        for col, (column, when) in enumerate((("err_before", "before fine-tuning"), ("err_after", "after fine-tuning"))):
            ax = axes[row][col]
            draw_panel(ax, sec.comp, sec.points, sec.variants, column, sec.dense_err)
            removed_ticks(ax, sorted(sec.points["requested"].unique()))
            ax.set_title(f"{sec.dataset} / {model_name} — {when}\n{runcaption(sec.comp, sec.dense)}\n"
                         f"{sec.budget.epochs} baseline epochs, fine-tune at most {epochs_text(sec.budget.finetune_epochs)}",
                         fontsize=8)
            ax.set_xlabel("parameters removed (whole network; compression ratio)", fontsize=8)
        ax = axes[row][1]
        for prefix, items in (marks or {}).items():
            if sec.dataset.startswith(prefix):
                for ratio, err, label, style in items:
                    ax.plot([np.log2(ratio)], [err], ls="none", label=label, **style)
        for prefix, items in (hlines or {}).items():
            if sec.dataset.startswith(prefix):
                for err, label in items:
                    ax.axhline(err, color="gold", lw=0.9, ls="-.", label=label)
        axes[row][0].set_ylabel("test error (%, log scale)")
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


POINT_COLUMNS = ["dataset", "model", "label", "requested", "ratio", "removed_pct", "params_after", "n_seeds",
                 "err_before_mean", "err_before_std", "err_after_mean", "err_after_std", "baseline_epochs",
                 "finetune_epochs"]


def points_table(sections: list[Section], model: str, extra: dict[str, Any] | None = None) -> "pandas.DataFrame":
    """Every operating point of every section; ``extra`` maps a column name to f(section, label, ratio)."""
    import pandas as pd

    frames = []
    for sec in sections:
        df = sec.points.assign(dataset=sec.dataset, model=model, baseline_epochs=sec.budget.epochs,
                               finetune_epochs=sec.budget.finetune_epochs)
        for name, fn in (extra or {}).items():
            df[name] = [fn(sec, label, r) for label, r in zip(df["label"], df["requested"])]
        frames.append(df)
    cols = POINT_COLUMNS[:7] + list(extra or {}) + POINT_COLUMNS[7:]
    return pd.concat(frames, ignore_index=True)[cols]


def published_beside_ours(published: dict[str, str], sections: list[Section], ratio: float, model_name: str,
                          extra: Callable[[Section, Any], dict[str, str]]) -> "pandas.DataFrame":
    """The paper's row, then ours at ``ratio``: one row per variant and dataset (errors in %, mean ± std over
    seeds). ``extra(section, point)`` gives the paper-specific cells; columns follow ``published``'s keys."""
    import pandas as pd

    rows = [published]
    for sec in sections:
        base = sec.dense_err.get("baseline")
        for r in sec.points[np.isclose(sec.points["requested"], ratio)].itertuples():
            rows.append({
                "dataset": f"{sec.dataset} (ours)", "model": model_name, "variant": r.label,
                "baseline_error_pct": pm(base[0], base[1]) if base else "",
                "error_before_ft_pct": pm(r.err_before_mean, r.err_before_std),
                "error_after_ft_pct": pm(r.err_after_mean, r.err_after_std),
                "params": f"{r.params_before / 1e3:.0f}K → {r.params_after / 1e3:.1f}K",
                **extra(sec, r), "seeds": str(r.n_seeds)})
    return pd.DataFrame(rows)


def write_table_with_notes(df: "pandas.DataFrame", path: Path, title: str, notes: str) -> list[Path]:
    """The table as CSV + Markdown, ``notes`` appended to the Markdown."""
    from bench.drawing import write_table

    written = write_table(df, path, title)
    md = path.with_suffix(".md")
    md.write_text(md.read_text() + notes)
    return written


# ================================================================ drawing: accuracy vs compression ratio (lma, multihash)

def draw_variant_accuracy(ax: Any, table: "pandas.DataFrame", comp: "pandas.DataFrame",
                          styles: dict[str, tuple[str, str, float]]) -> None:
    """Per variant of ``styles`` (colour, marker, x shift factor): mean ± std accuracy (%) vs achieved ratio
    from ``variant_accuracy_table`` and every seed's point from ``comp``."""
    for variant, (color, marker, shift) in styles.items():
        t = table[table["variant"] == variant].sort_values("achieved_ratio")
        if t.empty:
            continue
        # Variants sit at the same ratios: a small horizontal shift keeps them apart (ratio is log-scaled).
        ax.errorbar(t["achieved_ratio"] * shift, t["acc_mean_pct"], yerr=t["acc_std_pct"], color=color,
                    marker=marker, capsize=3, label=f"{variant} (mean ± std)")
        pts = comp[comp["paper_variant"] == variant]
        ax.scatter(pts["compression_ratio"] * shift, 100 * pts["acc_top1"], color=color, marker=marker, s=12,
                   alpha=0.35)


def draw_dense_accuracy(ax: Any, dense: dict[str, tuple[float, float, int]], baseline_label: str = "dense") -> None:
    """The dense baseline and dense + fine-tune control (``dense_reference``) as lines, accuracy in %."""
    styles = {"baseline": ("k", "--", baseline_label), "control": ("0.4", ":", "dense + fine-tune")}
    for kind, (mean, std, n) in dense.items():
        color, ls, label = styles[kind]
        ax.axhline(100 * mean, color=color, ls=ls, lw=1, label=f"{label} ({100 * mean:.2f} ± {100 * std:.2f}, n={n})")


def log2_ratio_axis(ax: Any, ticks: Any, right: float, labels: list[str] | None = None) -> None:
    """A log2 compression-ratio axis from 1.6 to ``right``, ticks at the sizes drawn, so our panels and the
    paper's line up by ratio."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(1.6, right)
    ax.set_xticks(list(ticks))
    ax.set_xticklabels(labels or [f"{t:.3g}x" for t in ticks], fontsize=7)
    ax.minorticks_off()


def draw_selected(selected: Selected, draw: Callable[..., list[Path]], out_dir: Path,
                  published: Callable[[], "pandas.DataFrame"], published_name: str, published_title: str) -> list[Path]:
    """``draw(experiment, comp, dense, budget, out_dir)`` for every experiment ``select_per_experiment`` kept,
    then, when anything was drawn, the ``published()`` table as ``out_dir/published_name`` (CSV + Markdown)."""
    from bench.drawing import write_table

    written: list[Path] = []
    for experiment, (comp, dense, budget) in selected.items():
        written += draw(experiment, comp, dense, budget, out_dir)
    if written:
        written += write_table(published(), out_dir / published_name, published_title)
    return written


def draw_each_experiment(runs: "pandas.DataFrame", draw_experiment: Callable[..., list[Path]],
                         out_dir: Path) -> list[Path]:
    """``draw_experiment(runs of one dataset/model, experiment, out_dir, tracker)`` for every dataset/model
    of the store; [] for an empty store."""
    if runs.empty or "method" not in runs:
        return []
    tracker = tracker_for(runs)
    written: list[Path] = []
    for experiment, group in runs.groupby("experiment"):
        written += draw_experiment(group, experiment, out_dir, tracker)
    return written
