"""Artifacts are part of a trial: a trial whose artifacts cannot be stored is FAIL, not COMPLETE, and its retry
(which finds the seeds' runs already tracked in MLflow and trains nothing) stores every seed's artifacts, copied
from those runs. Real Optuna and MLflow SQLite stores; the artifact folder is blocked by a regular file."""
import dataclasses
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from conftest import digits_template
from bench.sweep import SweepConfig, run_sweep
from bench.tracking import Tracker, TrackingOptions


def test_a_trial_whose_artifacts_fail_is_not_complete_and_its_retry_stores_them(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where the artifact folder's parent should be")
    cfg = SweepConfig(template=digits_template(), ratios=(2.0,), seeds=2, quiet=True, max_retries=0,
                      artifact_dir=str(blocker / "artifacts"),
                      tracking=TrackingOptions(log_models=False, system_metrics=False))
    first = run_sweep(cfg)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.load_study(study_name=cfg.study_name(), storage=storage)
    (failed,) = study.get_trials()
    assert failed.state.name == "FAIL" and first.complete == 0 and first.unfinished == 1
    assert failed.user_attrs["error"].startswith(f"trial artifacts not stored in {blocker / 'artifacts'}")
    tracker = Tracker()
    runs = tracker.runs_frame()
    trained = runs[runs["tags.kind"] == "compressed"]
    assert len(trained) == 2 and set(trained["status"]) == {"FINISHED"}  # both seeds were measured and tracked

    blocker.unlink()  # the folder can be made now; one more try for the failed point
    second = run_sweep(dataclasses.replace(cfg, max_retries=1))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and second.unfinished == 0
    retry = trials[1]
    assert retry.user_attrs["reused_runs"] == 2  # nothing trained again: found tracked in MLflow
    assert len(tracker.runs_frame().query("`tags.kind` == 'compressed'")) == 2
    store = FileSystemArtifactStore(str(blocker / "artifacts"))
    metas = {m.filename: m for m in get_all_artifact_meta(retry, storage=storage)}
    assert set(metas) == {"report-seed0.json", "report-seed1.json", "per_layer-seed0.csv", "per_layer-seed1.csv"}
    for _, run in trained.iterrows():
        seed = int(run["tags.seed"])
        got = tmp_path / f"got-{seed}.json"
        download_artifact(artifact_store=store, artifact_id=metas[f"report-seed{seed}.json"].artifact_id,
                          file_path=str(got))
        tracked = tracker.client.download_artifacts(run["run_id"], "report.json", str(tmp_path / f"run-{seed}"))
        assert got.read_text() == Path(tracked).read_text()  # the seed's own report, copied from its MLflow run
