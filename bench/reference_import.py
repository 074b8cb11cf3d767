"""Reference runs in the local MLflow store: ``compare --against`` logs the reference's runs of the arms it did not
train (``bench.reference_runs.reference_arms``) into the comparison's experiment, so the MLflow UI shows the new
method beside the published ones, in the comparison view and its chart.

They are never mistaken for local runs: their kind is ``reference`` (``bench.figures.tidy_runs`` leaves that kind
out, so no local verdict, chosen tag or export ever counts them), their names and ``group`` tags start with
"reference ·", and they carry ``reference_kind`` (the kind they had where they ran), ``reference_run_id`` (the
run they copy) and ``reference_file``. Importing the same reference again adds nothing.
"""
from __future__ import annotations

import math
import time
from typing import Any

from bench.tracking import Tracker

KIND = "reference"
# Columns of a tidy frame that say what a run is, not what it measured: tags here, never metrics.
_IDENTITY = frozenset({"run_id", "experiment", "dataset", "model", "kind", "method", "seed", "study", "start_time",
                       "protocol", "protocol_hash", "arm", "lr", "settings", "settings_rank", "tuning", "chosen",
                       "error", "baseline_key", "variant", "method_params", "source", "requested_ratio"})


def imported_ids(tracker: Tracker, experiment: str) -> set[str]:
    """The original run ids of the reference runs already in ``experiment``."""
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is None:
        return set()
    runs = tracker.runs_frame([experiment], f"tags.kind = '{KIND}'")
    return set(runs["tags.reference_run_id"].dropna()) if "tags.reference_run_id" in runs else set()


def import_reference(tracker: Tracker, rows: "pandas.DataFrame", source: str) -> int:
    """Log each of ``rows`` (tidy runs of one experiment, a reference's) as a FINISHED run of kind ``reference``
    with its identity as tags, its method parameters as params and its measurements as metrics, and ``chosen``
    (yes for the runs the verdict's selection keeps among ``rows``: whole cells, every seed and candidate);
    skips those already imported. Returns how many were logged."""
    from mlflow.entities import Metric, Param, RunTag

    from bench.verdict import TUNED_KINDS, select_on_validation

    if rows.empty:
        return 0
    experiment = rows["experiment"].iloc[0]
    done = imported_ids(tracker, experiment)
    exp_id = tracker.experiment_id(experiment)
    # the comparison view shows the runs the verdict keeps (tag ``chosen``, ``bench.chosen_tags``): recomputed by
    # the verdict's own selection, per cell, so a reference exported before the tag existed shows the same
    tuned = rows[rows["kind"].isin(TUNED_KINDS)]
    kept = set(select_on_validation(tuned)["run_id"].dropna()) if not tuned.empty else set()
    measured = [c for c in rows.columns if c not in _IDENTITY and not c.startswith(("system/", "finetune.",
                                                                                    "baseline.", "dataset."))]
    logged = 0
    for record in rows.to_dict("records"):
        if str(record["run_id"]) in done:
            continue
        tags = {**_tags(record, source), "chosen": "yes" if record["run_id"] in kept else "no"}
        name = (f"reference · {tags['variant']}{_arm_text(tags['arm'])} · {tags['requested_ratio']}x · "
                f"seed {tags['seed']}")
        run = tracker.client.create_run(exp_id, run_name=name, tags=tags)
        now = int(time.time() * 1000)
        metrics = [Metric(c, float(record[c]), now, 0) for c in measured
                   if isinstance(record[c], (int, float)) and math.isfinite(float(record[c]))]
        params = [Param(f"method.{k}", str(v)[:6000]) for k, v in sorted((record.get("method_params") or {}).items())]
        for i in range(0, max(len(metrics), len(params)), 100):
            tracker.client.log_batch(run.info.run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                                     tags=[RunTag("imported_at", str(now))] if i == 0 else [])
        tracker.client.set_terminated(run.info.run_id, "FINISHED")
        logged += 1
    return logged


def _arm_text(arm: str) -> str:
    return "" if arm == "method" else f" [{arm}]"


def _tags(record: dict[str, Any], source: str) -> dict[str, str]:
    arm = str(record.get("arm") or "method")
    settings = record.get("settings")
    settings_text = f" | {settings}" if isinstance(settings, str) and settings != "defaults" else ""
    label = f"{record['protocol']}-{record['protocol_hash']}"
    group = (f"reference · {record['variant']}{_arm_text(arm)} | {record['requested_ratio']:g}x | lr {record['lr']:g}"
             f"{settings_text} | {label}")
    tags = {"kind": KIND, "reference_kind": record["kind"], "reference_run_id": record["run_id"],
            "reference_file": source, "group": group, "arm": arm, "requested_ratio": f"{record['requested_ratio']:g}",
            "lr": f"{record['lr']:g}", "seed": str(int(record["seed"]))}
    if isinstance(record.get("settings_rank"), (int, float)) and math.isfinite(record["settings_rank"]):
        tags["settings_rank"] = str(int(record["settings_rank"]))
    for key in ("dataset", "model", "method", "variant", "protocol", "protocol_hash", "settings", "tuning",
                "baseline_key"):
        value = record.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            tags[key] = str(value)
    return {k: str(v) for k, v in tags.items()}
