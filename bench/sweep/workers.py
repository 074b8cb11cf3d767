"""The workers: the loop that runs trials until the study has enough, the spawned processes that run it in
parallel (``_spawned_worker`` is their target, imported by module path), and the wait for trials still running.
"""
from __future__ import annotations

import multiprocessing
import time
from typing import Any

from bench.studies import make_storage
from bench.sweep.config import SweepConfig
from bench.sweep.grid import _claim_and_run
from bench.sweep.objective import Objective, _make_sampler
from bench.sweep.progress import SweepProgress, _report_trial, _state_counts


def worker_loop(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int = 0,
                threads: int | None = None, bar: SweepProgress | None = None) -> None:
    """Run trials until the study has enough (grid: no point left to claim; tpe: complete+running >= target)."""
    import optuna

    from bench.pipeline import set_threads

    set_threads(threads)
    storage = make_storage(cfg.storage, tracking_uri)
    study = optuna.load_study(study_name=cfg.study_name(), storage=storage, sampler=_make_sampler(cfg, worker))
    objective = Objective(cfg, tracking_uri, parent_run_id)
    if bar is not None:
        objective.on_point = bar.running
    callbacks = [lambda s, trial: _report_trial(cfg, s, trial, worker, bar)]
    while True:
        optuna.storages.fail_stale_trials(study)
        if cfg.mode == "grid":
            if not _claim_and_run(cfg, study, storage, objective, callbacks):
                return
            continue
        counts = _state_counts(study)
        if counts.get("COMPLETE", 0) + counts.get("RUNNING", 0) >= cfg.target:
            return
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)


def _spawned_worker(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int) -> None:
    from bench.plugins import load_plugins

    load_plugins(cfg.template.plugins)  # a spawned process starts with the built-in registries only
    # Two 2-thread training processes on 2 cores run 5-6x slower each: one thread per worker.
    worker_loop(cfg, tracking_uri, parent_run_id, worker, threads=1)


def _run_workers(cfg: SweepConfig, tracking_uri: str, parent: str, study: Any, bar: SweepProgress | None) -> None:
    if cfg.workers == 1:
        worker_loop(cfg, tracking_uri, parent, bar=bar)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawned_worker, args=(cfg, tracking_uri, parent, i)) for i in range(cfg.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            while p.is_alive():
                p.join(timeout=2)
                if bar is not None:
                    bar.update(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise


def _wait_for_running(cfg: SweepConfig, study: Any, timeout: float) -> None:
    """Let trials of other (or dead) workers finish or go stale, so the study can be completed."""
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        if _state_counts(study).get("RUNNING", 0) == 0:
            return
        time.sleep(2)
