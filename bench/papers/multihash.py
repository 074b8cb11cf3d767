"""Structured multi-hashing (Eban et al., CVPR 2020): accuracy against the fraction of variables kept, the
abstract's CIFAR-10 ResNet-32 claims asked again under the base model's recipe.

Question: at a given number of trainable parameters, is one network whose every weight is a slice of
M = X·Y (trained from scratch) more accurate than (a) the dense network pruned to that many weights by
global magnitude and fine-tuned, and (b) a plain dense network of the same family with narrower widths,
i.e. the same parameter count spent the ordinary way, trained from scratch?

Reproduction (``make reproduce PAPER=multihash``, protocol ``paper-multihash``, see
``bench.paper_protocols``): a ResNet (the paper's family): ``resnet20`` on ``mnist-5k`` offline, ``resnet32``
on CIFAR-10 when ``$CIFAR10_DIR`` is set; 50, 25, 10 and 5 % of the variables kept (ratios 2, 4, 10, 20).
Multihash and the narrow dense control train from scratch with the ResNet recipe (SGD 0.1, momentum 0.9,
wd 1e-4, cosine; BatchNorm parameters are not hashed); magnitude prunes the dense model trained with the
same recipe and is fine-tuned (SGD 0.01). The narrow dense control is the ``lma`` method with
``student_activation=relu`` and ``kd_weight=0``. The cpu scale trains 10 epochs (the recipe: 200), 2 seeds.

Published reference (abstract; the paper's tables could not be retrieved, see the spec): ResNet-32 on
CIFAR-10, "75 % fewer variables with no loss in quality" and "above 90 % accuracy at 10x". The
baseline line in that panel is He et al. 2016's ResNet-32 (92.49 %, 7.51 % error), not the paper's own
(unverified). Offline our data and depth differ; the panel shows what was claimed, not a target.

Figure: (a) our test accuracy vs the fraction of variables kept (log) for the three variants, mean ± std over seeds
and each seed's point, dense baseline and dense + fine-tune control as lines; (b) the published claims.
Tables: accuracy at each budget (long form, numbers) and the same as one row per budget.
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
from bench.papers.variants import VariantSpec


HASHED, MAGNITUDE, NARROW = "multihash (X·Y, from scratch)", "global magnitude + fine-tune", \
    "dense, narrower widths (from scratch)"
# label -> (method, parameters that differ from its defaults, budget parameters fixed by ``pick``)
VARIANTS: dict[str, VariantSpec] = {
    HASHED: ("multihash", {}, ("epochs",)),
    MAGNITUDE: ("magnitude", {}, ()),
    NARROW: ("lma", {"student_activation": "relu", "kd_weight": 0.0}, ("epochs",)),
}

# Abstract claims, CIFAR-10 ResNet-32 (spec: docs/methods/multihash.md).
RESNET32_PARAMS, RESNET32_ACC = 0.46e6, 92.49  # He et al. 2016 (7.51 % error); the paper's own baseline: unverified
PUBLISHED = [
    # ratio, accuracy drawn, kind, claim
    (4.0, RESNET32_ACC, "equal", "−75 % variables, no loss in quality"),
    (10.0, 90.0, "at least", "10x fewer variables, above 90 %"),
]

def build_experiments(scale: str) -> list[list[str]]:
    """Under ``paper-multihash``: the hashed network and the narrow dense one trained from scratch with the base
    model's recipe, and the dense model pruned by global magnitude and fine-tuned, at the protocol's fractions
    of variables kept. A ResNet (the paper's family): ResNet-20 on the MNIST sample offline, ResNet-32 (the
    paper's) on CIFAR-10 when ``$CIFAR10_DIR`` is set."""
    dataset, model = stand_in("mnist-5k", "resnet20", "resnet32")
    return [["bench", "--method", method, "--dataset", dataset, "--model", model,
             *[a for k, v in params.items() for a in ("--param", f"{k}={v}")]] for method, params, _ in VARIANTS.values()]


def published_table() -> "pandas.DataFrame":
    import pandas as pd

    return pd.DataFrame([{"dataset": "cifar10", "model": "resnet32", "ratio": r, "accuracy_pct": a, "kind": k,
                          "claim": c, "params": RESNET32_PARAMS / r} for r, a, k, c in PUBLISHED])


# ---------------------------------------------------------------- selecting the runs

def select(runs: "pandas.DataFrame") -> Selected:
    """Per dataset/model: (compressed runs of the variants at one budget, its dense runs, the budget).

    Each run's variant is its method's defaults with exactly the variant's overrides, training epochs left
    free (tuned runs never match). The budget drawn is the (baseline epochs, fine-tune epochs) with the most
    runs, and within it, for the variants trained from scratch, the training epochs with the most runs, so
    every variant is compared at one budget. Repeated runs of one configuration and seed are deterministic
    replicas: one is kept.
    """
    return select_per_experiment(runs, VARIANTS, _pick_budget)


def _pick_budget(comp: "pandas.DataFrame") -> tuple["pandas.DataFrame", str]:
    comp = comp.assign(shared=comp["baseline.epochs"].astype(str) + "/" + comp["finetune.epochs"].astype(str))
    comp = comp[comp["shared"] == most_frequent(comp["shared"])]
    comp = comp.assign(train=comp["method_params"].map(lambda p: str(p.get("epochs")) if isinstance(p, dict) else ""))
    scratch = comp["paper_variant"].map(lambda v: "epochs" in VARIANTS[v][2])
    if scratch.any():
        comp = comp[~scratch | (comp["train"] == most_frequent(comp[scratch]["train"]))]
    return comp, _describe(comp)


def _describe(comp: "pandas.DataFrame") -> str:
    first = comp.iloc[0]
    scratch = comp[comp["paper_variant"].map(lambda v: "epochs" in VARIANTS[v][2])]
    epochs = scratch["train"].iloc[0] if not scratch.empty else "None"
    epochs = first["baseline.epochs"] if epochs in ("None", "") else epochs  # unset: the protocol's dense recipe
    parts = [f"from-scratch variants train {epochs} epochs"] if not scratch.empty else []
    parts += [f"magnitude prunes the {first['baseline.epochs']}-epoch dense baseline",
              f"then gets a {first['finetune.epochs']}-epoch fine-tune"]
    return "; ".join(parts)


# ---------------------------------------------------------------- tables

def accuracy_table(comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds (accuracy in %) per variant and budget."""
    return variant_accuracy_table(comp, list(VARIANTS))


def budget_table(comp: "pandas.DataFrame", dense_acc: float | None) -> "pandas.DataFrame":
    """One row per budget: each variant's accuracy (mean ± std, %) and multihash minus the narrow dense net."""
    import pandas as pd

    long = accuracy_table(comp)
    wide = comp.pivot_table(index=["requested", "seed"], columns="paper_variant", values="acc_top1", aggfunc="first")
    rows = []
    for ratio, at in long.groupby("requested_ratio"):
        at = at.set_index("variant")
        row: dict[str, Any] = {"requested_ratio": ratio, "params": int(round(at["params"].mean()))}
        for variant in VARIANTS:
            row[variant] = at.loc[variant, "acc (mean ± std)"] if variant in at.index else ""
        diff = (100 * (wide[HASHED] - wide[NARROW])).loc[ratio].dropna() if {HASHED, NARROW} <= set(wide) else []
        row["multihash − narrow dense (points, paired)"] = (
            f"{np.mean(diff):+.2f} ± {np.std(diff, ddof=1) if len(diff) > 1 else 0.0:.2f}" if len(diff) else "")
        if dense_acc is not None and HASHED in at.index:
            row["multihash − dense baseline (points)"] = round(at.loc[HASHED, "acc_mean_pct"] - 100 * dense_acc, 2)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- drawing

_STYLE = {HASHED: ("C3", "s", 1.0), MAGNITUDE: ("C0", "o", 0.96), NARROW: ("C2", "^", 1.04)}
_RIGHT = 40  # both panels' ratio axes end here


def _ours(ax: Any, comp: "pandas.DataFrame", dense: dict[str, tuple[float, float, int]], experiment: str) -> None:
    table = accuracy_table(comp)
    draw_variant_accuracy(ax, table, comp, _STYLE)
    draw_dense_accuracy(ax, dense)
    params = table.groupby("requested_ratio")["params"].mean()
    log2_ratio_axis(ax, params.index, _RIGHT, [f"{100 / r:.3g} %\n{p / 1e3:.1f}k" for r, p in params.items()])
    ax.set_xlabel("fraction of the variables kept / trainable parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"ours: {experiment}", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")


def _published(ax: Any) -> None:
    ax.axhline(RESNET32_ACC, color="k", ls="--", lw=1, label=f"ResNet-32 dense ({RESNET32_ACC} %, He et al. 2016)")
    for ratio, acc, kind, claim in PUBLISHED:
        marker = "D" if kind == "equal" else "^"
        ax.scatter([ratio], [acc], color="C3", marker=marker, s=50, zorder=3)
        if kind == "at least":
            ax.annotate("", (ratio, acc + 1.2), (ratio, acc), arrowprops={"arrowstyle": "->", "color": "C3"})
        ax.annotate(claim, (ratio, acc), textcoords="offset points", xytext=(6, -14), fontsize=7)
    log2_ratio_axis(ax, [2, 4, 10, 20], _RIGHT, ["50 %", "25 %", "10 %", "5 %"])
    ax.set_ylim(86, 95)
    ax.set_xlabel("fraction of the variables kept (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("published (Eban et al. 2020, abstract): CIFAR-10, ResNet-32 (≈0.46M params)\n"
                 "claims only (◆ = no loss vs dense, ▲ = lower bound); recipe unverified", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")


def draw(experiment: str, comp: "pandas.DataFrame", dense_frame: "pandas.DataFrame", budget: str,
         out_dir: Path) -> list[Path]:
    plt = pyplot()
    dense = dense_reference(dense_frame)
    seeds = seed_list(comp)
    caption = (f"Structured multi-hashing (Eban et al., CVPR 2020) — {experiment}, seeds {seeds} ({len(seeds)}), "
               f"{len(comp) + len(dense_frame)} tracked runs ({len(comp)} compressed, {len(dense_frame)} dense)\n"
               f"{budget}" + (f"\n{comp.attrs['protocol_caption']}" if comp.attrs.get("protocol_caption") else ""))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    _ours(axes[0], comp, dense, experiment)
    _published(axes[1])
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout()
    name = f"multihash_{experiment_slug(experiment)}"
    written = save(fig, out_dir / name)
    caption = caption.replace("\n", "; ")
    written += write_table(accuracy_table(comp), out_dir / f"{name}_accuracy", f"Accuracy at each budget — {caption}")
    baseline = dense.get("baseline", (None,))[0]
    written += write_table(budget_table(comp, baseline), out_dir / f"{name}_budgets",
                            f"Accuracy (%) at each parameter budget — {caption}")
    return written


@register("multihash", experiments=build_experiments)
def figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The multihash figure and tables for every dataset/model with runs of the variants; [] when none."""
    return draw_selected(select(runs), draw, out_dir, published_table, "multihash_published",
                         "Published: Eban et al. 2020, abstract claims, CIFAR-10 ResNet-32")
