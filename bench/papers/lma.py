"""LMA (Xu, Ke, Zhang, Bian, Liu, AAAI 2020), Table 2's CIFAR-10 rows asked again under the paper's recipe.

Question: at equal student size and equal student training budget, does a student with Light
Multi-segment Activations (K = 8) distilled from the dense teacher beat a ReLU student distilled the same
way? (The LMA-without-KD variant is drawn when a store holds it; the reproduction leaves it out.)

Reproduction (``make reproduce PAPER=lma``, protocol ``paper-lma``, see ``bench.paper_protocols``): a ``cnn``
teacher (conv3x3 + BatchNorm + ReLU blocks, the paper's plain CNN family) on ``mnist-5k`` offline, on
CIFAR-10 when ``$CIFAR10_DIR`` is set; students of the same family with uniformly scaled channels at the
paper's three teacher/student size ratios on CIFAR-10 (21.4 MB teacher vs S1 4.04, S2 1.28, S3 0.44 MB:
5.3, 16.7 and 48.6), so each of our sizes lines up with one published row. BatchNorm sits in front of
every activation, so LMA starts as ReLU, as in the paper. Teacher and students train with the paper's
recipe: SGD (Nesterov 0.9, wd 2.2e-4) at 1e-2, batch 64, the learning rate halved when validation
accuracy stops improving, early stopping; KD weight 0.7, temperature 2; no fine-tune after. The cpu
scale caps training at 12 epochs with shorter patiences and runs 2 seeds (the paper: 200 epochs, 5 seeds).

Where our setting still differs: the data (the MNIST sample, a much easier task than CIFAR-10, unless
``$CIFAR10_DIR`` is set), the length of training, and model selection on the validation split (the paper's
schedule watched the test error).

Figure: (a) our test accuracy vs compression ratio per variant, mean ± std over seeds with every seed's
point; dense baseline as a line; (b) the published CIFAR-10 numbers (Table 2, 5 seeds); (c) the LMA gain
over the ReLU student: our per-seed paired differences with their mean ± std, beside the published gains.
Tables: per-variant accuracy, the gain table, and the published rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.drawing import dense_reference, pyplot, save, write_table
from bench.papers import register
from bench.papers.accuracy_figure import draw_dense_accuracy, draw_selected, draw_variant_accuracy, log2_ratio_axis
from bench.papers.argv import stand_in
from bench.papers.budgets import Selected, most_frequent, select_per_experiment
from bench.papers.summaries import variant_accuracy_table
from bench.papers.text import experiment_slug, seed_list

METHOD = "lma"

# label -> the parameters that differ from the method's defaults (the budget, ``epochs``, is set apart).
VARIANTS: dict[str, dict[str, Any]] = {
    "ReLU student + KD": {"student_activation": "relu"},
    "LMA-8 student + KD": {},
    "LMA-8 student, no KD": {"kd_weight": 0.0},
}
RELU, LMA_KD, LMA_NO_KD = VARIANTS

# Table 2 of the paper, CIFAR-10 rows (accuracy %, mean ± std over 5 seeds); sizes in MB of fp32 weights.
TEACHER_MB, TEACHER_ACC = 21.4, 92.83
PUBLISHED = [
    # student, size MB, ReLU mean, ReLU std, LMA-8 mean, LMA-8 std
    ("S1", 4.04, 88.74, 0.25, 90.57, 0.20),
    ("S2", 1.28, 82.67, 0.46, 85.66, 0.34),
    ("S3", 0.44, 73.33, 0.79, 77.66, 0.47),
]

def build_experiments(scale: str) -> list[list[str]]:
    """Under ``paper-lma``: the ReLU and the LMA-8 student, both with KD, at the paper's three sizes relative to
    the teacher (the protocol's ratios), students of the ``cnn`` family (conv + BatchNorm + activation, the
    paper's plain CNN students) distilled from a ``cnn`` teacher; the MNIST sample offline, CIFAR-10 when
    ``$CIFAR10_DIR`` is set. The no-KD control is left to ``make bench`` (it halves the reproduction's cost)."""
    dataset, model = stand_in("mnist-5k", "cnn", "cnn")
    return [["bench", "--method", METHOD, "--dataset", dataset, "--model", model,
             *[a for k, v in VARIANTS[label].items() for a in ("--param", f"{k}={v}")]] for label in (RELU, LMA_KD)]


def published_table() -> "pandas.DataFrame":
    import pandas as pd

    rows = [{"student": s, "size_MB": mb, "ratio_vs_teacher": TEACHER_MB / mb, "relu_kd_pct": rm,
             "relu_kd_std": rs, "lma8_kd_pct": lm, "lma8_kd_std": ls, "gain_points": lm - rm}
            for s, mb, rm, rs, lm, ls in PUBLISHED]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- selecting the runs

def budget_of(runs: "pandas.DataFrame", budget_keys: tuple[str, ...] = ("epochs",)) -> "pandas.Series":
    """(baseline epochs, fine-tune epochs, method budget params...) of each run, as one string."""
    import pandas as pd

    def one(baseline: Any, finetune: Any, params: Any) -> str:
        params = params if isinstance(params, dict) else {}
        parts = [f"baseline epochs={baseline}", f"fine-tune epochs={finetune}"]
        return ", ".join(parts + [f"{METHOD} {k}={params.get(k)}" for k in budget_keys])

    return pd.Series([one(*r) for r in zip(runs["baseline.epochs"], runs["finetune.epochs"], runs["method_params"])],
                     index=runs.index, dtype=object)


def select(runs: "pandas.DataFrame") -> Selected:
    """Per dataset/model: (compressed runs of the three variants at one budget, its dense runs, the budget).

    Each run's variant is the method's defaults with exactly the variant's overrides, the student's
    ``epochs`` left free (tuned runs never match). Where a store holds several budgets (e.g. a reduced
    check beside the full reproduction), the one with the most runs is drawn, so variants are only ever
    compared at equal budgets. Repeated runs of one configuration and seed are deterministic replicas:
    only one is kept.
    """
    variants = {label: (METHOD, overrides, ("epochs",)) for label, overrides in VARIANTS.items()}
    return select_per_experiment(runs, variants, _pick_budget)


def _pick_budget(comp: "pandas.DataFrame") -> tuple["pandas.DataFrame", str]:
    comp = comp.assign(budget=budget_of(comp))
    budget = most_frequent(comp["budget"])
    return comp[comp["budget"] == budget], budget


# ---------------------------------------------------------------- tables

def variant_table(comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds (accuracy in %) per variant and requested ratio."""
    return variant_accuracy_table(comp, list(VARIANTS), params_column="student_params")


def paired(comp: "pandas.DataFrame", a: str, b: str) -> "pandas.DataFrame":
    """Per requested ratio and seed: accuracy of variant ``a`` minus variant ``b``, in points (both present)."""
    wide = comp.pivot_table(index=["requested", "seed"], columns="paper_variant", values="acc_top1", aggfunc="first")
    if a not in wide or b not in wide:
        return wide.iloc[0:0].assign(diff_points=[])[["diff_points"]].reset_index()
    return (100 * (wide[a] - wide[b])).dropna().rename("diff_points").reset_index()


def _published_for(ratio: float) -> tuple[str, float] | None:  # (label, gain in points)
    """The published row whose teacher/student size ratio is within 2 % of ``ratio``."""
    for s, mb, rm, _, lm, _ in PUBLISHED:
        if abs(TEACHER_MB / mb / ratio - 1) < 0.02:
            return f"{s}: {rm:.2f} → {lm:.2f}", lm - rm
    return None


def gain_table(comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """The LMA gain over the ReLU student (paired per seed), and what KD adds to the LMA student."""
    import pandas as pd

    gain, kd = paired(comp, LMA_KD, RELU), paired(comp, LMA_KD, LMA_NO_KD)
    table = variant_table(comp)
    rows = []
    for ratio in sorted(comp["requested"].unique()):
        at = table[table["requested_ratio"] == ratio].set_index("variant")
        g, k = gain[gain["requested"] == ratio]["diff_points"], kd[kd["requested"] == ratio]["diff_points"]
        pub = _published_for(ratio)

        def acc(v: str) -> str:
            return at.loc[v, "acc (mean ± std)"] if v in at.index else ""

        rows.append({
            "requested_ratio": ratio, "student_params": float(at["student_params"].mean()),
            "relu_kd_pct": acc(RELU), "lma_kd_pct": acc(LMA_KD), "lma_no_kd_pct": acc(LMA_NO_KD),
            "gain_mean_points": float(g.mean()) if len(g) else np.nan,
            "gain_std_points": float(g.std()) if len(g) > 1 else np.nan, "gain_n_seeds": len(g),
            "kd_effect_mean_points": float(k.mean()) if len(k) else np.nan,
            "kd_effect_std_points": float(k.std()) if len(k) > 1 else np.nan,
            "published_cifar10_relu_to_lma": pub[0] if pub else "",
            "published_gain_points": pub[1] if pub else np.nan,
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- drawing

_STYLE = {RELU: ("C0", "o", 0.96), LMA_KD: ("C3", "s", 1.0), LMA_NO_KD: ("C2", "^", 1.04)}
_RIGHT = 64  # every panel's ratio axis ends here, so ours and the paper's line up by ratio


def _ours(ax: Any, comp: "pandas.DataFrame", dense: dict[str, tuple[float, float, int]]) -> None:
    table = variant_table(comp)
    draw_variant_accuracy(ax, table, comp, _STYLE)
    draw_dense_accuracy(ax, dense, baseline_label="dense teacher")
    params = table.groupby("requested_ratio").agg(ratio=("achieved_ratio", "mean"), params=("student_params", "mean"))
    log2_ratio_axis(ax, params["ratio"], _RIGHT,
                    [f"{r:.3g}x\n{p / 1e3:.1f}k" for r, p in zip(params["ratio"], params["params"])])
    ax.set_xlabel("compression ratio = teacher params / student params; student params (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, loc="lower left")


def _distinct(ratios: list[float], apart: float = 0.05) -> list[float]:
    """Tick positions at least 5 % apart (ours at 5.31x and the paper's 5.30x share one tick)."""
    kept: list[float] = []
    for r in sorted(ratios):
        if not kept or r / kept[-1] - 1 > apart:
            kept.append(r)
    return kept


def _published(ax: Any) -> None:
    pub = published_table()
    for col, std, color, marker, label in (("relu_kd_pct", "relu_kd_std", "C0", "o", "ReLU student + KD"),
                                           ("lma8_kd_pct", "lma8_kd_std", "C3", "s", "LMA-8 student + KD")):
        ax.errorbar(pub["ratio_vs_teacher"], pub[col], yerr=pub[std], color=color, marker=marker, capsize=3,
                    ls="--", label=f"published: {label}")
    for _, row in pub.iterrows():
        ax.annotate(f"{row['student']} ({row['size_MB']} MB)", (row["ratio_vs_teacher"], row["relu_kd_pct"]),
                    textcoords="offset points", xytext=(4, -12), fontsize=7)
    ax.axhline(TEACHER_ACC, color="k", ls="--", lw=1, label=f"published teacher ({TEACHER_ACC}, {TEACHER_MB} MB)")
    log2_ratio_axis(ax, pub["ratio_vs_teacher"], _RIGHT)
    ax.set_xlabel("teacher size / student size (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("published (Xu et al. 2020, Table 2): CIFAR-10, conv students\n"
                 "with BN, 5 seeds, SGD ≤ 200 epochs — a reference, not our setting", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")


def _gains(ax: Any, comp: "pandas.DataFrame") -> None:
    gain = paired(comp, LMA_KD, RELU)
    ratios = comp.groupby("requested")["compression_ratio"].mean()
    if not gain.empty:
        x = gain["requested"].map(ratios)
        ax.scatter(x, gain["diff_points"], color="C3", s=12, alpha=0.4, label="ours, one seed (paired)")
        agg = gain.groupby("requested")["diff_points"].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(agg.index.map(ratios), agg["mean"], yerr=agg["std"], color="C3", marker="s", capsize=3,
                    label="ours: mean ± std over seeds")
    pub = published_table()
    ax.plot(pub["ratio_vs_teacher"], pub["gain_points"], "D--", color="0.3",
            label="published gain (CIFAR-10, Table 2)")
    ax.axhline(0, color="k", lw=0.8)
    log2_ratio_axis(ax, _distinct([*ratios, *pub["ratio_vs_teacher"]]), _RIGHT)
    ax.set_xlabel("compression ratio (log)")
    ax.set_ylabel("LMA+KD − ReLU+KD (accuracy points)")
    ax.set_title("gain of LMA over the ReLU student", fontsize=8)
    ax.legend(fontsize=7)


def _caption(experiment: str, comp: "pandas.DataFrame", dense: "pandas.DataFrame", budget: str) -> str:
    seeds = seed_list(comp)
    return (f"LMA (Xu et al., AAAI 2020) — {experiment}, seeds {seeds} ({len(seeds)}), "
            f"{len(comp) + len(dense)} tracked runs ({len(comp)} students, {len(dense)} dense)\n"
            f"budget: {budget} (equal across variants); teacher = the dense baseline"
            + (f"\n{comp.attrs['protocol_caption']}" if comp.attrs.get("protocol_caption") else ""))


def draw(experiment: str, comp: "pandas.DataFrame", dense_frame: "pandas.DataFrame", budget: str,
         out_dir: Path) -> list[Path]:
    plt = pyplot()
    dense = dense_reference(dense_frame)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    _ours(axes[0], comp, dense)
    axes[0].set_title(f"ours: {experiment}, student = narrower MLP/net of the teacher's family", fontsize=8)
    _published(axes[1])
    _gains(axes[2], comp)
    fig.suptitle(_caption(experiment, comp, dense_frame, budget), fontsize=9)
    fig.tight_layout()
    name = f"lma_{experiment_slug(experiment)}"
    caption = _caption(experiment, comp, dense_frame, budget).replace("\n", "; ")
    written = save(fig, out_dir / name)
    written += write_table(variant_table(comp), out_dir / f"{name}_students", f"Student accuracy — {caption}")
    written += write_table(gain_table(comp), out_dir / f"{name}_gain",
                            f"LMA gain over the ReLU student (paired per seed, accuracy points) — {caption}")
    return written


@register("lma", experiments=build_experiments)
def figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The LMA figure and tables for every dataset/model with runs of the three variants; [] when none."""
    return draw_selected(select(runs), draw, out_dir, published_table, "lma_published",
                         "Published: Xu et al. 2020, Table 2, CIFAR-10 (accuracy %, 5 seeds; teacher "
                         f"{TEACHER_ACC} % at {TEACHER_MB} MB)")
