"""What one experiment leaves in MLflow: the runs' names and tags, the metrics every run measures, the
baseline's run and the dense + fine-tune control's run (each logged once per store), one run per arm with its
report and per-layer table, a FAILED run for a method that crashed, a run for a point out of reach, and the
finished runs of a configuration found again (``find_tracked``).

This module only opens runs, measures and logs; it never trains. An arm's run is a context the arm runner
(``bench.arm_runner``) trains inside, so the run's system metrics cover the training and a crash ends it FAILED;
the runner then hands the trained model back here to be measured and logged."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from torch import nn

import datasets
import methods
from bench.baseline import Baseline
from bench.budget import Ledger
from bench.config import ExperimentConfig
from bench.export import Forms, forms_of
from bench.metrics import latency_metrics, per_layer, size_metrics, split_accuracy
from bench.tracking import DatasetRecord, Tracker, failure_tags
from methods import CompressionError


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float]
    config: ExperimentConfig
    step_metrics: list[tuple[dict[str, float], int]] = field(default_factory=list)
    controls: list["RunResult"] = field(default_factory=list)  # the control arms derived from this run
    arm: str = "method"
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text, as logged to MLflow
    model_id: str | None = None  # the MLflow logged model (None: models not logged, or a reused run)


@dataclass
class Arm:
    """One tracked arm: its model before the final training, that training, and its budget."""

    name: str
    model: nn.Module
    train: Callable[[nn.Module], nn.Module]
    ledger: Ledger
    steps: list[tuple[dict[str, float], int]] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def experiment_name(config: ExperimentConfig) -> str:
    return f"{config.dataset}/{config.model}"


def measure(dense: nn.Module | Forms, model: nn.Module | Forms, data: datasets.Data,
            config: ExperimentConfig) -> dict[str, float]:
    """Every metric of docs/design.md for ``model`` against ``dense`` (modules, or their ``Forms`` so that each
    is baked once for all metrics); accuracy on test is reported, never chosen on."""
    plain = forms_of(model).model
    topk = (1, 5) if data.num_classes > 10 else (1,)
    test = split_accuracy(plain, data, "test", topk=topk)
    metrics: dict[str, float] = {"acc_top1": test[1], "val_acc_top1": split_accuracy(plain, data, "val")[1]}
    if 5 in test:
        metrics["acc_top5"] = test[5]
    metrics.update(size_metrics(dense, model, data.input_shape))
    metrics.update(latency_metrics(dense, model, data.input_shape, repeats=config.latency_repeats))
    return metrics


def _tags(config: ExperimentConfig, kind: str, method: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"method": method, "dataset": config.dataset, "model": config.model, "seed": config.seed,
            "kind": kind, **(extra or {})}


def dataset_record(config: ExperimentConfig, data: datasets.Data) -> DatasetRecord:
    """The dataset as MLflow records it (name, digest of the splits as loaded, sizes, options)."""
    return DatasetRecord.of(data, dict(config.dataset_options))


def ensure_baseline_run(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                        data: datasets.Data) -> str:
    """The baseline's own MLflow run (kind=baseline), logged once per store."""
    found = tracker.find_run(experiment_name(config), "baseline_key", baseline.key)
    if found is not None:
        return found.info.run_id
    tags = _tags(config, "baseline", "baseline", {"baseline_key": baseline.key})
    with tracker.run(experiment_name(config), f"baseline-{config.model}-s{config.seed}", tags) as run_id:
        params = {k: v for k, v in config.params().items() if not k.startswith(("finetune.", "method", "requested"))}
        tracker.log_params(run_id, params)
        record = dataset_record(config, data)
        tracker.log_dataset(run_id, record)
        metrics = measure(baseline.forms, baseline.forms, data, config)
        metrics["train_seconds"] = baseline.train_seconds
        model_id = tracker.log_model(run_id, experiment_name(config), baseline.model, f"baseline-{config.model}",
                                     {"kind": "baseline", "seed": config.seed})
        tracker.log_metrics(run_id, metrics, model_id=model_id, dataset=record)
    return run_id


def tracked_control(tracker: Tracker, config: ExperimentConfig) -> dict[str, float] | None:
    """The metrics of the dense + fine-tune control already tracked for this configuration, or None."""
    found = tracker.find_run(experiment_name(config), "control_key", config.control_key())
    return None if found is None else dict(found.data.metrics)


@contextlib.contextmanager
def control_run(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                data: datasets.Data) -> Iterator[str]:
    """The dense + fine-tune control's MLflow run (ratio 1), open while the caller trains it: its tags, params
    and dataset are logged first; a failure or Ctrl-C inside ends it FAILED or KILLED."""
    tags = _tags(config, "control", "dense+finetune", {
        "control_key": config.control_key(), "baseline_key": baseline.key, **config.protocol.tags(),
        "lr": f"{config.lr:g}", "arm": "method", "variant": "dense+finetune", "tuning": config.protocol.tuning,
        "group": group_tag(config, "dense+finetune", 1)})
    with tracker.run(experiment_name(config), f"dense+finetune-{config.model}-s{config.seed}", tags) as run_id:
        params = {k: v for k, v in config.params().items() if not k.startswith(("method", "requested"))}
        tracker.log_params(run_id, params)
        tracker.log_dataset(run_id, dataset_record(config, data))
        yield run_id


def log_control(tracker: Tracker, run_id: str, config: ExperimentConfig, baseline: Baseline, data: datasets.Data,
                model: nn.Module, train_seconds: float) -> dict[str, float]:
    """Measure the trained dense + fine-tune control and log its metrics on its run; returns them."""
    metrics = measure(baseline.forms, Forms(model), data, config)
    metrics.update(finetune_seconds=train_seconds, baseline_acc_top1=baseline.test_acc,
                   acc_drop=baseline.test_acc - metrics["acc_top1"], lr=config.lr,
                   train_epochs_total=config.baseline.epochs + config.finetune.epochs)
    tracker.log_metrics(run_id, metrics)
    return metrics


def group_tag(config: ExperimentConfig, variant: str, ratio: float) -> str:
    """Everything but the seed in one value, so the MLflow runs table's "Group by" on it shows the mean over
    seeds of each (variant, arm, requested ratio, lr candidate, tuned settings, protocol)."""
    settings = f" | {config.settings_label()}" if config.settings else ""
    return f"{variant} | {ratio:g}x | lr {config.lr:g}{settings} | {config.protocol.label}"


def run_tags(config: ExperimentConfig, arm: str = "method") -> dict[str, Any]:
    """What runs are found by: protocol name and hash, arm, variant, learning-rate candidate, config key; and
    ``group`` (``group_tag``)."""
    arm_text = "" if arm == "method" else f" [{arm}]"
    return {**config.protocol.tags(), "arm": arm, "variant": config.variant(), "lr": f"{config.lr:g}",
            "settings": config.settings_label(), "settings_rank": str(config.settings_rank),
            "tuning": config.protocol.tuning, "requested_ratio": f"{config.ratio:g}", "config_key": config.key(),
            "group": group_tag(config, f"{config.variant()}{arm_text}", config.ratio)}


@dataclass(frozen=True)
class OpenArmRun:
    """An arm's MLflow run while its arm trains: the run, its name and the dataset record its metrics link to."""

    run_id: str
    run_name: str
    dataset: DatasetRecord


@contextlib.contextmanager
def arm_run(config: ExperimentConfig, method: methods.Method, arm: Arm, baseline: Baseline, data: datasets.Data,
            tracker: Tracker, parent_run_id: str | None, extra_tags: dict[str, Any] | None,
            on_run_start: Callable[[str], None] | None) -> Iterator[OpenArmRun]:
    """One arm's MLflow run, open while the caller trains the arm: its tags, params, dataset and the method's
    step metrics are logged first; a failure or Ctrl-C inside ends it FAILED or KILLED."""
    tags = _tags(config, "compressed", config.method,
                 {"baseline_key": baseline.key, **run_tags(config, arm.name), **(extra_tags or {})})
    suffix = "" if arm.name == "method" else f"-{arm.name}"
    run_name = f"{config.method}{suffix}-{config.ratio:g}x-lr{config.lr:g}-s{config.seed}"
    with tracker.run(experiment_name(config), run_name, tags, parent_run_id) as run_id:
        if on_run_start is not None:
            on_run_start(run_id)
        tracker.log_params(run_id, {**config.params(), **_method_params(method), "arm": arm.name})
        record = dataset_record(config, data)
        tracker.log_dataset(run_id, record)
        for metrics, step in arm.steps:
            tracker.log_metrics(run_id, metrics, step)
        yield OpenArmRun(run_id, run_name, record)


def accuracy_before_training(model: nn.Module, data: datasets.Data) -> dict[str, float]:
    """Test and validation accuracy of an arm's model as it comes, before its final training."""
    model.eval()
    return {"acc_top1_before_finetune": split_accuracy(model, data, "test")[1],
            "val_acc_top1_before_finetune": split_accuracy(model, data, "val")[1]}


def log_trained_arm(run: OpenArmRun, config: ExperimentConfig, method: methods.Method, arm: Arm, model: nn.Module,
                    before: dict[str, float], finetune_seconds: float, baseline: Baseline, data: datasets.Data,
                    control: dict[str, float], tracker: Tracker, work_once: bool = True) -> RunResult:
    """Measure an arm's trained model and log everything on its open run: the metrics (with its budget from its
    ledger), the logged model, the report and the per-layer table."""
    # One bake of the trained model serves every metric and the per-layer table (``work_once``).
    measured = Forms(model) if work_once else model
    metrics = measure(baseline.forms if work_once else baseline.model, measured, data, config)
    metrics.update(before)
    ledger = arm.ledger
    in_method = ledger.finetune_calls * config.finetune.epochs if not config.protocol.equal_budget else None
    metrics.update(
        requested_ratio=config.ratio, ratio_error=metrics["compression_ratio"] / config.ratio - 1,
        finetune_seconds=finetune_seconds,
        train_epochs_total=ledger.train_epochs_total, train_steps_charged=ledger.spent,
        finetune_epochs_total=ledger.finetune_epochs,
        finetune_epochs_in_method=in_method if in_method is not None else float("nan"),
        lr=config.lr,
        baseline_acc_top1=baseline.test_acc, control_acc_top1=control["acc_top1"],
        acc_drop=baseline.test_acc - metrics["acc_top1"],
        acc_drop_vs_control=control["acc_top1"] - metrics["acc_top1"],
        **arm.extra,
    )
    run_id = run.run_id
    model_id = tracker.log_model(run_id, experiment_name(config), model, run.run_name,
                                 {"method": config.method, "arm": arm.name, "requested_ratio": f"{config.ratio:g}",
                                  "seed": config.seed, "protocol": config.protocol.label})
    tracker.log_metrics(run_id, metrics, model_id=model_id, dataset=run.dataset)
    layers = per_layer(measured, data.input_shape)
    artifacts = {"report.json": json.dumps({"config": dataclasses.asdict(config), "method": _method_params(method),
                                            "arm": arm.name, "metrics": metrics, "per_layer": layers,
                                            "model_id": model_id}, indent=2, default=str),
                 "per_layer.csv": csv_text(layers)}
    for name, text in artifacts.items():
        tracker.log_text(run_id, text, name)
    return RunResult(run_id, metrics, config, arm.steps, arm=arm.name, artifacts=artifacts, model_id=model_id)


def _method_params(method: methods.Method) -> dict[str, Any]:
    out = {f"method.{k}": v for k, v in dataclasses.asdict(method).items()}
    out.update({"method.family": method.family, "method.structured": method.structured})
    return out


def record_failure(tracker: Tracker, config: ExperimentConfig, method: methods.Method, parent_run_id: str | None,
                    extra_tags: dict[str, Any] | None, error: BaseException) -> None:
    """A run for a method that crashed or was interrupted before its run opened: FAILED (KILLED on Ctrl-C),
    tagged ``invalid=<reason>`` when it failed because a result was known to be wrong (``bench.validity``)."""
    tags = {**_tags(config, "compressed", config.method, {**run_tags(config), **(extra_tags or {})}),
            **failure_tags(error)}
    run_id = tracker.start(experiment_name(config), f"{config.method}-{config.ratio:g}x-s{config.seed}", tags,
                           parent_run_id)
    tracker.log_params(run_id, {**config.params(), **_method_params(method)})
    tracker.finish(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def find_tracked(tracker: Tracker, config: ExperimentConfig, arms: tuple[str, ...] = ("method",)) -> RunResult | None:
    """The FINISHED runs of exactly this configuration (found by ``ExperimentConfig.key()``), one per arm, as a
    RunResult; None when any arm is missing. Sweeps use it so that a point already measured (by a study with
    fewer seeds, or another study of the same protocol) is not trained again."""
    by_arm = tracked_arms(tracker, config)
    if any(arm not in by_arm for arm in arms):
        return None
    main = by_arm["method"]
    main.controls = [by_arm[arm] for arm in arms[1:]]
    return main


def tracked_arms(tracker: Tracker, config: ExperimentConfig) -> dict[str, RunResult]:
    """Every arm of this configuration already tracked as FINISHED, the newest run per arm."""
    exp = tracker.client.get_experiment_by_name(experiment_name(config))
    if exp is None:
        return {}
    found = tracker.client.search_runs(
        [exp.experiment_id], f"tags.config_key = '{config.key()}' and tags.kind = 'compressed' "
                             f"and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    by_arm: dict[str, RunResult] = {}
    for run in found:
        arm = run.data.tags.get("arm", "method")
        by_arm.setdefault(arm, RunResult(run.info.run_id, dict(run.data.metrics), config, arm=arm))
    return by_arm


def record_unreachable(tracker: Tracker, config: ExperimentConfig, error: CompressionError,
                       parent_run_id: str | None = None, extra_tags: dict[str, Any] | None = None) -> str:
    """A sweep point the method cannot reach (or that the protocol's budget refuses), as a FINISHED run of
    kind ``unreachable`` with the reason, so verdict tables can say which points are missing and why."""
    tags = {**_tags(config, "unreachable", config.method, {**run_tags(config), **(extra_tags or {})}),
            "error": str(error)[:5000]}
    with tracker.run(experiment_name(config), f"{config.method}-{config.ratio:g}x-unreachable-s{config.seed}", tags,
                     parent_run_id) as run_id:
        tracker.log_params(run_id, config.params())
    return run_id


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows with the same keys as CSV text, a header first ("" for no rows); what is logged as a .csv artifact."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
