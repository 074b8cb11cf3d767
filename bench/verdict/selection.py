"""Selection on validation only: per (experiment, variant, arm, requested ratio, seed), the learning-rate
candidate with the best validation accuracy; test accuracy is never looked at, and a run known to be wrong
(tagged ``invalid``) never chosen."""
from __future__ import annotations

import numpy as np

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
    tuned = runs[runs["kind"].isin(TUNED_KINDS) & runs["val_acc_top1"].notna()]
    order = ["val_acc_top1", "lr"] + (["run_id"] if "run_id" in tuned else [])
    ranked = tuned.sort_values(order, ascending=[False, True, True][:len(order)], kind="mergesort",
                               na_position="last")
    groups = ranked.groupby(SELECT_KEYS, sort=True, dropna=False)
    chosen = groups.head(1).copy()
    lrs = groups["lr"].agg(n_candidates="nunique", lr_min="min", lr_max="max").reset_index()
    chosen = chosen.merge(lrs, on=SELECT_KEYS, how="left", validate="one_to_one")
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
    return out


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
