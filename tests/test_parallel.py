"""Parallel workers on one machine (issue 9, part 2): three processes share one study and one tracking store.

Each test really spawns the workers (``multiprocessing`` spawn, one torch thread each) and checks what
they left in the real stores: exactly one COMPLETE trial per grid point, no FAIL, no duplicates, no
"database is locked" on any output, and a one-to-one match between trials and FINISHED MLflow runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import optuna
import pytest

from bench.config import ExperimentConfig
from bench.paths import REPO
from bench.recipes import TrainRecipe
from bench.studies import make_storage
from bench.sweep import SweepConfig, run_sweep
from bench.tracking import Tracker

RATIOS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
WORKERS = 3
# What a store under contention prints when a writer gives up (SQLite) or a worker dies.
BAD_OUTPUT = ("database is locked", "Traceback", "OperationalError")


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def tiny_sweep(storage: str | None = None, tracking_uri: str | None = None) -> SweepConfig:
    """Six grid points, one seed: small enough that three workers each get two trials in seconds."""
    template = ExperimentConfig.create(
        dataset="digits", model="mlp", model_options={"widths": (32, 16)}, method="magnitude",
        baseline=TrainRecipe(epochs=2, batch_size=64), finetune=TrainRecipe(epochs=1, batch_size=64),
        latency_repeats=2)
    return SweepConfig(template=template, ratios=RATIOS, seeds=1, workers=WORKERS, storage=storage,
                       tracking_uri=tracking_uri, quiet=True)


def assert_no_contention_errors(output: str) -> None:
    for bad in BAD_OUTPUT:
        assert bad not in output, f"{bad!r} in the sweep's output:\n{output[-4000:]}"


def assert_one_run_per_trial(study: optuna.Study, tracker: Tracker, study_name: str, ratios=RATIOS) -> None:
    """Exactly one COMPLETE trial per ratio, and trials <-> FINISHED compressed MLflow runs one-to-one."""
    trials = study.get_trials(deepcopy=False)
    assert Counter(t.state.name for t in trials) == {"COMPLETE": len(ratios)}, \
        [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert sorted(t.params["ratio"] for t in trials) == sorted(ratios)  # each point once: none lost, none repeated

    runs = tracker.runs_frame(filter_string=f"tags.study = '{study_name}'")
    compressed = runs[runs["tags.kind"] == "compressed"]
    finished = set(compressed[compressed["status"] == "FINISHED"]["run_id"])
    owner: dict[str, int] = {}
    for t in trials:
        ids = t.user_attrs["mlflow_run_ids"]
        assert len(ids) == 1 and ids[0] in finished, (t.number, ids)  # one seed: one run, and it finished
        assert ids[0] not in owner, f"run {ids[0]} claimed by trials {owner.get(ids[0])} and {t.number}"
        owner[ids[0]] = t.number
    # ...and no compressed run of the study that no trial claims (a duplicate, or an orphan left RUNNING)
    assert set(compressed["run_id"]) == set(owner), compressed[["run_id", "status", "tags.trial"]]
    by_id = compressed.set_index("run_id")
    for run_id, number in owner.items():
        assert by_id.loc[run_id, "tags.trial"] == str(number)
        assert float(by_id.loc[run_id, "params.requested_ratio"]) == study.trials[number].params["ratio"]
    parents = runs[runs["tags.kind"] == "sweep"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert set(compressed["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_three_workers_share_one_study_without_duplicates_or_lock_errors(results, storage, capfd):
    url = f"journal:{results / 'journal.log'}" if storage == "journal" else None  # None: results/optuna.db
    cfg = tiny_sweep(url)
    summary = run_sweep(cfg)
    out, err = capfd.readouterr()  # fd-level: includes what the spawned workers wrote
    assert_no_contention_errors(out + err)
    assert summary.complete == len(RATIOS) and summary.failed == 0
    tracker = Tracker()
    study = optuna.load_study(study_name=cfg.study_name(), storage=make_storage(url, tracker.uri))
    assert_one_run_per_trial(study, tracker, cfg.study_name())
    if storage == "sqlite":
        assert (results / "optuna.db").is_file() and not (results / "journal.log").exists()
    else:
        assert (results / "journal.log").stat().st_size > 0 and not (results / "optuna.db").exists()


def test_cli_bench_with_three_workers(results):
    """The same through ``python -m bench bench --workers 3`` (what ``make bench WORKERS=3`` runs)."""
    argv = [sys.executable, "-m", "bench", "bench", "--method", "magnitude", "--dataset", "digits", "--model", "mlp",
            "--ratios", ",".join(f"{r:g}" for r in RATIOS), "--seeds", "1", "--epochs", "2",
            "--finetune-epochs", "1", "--workers", str(WORKERS), "--threads", "1", "--protocol", "quick",
            "--allow-large"]  # 3 workers on a 2-core machine: contention on purpose, past the workers bound
    env = {**os.environ, "COMPRESSION_BENCH_RESULTS": str(results)}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_no_contention_errors(proc.stdout + proc.stderr)
    assert f"{len(RATIOS)} complete, 0 failed trials" in proc.stdout
    tracker = Tracker()
    names = [s.study_name for s in optuna.get_all_study_summaries(make_storage(None, tracker.uri))]
    assert len(names) == 1
    study = optuna.load_study(study_name=names[0], storage=make_storage(None, tracker.uri))
    assert_one_run_per_trial(study, tracker, names[0])
    # every worker reported its trials: the per-trial lines carry the worker number
    workers = {line.split(" worker ")[1].split()[0] for line in proc.stderr.splitlines() if " worker " in line}
    assert workers <= {str(i) for i in range(WORKERS)} and len(workers) >= 2, proc.stderr[-3000:]
