"""The magnitude paper figure (bench/papers/magnitude.py) against a small real store: digits, tiny budgets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.cli import build_parser, sweep_from_args
from bench.config import ExperimentConfig
from bench.papers import coreset as C
from bench.papers import experiments, list_papers
from bench.papers import magnitude as M
from bench.recipes import TrainRecipe

BUDGET = C.Budget(1, 1)
RATIOS = (2.0, 12.0)
SEEDS = (0, 1)
LABELS = ("global, one-shot", "random, one-shot (control)", "global, iterative (3 rounds, 3x FT budget)")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(tidy runs, {run_id: label}, output folder)."""
    from bench.figures import tidy_runs
    from bench.pipeline import run_experiment
    from bench.tracking import Tracker

    root = tmp_path_factory.mktemp("magnitude_paper")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSION_BENCH_RESULTS", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker()
        by_label = {v.label: v for v in M.variants(BUDGET)}
        made = {}
        for label in LABELS:
            for ratio in RATIOS:
                for seed in SEEDS:
                    config = ExperimentConfig.create(
                        dataset="digits", model="lenet300", method="magnitude", ratio=ratio, seed=seed,
                        method_params=dict(by_label[label].overrides), latency_repeats=2, accelerator="cpu",
                        baseline=TrainRecipe(epochs=1, batch_size=64), finetune=TrainRecipe(epochs=1, batch_size=64))
                    made[run_experiment(config, tracker).run_id] = label
        runs = tidy_runs(tracker)
    return runs, made, root / "figures"


def test_figure_and_tables_match_the_runs(store):
    runs, made, out = store
    written = M.figure(runs, out, budgets={"digits": BUDGET}, ratios=RATIOS)
    assert {"magnitude.png", "magnitude.pdf", "magnitude_points.csv", "magnitude_points.md",
            "magnitude_table1.csv", "magnitude_table1.md"} <= {p.name for p in written}

    comp = runs[runs["run_id"].isin(made)].copy()
    comp["label"] = comp["run_id"].map(made)
    comp["after"], comp["before"] = 100 * (1 - comp["acc_top1"]), 100 * (1 - comp["acc_top1_before_finetune"])
    ref = comp.groupby(["label", "requested_ratio"]).agg(
        a_mean=("after", "mean"), a_std=("after", "std"), b_mean=("before", "mean"), b_std=("before", "std"),
        n=("seed", "size")).reset_index()
    points = pd.read_csv(out / "magnitude_points.csv")
    merged = points.merge(ref, left_on=["label", "requested"], right_on=["label", "requested_ratio"])
    assert len(points) == len(merged) == len(LABELS) * len(RATIOS)
    assert (merged["n_seeds"] == merged["n"]).all() and (merged["n"] == len(SEEDS)).all()
    for ours, theirs in (("err_after_mean", "a_mean"), ("err_after_std", "a_std"),
                         ("err_before_mean", "b_mean"), ("err_before_std", "b_std")):
        np.testing.assert_allclose(merged[ours], merged[theirs], rtol=1e-9, atol=1e-9)

    table = pd.read_csv(out / "magnitude_table1.csv", dtype=str, keep_default_na=False)
    assert (table.iloc[0]["baseline_error_pct"], table.iloc[0]["error_after_ft_pct"]) == ("1.64", "1.59")
    ours = table.iloc[1:]
    assert list(ours["variant"]) == list(LABELS)
    for row in ours.itertuples():
        err = comp[(comp["label"] == row.variant) & (comp["requested_ratio"] == 12.0)]["after"]
        assert row.error_after_ft_pct == f"{err.mean():.2f} ± {err.std():.2f}"
        assert row.ratio.startswith("12.00x")  # magnitude keeps exactly the budgeted count


def test_iterative_runs_are_not_taken_for_one_shot(store):
    runs, made, _ = store
    comp, _ = C.select_runs(runs, "digits", "lenet300", BUDGET, M.variants(BUDGET))
    assert dict(zip(comp["run_id"], comp["label"])) == made


def test_experiments_parse_and_cover_scope_schedule_and_random():
    assert "magnitude" in list_papers() and experiments("magnitude") == M.EXPERIMENTS
    parser = build_parser()
    seen = set()
    for argv in M.EXPERIMENTS:
        args = parser.parse_args(argv)
        sweep = sweep_from_args(args)
        t = sweep.template
        assert (t.method, t.model, args.ratios, sweep.seeds) == ("magnitude", "lenet300", "2,4,8,12,32", 3)
        params = dict(t.method_params)
        seen.add((t.dataset, params.get("scope", "global"), params.get("schedule", "one-shot"),
                  params.get("random", "false")))
    for dataset in ("mnist-5k", "fashion-mnist"):
        assert {(dataset, "global", "one-shot", "false"), (dataset, "layer", "one-shot", "false"),
                (dataset, "global", "one-shot", "true"), (dataset, "global", "iterative", "false"),
                (dataset, "layer", "iterative", "false")} <= seen
