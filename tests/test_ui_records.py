"""What the MLflow UI and optuna-dashboard read, checked on real SQLite stores after a real sweep: dataset
inputs, logged models that load back to their tracked accuracy, system metrics, the group-by key, the
study's note, trial artifacts, the ratio constraint, exactly-once grid claims, and the UI links."""
from __future__ import annotations

import json

import mlflow
import mlflow.pytorch
import optuna
import pytest

import datasets
from bench.cli import main, runs_view_url
from conftest import digits_template
from papers_support import scratch_store
from bench.metrics import accuracy
from bench.studies import make_storage
from bench.pipeline import RATIO_TOLERANCE
from bench.sweep import SweepConfig, run_sweep
from bench.tracking import Tracker, TrackingOptions


_template = digits_template


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One grid sweep (2 reachable ratios, 1 out of reach, 2 seeds) into fresh stores, shared by the tests."""
    tmp = tmp_path_factory.mktemp("ui-records")
    with scratch_store(tmp) as tracker:
        cfg = SweepConfig(template=_template(), ratios=(2.0, 4.0, 5000.0), seeds=2, quiet=True,
                          command="python -m bench bench --method magnitude --dataset digits")
        summary = run_sweep(cfg)
        study = optuna.load_study(study_name=cfg.study_name(), storage=make_storage(None, tracker.uri))
        yield {"tmp": tmp, "cfg": cfg, "summary": summary, "tracker": tracker, "study": study,
               "runs": tracker.runs_frame()}


def _kind(runs, kind):
    return runs[runs["tags.kind"] == kind]


def test_every_run_logs_its_dataset_as_an_mlflow_input(swept):
    tracker, runs = swept["tracker"], swept["runs"]
    data = datasets.get("digits")
    for run_id in _kind(runs, "compressed")["run_id"].tolist() + _kind(runs, "baseline")["run_id"].tolist():
        inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        ds = inputs[0].dataset
        profile = json.loads(ds.profile)
        assert ds.name == "digits" and ds.digest == data.sha256[:16] and profile["sha256"] == data.sha256
        assert profile["splits"] == data.sizes() and profile["num_classes"] == 10


def test_the_digest_is_of_the_data_as_loaded():
    full, sliced = datasets.get("digits"), datasets.get("digits", train_limit=200)
    assert full.sha256 == datasets.get("digits").sha256  # the same data: the same digest
    assert sliced.sha256 != full.sha256 and len(full.sha256) == 64


def test_a_logged_model_loads_back_to_its_tracked_test_accuracy(swept, monkeypatch):
    tracker, runs = swept["tracker"], swept["runs"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.uri)  # models:/ URIs resolve through the tracking store
    data = datasets.get("digits")
    compressed = _kind(runs, "compressed")
    assert len(compressed) == 4  # 2 reachable ratios x 2 seeds
    for row in compressed.itertuples():
        outputs = tracker.client.get_run(row.run_id).outputs.model_outputs
        assert len(outputs) == 1
        model_id = outputs[0].model_id
        assert tracker.client.get_run(row.run_id).data.tags["logged_model"] == f"models:/{model_id}"
        logged = tracker.client.get_logged_model(model_id)
        assert logged.source_run_id == row.run_id and str(logged.status.value) == "READY"
        linked = {m.key: m for m in logged.metrics}
        tracked = tracker.client.get_run(row.run_id).data.metrics
        assert linked["acc_top1"].value == tracked["acc_top1"] and linked["acc_top1"].dataset_name == "digits"
        model = mlflow.pytorch.load_model(f"models:/{model_id}")
        assert accuracy(model, data.test_x, data.test_y)[1] == pytest.approx(tracked["acc_top1"], abs=0.5 / len(data.test_y))
        # the deployable form keeps the achieved compression: as many nonzero weights as the run says
        nonzero = sum(int((p != 0).sum()) for p in model.state_dict().values() if p.dtype.is_floating_point)
        assert nonzero == pytest.approx(tracked["params_effective"], abs=tracked["params_total"] * 0.001)


def test_baselines_log_their_model_too(swept):
    tracker = swept["tracker"]
    for run_id in _kind(swept["runs"], "baseline")["run_id"]:
        assert len(tracker.client.get_run(run_id).outputs.model_outputs) == 1


def test_system_metrics_are_on_every_run(swept):
    for row in swept["runs"].query("`tags.kind` in ['compressed', 'baseline', 'control']").itertuples():
        metrics = swept["tracker"].client.get_run(row.run_id).data.metrics
        assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics


def test_the_group_tag_differs_only_by_seed(swept):
    method = _kind(swept["runs"], "compressed")
    groups = method.groupby("tags.group")["tags.seed"].apply(sorted)
    assert len(groups) == 2 and all(seeds == ["0", "1"] for seeds in groups)  # 2 ratios, 2 seeds each
    assert {g.split(" | ")[1] for g in groups.index} == {"2x", "4x"}


def test_the_study_note_says_protocol_and_command(swept):
    from optuna_dashboard._note import get_note_from_system_attrs

    study, cfg = swept["study"], swept["cfg"]
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert cfg.template.protocol.caption() in note and cfg.command in note
    assert swept["summary"].parent_run_id in note


def test_each_trial_carries_its_reports_as_optuna_artifacts(swept, tmp_path):
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

    study, tracker = swept["study"], swept["tracker"]
    store = FileSystemArtifactStore(str(swept["tmp"] / "optuna-artifacts"))
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == 2
    for trial in complete:
        metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=study._storage)}
        assert set(metas) == {"report-seed0.json", "report-seed1.json", "per_layer-seed0.csv", "per_layer-seed1.csv"}
        method_run = trial.user_attrs["mlflow_run_ids"][0]  # seed 0's method arm
        path = tmp_path / f"t{trial.number}.csv"
        download_artifact(artifact_store=store, artifact_id=metas["per_layer-seed0.csv"].artifact_id, file_path=str(path))
        tracked = tracker.client.download_artifacts(method_run, "per_layer.csv", str(tmp_path / f"mlflow{trial.number}"))
        assert path.read_text() == open(tracked).read() and path.read_text().startswith("layer")


def test_the_ratio_constraint_marks_unreachable_points_infeasible(swept):
    by_ratio = {t.params["ratio"]: t for t in swept["study"].get_trials()}
    assert by_ratio[5000.0].state.name == "PRUNED" and by_ratio[5000.0].system_attrs["constraints"][0] > 0
    for ratio in (2.0, 4.0):
        trial = by_ratio[ratio]
        (value,) = trial.system_attrs["constraints"]
        assert value <= 0 and value == pytest.approx(trial.user_attrs["ratio_error_max"] - RATIO_TOLERANCE)


def test_grid_parameters_are_log_scale_numbers_and_the_values_are_named(swept):
    """optuna-dashboard orders and spaces numeric parameters as numbers (categories came out 8, 64, 4, ...), and
    shows a trial's values bare, so a user attribute names them."""
    from optuna.distributions import FloatDistribution

    trials = swept["study"].get_trials()
    for trial in trials:
        for name in ("ratio", "lr"):
            assert isinstance(trial.distributions[name], FloatDistribution) and trial.distributions[name].log
    assert swept["study"].metric_names == ["val_acc_top1", "compression_ratio"]
    for trial in (t for t in trials if t.state.name == "COMPLETE"):
        assert trial.user_attrs["objectives"] == (f"val_acc_top1 (mean over seeds) {trial.values[0]:.4f}, "
                                                  f"compression_ratio (achieved) {trial.values[1]:.2f}x")


def test_options_switch_models_and_system_metrics_off(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = SweepConfig(template=_template(), ratios=(2.0,), seeds=1, quiet=True,
                      tracking=TrackingOptions(log_models=False, system_metrics=False))
    run_sweep(cfg)
    tracker = Tracker()
    runs = tracker.runs_frame()
    assert not [c for c in runs.columns if c.startswith("metrics.system/")]
    assert tracker.client.search_logged_models([runs["experiment_id"].iloc[0]]) == []
    assert len(_kind(runs, "compressed")) == 1  # the run itself is there


def test_a_grid_worker_takes_a_point_a_dead_worker_left_and_never_repeats_one(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = SweepConfig(template=_template(), ratios=(2.0, 4.0), seeds=1, quiet=True,
                      tracking=TrackingOptions(log_models=False, system_metrics=False))
    storage = make_storage(None, "unused")
    left = optuna.create_study(study_name=cfg.study_name(), storage=storage, directions=["maximize", "maximize"])
    left.enqueue_trial({"ratio": 4.0, "lr": cfg.lrs[0]})  # claimed (enqueued) by a worker that then died
    run_sweep(cfg)
    trials = left.get_trials()
    assert [(t.number, t.params["ratio"], t.state.name) for t in trials] == [(0, 4.0, "COMPLETE"), (1, 2.0, "COMPLETE")]
    assert run_sweep(cfg).complete == 2 and len(left.get_trials()) == 2  # a rerun claims nothing


def test_links_open_the_runs_view(swept, capsys, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(swept["tmp"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["links", "--url", "http://127.0.0.1:5123/"]) == 0
    experiment = swept["tracker"].client.get_experiment_by_name("digits/mlp")
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning" in out
    assert runs_view_url("http://h:1", "7") == "http://h:1/#/experiments/7/runs?workflowType=machine_learning"


def test_progress_is_on_for_terminals_only(monkeypatch):
    from bench.cli import _progress, build_parser

    class Stream:
        def __init__(self, tty: bool) -> None:
            self.isatty = lambda: tty

    parse = build_parser().parse_args
    base = ["bench", "--method", "magnitude"]
    monkeypatch.setattr("sys.stderr", Stream(False))
    assert _progress(parse(base)) is False and _progress(parse([*base, "--progress"])) is True
    monkeypatch.setattr("sys.stderr", Stream(True))
    assert _progress(parse(base)) is True and _progress(parse([*base, "--no-progress"])) is False


def test_the_sweep_bar_counts_trials(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_sweep(SweepConfig(template=_template(), ratios=(2.0, 4.0), seeds=1, quiet=True, progress=True,
                          tracking=TrackingOptions(log_models=False, system_metrics=False)))
    err = capsys.readouterr().err
    assert "magnitude grid" in err and "2/2" in err


def test_lightning_bars_wait_a_few_seconds():
    from bench.training import PROGRESS_DELAY_SECONDS, make_trainer

    bars = [c for c in make_trainer(1, progress=True).callbacks if type(c).__name__ == "DelayedProgressBar"]
    assert len(bars) == 1 and PROGRESS_DELAY_SECONDS >= 1
    assert bars[0].init_train_tqdm().delay == PROGRESS_DELAY_SECONDS
    assert not [c for c in make_trainer(1, progress=False).callbacks if type(c).__name__ == "DelayedProgressBar"]


def test_every_run_reaches_its_logged_model_past_the_ui_page_of_50(tmp_path):
    """MLflow's runs table fills its Models column from an experiment's first 50 logged models; the
    ``logged_model`` tag reaches each run's model whatever the number of runs (tested with 60)."""
    from torch import nn

    from papers_support import scratch_store

    with scratch_store(tmp_path) as tracker:
        run_ids = []
        for i in range(60):
            run_id = tracker.start("many/models", f"run-{i}", {"kind": "compressed"})
            tracker.log_model(run_id, "many/models", nn.Linear(2, 2), f"model-{i}")
            tracker.finish(run_id)
            run_ids.append(run_id)
        experiment = tracker.client.get_experiment_by_name("many/models").experiment_id
        first_page = tracker.client.search_logged_models([experiment], max_results=50)
        assert len(first_page) == 50  # the premise: a page of 50 leaves 10 runs without their model
        for run_id in run_ids:
            uri = tracker.client.get_run(run_id).data.tags["logged_model"]
            model = tracker.client.get_logged_model(uri.removeprefix("models:/"))
            assert model.source_run_id == run_id and str(model.status.value) == "READY"
