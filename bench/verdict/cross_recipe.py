"""The recipe check: the winner must still beat the runner-up when the two swap learning rates."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.verdict.values import _isna


def _lookup(runs: "pandas.DataFrame", experiment: str, ratio: float, variant: str, seed: Any,
            lr: float) -> float | None:
    """Test accuracy of the method-arm run at exactly this lr (best validation if it was run twice)."""
    if _isna(lr):
        return None
    hit = runs[(runs["kind"] == "compressed") & (runs["experiment"] == experiment) & (runs["variant"] == variant)
               & (runs["arm"].fillna("method") == "method") & np.isclose(runs["requested_ratio"], ratio)
               & (runs["seed"] == seed) & np.isclose(runs["lr"], lr) & runs["acc_top1"].notna()]
    if hit.empty:
        return None
    return float(hit.sort_values("val_acc_top1", ascending=False, kind="mergesort")["acc_top1"].iloc[0])


def cross_recipe_check(runs: "pandas.DataFrame", chosen: "pandas.DataFrame", experiment: str,
                       ratio: float) -> dict[str, Any]:
    """Does the winner still beat the runner-up when they swap learning rates?

    At (experiment, ratio), the winner and runner-up are the two method-arm compressed variants with the best
    mean chosen test accuracy (ties by name). Their recipe is the lr each chose per seed; for each seed, the
    winner's run at the runner-up's lr and the runner-up's run at the winner's lr are looked up in ``runs``
    (the unselected frame). Swapped means are over the seeds where both swapped runs exist; ``order_holds`` is
    winner swapped mean > runner-up swapped mean there, or None if no seed has both. ``missing`` lists seeds
    where a swapped run (or one side's chosen lr) is absent. Raises ValueError with fewer than two variants.
    """
    comp = chosen[(chosen["kind"] == "compressed") & (chosen["arm"] == "method") & chosen["acc_top1"].notna()
                  & (chosen["experiment"] == experiment) & np.isclose(chosen["requested_ratio"], ratio)]
    means = comp.groupby("variant")["acc_top1"].mean().reset_index()
    means = means.sort_values(["acc_top1", "variant"], ascending=[False, True], kind="mergesort")
    if len(means) < 2:
        raise ValueError(f"{experiment} at {ratio}x: fewer than two method variants to compare")
    winner, runner_up = means["variant"].iloc[0], means["variant"].iloc[1]
    recipe = {v: comp[comp["variant"] == v].set_index("seed")["lr"].to_dict() for v in (winner, runner_up)}
    seeds = sorted(set(recipe[winner]) | set(recipe[runner_up]))
    swapped: dict[str, dict[Any, float]] = {winner: {}, runner_up: {}}
    missing = []
    for seed in seeds:
        w = _lookup(runs, experiment, ratio, winner, seed, recipe[runner_up].get(seed, math.nan))
        r = _lookup(runs, experiment, ratio, runner_up, seed, recipe[winner].get(seed, math.nan))
        for variant, acc in ((winner, w), (runner_up, r)):
            if acc is not None:
                swapped[variant][seed] = acc
        if w is None or r is None:
            missing.append(seed)
    both = [s for s in seeds if s not in missing]
    w_mean = float(np.mean([swapped[winner][s] for s in both])) if both else math.nan
    r_mean = float(np.mean([swapped[runner_up][s] for s in both])) if both else math.nan
    return {
        "experiment": experiment, "ratio": ratio, "winner": winner, "runner_up": runner_up,
        "winner_mean": float(means["acc_top1"].iloc[0]), "runner_up_mean": float(means["acc_top1"].iloc[1]),
        "winner_lr": recipe[winner], "runner_up_lr": recipe[runner_up],
        "winner_swapped": swapped[winner], "runner_up_swapped": swapped[runner_up],
        "winner_swapped_mean": w_mean, "runner_up_swapped_mean": r_mean,
        "order_holds": bool(w_mean > r_mean) if both else None, "missing": missing,
    }
