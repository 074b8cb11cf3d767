"""The multihash paper figure from a small real MLflow store (synthetic data, tiny budgets)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.figures import tidy_runs
from bench.papers import multihash as paper
from bench.pipeline import run_experiment
from bench.tracking import Tracker
from papers_support import (assert_files_written, compressed_raw, parsed_experiments, run_grid, scratch_store,
                            tiny_config)

RATIOS, SEEDS = (2.0, 8.0), (0, 1)


def _config(method: str, ratio: float, seed: int, **params) -> ExperimentConfig:
    return tiny_config("synthetic", "lenet300", method, ratio, seed, params, epochs=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with scratch_store(tmp_path_factory.mktemp("multihash_store")) as tracker:
        for method, overrides, budget in paper.VARIANTS.values():
            params = {**overrides, **({"epochs": 1} if "epochs" in budget else {})}
            run_grid(tracker, lambda ratio, seed: _config(method, ratio, seed, **params), RATIOS, SEEDS)
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
    raw = compressed_raw(store)
    method, scope = raw["tags.method"], raw.get("params.method.scope")
    act, kd = raw.get("params.method.student_activation"), raw.get("params.method.kd_weight")
    raw["label"] = np.select(
        [method == "multihash", (method == "magnitude") & (scope == "global"),
         (method == "lma") & (act == "relu") & (kd.astype(float) == 0)],
        [paper.HASHED, paper.MAGNITUDE, paper.NARROW], default="")
    return raw


def test_figure_and_tables_are_written(drawn):
    written, out = drawn
    stem = "multihash_synthetic__lenet300"
    suffixes = (".png", ".pdf", "_accuracy.csv", "_accuracy.md", "_budgets.csv", "_budgets.md")
    assert_files_written(written, [f"{stem}{suffix}" for suffix in suffixes] + ["multihash_published.csv"])
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


def test_experiments_train_a_resnet_from_scratch_at_fractions_of_the_variables(monkeypatch):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    methods_run = []
    for _, sweep in parsed_experiments("multihash"):
        t = sweep.template
        assert sweep.ratios == (2.0, 4.0, 10.0, 20.0)  # 50, 25, 10 and 5 % of the variables kept
        assert (t.dataset, t.model) == ("mnist-5k", "resnet20")
        assert (t.baseline.optimizer, t.baseline.lr, t.baseline.weight_decay) == ("sgd", 0.1, 1e-4)  # the ResNet recipe
        params = dict(t.method_params)
        methods_run.append(t.method)
        assert "epochs" not in params and t.scratch_recipe() == t.baseline  # from scratch: the dense recipe
        if t.method == "lma":
            assert params["student_activation"] == "relu" and float(params["kd_weight"]) == 0
    assert methods_run == ["multihash", "magnitude", "lma"]
