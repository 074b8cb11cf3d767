"""Per-round step metrics of tracked runs, read from the store the runs came from, and drawing one figure per
experiment of that store."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence


def tracker_for(runs: "pandas.DataFrame") -> Any:
    """The store ``runs`` came from: ``runs.attrs['tracking_uri']`` when set, else the default store."""
    from bench.tracking import Tracker

    return Tracker(runs.attrs.get("tracking_uri"))


def step_history(tracker: Any, run_id: str, keys: Sequence[str]) -> dict[int, dict[str, float]]:
    """{step: {key: value}} of a run's step metrics ``keys``; a key a step did not log is absent there."""
    history: dict[int, dict[str, float]] = {}
    for key in keys:
        for m in tracker.client.get_metric_history(run_id, key):
            history.setdefault(int(m.step), {})[key] = float(m.value)
    return history


def draw_each_experiment(runs: "pandas.DataFrame", draw_experiment: Callable[..., list[Path]],
                         out_dir: Path) -> list[Path]:
    """``draw_experiment(runs of one dataset/model, experiment, out_dir, tracker)`` for every dataset/model
    of the store; [] for an empty store."""
    if runs.empty or "method" not in runs:
        return []
    tracker = tracker_for(runs)
    written: list[Path] = []
    for experiment, group in runs.groupby("experiment"):
        written += draw_experiment(group, experiment, out_dir, tracker)
    return written
