"""The verdict's choice, written back onto the runs: every tuned run of a comparison gets the tag ``chosen`` =
``yes`` (the verdict uses it: selected on validation, ``bench.verdict.selection``) or ``no`` (a candidate it did
not keep). The MLflow UI's comparison view (``bench.ui_view``) filters on it, so its table and charts show the
verdict's points, one group of every seed per (method, arm, ratio), rather than every candidate configuration
tuned on seed 0. The selection is recomputed from the runs each time, so widening the grid moves the tags with
the choice; the verdict itself never reads them.
"""
from __future__ import annotations

from typing import Any


def mark_chosen(tracker: Any, experiment: str, protocol_hash: str) -> int:
    """Tag the tuned runs of ``experiment`` ("dataset/model") under the protocol ``protocol_hash``; returns how
    many tags changed (only a run whose tag differs is written)."""
    from bench.figures import tidy_runs
    from bench.verdict import TUNED_KINDS, select_on_validation

    runs = tidy_runs(tracker, [experiment])
    if runs.empty:
        return 0
    runs = runs[(runs["protocol_hash"] == protocol_hash) & runs["kind"].isin(TUNED_KINDS)]
    if runs.empty:
        return 0
    kept = set(select_on_validation(runs)["run_id"].dropna())
    changed = 0
    for run_id, current in zip(runs["run_id"], runs["chosen"]):
        wanted = "yes" if run_id in kept else "no"
        if current != wanted:
            tracker.client.set_tag(run_id, "chosen", wanted)
            changed += 1
    return changed
