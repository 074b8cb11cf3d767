"""Selection on validation only: per (experiment, variant, arm, requested ratio, seed), the learning-rate
candidate with the best validation accuracy; test accuracy is never looked at, and a run known to be wrong
(tagged ``invalid``) never chosen."""
from __future__ import annotations

import numpy as np

from bench.protocol import CHOICE_ORDER
from bench.verdict.values import _isna

TUNED_KINDS = ("compressed", "control")
SELECT_KEYS = ["experiment", "variant", "arm", "requested_ratio", "seed"]


def select_on_validation(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """One row per (experiment, variant, arm, requested_ratio, seed): the lr candidate with the best validation
    accuracy (an exact tie goes to the smaller lr, then the smaller run_id, so the choice never depends on row
    order). Test accuracy is never looked at.

    Adds ``n_candidates`` (distinct lr values the group was trained with) and ``lr_edge`` ("low"/"high" when the
    chosen lr is the smallest/largest candidate, "" otherwise or with a single candidate).

    Candidates without a validation accuracy cannot be chosen and are not counted. "unreachable" rows are passed
    through (one per key, ``n_candidates`` NaN) so that ``verdict_table`` can report them; "baseline" rows are
    dropped (the untuned dense model takes no part in the verdict). Runs known to be wrong (an ``invalid``
    value: ``bench.validity``) are never chosen: ``attrs["skipped_invalid"]`` counts them by reason, with those
    ``tidy_runs`` left out already for the experiments in ``runs``.
    """
    import pandas as pd

    skipped = _skipped(runs)
    if "invalid" in runs:
        runs = runs[runs["invalid"].isna() | (runs["invalid"] == "")]
    runs = runs.copy()
    runs["arm"] = runs["arm"].fillna("method")  # a run without an arm tag is the method itself
    for column, default in (("settings", "defaults"), ("settings_rank", 0), ("tuning", "every-seed")):
        runs[column] = runs[column].fillna(default) if column in runs else default
    tuned = runs[runs["kind"].isin(TUNED_KINDS) & runs["val_acc_top1"].notna()]
    on_seed0 = tuned["tuning"] == "seed0"
    parts = [_per_seed(tuned[~on_seed0]), _on_seed0(tuned[on_seed0])]
    chosen = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    chosen["n_candidates"] = chosen["n_candidates"].clip(lower=1)  # an unrecorded lr is still one candidate
    chosen["lr_edge"] = [_edge(lr, lo, hi, n) for lr, lo, hi, n in
                         zip(chosen["lr"], chosen["lr_min"], chosen["lr_max"], chosen["n_candidates"])]
    chosen = chosen.drop(columns=["lr_min", "lr_max"])

    unreachable = runs[runs["kind"] == "unreachable"].drop_duplicates(SELECT_KEYS).copy()
    unreachable["n_candidates"] = np.nan
    unreachable["lr_edge"] = ""
    out = pd.concat([chosen, unreachable], ignore_index=True) if len(unreachable) else chosen
    out = out.sort_values(SELECT_KEYS, kind="mergesort").reset_index(drop=True)
    out.attrs["skipped_invalid"] = skipped
    out.attrs["unpaired_sources"] = runs.attrs.get("unpaired_sources", False)  # ``bench.reference_runs``
    return out


# An exact tie in validation accuracy goes to the smaller lr, then the earlier settings candidate (the defaults
# first), then the smaller run id: the choice never depends on row order. ``bench.sweep.grid`` uses the same rule.
# ``CHOICE_ORDER``, then the run id: a rerun of the same configuration never changes which run is reported
_ORDER = [column for column, _ in CHOICE_ORDER] + ["run_id"]
_ASCENDING = [ascending for _, ascending in CHOICE_ORDER] + [True]
_CELL = ["experiment", "variant", "requested_ratio"]


def _ranked(frame: "pandas.DataFrame") -> "pandas.DataFrame":
    order = [c for c in _ORDER if c in frame]
    return frame.sort_values(order, ascending=[a for c, a in zip(_ORDER, _ASCENDING) if c in frame],
                             kind="mergesort", na_position="last")


def _per_seed(tuned: "pandas.DataFrame") -> "pandas.DataFrame":
    """``every-seed`` tuning: each seed keeps its own best configuration."""
    groups = _ranked(tuned).groupby(SELECT_KEYS, sort=True, dropna=False)
    chosen = groups.head(1).copy()
    lrs = groups["lr"].agg(n_candidates="nunique", lr_min="min", lr_max="max").reset_index()
    return chosen.merge(lrs, on=SELECT_KEYS, how="left", validate="one_to_one")


def _on_seed0(tuned: "pandas.DataFrame") -> "pandas.DataFrame":
    """``seed0`` tuning: seed 0 chooses, every seed reports the choice. The method arm's configuration (lr and
    settings) is its best on seed 0; each control arm, derived from the method at the chosen settings, has its lr
    chosen on seed 0 among those runs; the dense + fine-tune control its lr on seed 0. Every seed's row is then the
    run at that choice (a seed without it is missing, never replaced): no seed after 0 takes part in a choice."""
    import pandas as pd

    seed0 = _ranked(tuned[tuned["seed"] == 0])
    method0 = seed0[seed0["arm"] == "method"]
    picks = method0.groupby(_CELL, sort=True, dropna=False).head(1)[_CELL + ["arm", "lr", "settings"]]
    controls0 = seed0[seed0["arm"] != "method"].merge(picks[_CELL + ["settings"]], on=_CELL + ["settings"])
    pools = pd.concat([method0, controls0], ignore_index=True)
    pools["configuration"] = pools["lr"].astype(str) + " | " + pools["settings"].astype(str)
    picks = pd.concat([picks, controls0.groupby(_CELL + ["arm"], sort=True, dropna=False).head(1)[list(picks.columns)]],
                      ignore_index=True)
    stats = pools.groupby(_CELL + ["arm"], sort=True, dropna=False).agg(
        n_candidates=("lr", "nunique"), lr_min=("lr", "min"), lr_max=("lr", "max"),
        n_configurations=("configuration", "nunique")).reset_index()
    chosen = tuned.merge(picks, on=_CELL + ["arm", "lr", "settings"])
    chosen = chosen.sort_values("run_id", kind="mergesort").groupby(SELECT_KEYS, sort=True, dropna=False).head(1)
    chosen = chosen.merge(stats, on=_CELL + ["arm"], how="left")
    # Only seed 0 was tuned; the other seeds ran the one configuration it chose (the edge rule counts seed 0).
    chosen.loc[chosen["seed"] != 0, ["n_candidates", "n_configurations"]] = 1
    return chosen


def _skipped(runs: "pandas.DataFrame") -> dict[str, int]:
    """{reason: runs} known to be wrong among ``runs`` and among what ``tidy_runs`` left out of its experiments."""
    counts: dict[str, int] = {}
    experiments = set(runs["experiment"].dropna()) if "experiment" in runs else set()
    for experiment, by_reason in runs.attrs.get("skipped_invalid", {}).items():
        if experiment in experiments:
            for reason, n in by_reason.items():
                counts[reason] = counts.get(reason, 0) + n
    if "invalid" in runs:
        for reason, n in runs.loc[runs["invalid"].notna() & (runs["invalid"] != ""), "invalid"].value_counts().items():
            counts[str(reason)] = counts.get(str(reason), 0) + int(n)
    return counts


def skipped_note(chosen: "pandas.DataFrame") -> str:
    """The sentence a verdict prints about the runs it skipped as known wrong ("" when none)."""
    from bench.validity import skipped_text

    return skipped_text(chosen.attrs.get("skipped_invalid", {}))


def _edge(lr: float, lo: float, hi: float, n: int) -> str:
    if n < 2 or _isna(lr):
        return ""
    if lr == lo:
        return "low"
    return "high" if lr == hi else ""
