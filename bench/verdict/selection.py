"""Selection on validation only: per (experiment, variant, arm, requested ratio, seed), the learning-rate
candidate with the best validation accuracy; test accuracy is never looked at."""
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
    dropped (the untuned dense model takes no part in the verdict).
    """
    import pandas as pd

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
    return out.sort_values(SELECT_KEYS, kind="mergesort").reset_index(drop=True)


def _edge(lr: float, lo: float, hi: float, n: int) -> str:
    if n < 2 or _isna(lr):
        return ""
    if lr == lo:
        return "low"
    return "high" if lr == hi else ""
