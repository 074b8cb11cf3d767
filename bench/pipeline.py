"""One experiment end to end: data -> cached dense baseline -> compress -> shared fine-tune -> measure -> track.

``run_experiment`` is the function sweeps call per trial. The MLflow run is opened once the method has
produced a model, so a target the method cannot reach (a bad input) leaves nothing in the store, while
any other failure is recorded as a FAILED run with its error.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import datasets
import methods
from bench.baseline import Baseline, ensure_baseline
from bench.config import ExperimentConfig
from bench.export import clone
from bench.metrics import accuracy, latency_metrics, params_effective, params_total, per_layer, size_metrics
from bench.tracking import Tracker
from bench.training import fit
from methods import CompressionError, Context

RATIO_TOLERANCE = 0.03


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float]
    config: ExperimentConfig
    step_metrics: list[tuple[dict[str, float], int]] = field(default_factory=list)


def experiment_name(config: ExperimentConfig) -> str:
    return f"{config.dataset}/{config.model}"


def load_data(config: ExperimentConfig) -> datasets.DataSplits:
    return datasets.get(config.dataset, **dict(config.dataset_options))


def measure(dense: nn.Module, model: nn.Module, data: datasets.DataSplits, config: ExperimentConfig) -> dict[str, float]:
    """Every metric of DESIGN.md for ``model`` against ``dense``; accuracy on test is reported, never chosen on."""
    topk = (1, 5) if data.num_classes > 10 else (1,)
    test = accuracy(model, data.test_x, data.test_y, topk=topk)
    metrics: dict[str, float] = {"acc_top1": test[1], "val_acc_top1": accuracy(model, data.val_x, data.val_y)[1]}
    if 5 in test:
        metrics["acc_top5"] = test[5]
    metrics.update(size_metrics(dense, model, data.input_shape))
    metrics.update(latency_metrics(dense, model, data.input_shape, repeats=config.latency_repeats))
    return metrics


def _tags(config: ExperimentConfig, kind: str, method: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"method": method, "dataset": config.dataset, "model": config.model, "seed": config.seed,
            "kind": kind, **(extra or {})}


def ensure_baseline_run(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                        data: datasets.DataSplits) -> str:
    """The baseline's own MLflow run (kind=baseline), logged once per store."""
    found = tracker.find_run(experiment_name(config), "baseline_key", baseline.key)
    if found is not None:
        return found.info.run_id
    tags = _tags(config, "baseline", "baseline", {"baseline_key": baseline.key})
    with tracker.run(experiment_name(config), f"baseline-{config.model}-s{config.seed}", tags) as run_id:
        params = {k: v for k, v in config.params().items() if not k.startswith(("finetune.", "method", "requested"))}
        tracker.log_params(run_id, params)
        metrics = measure(baseline.model, baseline.model, data, config)
        metrics["train_seconds"] = baseline.train_seconds
        tracker.log_metrics(run_id, metrics)
    return run_id


def ensure_control(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                   data: datasets.DataSplits, progress: bool = False) -> dict[str, float]:
    """The dense + fine-tune control (ratio 1): the shared fine-tune budget applied to the dense model."""
    key = config.control_key()
    found = tracker.find_run(experiment_name(config), "control_key", key)
    if found is not None:
        return dict(found.data.metrics)
    tags = _tags(config, "control", "dense+finetune", {"control_key": key, "baseline_key": baseline.key})
    with tracker.run(experiment_name(config), f"dense+finetune-{config.model}-s{config.seed}", tags) as run_id:
        params = {k: v for k, v in config.params().items() if not k.startswith(("method", "requested"))}
        tracker.log_params(run_id, params)
        model = clone(baseline.model)
        start = time.perf_counter()
        fit(model, config.finetune, data, config.seed, progress=progress, accelerator=config.accelerator)
        metrics = measure(baseline.model, model, data, config)
        metrics.update(finetune_seconds=time.perf_counter() - start, baseline_acc_top1=baseline.test_acc,
                       acc_drop=baseline.test_acc - metrics["acc_top1"])
        tracker.log_metrics(run_id, metrics)
    return metrics


def build_method(config: ExperimentConfig) -> methods.Method:
    """The configured method; raises the registry's or the parameter schema's clear error."""
    return methods.build(config.method, dict(config.method_params))


def _context(config: ExperimentConfig, data: datasets.DataSplits, baseline: Baseline,
             steps: list[tuple[dict[str, float], int]], progress: bool, budget: dict[str, int]) -> Context:
    teacher = clone(baseline.model).eval()

    def finetune(model: nn.Module) -> nn.Module:
        # Counted: iterative methods fine-tune between rounds, so their total budget is a multiple of
        # the shared one, and a fair comparison has to show it.
        budget["finetune_calls"] += 1
        return fit(model, config.finetune, data, config.seed, progress=progress, accelerator=config.accelerator)

    return Context(
        data=data, seed=config.seed,
        finetune=finetune,
        fit=lambda m, recipe, teacher=None, kd_weight=0.0, temperature=1.0: fit(
            m, recipe, data, config.seed, teacher=teacher, kd_weight=kd_weight, temperature=temperature,
            progress=progress, accelerator=config.accelerator),
        teacher=teacher,
        log_metrics=lambda metrics, step: steps.append((dict(metrics), step)),
        evaluate=lambda m: accuracy(m, data.val_x, data.val_y)[1],
    )


def run_experiment(config: ExperimentConfig, tracker: Tracker | None = None, parent_run_id: str | None = None,
                   extra_tags: dict[str, Any] | None = None, progress: bool = False,
                   on_run_start: Callable[[str], None] | None = None) -> RunResult:
    """Compress, fine-tune, measure and track one configuration; ``on_run_start`` gets the MLflow run id
    as soon as the run exists (a sweep stores it on its trial, so a killed trial's run can be closed)."""
    method = build_method(config)
    data = load_data(config)
    baseline, _ = ensure_baseline(config, data, progress=progress)
    tracker = tracker or Tracker()
    steps: list[tuple[dict[str, float], int]] = []

    start = time.perf_counter()
    try:
        budget = {"finetune_calls": 0}
        compressed = method.compress(clone(baseline.model), config.ratio,
                                     _context(config, data, baseline, steps, progress, budget))
        achieved = params_total(baseline.model) / max(params_effective(compressed), 1)
        if abs(achieved / config.ratio - 1) > RATIO_TOLERANCE:
            raise RuntimeError(f"{config.method} returned {achieved:.3f}x for a requested {config.ratio:g}x "
                               f"(the contract allows ±{RATIO_TOLERANCE:.0%}); this is a bug in the method")
    except CompressionError:
        raise  # a target out of reach is bad input: nothing is tracked
    except BaseException as e:
        _record_failure(tracker, config, method, parent_run_id, extra_tags, e)
        raise
    compress_seconds = time.perf_counter() - start

    ensure_baseline_run(tracker, config, baseline, data)
    control = ensure_control(tracker, config, baseline, data, progress)
    tags = _tags(config, "compressed", config.method, {"baseline_key": baseline.key, **(extra_tags or {})})
    run_name = f"{config.method}-{config.ratio:g}x-s{config.seed}"
    with tracker.run(experiment_name(config), run_name, tags, parent_run_id) as run_id:
        if on_run_start is not None:
            on_run_start(run_id)
        tracker.log_params(run_id, {**config.params(), **_method_params(method)})
        for metrics, step in steps:
            tracker.log_metrics(run_id, metrics, step)
        compressed.eval()
        before = {"acc_top1_before_finetune": accuracy(compressed, data.test_x, data.test_y)[1],
                  "val_acc_top1_before_finetune": accuracy(compressed, data.val_x, data.val_y)[1]}
        start = time.perf_counter()
        fit(compressed, config.finetune, data, config.seed, progress=progress, accelerator=config.accelerator)
        finetune_seconds = time.perf_counter() - start
        metrics = measure(baseline.model, compressed, data, config)
        metrics.update(before)
        metrics.update(
            requested_ratio=config.ratio, ratio_error=metrics["compression_ratio"] / config.ratio - 1,
            compress_seconds=compress_seconds, finetune_seconds=finetune_seconds,
            finetune_epochs_in_method=budget["finetune_calls"] * config.finetune.epochs,
            finetune_epochs_total=(budget["finetune_calls"] + 1) * config.finetune.epochs,
            baseline_acc_top1=baseline.test_acc, control_acc_top1=control["acc_top1"],
            acc_drop=baseline.test_acc - metrics["acc_top1"],
            acc_drop_vs_control=control["acc_top1"] - metrics["acc_top1"],
        )
        tracker.log_metrics(run_id, metrics)
        layers = per_layer(compressed, data.input_shape)
        tracker.log_json(run_id, {"config": dataclasses.asdict(config), "method": _method_params(method),
                                  "metrics": metrics, "per_layer": layers}, "report.json")
        tracker.log_text(run_id, _csv(layers), "per_layer.csv")
    return RunResult(run_id, metrics, config, steps)


def _method_params(method: methods.Method) -> dict[str, Any]:
    out = {f"method.{k}": v for k, v in dataclasses.asdict(method).items()}
    out.update({"method.family": method.family, "method.structured": method.structured})
    return out


def _record_failure(tracker: Tracker, config: ExperimentConfig, method: methods.Method, parent_run_id: str | None,
                    extra_tags: dict[str, Any] | None, error: BaseException) -> None:
    """A run for a method that crashed or was interrupted before its run opened: FAILED (KILLED on Ctrl-C)."""
    tags = {**_tags(config, "compressed", config.method, extra_tags), "error": f"{type(error).__name__}: {error}"[:5000]}
    run_id = tracker.start(experiment_name(config), f"{config.method}-{config.ratio:g}x-s{config.seed}", tags,
                           parent_run_id)
    tracker.log_params(run_id, {**config.params(), **_method_params(method)})
    tracker.finish(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    return "\n".join([",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]) + "\n"


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
