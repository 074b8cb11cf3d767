"""The pipeline against a real MLflow SQLite store in a temporary directory."""
import json

import pytest

import methods
from bench.config import ExperimentConfig
from bench.pipeline import run_experiment
from bench.recipes import TrainRecipe
from papers_support import scratch_store

DESIGN_METRICS = {
    "params_total", "params_effective", "compression_ratio", "fraction_removed", "flops_dense", "flops_effective",
    "theoretical_speedup", "size_bytes", "latency_ms_b1", "latency_ms_b256", "measured_speedup", "acc_top1",
    "val_acc_top1", "acc_drop", "compress_seconds", "finetune_seconds", "pq_index",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # One store for the module (a new SQLite store costs seconds of migrations); each test uses its own
    # dataset/model experiment.
    with scratch_store(tmp_path_factory.mktemp("store")) as tracker:
        yield tracker


def _config(**kw) -> ExperimentConfig:
    base = dict(dataset="synthetic", model="mlp", model_options={"widths": (32, 16)}, ratio=4,
                # lr 1e-2: at 1e-3 two epochs leave a constant-class model (at chance, refused as known wrong)
                baseline=TrainRecipe(epochs=2, batch_size=64, lr=1e-2),
                finetune=TrainRecipe(epochs=1, batch_size=64),
                latency_repeats=3)
    base.update(kw)
    return ExperimentConfig.create(**base)


def test_runs_are_tracked_with_every_metric_and_read_back(store, tmp_path):
    result = run_experiment(_config(), store)
    assert store.uri.startswith("sqlite:///") and store.uri.endswith("/mlflow.db")
    runs = store.runs_frame(["synthetic/mlp"])
    assert sorted(runs["tags.kind"]) == ["baseline", "compressed", "control"]
    assert set(runs["status"]) == {"FINISHED"}
    compressed = runs[runs["tags.kind"] == "compressed"].iloc[0]
    assert compressed["run_id"] == result.run_id
    missing = {m for m in DESIGN_METRICS if f"metrics.{m}" not in runs.columns or compressed[f"metrics.{m}"] != compressed[f"metrics.{m}"]}
    assert not missing
    assert compressed["metrics.compression_ratio"] == pytest.approx(4, rel=0.03)
    assert compressed["params.requested_ratio"] == "4" and compressed["params.method.scope"] == "global"
    assert compressed["tags.env.git.commit"] and compressed["tags.env.version.torch"].startswith("2.13")
    control = runs[runs["tags.kind"] == "control"].iloc[0]
    assert compressed["metrics.control_acc_top1"] == control["metrics.acc_top1"]
    assert control["metrics.compression_ratio"] == 1
    report = json.loads(store.client.download_artifacts(result.run_id, "report.json", str(tmp_path)) and
                        (tmp_path / "report.json").read_text())
    assert report["metrics"]["acc_top1"] == compressed["metrics.acc_top1"] and len(report["per_layer"]) == 3
    store_dir = store.uri.split(":///", 1)[1].rsplit("/", 1)[0]
    assert (tmp_path.parent / store_dir).is_dir() and "artifacts" in runs["artifact_uri"].iloc[0]


def test_second_ratio_reuses_baseline_and_control(store):
    run_experiment(_config(ratio=2, model="lenet300", model_options={}), store)
    run_experiment(_config(ratio=8, model="lenet300", model_options={}), store)
    runs = store.runs_frame(["synthetic/lenet300"])
    assert sorted(runs["tags.kind"]) == ["baseline", "compressed", "compressed", "control"]
    accs = runs[runs["tags.kind"] == "compressed"]["metrics.baseline_acc_top1"]
    assert accs.nunique() == 1  # both started from the same cached baseline


def test_a_crashing_method_leaves_a_failed_run_not_a_running_one(store, monkeypatch):
    def explode(self, model, target, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(methods.get("magnitude"), "compress", explode)
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment(_config(dataset="digits"), store)
    runs = store.runs_frame(["digits/mlp"])
    assert list(runs["status"]) == ["FAILED"] and "boom" in runs["tags.error"].iloc[0]


def test_unreachable_ratio_writes_nothing_to_the_store(store, tmp_path):
    with pytest.raises(methods.CompressionError, match="out of reach"):
        run_experiment(_config(ratio=5000, dataset="digits", model="lenet300", model_options={}), store)
    assert store.client.get_experiment_by_name("digits/lenet300") is None


def test_fine_tuning_inside_a_method_is_counted_in_the_budget(store):
    one_shot = run_experiment(_config(dataset="digits", model="mlp", model_options={"widths": (24, 12)}), store)
    iterative = run_experiment(_config(dataset="digits", model="mlp", model_options={"widths": (24, 12)},
                                       method_params={"schedule": "iterative", "rounds": 3}), store)
    assert one_shot.metrics["finetune_epochs_total"] == 1 and one_shot.metrics["finetune_epochs_in_method"] == 0
    assert iterative.metrics["finetune_epochs_total"] == 3 and iterative.metrics["finetune_epochs_in_method"] == 2
