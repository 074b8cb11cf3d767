"""A study's measured points and their Pareto front (validation accuracy, achieved ratio), for what a sweep prints
and logs. Seed-0 ``tune`` trials are left out: their value is one seed's, of a configuration that may not be the
one chosen."""
from __future__ import annotations

from typing import Any


def measured_trials(study: Any) -> list[Any]:
    """The COMPLETE trials whose values are a point's result: every trial, except seed-0 ``tune`` trials (their
    value is one seed's, of a configuration that may not be chosen; the ratio's ``confirm`` trial has the result)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and t.user_attrs.get("stage") != "tune"]


def pareto_front(study: Any) -> list[Any]:
    """The measured trials no other measured trial beats on both objectives (validation accuracy, achieved
    ratio): Optuna's ``best_trials`` would also count the seed-0 ``tune`` trials."""
    trials = measured_trials(study)

    def beaten(t: Any) -> bool:
        return any(o.values[0] >= t.values[0] and o.values[1] >= t.values[1] and o.values != t.values for o in trials)

    return [t for t in trials if not beaten(t)]
