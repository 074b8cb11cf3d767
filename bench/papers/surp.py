"""Paper figure for ``rate-distortion``: SuRP, Isik, Weissman, No, "An Information-Theoretic Justification for
Model Pruning" (AISTATS 2022). Spec: docs/methods/rate_distortion.md.

Experiments (``make reproduce PAPER=surp``, protocol ``paper-surp``, see ``bench.paper_protocols``): the
paper's iterative SuRP with retraining before every round (SGD 0.01, momentum 0.9, wd 5e-4; dense training
SGD 0.1), LeNet-300-100 (``lenet300``; the SuRP repository has a LeNet-300-100 model file) on ``mnist-5k``,
3 seeds, compression ratios 2, 4, 8, 16, 32, for

* SuRP iterative (20 % of the survivors per round, s_k = 1 − 0.8^k, retrained between rounds): the paper's,
* SuRP one-shot (one refinement path stopped exactly at the budget, α = 10, per-tensor normalisation),
* global magnitude one-shot, the paper's baseline, with the same final retraining, and
* global magnitude iterative with as many rounds (``lt_rounds``: ≈20 % per round), the fair partner of
  iterative SuRP.

The cpu scale retrains 2 epochs a round (the paper's configs: 20) after a 20-epoch dense training (350).

Figure: (a) test accuracy after the final retraining vs compression ratio, (b) the same before fine-tuning
(SuRP's decoded weights are sums of thresholds, not the original values), (c) the empirical rate-distortion
curve of one one-shot run from its step metrics (``rate_bits_per_weight`` vs ``distortion_l1``; the points are
snapshots of one refinement path at increasing non-zero counts, ``keep_fraction``), with every other one-shot
run faintly. Mean ± std over seeds and every seed's point; dense and dense + fine-tune drawn. Table
``surp_vs_magnitude``: per ratio, whether SuRP beats, ties or loses to magnitude (rule in the table title).

No published numbers are drawn: the spec could not retrieve the paper's tables, and its experiments are
CIFAR-10 ResNet-20 / VGG-16, so the verdict is the shape of its claim (SuRP at least as good as magnitude,
better at high sparsity).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.papers import register
from bench.papers.argv import common_args, iterative_magnitude, ratios_arg
from bench.papers.budgets import budget_runs
from bench.papers.step_metrics import draw_each_experiment, step_history
from bench.papers.text import experiment_slug, pm
from bench.papers.variants import changed_params, labelled_runs, magnitude_label, ordered
from bench.protocol import QUICK_RATIOS

DATASET, MODEL = "mnist-5k", "lenet300"
RATIOS = QUICK_RATIOS  # the suite's default grid, 2x to 32x
VERDICT_SE = 2.0  # |Δ| within this many standard errors of the difference: a tie
RATE_KEYS = ("rate_bits", "rate_bits_per_weight", "distortion_l1", "keep_fraction", "refinement_steps")

SURP_ONE_SHOT, SURP_ITERATIVE = "SuRP, one-shot", "SuRP, iterative (20 %/round)"
MAG_ONE_SHOT, MAG_ITERATIVE = "global magnitude, one-shot", "global magnitude, iterative (≈20 %/round)"
SERIES_ORDER = (SURP_ONE_SHOT, SURP_ITERATIVE, MAG_ONE_SHOT, MAG_ITERATIVE)
PAIRS = ((SURP_ONE_SHOT, MAG_ONE_SHOT), (SURP_ITERATIVE, MAG_ITERATIVE))
# A pair shares its colour: SuRP solid with circles, magnitude dashed with squares.
STYLES = {SURP_ONE_SHOT: ("C0", "-", "o"), SURP_ITERATIVE: ("C1", "-", "o"), MAG_ONE_SHOT: ("C0", "--", "s"),
          MAG_ITERATIVE: ("C1", "--", "s")}


def build_experiments(scale: str) -> list[list[str]]:
    """Under ``paper-surp`` (iterative SuRP with retraining before every round): SuRP iterative and one-shot,
    global magnitude one-shot and iterative with as many rounds, LeNet-300-100 on the MNIST sample."""
    common = common_args(DATASET, MODEL)
    return [
        ["bench", "--method", "rate-distortion", "--param", "schedule=iterative", *ratios_arg(RATIOS), *common],
        ["bench", "--method", "rate-distortion", "--param", "schedule=one-shot", *ratios_arg(RATIOS), *common],
        ["bench", "--method", "magnitude", *ratios_arg(RATIOS), *common],
        *iterative_magnitude(MODEL, RATIOS, common),
    ]


def series_label(method: str, params: dict[str, str]) -> str | None:
    """SuRP by schedule, global magnitude by schedule; other non-default parameters appended; else None."""
    if method == "rate-distortion":
        iterative = params.get("schedule", "one-shot") == "iterative"
        return (SURP_ITERATIVE if iterative else SURP_ONE_SHOT) + changed_params("rate-distortion", params, {"schedule"})
    if method == "magnitude":
        return magnitude_label(params, prefix="global magnitude")
    return None


def accuracy_table(comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds per series and requested ratio, after and before the shared fine-tune."""
    agg = comp.groupby(["series", "requested"]).agg(
        n=("acc_top1", "size"), seeds=("seed", "nunique"), ratio_mean=("compression_ratio", "mean"),
        acc_mean=("acc_top1", "mean"), acc_std=("acc_top1", "std"),
        before_ft_mean=("acc_top1_before_finetune", "mean"), before_ft_std=("acc_top1_before_finetune", "std"),
        compress_seconds=("compress_seconds", "mean"),
    ).reset_index()
    for col in ("acc_std", "before_ft_std"):
        agg[col] = agg[col].fillna(0.0)
    agg["acc (mean ± std, %)"] = [pm(100 * m, 100 * s) for m, s in zip(agg["acc_mean"], agg["acc_std"])]
    return agg.rename(columns={"requested": "requested_ratio"})


def verdict(delta: float, se: float, n_min: int) -> str:
    """SuRP vs magnitude at one ratio: beats / loses when the mean difference exceeds ``VERDICT_SE`` standard
    errors of the difference (sqrt(s_a²/n_a + s_b²/n_b)), ties otherwise; undetermined with < 2 seeds."""
    if n_min < 2:
        return "undetermined (n < 2)"
    if abs(delta) <= VERDICT_SE * se:
        return "ties"
    return "beats" if delta > 0 else "loses"


def comparison_table(points: "pandas.DataFrame") -> "pandas.DataFrame":
    """For each (SuRP series, matched magnitude series) and ratio both ran: Δ accuracy and the verdict."""
    import pandas as pd

    rows = []
    for surp, mag in PAIRS:
        a = points[points["series"] == surp].set_index("requested_ratio")
        b = points[points["series"] == mag].set_index("requested_ratio")
        for ratio in sorted(set(a.index) & set(b.index)):
            ra, rb = a.loc[ratio], b.loc[ratio]
            delta = ra["acc_mean"] - rb["acc_mean"]
            se = math.sqrt(ra["acc_std"] ** 2 / ra["n"] + rb["acc_std"] ** 2 / rb["n"])
            rows.append({
                "requested_ratio": ratio, "SuRP": surp, "SuRP acc (%)": 100 * ra["acc_mean"],
                "SuRP std (%)": 100 * ra["acc_std"], "SuRP n": int(ra["n"]), "magnitude": mag,
                "magnitude acc (%)": 100 * rb["acc_mean"], "magnitude std (%)": 100 * rb["acc_std"],
                "magnitude n": int(rb["n"]), "delta (points)": 100 * delta, "se of delta (points)": 100 * se,
                "SuRP vs magnitude": verdict(delta, se, int(min(ra["n"], rb["n"]))),
                "delta before fine-tune (points)": 100 * (ra["before_ft_mean"] - rb["before_ft_mean"]),
            })
    return pd.DataFrame(rows)


def rate_curves(comp: "pandas.DataFrame", tracker: Any) -> "pandas.DataFrame":
    """The step metrics of every one-shot SuRP run: one row per (run, snapshot of its refinement path)."""
    import pandas as pd

    rows = []
    for run in comp[comp["series"] == SURP_ONE_SHOT].itertuples(index=False):
        history = step_history(tracker, run.run_id, RATE_KEYS)
        rows += [{"run_id": run.run_id, "seed": run.seed, "requested_ratio": run.requested_ratio, "step": step,
                  **values} for step, values in sorted(history.items())]
    return pd.DataFrame(rows, columns=["run_id", "seed", "requested_ratio", "step", *RATE_KEYS])


def featured_run(curves: "pandas.DataFrame") -> str | None:
    """The run whose curve is drawn: lowest requested ratio (the widest span of the path), then lowest seed."""
    if curves.empty:
        return None
    first = curves.sort_values(["requested_ratio", "seed", "run_id"]).iloc[0]
    return str(first["run_id"])


# ------------------------------------------------------------------ drawing

def _ratio_axis(ax: Any, largest: float) -> None:
    from matplotlib.ticker import NullLocator

    ticks = [2 ** k for k in range(0, 21) if 2 ** k <= max(largest, 2) * 1.3]
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("compression ratio (achieved; params_total / params_effective)")


def _accuracy_panel(ax: Any, comp: "pandas.DataFrame", points: "pandas.DataFrame", runs: "pandas.DataFrame",
                    order: list[str], before: bool) -> None:
    from bench.drawing import dense_lines, dense_reference

    mean, std, col = ("before_ft_mean", "before_ft_std", "acc_top1_before_finetune") if before else \
        ("acc_mean", "acc_std", "acc_top1")
    for i, series in enumerate(order):
        color, ls, marker = STYLES.get(series, (f"C{2 + i % 8}", ":", "^"))
        g = points[points["series"] == series].sort_values("ratio_mean")
        ax.errorbar(g["ratio_mean"], g[mean], yerr=g[std], color=color, ls=ls, marker=marker, capsize=3,
                    label=f"{series} (n={int(g['n'].max())}/pt)")
        pts = comp[comp["series"] == series]
        ax.scatter(pts["compression_ratio"], pts[col], color=color, alpha=0.35, s=12)
    dense_lines(ax, dense_reference(runs))
    _ratio_axis(ax, float(comp["compression_ratio"].max()))
    ax.set_ylabel("test accuracy " + ("before fine-tuning" if before else "after the shared fine-tune"))
    ax.set_title("(b) before fine-tuning (SuRP: decoded sums of thresholds)" if before else
                 "(a) after the shared fine-tune (mean ± std; dots: seeds)", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")


def _rate_panel(ax: Any, curves: "pandas.DataFrame", featured: str | None) -> None:
    for run_id, g in curves.groupby("run_id"):
        if run_id != featured:
            g = g.sort_values("distortion_l1")
            ax.plot(g["distortion_l1"], g["rate_bits_per_weight"], color="0.75", lw=0.8, marker=".", ms=3)
    if featured is not None:
        g = curves[curves["run_id"] == featured].sort_values("distortion_l1")
        ax.plot(g["distortion_l1"], g["rate_bits_per_weight"], color="C0", marker="o",
                label=f"one run: seed {int(g['seed'].iloc[0])}, {g['requested_ratio'].iloc[0]:g}x target")
        for _, row in g.iterrows():
            ax.annotate(f"keep {100 * row['keep_fraction']:.1f} %", (row["distortion_l1"], row["rate_bits_per_weight"]),
                        fontsize=6, xytext=(4, 2), textcoords="offset points")
        ax.plot([], [], color="0.75", lw=0.8, label="every other one-shot run")
    ax.set_xlabel("distortion: Σ|u − Û| / n of the normalised magnitudes")
    ax.set_ylabel("rate: index + sign bits per compressed weight")
    ax.set_title("(c) empirical rate–distortion curve along one refinement path", fontsize=9)
    ax.legend(fontsize=6.5)


def draw_experiment(runs: "pandas.DataFrame", experiment: str, out_dir: Path, tracker: Any) -> list[Path]:
    """The figure and tables for one dataset/model; [] when it holds no ``rate-distortion`` runs."""
    from bench.drawing import caption as runs_caption, pyplot, save, write_table

    comp = labelled_runs(runs, series_label)
    if comp.empty or not (comp["method"] == "rate-distortion").any():
        return []
    runs, comp, budget = budget_runs(runs, comp)
    caption = f"{runs_caption(runs, experiment)}; {budget}"
    order = ordered(comp["series"], SERIES_ORDER)
    points = accuracy_table(comp)
    versus = comparison_table(points)
    curves = rate_curves(comp, tracker)
    featured = featured_run(curves)

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2))
    _accuracy_panel(axes[0], comp, points, runs, order, before=False)
    _accuracy_panel(axes[1], comp, points, runs, order, before=True)
    _rate_panel(axes[2], curves, featured)
    fig.suptitle(f"SuRP (rate-distortion successive refinement) vs global magnitude — {caption}\n"
                 "iterative runs retrain before every round (as many rounds for both); only conv/linear weights "
                 "but the classifier are pruned", fontsize=9)
    fig.tight_layout()
    folder = out_dir / experiment_slug(experiment)
    written = save(fig, folder / "surp_figure")
    written += write_table(points, folder / "surp_accuracy", f"Accuracy per series and ratio — {caption}")
    if len(versus):
        written += write_table(versus, folder / "surp_vs_magnitude",
                                f"Where SuRP beats, ties or loses to magnitude (|Δ| ≤ {VERDICT_SE:g} standard errors "
                                f"of the difference = ties) — {caption}")
    if featured is not None:
        written += write_table(curves[curves["run_id"] == featured].sort_values("step"), folder / "surp_rate_distortion",
                                f"Rate-distortion points of one SuRP one-shot run ({featured}) — {caption}")
    return written


@register("surp", experiments=build_experiments)
def figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The SuRP figure and tables for every dataset/model holding ``rate-distortion`` runs."""
    return draw_each_experiment(runs, draw_experiment, out_dir)
