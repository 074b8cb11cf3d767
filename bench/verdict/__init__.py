"""The statistics behind the "fair verdict" table: which compression method is better, at which ratio, and
how sure we are — computed from the tidy runs frame (one row per tracked run, see ``bench.figures.tidy_runs``).

The rules, and why:

* **Selection on validation only.** Every (experiment, variant, arm, requested ratio, seed) was trained once per
  learning-rate candidate; the candidate with the best *validation* accuracy is kept and its *test* accuracy is
  reported. Choosing on test accuracy would bias every method upward by the size of its tuning space.
* **Paired on seed.** A seed fixes data order and initialisation for every method, so the per-seed difference
  against the reference method removes that shared noise; the interval is a Student-t interval over seeds.
* **Controls as arms.** "scratch" (same architecture re-initialised) and "shuffled" (same per-layer densities at
  random positions) are ranked with the methods, so a method that does not beat its own controls shows it.
* **Unreachable points are rows.** A ratio a method cannot reach is reported with the reason, not dropped.
* **Grid and recipe checks.** If chosen learning rates pile up at the edge of the candidate set the optimum was
  not bracketed; and the winner must still win when it and the runner-up swap learning rates, otherwise the
  verdict is about the tuning, not the method.

Accuracies and differences are fractions in [0, 1] in the frames; ``to_markdown`` prints them in percent.

The package, one file a job: ``selection``, ``paired`` (per-seed accuracy, the interval), ``table`` (with the
``unreachable`` rows), ``controls``, ``lr_grid`` and ``cross_recipe`` (the checks), ``headline`` (the answer at
each ratio), ``markdown`` and
``compact`` (how tables print), ``figure`` (the accuracy drop) and ``write`` (``write_verdict``), ``settings`` (tuned vs defaults), ``agreement`` (cheap vs exhaustive tuning); ``values`` (missing, lr).
"""
from bench.verdict.compact import compact_table
from bench.verdict.controls import against_own_controls, control_reference
from bench.verdict.cross_recipe import cross_recipe_check
from bench.verdict.figure import accuracy_drop_figure, accuracy_drops
from bench.verdict.headline import headline, headline_lines, headline_text
from bench.verdict.lr_grid import (EDGE_THRESHOLD, grid_brackets_optimum, lr_edge_report, tuning_budgets, unequal_tuning,
                                   widened_candidates)
from bench.verdict.markdown import to_markdown
from bench.verdict.paired import PairedDiff, paired_interval
from bench.verdict.write import write_verdict
from bench.verdict.selection import SELECT_KEYS, TUNED_KINDS, select_on_validation
from bench.verdict.table import POINT_KEYS, VERDICT_COLUMNS, verdict_table
from bench.verdict.values import MISSING

__all__ = ["EDGE_THRESHOLD", "MISSING", "POINT_KEYS", "SELECT_KEYS", "TUNED_KINDS", "VERDICT_COLUMNS", "PairedDiff",
           "accuracy_drop_figure", "accuracy_drops", "against_own_controls", "compact_table", "control_reference",
           "cross_recipe_check", "grid_brackets_optimum", "headline", "headline_lines", "headline_text",
           "lr_edge_report", "paired_interval", "select_on_validation",
           "to_markdown", "tuning_budgets", "unequal_tuning", "verdict_table", "widened_candidates",
           "write_verdict"]
