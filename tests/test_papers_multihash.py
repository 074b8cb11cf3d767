"""The multihash paper figure from a small real MLflow store (synthetic data, tiny budgets)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.cli import build_parser, sweep_from_args
from bench.config import ExperimentConfig
from bench.figures import tidy_runs
from bench.papers import experiments, list_papers
from bench.papers import multihash as paper
from bench.pipeline import run_experiment
from bench.recipes import TrainRecipe
from bench.tracking import Tracker

RATIOS, SEEDS = (2.0, 8.0), (0, 1)


def _config(method: str, ratio: float, seed: int, **params) -> ExperimentConfig:
    return ExperimentConfig.create(
        dataset="synthetic", model="lenet300", method=method, ratio=ratio, seed=seed, method_params=params,
        latency_repeats=2, baseline=TrainRecipe(epochs=1, batch_size=64), finetune=TrainRecipe(epochs=1, batch_size=64))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihash_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSION_BENCH_RESULTS", str(tmp))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        tracker = Tracker()
        for method, overrides, budget in paper.VARIANTS.values():
            params = {**overrides, **({"epochs": 1} if "epochs" in budget else {})}
            for ratio in RATIOS:
                for seed in SEEDS:
                    run_experiment(_config(method, ratio, seed, **params), tracker)
        # Decoys the figure must leave out: layer-wise magnitude, and an LMA student (not the plain control).
        run_experiment(_config("magnitude", 2.0, 0, scope="layer"), tracker)
        run_experiment(_config("lma", 2.0, 0, epochs=1), tracker)
        yield tracker


@pytest.fixture(scope="module")
def drawn(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("multihash_fig")
    return paper.figure(tidy_runs(store), out), out


def _raw(store: Tracker) -> pd.DataFrame:
    """The compressed runs straight from MLflow, labelled from their raw parameters (not via the module)."""
    raw = store.runs_frame()
    raw = raw[raw["tags.kind"] == "compressed"].copy()
    method, scope = raw["tags.method"], raw.get("params.method.scope")
    act, kd = raw.get("params.method.student_activation"), raw.get("params.method.kd_weight")
    raw["label"] = np.select(
        [method == "multihash", (method == "magnitude") & (scope == "global"),
         (method == "lma") & (act == "relu") & (kd.astype(float) == 0)],
        [paper.HASHED, paper.MAGNITUDE, paper.NARROW], default="")
    raw["ratio"] = raw["params.requested_ratio"].astype(float)
    return raw


def test_figure_and_tables_are_written(drawn):
    written, out = drawn
    names = {p.name for p in written}
    stem = "multihash_synthetic__lenet300"
    for suffix in (".png", ".pdf", "_accuracy.csv", "_accuracy.md", "_budgets.csv", "_budgets.md"):
        assert f"{stem}{suffix}" in names
    assert "multihash_published.csv" in names
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    assert "seeds [0, 1] (2)" in (out / f"{stem}_accuracy.md").read_text()


def test_accuracy_table_equals_a_direct_computation(store, drawn):
    _, out = drawn
    table = pd.read_csv(out / "multihash_synthetic__lenet300_accuracy.csv")
    raw = _raw(store)
    assert len(table) == len(paper.VARIANTS) * len(RATIOS)
    for row in table.itertuples():
        sel = raw[(raw["label"] == row.variant) & (raw["ratio"] == row.requested_ratio)]
        acc = 100 * sel["metrics.acc_top1"]
        assert row.n_seeds == len(SEEDS) == len(acc)  # the decoys are not counted
        assert row.acc_mean_pct == pytest.approx(acc.mean())
        assert row.acc_std_pct == pytest.approx(acc.std())
        assert row.params == pytest.approx(sel["metrics.params_effective"].mean())
        assert row.achieved_ratio == pytest.approx(row.requested_ratio, rel=0.03)


def test_budget_table_pairs_multihash_with_the_narrow_dense_net(store, drawn):
    _, out = drawn
    budgets = pd.read_csv(out / "multihash_synthetic__lenet300_budgets.csv")
    raw = _raw(store)
    wide = raw.pivot_table(index=["ratio", "tags.seed"], columns="label", values="metrics.acc_top1")
    assert list(budgets["requested_ratio"]) == list(RATIOS)
    for row in budgets.to_dict("records"):
        diff = 100 * (wide.loc[row["requested_ratio"], paper.HASHED] - wide.loc[row["requested_ratio"], paper.NARROW])
        assert row["multihash − narrow dense (points, paired)"] == f"{diff.mean():+.2f} ± {diff.std():.2f}"
        hashed = 100 * wide.loc[row["requested_ratio"], paper.HASHED]
        assert row[paper.HASHED] == f"{hashed.mean():.2f} ± {hashed.std():.2f}"


def test_empty_store_draws_nothing(tmp_path):
    assert paper.figure(pd.DataFrame(), tmp_path) == []


def test_experiments_parse_and_validate():
    assert "multihash" in list_papers()
    argvs = experiments("multihash")
    methods_run = []
    for argv in argvs:
        sweep = sweep_from_args(build_parser().parse_args(argv))
        assert sweep.seeds >= 3 and sweep.ratios == (2.0, 4.0, 8.0, 16.0, 32.0)
        assert (sweep.template.dataset, sweep.template.model) == ("fashion-mnist", "lenet300")
        params = dict(sweep.template.method_params)
        methods_run.append(sweep.template.method)
        if sweep.template.method != "magnitude":  # from scratch: the dense baseline's epochs
            assert int(params["epochs"]) == sweep.template.baseline.epochs == paper.TRAIN_EPOCHS
        if sweep.template.method == "lma":
            assert params["student_activation"] == "relu" and float(params["kd_weight"]) == 0
    assert methods_run == ["multihash", "magnitude", "lma"]
