"""The workers: the loop that runs trials until the study has enough, the spawned processes that run it in
parallel (``_spawned_worker`` is their target, imported by module path), and the wait for trials still running.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Iterator

from bench.studies import make_storage
from bench.sweep.plan import SweepConfig
from bench.sweep.grid import _claim_and_run, _waiting_on_tuning
from bench.sweep.objective import Objective, _make_sampler
from bench.sweep.progress import SweepProgress, _report_trial, _state_counts

# How long a worker has, after Ctrl-C, to tell Optuna its trial failed and end its MLflow runs itself.
STOP_GRACE_SECONDS = 60.0


def worker_loop(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int = 0,
                threads: int | None = None, bar: SweepProgress | None = None,
                gate: InterruptGate | None = None) -> None:
    """Run trials until the study has enough (grid: no point left to claim; tpe: complete+running >= target), or
    until ``gate`` saw a Ctrl-C: also one whose KeyboardInterrupt the trial's clean-up turned into another error
    (a store busy with every other worker's clean-up), which Optuna then caught as a mere failed trial.

    Each trial starts under ``gate.holding()``: from the claim until the trial names its worker, a Ctrl-C is
    deferred, because a trial interrupted in between would be RUNNING with no owner for ``end_interrupted``."""
    import optuna

    from bench.pipeline import set_threads

    gate = gate if gate is not None else InterruptGate()
    set_threads(threads)
    storage = make_storage(cfg.storage, tracking_uri)
    study = optuna.load_study(study_name=cfg.study_name(), storage=storage, sampler=_make_sampler(cfg, worker))
    objective = Objective(cfg, tracking_uri, parent_run_id)
    objective.on_owned = gate.release
    if bar is not None:
        objective.on_point = bar.running
    callbacks = [lambda s, trial: _report_trial(cfg, s, trial, worker, bar)]
    while True:
        if gate.interrupted:
            raise KeyboardInterrupt("interrupted during a trial's clean-up")
        optuna.storages.fail_stale_trials(study)
        if cfg.mode == "grid":
            with gate.holding():
                claimed = _claim_and_run(cfg, study, storage, objective, callbacks)
            if claimed:
                continue
            if not _waiting_on_tuning(cfg, study):
                return
            time.sleep(2)  # a ratio's confirm point opens when the tune trials other workers run have finished
            continue
        counts = _state_counts(study)
        if counts.get("COMPLETE", 0) + counts.get("RUNNING", 0) >= cfg.target:
            return
        with gate.holding():
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)


class InterruptGate:
    """The SIGINT handler of a process that runs trials. The first signal raises KeyboardInterrupt (Optuna tells
    the trial FAIL, ``Tracker.run`` ends its MLflow run KILLED); later ones are ignored, so that this clean-up
    is not itself cut short. A terminal's Ctrl-C reaches every worker of the process group, and the main
    process forwards it too (``_stop_workers``), so a worker may well receive two.

    While ``holding()`` (a trial being claimed, until it names its worker) the KeyboardInterrupt waits for
    ``release()``: the trial then exists with an owner, and Optuna fails it like any interrupted trial."""

    def __init__(self) -> None:
        self.interrupted = False
        self._holding = False
        self._deferred = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        if self._holding:
            self._deferred = True
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def release(self) -> None:
        """End the hold; raise the Ctrl-C it deferred, if any."""
        self._holding = False
        if self._deferred:
            self._deferred = False
            raise KeyboardInterrupt("interrupted while a trial was being claimed")

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            if self._holding:  # the trial never started (nothing to claim) or failed before naming its worker
                self.release()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Be this process's SIGINT handler for the block (where signals can be handled: the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _spawned_worker(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int) -> None:
    from bench.plugins import load_plugins

    gate = InterruptGate()
    signal.signal(signal.SIGINT, gate)
    try:
        load_plugins(cfg.template.plugins)  # a spawned process starts with the built-in registries only
        # Two 2-thread training processes on 2 cores run 5-6x slower each: one thread per worker.
        worker_loop(cfg, tracking_uri, parent_run_id, worker, threads=1, gate=gate)
    except KeyboardInterrupt:
        # Its trial is FAIL and its runs KILLED by now; the main process prints the one line the user reads.
        raise SystemExit(130) from None


def _run_workers(cfg: SweepConfig, tracking_uri: str, parent: str, study: Any, bar: SweepProgress | None) -> None:
    if cfg.workers == 1:
        gate = InterruptGate()
        with gate.installed():
            worker_loop(cfg, tracking_uri, parent, bar=bar, gate=gate)
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
        _stop_workers(procs, cfg, study, tracking_uri)
        raise


def _stop_workers(procs: list[Any], cfg: SweepConfig, study: Any, tracking_uri: str,
                  grace: float = STOP_GRACE_SECONDS) -> None:
    """After Ctrl-C in the main process: interrupt every worker and let it end its trial and runs itself; one that
    has not ended within ``grace`` seconds is terminated, then killed. What they left RUNNING is then ended here
    (``end_interrupted``)."""
    from bench.sweep.objective import worker_id

    host = worker_id().rsplit(":", 1)[0]
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)  # a second one is ignored (``InterruptGate``)
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()
    end_interrupted(cfg, study, tracking_uri, {f"{host}:{p.pid}" for p in procs})


def end_interrupted(cfg: SweepConfig, study: Any, tracking_uri: str, workers: set[str]) -> None:
    """End what interrupted ``workers`` (``host:pid``, the trials' ``worker`` attribute) left RUNNING, once they
    have stopped: their trials FAIL, and every MLflow run of those trials KILLED, those listed on the trial and
    those a Ctrl-C caught between MLflow creating the run and the trial recording its id (found by their
    ``study`` and ``trial`` tags). Trials of other workers and machines are never touched."""
    import optuna

    from bench.studies import CloseKilledRuns
    from bench.tracking import Tracker

    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    ours = [t for t in study.get_trials(deepcopy=False, states=(running, failed)) if t.user_attrs.get("worker") in workers]
    for trial in ours:
        if trial.state == running:
            study.tell(trial.number, state=failed)
        CloseKilledRuns(tracking_uri)(study, trial)
    if not ours:
        return
    tracker = Tracker(tracking_uri)
    experiment = tracker.client.get_experiment_by_name(f"{cfg.template.dataset}/{cfg.template.model}")
    if experiment is None:
        return
    numbers = {str(t.number) for t in ours}
    for run in tracker.client.search_runs([experiment.experiment_id], f"tags.study = '{cfg.study_name()}' and "
                                                                      "attributes.status = 'RUNNING'"):
        if run.data.tags.get("trial") in numbers:
            tracker.finish(run.info.run_id, "KILLED")


def _wait_for_running(cfg: SweepConfig, study: Any, timeout: float) -> None:
    """Let trials of other (or dead) workers finish or go stale, so the study can be completed."""
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        if _state_counts(study).get("RUNNING", 0) == 0:
            return
        time.sleep(2)
