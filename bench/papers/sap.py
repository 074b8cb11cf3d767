"""Paper figure for ``lq`` / ``sap``: Diao et al., "Pruning Deep Neural Networks from a Sparsity Perspective"
(ICLR 2023; PQ index and Sparsity-informed Adaptive Pruning), and its seed, Yang, Wang, Ding, Yang (arXiv
2206.05604; the per-neuron ℓq rule). Spec: docs/methods/lq.md.

Experiments (``make reproduce PAPER=sap``, protocol ``paper-sap``; ``PAPER=lq`` runs the same under
``paper-lq``, see ``bench.papers.lq``): SAP's own loop. Every round prunes by the rule, rewinds the surviving
weights to their random initialisation (the baseline cache keeps it) and trains E epochs (SGD 0.1 Nesterov,
wd 5e-4, cosine, gradient-norm clip 1, batch 250); the dense model is round 0, E epochs from init.
Fashion-MNIST (a dataset SAP itself uses) with the ``mlp`` model (784-128-256-10 ReLU, SAP's MLP), or SAP's
``cnn`` on CIFAR-10 when ``$CIFAR10_DIR`` is set; 3 seeds; for

* SAP with (p, q) = (0.5, 1) and (1, 2) (global scope, γ = 1, β = 0.9, η_r = 0: the paper's main runs) and
  the seed ℓq rule (per neuron, q = 0.5, scale c = 5, cap 0.9: the authors' prototype), T rounds at the
  protocol's ratio (32x). The paper never forces a ratio: its figure is accuracy per round against the
  weights remaining, which is panel (b) here. A rule that has not reached 32x after T rounds is finished by
  the method's forced global magnitude trim (``round_forced``), which the figure marks as such.
* one-shot global magnitude (SAP's "One Shot": ranks by the dense model, rewinds, trains) at 2-32x and
  iterative global magnitude, lottery-ticket style (≈20 % of the survivors a round, ``lt_rounds``, each round
  rewound and retrained), at ``LT_RATIOS``.

The cpu scale trains E = 2 epochs a round for T = 8 rounds (the paper: 200 and 30).

Panels: (a) final test accuracy vs remaining parameters, (b) validation accuracy after each round's training
vs remaining parameters for the adaptive rules (their step metrics ``round_ratio``, ``round_val_acc``,
``round_val_acc_pruned``), beside magnitude's validation accuracy at its ratios (the same shared fine-tune),
(c) PQI vs round (``round_pq_index``; the paper's decrease-increase-decrease hypothesis), (d) the published
approximate numbers (CIFAR-10 / CNN, poster Fig. 2) beside ours. Mean ± std over seeds and every seed's point.

Differences from the paper: the classifier and biases are never pruned and "remaining" is 1 / compression
ratio over every parameter (ShrinkBench's count), where SAP prunes the classifier and counts conv/linear
weights; per-round accuracy is on validation (the paper's is test); offline the data is Fashion-MNIST
(a dataset of the paper, but not the CIFAR-10 of its poster figure).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.papers import register
from bench.papers.argv import common_args, iterative_magnitude, ratios_arg, stand_in
from bench.papers.budgets import budget_runs
from bench.papers.step_metrics import draw_each_experiment, step_history
from bench.papers.text import experiment_slug, num, pm
from bench.papers.variants import changed_params, labelled_runs, magnitude_label, ordered
from bench.protocol import QUICK_RATIOS

DATASET = "fashion-mnist"  # 28x28, 10 classes: the shape ``lt_rounds`` counts for by default
MODEL = "mlp"
RATIOS = QUICK_RATIOS  # the suite's default grid, 2x to 32x
LT_RATIOS = (4, 16)  # lottery-ticket magnitude: 7 and 15 rounds of training from init (the cpu budget's bulk)

ADAPTIVE = ("sap", "lq")
HISTORY_KEYS = ("round_ratio", "round_val_acc", "round_val_acc_pruned", "round_pq_index", "round_forced")

# Poster Fig. 2 of Diao et al. (ICLR 2023), CIFAR-10 / CNN, global scope, retrained, T = 30; read approximately
# (spec "Reported results"). ``ours`` names the series of this figure it corresponds to.
PUBLISHED = (
    {"method": "SAP (p=0.5, q=1)", "ours": "SAP (p=0.5, q=1)", "acc_pct": 77.5, "remaining": "≈0–1 % at T=30",
     "after_round_1": "≈69 %"},
    {"method": "SAP (p=1, q=2)", "ours": "SAP (p=1, q=2)", "acc_pct": 25.0, "remaining": "≈0 % by T≈5",
     "after_round_1": "≈23 %"},
    {"method": "Lottery Ticket (P=0.2)", "ours": "magnitude, iterative (≈20 %/round)", "acc_pct": 82.0,
     "remaining": "≈0.12 % (0.8^30)", "after_round_1": "80 %"},
    {"method": "One Shot (P=0.2; ranks by the dense model, rewinds)", "ours": "magnitude, one-shot",
     "acc_pct": 58.0, "remaining": "≈0.12 %", "after_round_1": "80 %"},
)
PUBLISHED_DENSE_PCT = 90.0
PUBLISHED_SETTING = "CIFAR-10 / CNN (poster Fig. 2, approximate)"


# ------------------------------------------------------------------ experiments

def build_experiments(scale: str, adaptive: tuple[tuple[str, ...], ...] | None = None) -> list[list[str]]:
    """Under ``paper-sap``: the adaptive rules at the protocol's ratio (their whole per-round trajectory is the
    figure), one-shot and lottery-ticket magnitude at ``RATIOS``. The MLP on Fashion-MNIST (a dataset and model
    of the paper), or its CNN on CIFAR-10 when ``$CIFAR10_DIR`` is set."""
    dataset, model = stand_in(DATASET, MODEL, "cnn")
    shape = (3, 32, 32) if dataset == "cifar10" else (1, 28, 28)
    common = common_args(dataset, model)
    rules = adaptive if adaptive is not None else (("sap",), ("sap", "p=1", "q=2"), ("lq",))
    return [
        *[["bench", "--method", method, *[a for kv in kvs for a in ("--param", kv)], *common]
          for method, *kvs in rules],
        ["bench", "--method", "magnitude", *ratios_arg(RATIOS), *common],
        *iterative_magnitude(model, LT_RATIOS, common, shape),
    ]


# ------------------------------------------------------------------ series

def series_label(method: str, params: dict[str, str]) -> str | None:
    """The figure's curve for a run: SAP by (p, q), the seed ℓq rule, magnitude by schedule (None: not drawn).
    Other non-default parameters are appended, so runs with other settings never merge into a default curve."""
    if method == "sap":
        return (f"SAP (p={num(params.get('p', 0.5))}, q={num(params.get('q', 1.0))})"
                + changed_params("sap", params, {"p", "q", "rounds"}))
    if method == "lq":
        return "seed ℓq rule" + changed_params("lq", params, {"rounds"})
    if method == "magnitude":
        return magnitude_label(params)
    return None


SERIES_ORDER = ("SAP (p=0.5, q=1)", "SAP (p=1, q=2)", "seed ℓq rule", "magnitude, iterative (≈20 %/round)",
                "magnitude, one-shot")


def color_of(series: str, order: list[str], known: tuple[str, ...] = SERIES_ORDER) -> str:
    if series in known:
        return f"C{known.index(series)}"
    return f"C{(len(known) + order.index(series)) % 10}"


def accuracy_table(comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds of the final (fine-tuned) accuracy per series and requested ratio."""
    agg = comp.groupby(["series", "requested"]).agg(
        n=("acc_top1", "size"), seeds=("seed", "nunique"), remaining_pct=("remaining_pct", "mean"),
        ratio_mean=("compression_ratio", "mean"), acc_mean=("acc_top1", "mean"), acc_std=("acc_top1", "std"),
        val_acc_mean=("val_acc_top1", "mean"), val_acc_std=("val_acc_top1", "std"),
        acc_before_ft=("acc_top1_before_finetune", "mean"), pq_index_mean=("pq_index", "mean"),
        pq_index_std=("pq_index", "std"), forced_runs=("forced", "sum"),
    ).reset_index()
    for col in ("acc_std", "val_acc_std", "pq_index_std"):
        agg[col] = agg[col].fillna(0.0)
    agg["forced_runs"] = agg["forced_runs"].astype(int)
    agg["acc (mean ± std, %)"] = [pm(100 * m, 100 * s) for m, s in zip(agg["acc_mean"], agg["acc_std"])]
    return agg.rename(columns={"requested": "requested_ratio"})


# ------------------------------------------------------------------ per-round trajectories

def round_histories(comp: "pandas.DataFrame", tracker: Any) -> "pandas.DataFrame":
    """Every adaptive run's per-round step metrics, one row per (run, round).

    The last round's fine-tune is the pipeline's shared one, so that round's missing ``round_val_acc`` is the
    run's final ``val_acc_top1``.
    """
    import pandas as pd

    rows = []
    for run in comp[comp["method"].isin(ADAPTIVE)].itertuples(index=False):
        history = step_history(tracker, run.run_id, HISTORY_KEYS)
        if history and "round_val_acc" not in history[max(history)]:
            history[max(history)]["round_val_acc"] = float(run.val_acc_top1)
        rows += [{"series": run.series, "seed": run.seed, "run_id": run.run_id, "requested_ratio": run.requested_ratio,
                  "round": step, **values} for step, values in sorted(history.items())]
    out = pd.DataFrame(rows, columns=["series", "seed", "run_id", "requested_ratio", "round", *HISTORY_KEYS])
    for key in HISTORY_KEYS:
        out[key] = out[key].astype(float)
    out["round_forced"] = out["round_forced"].fillna(0.0)
    out["remaining_pct"] = 100.0 / out["round_ratio"]
    return out


def forced_runs(histories: "pandas.DataFrame") -> set[str]:
    """Runs whose target was reached partly by the forced global magnitude trim (the rule stalled)."""
    return set(histories.loc[histories["round_forced"] > 0, "run_id"])


def trajectories(histories: "pandas.DataFrame") -> "pandas.DataFrame":
    """The rounds of each (series, seed)'s highest-ratio run: the longest trajectory of that seed."""
    if histories.empty:
        return histories
    top = histories.sort_values("requested_ratio").groupby(["series", "seed"])["run_id"].last()
    return histories[histories["run_id"].isin(set(top))].reset_index(drop=True)


def rounds_table(traj: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds per (series, round) of remaining parameters, validation accuracy and PQI."""
    if traj.empty:
        return traj
    agg = traj.groupby(["series", "round"]).agg(
        n=("seed", "size"), remaining_pct_mean=("remaining_pct", "mean"), remaining_pct_std=("remaining_pct", "std"),
        val_acc_mean=("round_val_acc", "mean"), val_acc_std=("round_val_acc", "std"),
        val_acc_pruned_mean=("round_val_acc_pruned", "mean"),
        pq_index_mean=("round_pq_index", "mean"), pq_index_std=("round_pq_index", "std"),
        forced=("round_forced", lambda v: bool((v > 0).any())),
    ).reset_index()
    for col in ("remaining_pct_std", "val_acc_std", "pq_index_std"):
        agg[col] = agg[col].fillna(0.0)
    return agg


def trend_pattern(values: list[float], tol: float = 1e-3) -> str:
    """The sequence of monotone runs in ``values`` ("↓↑↓" = decrease, increase, decrease), ignoring steps
    smaller than ``tol``: what the paper's decrease-increase-decrease hypothesis about PQI predicts."""
    signs: list[str] = []
    for a, b in zip(values, values[1:]):
        if math.isnan(a) or math.isnan(b) or abs(b - a) <= tol:
            continue
        s = "↑" if b > a else "↓"
        if not signs or signs[-1] != s:
            signs.append(s)
    return "".join(signs) or "flat"


def pqi_trends(rounds: "pandas.DataFrame") -> dict[str, str]:
    """Per series, the trend of the mean PQI over the rule's own rounds (forced trims excluded)."""
    own = rounds[~rounds["forced"]].sort_values("round")
    return {s: trend_pattern(list(g["pq_index_mean"])) for s, g in own.groupby("series")}


# ------------------------------------------------------------------ published comparison

def published_table(points: "pandas.DataFrame", rounds: "pandas.DataFrame") -> "pandas.DataFrame":
    """The published approximate numbers beside our most compressed point of each series that the method
    reached on its own: for SAP / ℓq the last round before any forced magnitude trim (mean over seeds, by
    round), for magnitude the highest requested ratio. Ours is validation accuracy in both cases (per-round
    test accuracy is never measured), test accuracy added where a run ends there."""
    import pandas as pd

    rows = []
    for pub in PUBLISHED:
        row = {"published method": pub["method"], "published setting": PUBLISHED_SETTING,
               "published acc (%)": pub["acc_pct"], "published remaining": pub["remaining"],
               "published remaining after round 1": pub["after_round_1"], "our series": pub["ours"],
               "our point": None, "our remaining (%)": np.nan, "our val acc (%)": np.nan,
               "our val acc std (%)": np.nan, "our test acc (%)": np.nan, "our n": np.nan,
               "our remaining after round 1 (%)": np.nan}
        own = rounds[(rounds["series"] == pub["ours"]) & ~rounds["forced"]] if len(rounds) else rounds
        ours = points[points["series"] == pub["ours"]]
        if len(own):
            last = own.loc[own["round"].idxmax()]
            first = own[own["round"] == 1]
            row.update({"our point": f"last own round ({int(last['round'])}) of its longest runs",
                        "our remaining (%)": last["remaining_pct_mean"], "our val acc (%)": 100 * last["val_acc_mean"],
                        "our val acc std (%)": 100 * last["val_acc_std"], "our n": int(last["n"]),
                        "our remaining after round 1 (%)": float(first["remaining_pct_mean"].iloc[0]) if len(first)
                        else np.nan})
        elif len(ours):
            best = ours.loc[ours["requested_ratio"].idxmax()]
            row.update({"our point": f"requested {best['requested_ratio']:g}x", "our remaining (%)": best["remaining_pct"],
                        "our val acc (%)": 100 * best["val_acc_mean"], "our val acc std (%)": 100 * best["val_acc_std"],
                        "our test acc (%)": 100 * best["acc_mean"], "our n": int(best["n"])})
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ drawing

def remaining_axis(ax: Any, smallest_pct: float) -> None:
    """Log x axis of remaining parameters (%), ticks at power-of-two ratios, pruning proceeding to the right."""
    from matplotlib.ticker import NullLocator

    smallest_pct = smallest_pct if math.isfinite(smallest_pct) and smallest_pct > 0 else 100 / 32
    ratios = [2 ** k for k in range(0, 21) if 100 / 2 ** k >= smallest_pct * 0.7]
    ax.set_xscale("log")
    ax.set_xticks([100 / r for r in ratios], [f"{100 / r:.3g} %\n{r:g}x" for r in ratios], fontsize=7)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(140, smallest_pct * 0.7)


def _accuracy_panel(ax: Any, comp: "pandas.DataFrame", points: "pandas.DataFrame", runs: "pandas.DataFrame",
                    order: list[str]) -> None:
    from bench.drawing import dense_lines, dense_reference

    for series in order:
        color = color_of(series, order)
        g = points[points["series"] == series].sort_values("remaining_pct")
        forced = int(g["forced_runs"].sum())
        note = f"; {forced} run(s) finished by a forced magnitude trim (hollow)" if forced else ""
        ax.errorbar(g["remaining_pct"], g["acc_mean"], yerr=g["acc_std"], color=color, marker="o", capsize=3,
                    label=f"{series} (n={int(g['n'].max())}/pt{note})")
        pts = comp[comp["series"] == series]
        own, trimmed = pts[~pts["forced"]], pts[pts["forced"]]
        ax.scatter(own["remaining_pct"], own["acc_top1"], color=color, alpha=0.4, s=12)
        ax.scatter(trimmed["remaining_pct"], trimmed["acc_top1"], facecolors="none", edgecolors=color, s=40)
    dense_lines(ax, dense_reference(runs))
    remaining_axis(ax, float(comp["remaining_pct"].min()))
    ax.set_xlabel("remaining parameters (% of dense = 100 / compression ratio; classifier and biases never pruned)")
    ax.set_ylabel("test accuracy after the shared fine-tune")
    ax.set_title("(a) final accuracy vs remaining parameters (mean ± std; dots: seeds)", fontsize=9)
    ax.legend(fontsize=6, loc="lower left")


def _trajectory_panel(ax: Any, traj: "pandas.DataFrame", rounds: "pandas.DataFrame", points: "pandas.DataFrame",
                      runs: "pandas.DataFrame", order: list[str]) -> None:
    from bench.drawing import dense_reference

    for series in [s for s in order if s in set(rounds["series"])]:
        color = color_of(series, order)
        g = rounds[rounds["series"] == series].sort_values("round")
        own = g[~g["forced"]]
        ax.errorbar(own["remaining_pct_mean"], own["val_acc_mean"], xerr=own["remaining_pct_std"],
                    yerr=own["val_acc_std"], color=color, marker=".", capsize=2,
                    label=f"{series}: after each round's fine-tune")
        ax.plot(own["remaining_pct_mean"], own["val_acc_pruned_mean"], color=color, ls=":", lw=1)
        trimmed = g[g["forced"]]
        ax.errorbar(trimmed["remaining_pct_mean"], trimmed["val_acc_mean"], yerr=trimmed["val_acc_std"], color=color,
                    marker="x", ls="none", capsize=2)
        t = traj[traj["series"] == series]
        ax.scatter(t["remaining_pct"], t["round_val_acc"], color=color, alpha=0.25, s=6)
    for series in [s for s in order if s not in set(rounds["series"])]:
        g = points[points["series"] == series].sort_values("remaining_pct")
        ax.errorbar(g["remaining_pct"], g["val_acc_mean"], yerr=g["val_acc_std"], color=color_of(series, order),
                    marker="s", ls="--", capsize=2, label=f"{series}: at each requested ratio")
    control = runs[runs["kind"] == "control"].drop_duplicates("seed")["val_acc_top1"]
    if len(control):
        ax.axhline(control.mean(), color="0.4", ls=":", lw=1, label=f"dense + fine-tune ({control.mean():.4f})")
    if "baseline" in dense_reference(runs):
        dense_val = runs[runs["kind"] == "baseline"].drop_duplicates("seed")["val_acc_top1"].mean()
        ax.axhline(dense_val, color="k", ls="--", lw=1, label=f"dense ({dense_val:.4f})")
    remaining_axis(ax, float(min(traj["remaining_pct"].min(), points["remaining_pct"].min())))
    ax.set_xlabel("remaining parameters (%) after each round")
    ax.set_ylabel("validation accuracy")
    ax.set_title("(b) per round: dotted = pruned, before fine-tune; x = forced magnitude trim (rule stalled)",
                 fontsize=9)
    ax.legend(fontsize=6, loc="lower left")


def _pqi_panel(ax: Any, traj: "pandas.DataFrame", rounds: "pandas.DataFrame", order: list[str]) -> None:
    trends = pqi_trends(rounds)
    for series in [s for s in order if s in set(rounds["series"])]:
        color = color_of(series, order)
        g = rounds[rounds["series"] == series].sort_values("round")
        own = g[~g["forced"]]
        ax.errorbar(own["round"], own["pq_index_mean"], yerr=own["pq_index_std"], color=color, marker=".",
                    capsize=2, label=f"{series}: trend {trends.get(series, 'flat')}")
        trimmed = g[g["forced"]]
        ax.plot(trimmed["round"], trimmed["pq_index_mean"], color=color, marker="x", ls="none")
        for _, t in traj[traj["series"] == series].groupby("seed"):
            ax.plot(t["round"], t["round_pq_index"], color=color, alpha=0.25, lw=0.8)
    ax.set_xlabel("round (0 = the dense input)")
    ax.set_ylabel("PQ index I(0.5, 1) of the surviving prunable weights")
    ax.set_title("(c) PQI vs round (x: forced trim); SAP's hypothesis: decrease → increase → decrease (↓↑↓)",
                 fontsize=9)
    ax.legend(fontsize=6.5)


def _published_panel(ax: Any, table: "pandas.DataFrame", runs: "pandas.DataFrame") -> None:
    from bench.drawing import dense_reference

    y = np.arange(len(table))
    ax.barh(y + 0.2, table["published acc (%)"], height=0.38, color="0.8", hatch="//",
            label=f"published, {PUBLISHED_SETTING}")
    ours = table["our val acc (%)"].astype(float)
    ax.barh(y - 0.2, ours.fillna(0), xerr=table["our val acc std (%)"].astype(float).fillna(0), height=0.38,
            color=[color_of(s, list(SERIES_ORDER)) for s in table["our series"]], capsize=3,
            label="ours (validation accuracy): SAP/ℓq at the last round before a forced trim, magnitude at the "
                  "highest ratio")
    for i, row in table.iterrows():
        ax.text(row["published acc (%)"] + 1, i + 0.2, f"remaining {row['published remaining']}", va="center",
                fontsize=6)
        if not math.isnan(row["our val acc (%)"]):
            ax.text(row["our val acc (%)"] + row["our val acc std (%)"] + 1, i - 0.2,
                    f"remaining {row['our remaining (%)']:.3g} %, {row['our point']}", va="center", fontsize=6)
    ax.axvline(PUBLISHED_DENSE_PCT, color="0.5", ls="--", lw=1, label="published dense (≈90 %)")
    dense = dense_reference(runs)
    if "baseline" in dense:
        ax.axvline(100 * dense["baseline"][0], color="k", ls="--", lw=1, label="our dense")
    ax.set_yticks(y, [str(m) for m in table["published method"]], fontsize=6.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%): published = test; ours = validation")
    ax.set_title("(d) published (another dataset/model; 200 epochs from init per round) vs ours", fontsize=9)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)


def draw_experiment(runs: "pandas.DataFrame", experiment: str, out_dir: Path, tracker: Any) -> list[Path]:
    """The figure and tables for one dataset/model; [] when it holds no ``sap``/``lq`` runs."""
    from bench.drawing import caption as runs_caption, pyplot, save, write_table

    comp = labelled_runs(runs, series_label)
    if comp.empty or not comp["method"].isin(ADAPTIVE).any():
        return []
    runs, comp, budget = budget_runs(runs, comp)
    histories = round_histories(comp, tracker)
    comp = comp.assign(forced=comp["run_id"].isin(forced_runs(histories)))
    caption = f"{runs_caption(runs, experiment)}; {budget}"
    order = ordered(comp["series"], SERIES_ORDER)
    points = accuracy_table(comp)
    traj = trajectories(histories)
    rounds = rounds_table(traj)
    published = published_table(points, rounds)

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5))
    _accuracy_panel(axes[0, 0], comp, points, runs, order)
    _trajectory_panel(axes[0, 1], traj, rounds, points, runs, order)
    _pqi_panel(axes[1, 0], traj, rounds, order)
    _published_panel(axes[1, 1], published, runs)
    fig.suptitle(f"SAP / seed ℓq adaptive pruning vs magnitude — {caption}\n"
                 "per-round points: validation accuracy after each round's training; final points: test accuracy; "
                 "remaining = 1 / compression ratio (ShrinkBench count)", fontsize=9)
    fig.tight_layout()
    folder = out_dir / experiment_slug(experiment)
    written = save(fig, folder / "sap_figure")
    written += write_table(points, folder / "sap_accuracy", f"Final accuracy per series and ratio — {caption}")
    if len(rounds):
        trends = pqi_trends(rounds)
        written += write_table(rounds.assign(pqi_trend=rounds["series"].map(trends)), folder / "sap_rounds",
                                f"Per-round trajectory of the highest-ratio run per seed (validation accuracy; "
                                f"forced = the rule stalled and a global magnitude trim finished) — {caption}")
    written += write_table(published, folder / "sap_published",
                            f"Published (approximate, {PUBLISHED_SETTING}) beside ours — {caption}")
    return written


@register("sap", experiments=build_experiments)
def figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The SAP / ℓq figure and tables for every dataset/model holding ``sap`` or ``lq`` runs."""
    return draw_each_experiment(runs, draw_experiment, out_dir)
