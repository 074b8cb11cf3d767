"""Grid mode: which points are still missing, which configuration each ratio chose on seed 0, and claiming a point
so that each runs exactly once across workers and machines.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from bench.protocol import choice_key
from bench.studies import study_lock
from bench.sweep.plan import GridPoint, SweepConfig
from bench.sweep.objective import Objective
from bench.sweep.progress import _state_counts

# Trial states that settle a point: done (COMPLETE), out of reach (PRUNED), or someone is on it.
_TAKEN = ("COMPLETE", "PRUNED", "WAITING", "RUNNING")


def _claim_and_run(cfg: SweepConfig, study: Any, storage: Any, objective: Objective, callbacks: list) -> bool:
    """Run one grid point that no other worker runs, or return False when none is left to claim.

    The claim is a critical section under the study's claim lock: enqueue the next missing point (or take a
    WAITING one a dead worker left), then ``study.optimize`` pops it; the objective releases the lock as its
    first act, once the trial is RUNNING. Workers therefore never pop the same trial (on SQLite the storage's
    own WAITING -> RUNNING check is not atomic across processes) and never find the queue empty inside
    ``optimize`` (where Optuna would create a fresh trial and the sampler fill it with a duplicate point).
    Only public Optuna calls are involved: ``enqueue_trial``, ``optimize``, trial states.
    """
    with contextlib.ExitStack() as claim:
        claim.enter_context(study_lock(storage, f"{cfg.study_name()}#claim"))
        if _state_counts(study).get("WAITING", 0) == 0:
            missing = _missing_grid_points(cfg, study)
            if not missing:
                return False
            point = missing[0]
            params: dict[str, Any] = {"ratio": point.ratio, "lr": point.lr}
            if len(cfg.settings_candidates) > 1:
                params["settings"] = point.settings
            study.enqueue_trial(params, user_attrs={"stage": point.stage} if point.stage != "all" else None)
        objective.on_claimed = claim.close
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        finally:
            objective.on_claimed = None
    return True


def trial_point(trial: Any) -> GridPoint | None:
    """The grid point a trial runs (None for a trial that is not a grid point)."""
    fixed = trial.system_attrs.get("fixed_params", {})

    def value(name: str) -> Any:
        return trial.params.get(name, fixed.get(name))

    ratio, lr = value("ratio"), value("lr")
    if ratio is None or lr is None:
        return None
    return GridPoint(float(ratio), float(lr), int(value("settings") or 0), trial.user_attrs.get("stage", "all"))


def chosen_configuration(trials: list[Any]) -> GridPoint | None:
    """The configuration seed 0 chose among a ratio's COMPLETE tune trials: the best validation accuracy (the
    trial's first value), an exact tie going to the smaller lr, then the earlier settings candidate
    (``bench.protocol.CHOICE_ORDER``, which the verdict applies to the tracked runs); None when none completed."""
    done = [(t.values[0], trial_point(t)) for t in trials if t.state.name == "COMPLETE"]
    if not done:
        return None
    _, best = min(done, key=lambda vp: choice_key({"val_acc_top1": vp[0], "lr": vp[1].lr,
                                                    "settings_rank": vp[1].settings}))
    return dataclasses.replace(best, stage="confirm")


def _missing_grid_points(cfg: SweepConfig, study: Any) -> list[GridPoint]:
    """Grid points with no COMPLETE, PRUNED (unreachable), WAITING or RUNNING trial and at most ``max_retries``
    failures, in ``cfg.points`` order. A confirm point is missing only once every tune point of its ratio is
    settled (done, unreachable or given up) and one of them completed; it carries the configuration chosen."""
    return _grid_state(cfg, study)[0]


def _waiting_on_tuning(cfg: SweepConfig, study: Any) -> bool:
    """Whether some ratio's confirm point waits for tune trials still running (a worker should wait, not stop)."""
    return _grid_state(cfg, study)[1]


def _grid_state(cfg: SweepConfig, study: Any) -> tuple[list[GridPoint], bool]:
    taken, done, failures, by_ratio = set(), set(), {}, {}
    for t in study.get_trials(deepcopy=False):
        point = trial_point(t)
        if point is None:
            continue
        if t.state.name in _TAKEN:
            taken.add(point.key)
        if t.state.name in ("COMPLETE", "PRUNED"):
            done.add(point.key)
        elif t.state.name == "FAIL":
            failures[point.key] = failures.get(point.key, 0) + 1
        if point.stage == "tune":
            by_ratio.setdefault(point.ratio, []).append(t)

    def given_up(p: GridPoint) -> bool:
        return failures.get(p.key, 0) > cfg.max_retries

    missing, waiting = [], False
    for p in cfg.points:
        if p.key in taken or given_up(p):
            continue
        if p.stage != "confirm":
            missing.append(p)
            continue
        unsettled = [q for q in cfg.points if q.stage == "tune" and q.ratio == p.ratio
                     and q.key not in done and not given_up(q)]
        if unsettled:
            waiting = waiting or any(q.key in taken for q in unsettled)
            continue
        chosen = chosen_configuration(by_ratio.get(p.ratio, []))
        if chosen is not None:
            missing.append(chosen)
    return missing, waiting
