"""MLflow tracking through an explicit client (no global active run, so sweeps and workers can nest runs).

Schema (DESIGN.md "Tracking schema"): one experiment per ``dataset/model``; tags method, dataset, model,
seed, kind (baseline | control | compressed | sweep), study, and the environment of ``bench.environment``.
A run that raises ends FAILED, one interrupted ends KILLED: never left RUNNING.
"""
from __future__ import annotations

import json
import math
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.config import results_dir
from bench.environment import environment


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite file under results/ (MLflow would otherwise write ./mlflow.db)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    path = results_dir() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI."""


class Tracker:
    """Thin wrapper over ``MlflowClient`` with the suite's schema and failure handling."""

    def __init__(self, uri: str | None = None) -> None:
        import logging

        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter per process

        self.uri = uri or default_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)

    def experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self._artifact_location(name))
        except Exception:  # another worker created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def _artifact_location(self, experiment: str) -> str | None:
        """Next to a local SQLite store under results/artifacts (MLflow would use ./mlruns in the cwd);
        a tracking server chooses its own."""
        if not self.uri.startswith("sqlite:"):
            return None
        db = Path(self.uri.split(":///", 1)[1]) if ":///" in self.uri else results_dir() / "mlflow.db"
        return (db.parent / "artifacts" / experiment.replace("/", "__")).resolve().as_uri()

    def start(self, experiment: str, run_name: str, tags: dict[str, Any], parent_run_id: str | None = None) -> str:
        all_tags = {**{f"env.{k}": v for k, v in environment().items()}, **{k: str(v) for k, v in tags.items()}}
        all_tags["mlflow.source.git.commit"] = environment()["git.commit"]
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def log_json(self, run_id: str, obj: Any, path: str) -> None:
        self.client.log_text(run_id, json.dumps(obj, indent=2, default=str), path)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_file(self, run_id: str, local_path: str, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(run_id, local_path, artifact_dir)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def find_run(self, experiment: str, tag: str, value: str) -> Any | None:
        """The newest FINISHED run of ``experiment`` whose ``tag`` equals ``value``, or None."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = self.client.search_runs([exp.experiment_id], f"tags.`{tag}` = '{value}' and attributes.status = 'FINISHED'",
                                       max_results=1, order_by=["attributes.start_time DESC"])
        return runs[0] if runs else None

    def runs_frame(self, experiments: list[str] | None = None, filter_string: str = "") -> "pandas.DataFrame":
        """Runs as a DataFrame with ``mlflow.search_runs``' columns (run_id, status, metrics.*, params.*, tags.*).

        Built from this tracker's client rather than ``mlflow.search_runs``, which reads the
        process-wide tracking URI: setting and restoring that URI also rewrites $MLFLOW_TRACKING_URI,
        which would silently point later trackers at ./mlflow.db.
        """
        import pandas as pd

        if experiments is None:
            ids = [e.experiment_id for e in self.client.search_experiments()]
        else:
            ids = [e.experiment_id for e in map(self.client.get_experiment_by_name, experiments) if e is not None]
        rows, token = [], None
        while ids:
            page = self.client.search_runs(ids, filter_string, max_results=1000, page_token=token)
            for run in page:
                row = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "status": run.info.status,
                       "artifact_uri": run.info.artifact_uri, "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
                       "end_time": pd.to_datetime(run.info.end_time, unit="ms") if run.info.end_time else pd.NaT}
                row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
                row.update({f"params.{k}": v for k, v in run.data.params.items()})
                row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
                rows.append(row)
            token = page.token
            if not token:
                break
        return pd.DataFrame(rows)

    @contextmanager
    def run(self, experiment: str, run_name: str, tags: dict[str, Any],
            parent_run_id: str | None = None) -> Iterator[str]:
        """Start a run; end it FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM."""
        run_id = self.start(experiment, run_name, tags, parent_run_id)
        with _sigterm_as_interrupt():
            try:
                yield run_id
            except KeyboardInterrupt:
                self.finish(run_id, "KILLED")
                raise
            except BaseException as e:
                self.set_tags(run_id, {"error": f"{type(e).__name__}: {e}"[:5000]})
                self.finish(run_id, "FAILED")
                raise
            else:
                self.finish(run_id, "FINISHED")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside a run so the run is marked KILLED (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
