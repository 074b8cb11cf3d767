"""Grid mode: which (ratio, lr) points are still missing, and claiming one so that each runs exactly once across
workers and machines.
"""
from __future__ import annotations

import contextlib
from typing import Any

from bench.studies import study_lock
from bench.sweep.config import SweepConfig
from bench.sweep.objective import Objective
from bench.sweep.progress import _state_counts


def _claim_and_run(cfg: SweepConfig, study: Any, storage: Any, objective: Objective, callbacks: list) -> bool:
    """Run one grid point that no other worker runs, or return False when none is left.

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
            ratio, lr = missing[0]
            study.enqueue_trial({"ratio": ratio, "lr": lr})
        objective.on_claimed = claim.close
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        finally:
            objective.on_claimed = None
    return True


def _missing_grid_points(cfg: SweepConfig, study: Any) -> list[tuple[float, float]]:
    """Grid (ratio, lr) pairs with no COMPLETE, PRUNED (unreachable), WAITING or RUNNING trial and fewer than
    max_retries+1 failures."""
    busy, failures = set(), {}
    for t in study.get_trials(deepcopy=False):
        fixed = t.system_attrs.get("fixed_params", {})
        ratio, lr = t.params.get("ratio", fixed.get("ratio")), t.params.get("lr", fixed.get("lr"))
        if ratio is None or lr is None:
            continue
        point = (float(ratio), float(lr))
        if t.state.name in ("COMPLETE", "PRUNED", "WAITING", "RUNNING"):
            busy.add(point)
        elif t.state.name == "FAIL":
            failures[point] = failures.get(point, 0) + 1
    return [p for p in cfg.points if p not in busy and failures.get(p, 0) <= cfg.max_retries]
