"""The magnitude paper figure (bench/papers/magnitude.py) against a small real store: digits, tiny budgets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.papers import budgets
from bench.papers import magnitude as M
from papers_support import (assert_files_written, error_reference, parsed_experiments, run_labelled_grid, scratch_store,
                            tiny_config)

BUDGET = budgets.Budget(1, 1)
RATIOS = (2.0, 12.0)
SEEDS = (0, 1)
LABELS = ("global, one-shot", "random, one-shot (control)", "global, iterative (3 rounds, each retrained)")


def _config(label: str, ratio: float, seed: int) -> ExperimentConfig:
    variant = {v.label: v for v in M.variants()}[label]
    return tiny_config("digits", "lenet300", "magnitude", ratio, seed, dict(variant.overrides), accelerator="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(tidy runs, {run_id: label}, output folder)."""
    from bench.figures import tidy_runs

    root = tmp_path_factory.mktemp("magnitude_paper")
    with scratch_store(root) as tracker:
        made = run_labelled_grid(tracker, LABELS, RATIOS, SEEDS, _config)
        runs = tidy_runs(tracker)
    return runs, made, root / "figures"


def test_figure_and_tables_match_the_runs(store):
    runs, made, out = store
    written = M.figure(runs, out, budgets={"digits": BUDGET}, ratios=RATIOS)
    assert_files_written(written, {"magnitude.png", "magnitude.pdf", "magnitude_points.csv", "magnitude_points.md",
                                   "magnitude_table1.csv", "magnitude_table1.md"})

    ref = error_reference(runs, made)
    points = pd.read_csv(out / "magnitude_points.csv")
    merged = points.merge(ref, left_on=["label", "requested"], right_on=["label", "requested_ratio"])
    assert len(points) == len(merged) == len(LABELS) * len(RATIOS)
    assert (merged["n_seeds"] == merged["n"]).all() and (merged["n"] == len(SEEDS)).all()
    for ours, theirs in (("err_after_mean", "after_mean"), ("err_after_std", "after_std"),
                         ("err_before_mean", "before_mean"), ("err_before_std", "before_std")):
        np.testing.assert_allclose(merged[ours], merged[theirs], rtol=1e-9, atol=1e-9)

    table = pd.read_csv(out / "magnitude_table1.csv", dtype=str, keep_default_na=False)
    assert (table.iloc[0]["baseline_error_pct"], table.iloc[0]["error_after_ft_pct"]) == ("1.64", "1.59")
    ours = table.iloc[1:]
    assert list(ours["variant"]) == list(LABELS)
    comp = runs[runs["run_id"].isin(made)].copy()
    comp["label"] = comp["run_id"].map(made)
    for row in ours.itertuples():
        err = 100 * (1 - comp[(comp["label"] == row.variant) & (comp["requested_ratio"] == 12.0)]["acc_top1"])
        assert row.error_after_ft_pct == f"{err.mean():.2f} ± {err.std():.2f}"
        assert row.ratio.startswith("12.00x")  # magnitude keeps exactly the budgeted count


def test_iterative_runs_are_not_taken_for_one_shot(store):
    runs, made, _ = store
    comp, _ = budgets.select_runs(runs, "digits", "lenet300", BUDGET, M.variants())
    assert dict(zip(comp["run_id"], comp["label"])) == made


def test_experiments_cover_scope_schedule_and_random_under_hans_recipe():
    seen = set()
    for args, sweep in parsed_experiments("magnitude"):
        t = sweep.template
        assert (t.method, t.dataset, t.model, args.ratios, sweep.seeds) == ("magnitude", "mnist-5k", "lenet300",
                                                                            "2,4,8,12,32", 3)
        assert (t.finetune.optimizer, t.finetune.lr, t.finetune.patience) == ("sgd", 1e-3, 3)  # lr/10, to convergence
        params = dict(t.method_params)
        seen.add((params["scope"], params["schedule"], params.get("random", "false")))
    assert seen == {("global", "one-shot", "false"), ("layer", "one-shot", "false"), ("global", "one-shot", "true"),
                    ("global", "iterative", "false"), ("layer", "iterative", "false")}
