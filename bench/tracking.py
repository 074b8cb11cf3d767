"""MLflow tracking through an explicit client (no global active run, so sweeps and workers can nest runs).

Schema (docs/design.md "Tracking schema"): one experiment per ``dataset/model``; tags method, dataset, model,
seed, kind (baseline | control | compressed | sweep | unreachable | reference), study, and the environment of ``bench.environment``.
A run that raises ends FAILED, one interrupted ends KILLED: never left RUNNING.

What MLflow's own UI reads is filled in too (``TrackingOptions``): the dataset as a run input (name, split
sizes, SHA-256 of the splits as loaded: the runs table's Dataset column), the deployable model as an MLflow
*logged model* whose metrics are linked to it (the Models tab; ``mlflow.pytorch.load_model("models:/<id>")``
brings it back), and system metrics (CPU, memory, GPU where present) sampled every second while the run is open.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TrackingOptions:
    """What is recorded beside params, metrics and tags. Models are the bulk of a store (LeNet-300-100: about
    1 MB per run): ``log_models=False`` (``--no-log-models``, ``LOG_MODELS=0``) keeps huge sweeps small."""

    log_models: bool = True
    system_metrics: bool = True
    system_metrics_interval: float = 1.0  # seconds; runs here last seconds to minutes


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset as an MLflow run input: its name, a digest of the splits as loaded, and their sizes."""

    name: str
    sha256: str
    sizes: dict[str, int]
    options: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def digest(self) -> str:
        # MLflow keeps dataset digests in a 36-character column; the full SHA-256 is in the profile.
        return self.sha256[:16]

    @classmethod
    def of(cls, data: Any, options: dict[str, Any] | None = None) -> "DatasetRecord":
        return cls(data.name, data.sha256, data.sizes(), dict(options or {}), tuple(data.input_shape),
                   int(data.num_classes))


class Tracker:
    """Thin wrapper over ``MlflowClient`` with the suite's schema and failure handling."""

    def __init__(self, uri: str | None = None, options: TrackingOptions | None = None) -> None:
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter per process
        # A trial that reuses a tracked seed copies its report from MLflow: no download bar per file in the log.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

        self.uri = uri or default_tracking_uri()
        self.options = options or TrackingOptions()
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

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0, model_id: str | None = None,
                    dataset: DatasetRecord | None = None) -> None:
        """Metrics of a run; with ``model_id`` (and ``dataset``) they are also the logged model's metrics."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        link = {"model_id": model_id} if model_id else {}
        if model_id and dataset is not None:
            link.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        items = [Metric(k, float(v), now, step, **link) for k, v in metrics.items()
                 if v is not None and not (isinstance(v, float) and math.isnan(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def log_dataset(self, run_id: str, dataset: DatasetRecord) -> None:
        """The dataset as the run's input (the runs table's Dataset column and filter)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source = json.dumps({"dataset": dataset.name, "options": dataset.options}, sort_keys=True, default=str)
        profile = json.dumps({"splits": dataset.sizes, "sha256": dataset.sha256, "input_shape": dataset.input_shape,
                              "num_classes": dataset.num_classes})
        entity = Dataset(dataset.name, dataset.digest, "compression-bench", source, profile=profile)
        # One input for the three splits: the model trains on train, is selected on val, is reported on test.
        self.client.log_inputs(run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "train/val/test")])])

    def log_model(self, run_id: str, experiment: str, model: Any, name: str, tags: dict[str, Any] | None = None) -> str | None:
        """The deployable form of ``model`` (``bench.export.deployable``: masks baked in, CSR where it pays) as
        an MLflow logged model produced by ``run_id``; its id, or None when models are not logged (then nothing
        is baked). Saved by pickle (the suite's classes must be importable to load it: CSR layers and
        generated weights are not expressible in the ``pt2`` graph format)."""
        if not self.options.log_models:
            return None
        import mlflow.pytorch
        import torch
        from mlflow.entities import LoggedModelOutput

        from bench.export import deployable

        name = re.sub(r"[/:.%\"']", "_", name)  # MLflow refuses these in model names ("lr0.001" -> "lr0_001")
        logged = self.client.create_logged_model(self.experiment_id(experiment), name=name, source_run_id=run_id,
                                                 model_type="pytorch", tags={k: str(v) for k, v in (tags or {}).items()})
        quiet = logging.getLogger("mlflow.pytorch")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the pickle-format caution, once per model
        try:
            with tempfile.TemporaryDirectory() as tmp:
                # Requirements given, not inferred: inference loads the model in a subprocess (seconds per run).
                mlflow.pytorch.save_model(deployable(model), f"{tmp}/model", serialization_format="pickle",
                                          pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
                self.client.log_model_artifacts(logged.model_id, f"{tmp}/model")
        except BaseException:
            self.client.finalize_logged_model(logged.model_id, "FAILED")
            raise
        finally:
            quiet.setLevel(level)
        self.client.finalize_logged_model(logged.model_id, "READY")
        self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
        # The runs table's Models column asks the server for an experiment's first 50 logged models only, so in a
        # sweep most runs show none; a tag is on the run itself, whatever the number of runs (a column of the
        # comparison view, ``bench.ui_view``), and is what ``mlflow.pytorch.load_model`` takes.
        self.client.set_tag(run_id, "logged_model", f"models:/{logged.model_id}")
        return logged.model_id

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
        monitor = self._system_metrics(run_id)
        status = "FINISHED"
        with _sigterm_as_interrupt():
            try:
                yield run_id
            except KeyboardInterrupt:
                status = "KILLED"
                raise
            except BaseException as e:
                status = "FAILED"
                self.set_tags(run_id, failure_tags(e))
                raise
            finally:
                _stop(monitor)  # while the run is still RUNNING: the monitor's last batch is flushed
                self.finish(run_id, status)

    def _system_metrics(self, run_id: str) -> Any | None:
        """MLflow's system-metrics monitor on this run (``system/*`` metrics), or None when switched off."""
        if not self.options.system_metrics:
            return None
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=self.options.system_metrics_interval,
                                       samples_before_logging=1, tracking_uri=self.uri)
        monitor.start()
        return monitor


def failure_tags(error: BaseException) -> dict[str, str]:
    """The tags of a run that failed: its ``error``, and ``invalid=<reason>`` when what it measured is known to
    be wrong (``bench.validity``), so figures and the verdict skip it and say why."""
    from bench.validity import INVALID_TAG, InvalidResultError

    tags = {"error": f"{type(error).__name__}: {error}"[:5000]}
    if isinstance(error, InvalidResultError):
        tags[INVALID_TAG] = error.reason
    return tags


def _stop(monitor: Any | None) -> None:
    """Stop a system-metrics monitor while its run is still RUNNING, then log one last sample: the monitor
    publishes only at the end of each interval, so a run shorter than one would otherwise have none."""
    if monitor is None:
        return
    monitor.finish()
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as e:  # noqa: BLE001 - system metrics never fail a run
        logging.getLogger(__name__).warning("last system-metrics sample not logged: %s", e)


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
