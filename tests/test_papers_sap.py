"""The SAP / ℓq paper figure against a small real store (synthetic data, tiny budgets)."""
import math

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.figures import tidy_runs
from bench.models import create_model
from bench.papers import sap
from bench.papers.argv import lt_rounds
from bench.pipeline import run_experiment
from methods.common.pruning import keep_count, prunable_tensors
from papers_support import assert_files_written, parsed_experiments, scratch_store, series_rows, tiny_config

WIDTHS = (32, 16)


def _config(method: str, ratio: float, seed: int, **params) -> ExperimentConfig:
    return tiny_config("synthetic", "mlp", method, ratio, seed, params, epochs=2, model_options={"widths": WIDTHS})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sap_store")
    with scratch_store(tmp) as tracker:
        for seed in (0, 1):
            for ratio in (2, 6):
                run_experiment(_config("sap", ratio, seed, rounds=3), tracker)
            run_experiment(_config("magnitude", 6, seed), tracker)
            run_experiment(_config("sap", 6, seed, rounds=3, p=1.0, q=2.0), tracker)
            run_experiment(_config("lq", 6, seed, rounds=2), tracker)
            run_experiment(_config("magnitude", 6, seed, schedule="iterative", rounds=3), tracker)
        runs = tidy_runs(tracker)
        yield tracker, runs, sap.figure(runs, tmp / "figures"), tmp / "figures" / "synthetic__mlp"


def test_figure_and_tables_are_written(store):
    _, _, written, folder = store
    assert_files_written(written, ["sap_figure.png", "sap_figure.pdf"] + [
        f"{stem}{ext}" for stem in ("sap_accuracy", "sap_rounds", "sap_published") for ext in (".csv", ".md")])
    assert "2 seeds" in (folder / "sap_accuracy.md").read_text()


def test_accuracy_table_is_the_mean_and_std_over_seeds(store):
    _, runs, _, folder = store
    table = pd.read_csv(folder / "sap_accuracy.csv")
    comp = runs[runs["kind"] == "compressed"]
    pq = comp["method_params"].map(lambda p: (p.get("p"), p.get("q"), p.get("schedule")))
    groups = {
        "SAP (p=0.5, q=1)": comp[(comp["method"] == "sap") & (pq.map(lambda t: t[:2]) == ("0.5", "1.0"))],
        "SAP (p=1, q=2)": comp[(comp["method"] == "sap") & (pq.map(lambda t: t[:2]) == ("1.0", "2.0"))],
        "seed ℓq rule": comp[comp["method"] == "lq"],
        "magnitude, one-shot": comp[(comp["method"] == "magnitude") & (pq.map(lambda t: t[2]) == "one-shot")],
        "magnitude, iterative (≈20 %/round)": comp[(comp["method"] == "magnitude") & (pq.map(lambda t: t[2]) == "iterative")],
    }
    assert set(table["series"]) == set(groups)
    for row, g in series_rows(table, groups, n=2):
        assert row["acc_mean"] == pytest.approx(g["acc_top1"].mean())
        assert row["acc_std"] == pytest.approx(g["acc_top1"].std())
        assert row["remaining_pct"] == pytest.approx((100 / g["compression_ratio"]).mean())
        assert row["pq_index_mean"] == pytest.approx(g["pq_index"].mean())


def test_rounds_table_matches_the_step_metrics_of_the_longest_runs(store):
    tracker, runs, _, folder = store
    table = pd.read_csv(folder / "sap_rounds.csv")
    comp = runs[(runs["kind"] == "compressed") & (runs["method"] == "sap")]
    comp = comp[comp["method_params"].map(lambda p: p["p"] == "0.5")]
    longest = comp[comp["requested_ratio"] == comp["requested_ratio"].max()]  # one 6x run per seed
    assert len(longest) == 2
    per_step: dict[int, list[float]] = {}
    ratio_step: dict[int, list[float]] = {}
    for run_id in longest["run_id"]:
        for m in tracker.client.get_metric_history(run_id, "round_pq_index"):
            per_step.setdefault(m.step, []).append(m.value)
        for m in tracker.client.get_metric_history(run_id, "round_ratio"):
            ratio_step.setdefault(m.step, []).append(100 / m.value)
    rows = table[table["series"] == "SAP (p=0.5, q=1)"].set_index("round")
    assert sorted(rows.index) == sorted(per_step) and 0 in per_step
    for step, values in per_step.items():
        assert rows.loc[step, "pq_index_mean"] == pytest.approx(np.mean(values))
        assert rows.loc[step, "pq_index_std"] == pytest.approx(np.std(values, ddof=1))
        assert rows.loc[step, "remaining_pct_mean"] == pytest.approx(np.mean(ratio_step[step]))
    # step 0 is the dense input: nothing removed yet
    assert rows.loc[0, "remaining_pct_mean"] == pytest.approx(100.0)
    # the final round's accuracy is the run's own final validation accuracy (the pipeline's fine-tune)
    last = max(per_step)
    assert rows.loc[last, "val_acc_mean"] == pytest.approx(longest["val_acc_top1"].mean())


def test_forced_trims_are_counted_from_the_step_metrics(store):
    tracker, runs, _, folder = store
    table = pd.read_csv(folder / "sap_accuracy.csv")
    comp = runs[(runs["kind"] == "compressed") & runs["method"].isin(["sap", "lq"])]
    forced = {r for r in comp["run_id"] if any(m.value > 0 for m in tracker.client.get_metric_history(r, "round_forced"))}
    assert table["forced_runs"].sum() == len(forced)
    assert table.loc[table["series"].str.startswith("magnitude"), "forced_runs"].sum() == 0


def test_published_numbers_are_the_specs(store):
    _, _, _, folder = store
    table = pd.read_csv(folder / "sap_published.csv")
    assert list(table["published acc (%)"]) == [77.5, 25.0, 82.0, 58.0]
    assert set(table["published setting"]) == {sap.PUBLISHED_SETTING}
    ours = pd.read_csv(folder / "sap_accuracy.csv")
    one_shot = ours[ours["series"] == "magnitude, one-shot"]
    best = one_shot.loc[one_shot["requested_ratio"].idxmax()]
    row = table[table["our series"] == "magnitude, one-shot"].iloc[0]
    assert row["our val acc (%)"] == pytest.approx(100 * best["val_acc_mean"])
    assert row["our test acc (%)"] == pytest.approx(100 * best["acc_mean"])


def test_no_adaptive_runs_means_no_figure(store, tmp_path):
    _, runs, _, _ = store
    assert sap.figure(runs[~runs["method"].isin(["sap", "lq"])], tmp_path) == []
    assert sap.figure(runs.iloc[0:0], tmp_path) == []


def test_trend_pattern():
    assert sap.trend_pattern([0.3, 0.2, 0.25, 0.27, 0.1]) == "↓↑↓"
    assert sap.trend_pattern([0.3, 0.2, 0.1]) == "↓"
    assert sap.trend_pattern([0.1, 0.1005, 0.1]) == "flat"
    assert sap.trend_pattern([0.1, float("nan"), 0.3]) == "flat"


@pytest.mark.parametrize("ratio", [2, 4, 8, 16, 32])
def test_lt_rounds_remove_about_20_percent_per_round(ratio):
    net = create_model("mlp", (1, 28, 28), 10)
    tensors = prunable_tensors(net)
    total = sum(getattr(m, n).numel() for m, n in tensors)
    final = keep_count(net, ratio, tensors)
    k = lt_rounds("mlp", ratio)
    assert round(total * 0.8 ** (k - 1)) > final >= round(total * 0.8 ** k)
    per_round = 1 - (final / total) ** (1 / k)  # magnitude's geometric schedule with k rounds
    assert 0.1 < per_round <= 0.2 + 1e-9
    assert k == math.ceil(math.log(final / total) / math.log(0.8) - 1e-9)


@pytest.mark.parametrize("paper", ["sap", "lq"])
def test_experiments_rewind_to_init_every_round(paper, monkeypatch):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    seen = set()
    for args, sweep in parsed_experiments(paper):
        t = sweep.template
        assert (t.dataset, t.model, t.protocol.rewind) == ("fashion-mnist", "mlp", "init")
        assert t.baseline == t.finetune  # the dense model is round 0: the same E epochs from init as every round
        params = dict(t.method_params)
        if t.method in ("sap", "lq"):
            assert params["rounds"] == 8 and sweep.ratios == (32.0,)
        seen.add((t.method, params.get("p"), params.get("schedule")))
    expected = {("sap", None, None), ("lq", None, None), ("magnitude", None, None), ("magnitude", None, "iterative")}
    assert seen == (expected | {("sap", "1", None)} if paper == "sap" else expected)
    iterative = [a for a in sap.build_experiments("cpu") if "schedule=iterative" in a]
    assert [float(a[a.index("--ratios") + 1]) for a in iterative] == list(sap.LT_RATIOS)


def test_cifar10_runs_the_papers_cnn_when_it_is_there(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    argvs = sap.build_experiments("paper")
    assert all(a[a.index("--dataset") + 1] == "cifar10" and a[a.index("--model") + 1] == "cnn" for a in argvs)
    lt = next(a for a in argvs if "schedule=iterative" in a)
    assert f"rounds={lt_rounds('cnn', 4, input_shape=(3, 32, 32))}" in lt
