"""The SuRP paper figure against a small real store (synthetic data, tiny budgets)."""
import math

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.figures import tidy_runs
from bench.papers import surp
from bench.papers.argv import lt_rounds
from bench.pipeline import run_experiment
from papers_support import assert_files_written, parsed_experiments, scratch_store, series_rows, tiny_config

WIDTHS = (32, 16)
SHAPE, CLASSES = (1, 8, 8), 4  # the synthetic dataset's defaults


def _config(method: str, ratio: float, seed: int, **params) -> ExperimentConfig:
    return tiny_config("synthetic", "mlp", method, ratio, seed, params, epochs=2, model_options={"widths": WIDTHS})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("surp_store")
    rounds = lt_rounds("mlp", 4, input_shape=SHAPE, num_classes=CLASSES, widths=WIDTHS)
    with scratch_store(tmp) as tracker:
        for seed in (0, 1):
            for ratio in (2, 4):
                run_experiment(_config("rate-distortion", ratio, seed), tracker)
                run_experiment(_config("magnitude", ratio, seed), tracker)
            run_experiment(_config("rate-distortion", 4, seed, schedule="iterative"), tracker)
            run_experiment(_config("magnitude", 4, seed, schedule="iterative", rounds=rounds), tracker)
        runs = tidy_runs(tracker)
        yield tracker, runs, surp.figure(runs, tmp / "figures"), tmp / "figures" / "synthetic__mlp", rounds


def _groups(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    comp = runs[runs["kind"] == "compressed"]
    schedule = comp["method_params"].map(lambda p: p.get("schedule"))
    return {
        surp.SURP_ONE_SHOT: comp[(comp["method"] == "rate-distortion") & (schedule == "one-shot")],
        surp.SURP_ITERATIVE: comp[(comp["method"] == "rate-distortion") & (schedule == "iterative")],
        surp.MAG_ONE_SHOT: comp[(comp["method"] == "magnitude") & (schedule == "one-shot")],
        surp.MAG_ITERATIVE: comp[(comp["method"] == "magnitude") & (schedule == "iterative")],
    }


def test_figure_and_tables_are_written(store):
    _, _, written, folder, _ = store
    assert_files_written(written, ["surp_figure.png", "surp_figure.pdf"] + [
        f"{stem}{ext}" for stem in ("surp_accuracy", "surp_vs_magnitude", "surp_rate_distortion")
        for ext in (".csv", ".md")])
    assert "2 seeds" in (folder / "surp_vs_magnitude.md").read_text()


def test_accuracy_table_is_the_mean_and_std_over_seeds(store):
    _, runs, _, folder, _ = store
    table = pd.read_csv(folder / "surp_accuracy.csv")
    groups = _groups(runs)
    assert set(table["series"]) == set(groups)
    for row, g in series_rows(table, groups, n=2):
        assert row["acc_mean"] == pytest.approx(g["acc_top1"].mean())
        assert row["acc_std"] == pytest.approx(g["acc_top1"].std())
        assert row["before_ft_mean"] == pytest.approx(g["acc_top1_before_finetune"].mean())


def test_verdicts_follow_the_stated_rule(store):
    _, runs, _, folder, _ = store
    table = pd.read_csv(folder / "surp_vs_magnitude.csv")
    groups = _groups(runs)
    expected = [(surp.SURP_ONE_SHOT, surp.MAG_ONE_SHOT, 2.0), (surp.SURP_ONE_SHOT, surp.MAG_ONE_SHOT, 4.0),
                (surp.SURP_ITERATIVE, surp.MAG_ITERATIVE, 4.0)]
    assert sorted(zip(table["SuRP"], table["magnitude"], table["requested_ratio"])) == sorted(expected)
    for a_name, b_name, ratio in expected:
        a = groups[a_name][groups[a_name]["requested_ratio"] == ratio]["acc_top1"]
        b = groups[b_name][groups[b_name]["requested_ratio"] == ratio]["acc_top1"]
        row = table[(table["SuRP"] == a_name) & (table["requested_ratio"] == ratio)].iloc[0]
        delta, se = a.mean() - b.mean(), math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert row["delta (points)"] == pytest.approx(100 * delta)
        assert row["se of delta (points)"] == pytest.approx(100 * se)
        want = "ties" if abs(delta) <= 2 * se else ("beats" if delta > 0 else "loses")
        assert row["SuRP vs magnitude"] == want


def test_verdict_rule():
    assert surp.verdict(0.02, 0.005, 3) == "beats"
    assert surp.verdict(-0.02, 0.005, 3) == "loses"
    assert surp.verdict(0.009, 0.005, 3) == "ties"
    assert surp.verdict(0.5, 0.0, 1).startswith("undetermined")


def test_rate_distortion_curve_is_the_featured_runs_step_metrics(store):
    tracker, runs, _, folder, _ = store
    table = pd.read_csv(folder / "surp_rate_distortion.csv")
    one_shot = _groups(runs)[surp.SURP_ONE_SHOT]
    featured = one_shot[(one_shot["requested_ratio"] == 2) & (one_shot["seed"] == 0)]["run_id"].item()
    assert set(table["run_id"]) == {featured}
    for key in ("rate_bits_per_weight", "distortion_l1", "keep_fraction"):
        history = sorted(tracker.client.get_metric_history(featured, key), key=lambda m: m.step)
        assert list(table.sort_values("step")[key]) == pytest.approx([m.value for m in history])
    # one refinement path: more non-zeros cost more bits and leave less distortion
    path = table.sort_values("keep_fraction")
    assert (np.diff(path["rate_bits_per_weight"]) > 0).all() and (np.diff(path["distortion_l1"]) < 0).all()


def test_iterative_magnitude_gets_as_many_rounds_as_iterative_surp(store):
    tracker, runs, _, _, rounds = store
    for run_id in _groups(runs)[surp.SURP_ITERATIVE]["run_id"]:
        steps = {m.step for m in tracker.client.get_metric_history(run_id, "keep_fraction")}
        assert max(steps) == rounds  # SuRP logs step = round, 1..R
    experiments = surp.build_experiments("cpu")
    for r in surp.RATIOS:
        argv = next(a for a in experiments if "schedule=iterative" in a and a[0] == "bench"
                    and "magnitude" in a and a[a.index("--ratios") + 1] == f"{r:g}")
        assert f"rounds={lt_rounds('lenet300', r)}" in argv


def test_no_surp_runs_means_no_figure(store, tmp_path):
    _, runs, _, _, _ = store
    assert surp.figure(runs[runs["method"] != "rate-distortion"], tmp_path) == []


def test_experiments_run_iterative_surp_with_retraining():
    seen = set()
    for args, sweep in parsed_experiments("surp"):
        t = sweep.template
        assert sweep.seeds == 3 and (t.dataset, t.model) == ("mnist-5k", "lenet300")
        # retraining before every round: SGD 0.01, wd 5e-4, 2 epochs at the cpu scale (20 in the paper)
        assert (t.finetune.optimizer, t.finetune.lr, t.finetune.weight_decay, t.finetune.epochs) == ("sgd", 0.01, 5e-4, 2)
        seen.add((args.method, dict(t.method_params).get("schedule", "one-shot")))
    assert seen == {("rate-distortion", "one-shot"), ("rate-distortion", "iterative"), ("magnitude", "one-shot"),
                    ("magnitude", "iterative")}
