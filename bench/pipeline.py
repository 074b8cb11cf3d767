"""One experiment end to end: data -> cached dense baseline -> compress -> shared fine-tune -> measure -> track.

``run_experiment`` is the function sweeps call per trial. The MLflow run is opened once the method has
produced a model, so a target the method cannot reach (a bad input) leaves nothing in the store, while
any other failure is recorded as a FAILED run with its error.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import datasets
import methods
from bench import arms as arms_lib
from bench.baseline import Baseline, ensure_baseline
from bench.budget import BudgetError, Ledger
from bench.config import ExperimentConfig
from bench.export import Forms, clone, forms_of
from bench.metrics import latency_metrics, params_effective, params_total, per_layer, size_metrics, split_accuracy
from bench.plugins import load_plugins
from bench.tracking import DatasetRecord, Tracker
from bench.recipes import TrainRecipe
from bench.training import fit, fit_steps
from methods import CompressionError, Context
from methods.common.base import RATIO_TOLERANCE  # the contract's ±3 % (sweeps read it from here too)
from methods.common.pruning import rewind_to



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


def experiment_name(config: ExperimentConfig) -> str:
    return f"{config.dataset}/{config.model}"


def load_data(config: ExperimentConfig) -> datasets.Data:
    """The configured dataset, loaded (its files read and checked) once per process: a sweep's trials and seeds,
    its baselines and controls all share one copy, which nothing changes. ``forget_loaded_data`` drops it."""
    try:
        return _load_once(config.dataset, config.dataset_options, str(datasets.data_dir()), _file_stamp(config.dataset))
    except TypeError:  # an option value that cannot be part of a key (unhashable): loaded every time
        return datasets.get(config.dataset, **dict(config.dataset_options))


@functools.lru_cache(maxsize=2)  # two datasets at most stay in memory (a script may alternate two)
def _load_once(name: str, options: tuple[tuple[str, Any], ...], where: str,
               stamp: tuple[int, int] | None) -> datasets.Data:
    # ``where`` (the data folder) and ``stamp`` (a file: dataset's size and mtime) are only part of the key:
    # data fetched elsewhere, or a file rewritten, is loaded anew. A registered name cannot change its builder.
    return datasets.get(name, **dict(options))


def _file_stamp(name: str) -> tuple[int, int] | None:
    if not name.startswith(datasets.FILE_PREFIX):
        return None
    try:
        st = os.stat(os.path.expanduser(name[len(datasets.FILE_PREFIX):]))
    except OSError:
        return None  # missing: ``datasets.get`` says so, and a failure is never cached
    return st.st_size, st.st_mtime_ns


def forget_loaded_data() -> None:
    """Drop this process's loaded datasets and its record of verified data files: the next load reads and
    checks everything again, as every run did before loads were shared (the benchmark's "before" arm)."""
    from datasets.fetch import forget_verified

    _load_once.cache_clear()
    forget_verified()


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


def ensure_control(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                   data: datasets.Data, progress: bool = False) -> dict[str, float]:
    """The dense + fine-tune control (ratio 1): the shared fine-tune budget applied to the dense model."""
    key = config.control_key()
    found = tracker.find_run(experiment_name(config), "control_key", key)
    if found is not None:
        return dict(found.data.metrics)
    tags = _tags(config, "control", "dense+finetune", {
        "control_key": key, "baseline_key": baseline.key, **config.protocol.tags(), "lr": f"{config.lr:g}",
        "arm": "method", "variant": "dense+finetune", "group": group_tag(config, "dense+finetune", 1)})
    with tracker.run(experiment_name(config), f"dense+finetune-{config.model}-s{config.seed}", tags) as run_id:
        params = {k: v for k, v in config.params().items() if not k.startswith(("method", "requested"))}
        tracker.log_params(run_id, params)
        tracker.log_dataset(run_id, dataset_record(config, data))
        model = clone(baseline.model)
        start = time.perf_counter()
        fit(model, config.finetune, data, config.seed, progress=progress, accelerator=config.accelerator)
        metrics = measure(baseline.forms, Forms(model), data, config)
        metrics.update(finetune_seconds=time.perf_counter() - start, baseline_acc_top1=baseline.test_acc,
                       acc_drop=baseline.test_acc - metrics["acc_top1"], lr=config.lr,
                       train_epochs_total=config.baseline.epochs + config.finetune.epochs)
        tracker.log_metrics(run_id, metrics)
    return metrics


def build_method(config: ExperimentConfig) -> methods.Method:
    """The configured method; raises the registry's or the parameter schema's clear error."""
    return methods.build(config.method, dict(config.method_params))


def _equal_total(config: ExperimentConfig, recipe: TrainRecipe, n_train: int) -> int | None:
    """The steps ``recipe`` takes when the protocol equalises budgets (None: it does not, steps are only counted)."""
    return fit_steps(recipe, n_train) if config.protocol.equal_budget else None


def method_ledger(config: ExperimentConfig, method: methods.Method, dense: nn.Module, data: datasets.Data,
                  ratio: float) -> Ledger:
    """The method arm's budget: E epochs of steps on top of the baseline for post-training methods (split
    with their planned rounds), or baseline + E from scratch for train-time methods."""
    n_train = data.sizes()["train"]
    what = f"{config.method} at {ratio:g}x"
    if method.family == "train-time":
        return Ledger(n_train, _equal_total(config, config.scratch_recipe(), n_train), what=what)
    return Ledger(n_train, _equal_total(config, config.finetune, n_train), method.planned_finetunes(dense, ratio),
                  from_init_epochs=config.baseline.epochs, what=what)


def charged_fit(model: nn.Module, recipe: TrainRecipe, ledger: Ledger, config: ExperimentConfig,
                data: datasets.Data, progress: bool, max_steps: int | None, finetune: bool,
                **kwargs: Any) -> nn.Module:
    """``fit`` charged to ``ledger``: before it runs (an overrun is refused without training), or, for a recipe
    that stops early on a validation plateau, with the steps it actually took."""
    if recipe.patience is None:
        ledger.charge(recipe, max_steps, finetune=finetune)  # an overrun is refused before training
    report: dict[str, int] = {}
    model = fit(model, recipe, data, config.seed, progress=progress, accelerator=config.accelerator,
                max_steps=max_steps, report=report, **kwargs)
    if recipe.patience is not None:
        ledger.charge(recipe, report["steps"], finetune=finetune)
    return model


def rewind_if_asked(model: nn.Module, config: ExperimentConfig, baseline: Baseline) -> nn.Module:
    """Under a protocol that rewinds (``rewind="init"``), the surviving weights back to the random
    initialisation the baseline trained from, before the training that follows a pruning step."""
    if config.protocol.rewind == "init":
        if baseline.init_state is None:
            raise CompressionError("the protocol rewinds to the random initialisation, but the baseline has none")
        rewind_to(model, baseline.init_state)
    return model


def _train_rest(model: nn.Module, recipe: TrainRecipe, ledger: Ledger, config: ExperimentConfig,
                data: datasets.Data, progress: bool, finetune: bool) -> nn.Module:
    """Train ``model`` with ``recipe`` for what is left of ``ledger`` (the whole recipe when it has no total)."""
    return charged_fit(model, recipe, ledger, config, data, progress, ledger.remaining(), finetune)


def _context(config: ExperimentConfig, data: datasets.Data, baseline: Baseline,
             steps: list[tuple[dict[str, float], int]], progress: bool, ledger: Ledger) -> Context:
    teacher = clone(baseline.model).eval()

    def finetune(model: nn.Module) -> nn.Module:
        # Charged: under an equal budget each round gets its share of the arm's steps, and a call the
        # method did not plan for (``planned_finetunes``) would take from the final fine-tune.
        if ledger.total is not None and ledger.finetune_calls >= ledger.planned_finetunes:
            raise BudgetError(f"{config.method} called context.finetune more often than the "
                              f"{ledger.planned_finetunes} times its planned_finetunes() announced (a bug in the method)")
        ledger.finetune_calls += 1
        rewind_if_asked(model, config, baseline)
        return charged_fit(model, config.finetune, ledger, config, data, progress, ledger.round_share(), True)

    def fit_recipe(model: nn.Module, recipe: TrainRecipe, teacher: nn.Module | None = None, kd_weight: float = 0.0,
                   temperature: float = 1.0) -> nn.Module:
        return charged_fit(model, recipe, ledger, config, data, progress, None, False, teacher=teacher,
                           kd_weight=kd_weight, temperature=temperature)

    return Context(
        data=data, seed=config.seed,
        finetune=finetune,
        fit=fit_recipe,
        teacher=teacher,
        log_metrics=lambda metrics, step: steps.append((dict(metrics), step)),
        evaluate=lambda m: split_accuracy(m, data, "val")[1],
        scratch_recipe=config.scratch_recipe(),
    )


def group_tag(config: ExperimentConfig, variant: str, ratio: float) -> str:
    """Everything but the seed in one value, so the MLflow runs table's "Group by" on it shows the mean over
    seeds of each (variant, arm, requested ratio, lr candidate, protocol)."""
    return f"{variant} | {ratio:g}x | lr {config.lr:g} | {config.protocol.label}"


def run_tags(config: ExperimentConfig, arm: str = "method") -> dict[str, Any]:
    """What runs are found by: protocol name and hash, arm, variant, learning-rate candidate, config key; and
    ``group`` (``group_tag``)."""
    arm_text = "" if arm == "method" else f" [{arm}]"
    return {**config.protocol.tags(), "arm": arm, "variant": config.variant(), "lr": f"{config.lr:g}",
            "requested_ratio": f"{config.ratio:g}", "config_key": config.key(),
            "group": group_tag(config, f"{config.variant()}{arm_text}", config.ratio)}


def run_experiment(config: ExperimentConfig, tracker: Tracker | None = None, parent_run_id: str | None = None,
                   extra_tags: dict[str, Any] | None = None, progress: bool = False,
                   on_run_start: Callable[[str], None] | None = None,
                   arms: tuple[str, ...] = ("method",), work_once: bool = True) -> RunResult:
    """Compress, fine-tune, measure and track one configuration; ``on_run_start`` gets each MLflow run id
    as soon as the run exists (a sweep stores them on its trial, so a killed trial's runs can be closed).

    ``arms`` beyond ``"method"`` (``scratch``, ``shuffled``; see ``bench.arms``) are controls derived from the
    same compressed model and trained under the same budget; their results are in ``RunResult.controls``.

    ``work_once=False`` is for the benchmark alone (``bench.benchmark.trial_overhead``): the run does its work as
    every run did before issue 18, reloading and re-checking the data and baking the model once per metric, so
    that what sharing saves is measured side by side. The metrics are the same either way.
    """
    load_plugins(config.plugins, entry_points=False)  # no-op where this process has loaded them already
    method = build_method(config)
    if not work_once:
        forget_loaded_data()
    data = load_data(config)
    baseline, _ = ensure_baseline(config, data, progress=progress)
    tracker = tracker or Tracker()
    steps: list[tuple[dict[str, float], int]] = []
    ledger = method_ledger(config, method, baseline.model, data, config.ratio)

    start = time.perf_counter()
    try:
        compressed = method.compress(clone(baseline.model), config.ratio,
                                     _context(config, data, baseline, steps, progress, ledger))
        achieved = params_total(baseline.model) / max(params_effective(compressed), 1)
        if abs(achieved / config.ratio - 1) > RATIO_TOLERANCE:
            raise RuntimeError(f"{config.method} returned {achieved:.3f}x for a requested {config.ratio:g}x "
                               f"(the contract allows ±{RATIO_TOLERANCE:.0%}); this is a bug in the method")
        if method.family == "train-time":
            ledger.check_spent(config.scratch_recipe())
    except CompressionError:
        raise  # a target out of reach, or a budget the protocol refuses: bad input, nothing is tracked
    except BaseException as e:
        _record_failure(tracker, config, method, parent_run_id, extra_tags, e)
        raise
    compress_seconds = time.perf_counter() - start

    ensure_baseline_run(tracker, config, baseline, data)
    control = ensure_control(tracker, config, baseline, data, progress)
    untuned = clone(compressed) if len(arms) > 1 else None
    post_training = method.family != "train-time"

    def final_finetune(model: nn.Module) -> nn.Module:
        if not post_training and config.protocol.equal_budget:
            return model  # a train-time arm has spent its whole budget training from scratch
        if post_training:
            rewind_if_asked(model, config, baseline)
        return _train_rest(model, config.finetune, ledger, config, data, progress, finetune=True)

    arm = _Arm("method", compressed, final_finetune, ledger, steps, {"compress_seconds": compress_seconds})
    result = _track_arm(config, method, arm, baseline, data, control, tracker, parent_run_id, extra_tags, on_run_start,
                        work_once)
    for name in arms[1:]:
        control_arm = _control_arm(name, config, untuned, baseline, data, progress)
        result.controls.append(_track_arm(config, method, control_arm, baseline, data, control, tracker,
                                          parent_run_id, {**(extra_tags or {}), "derived_from": result.run_id},
                                          on_run_start, work_once))
    return result


@dataclass
class _Arm:
    """One tracked arm: its model before the final training, that training, and its budget."""

    name: str
    model: nn.Module
    train: Callable[[nn.Module], nn.Module]
    ledger: Ledger
    steps: list[tuple[dict[str, float], int]] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


def _control_arm(name: str, config: ExperimentConfig, untuned: nn.Module, baseline: Baseline,
                 data: datasets.Data, progress: bool) -> _Arm:
    """A control derived from the method's compressed model, with a budget equal to a one-shot arm's."""
    n_train = data.sizes()["train"]
    if name == "shuffled":
        model = arms_lib.shuffled(untuned, baseline.model, config.seed)
        recipe = config.finetune
        ledger = Ledger(n_train, _equal_total(config, recipe, n_train), from_init_epochs=config.baseline.epochs,
                        what=f"shuffled control at {config.ratio:g}x")
    elif name == "scratch":
        model = arms_lib.scratch(untuned, config.seed)
        recipe = config.scratch_recipe()
        ledger = Ledger(n_train, _equal_total(config, recipe, n_train), what=f"scratch control at {config.ratio:g}x")
    else:
        raise ValueError(f"unknown arm {name!r}; choose one of: scratch, shuffled")

    def train(m: nn.Module) -> nn.Module:
        return _train_rest(m, recipe, ledger, config, data, progress, finetune=name == "shuffled")

    return _Arm(name, model, train, ledger)


def _track_arm(config: ExperimentConfig, method: methods.Method, arm: _Arm, baseline: Baseline,
               data: datasets.Data, control: dict[str, float], tracker: Tracker, parent_run_id: str | None,
               extra_tags: dict[str, Any] | None, on_run_start: Callable[[str], None] | None,
               work_once: bool = True) -> RunResult:
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
        model = arm.model
        model.eval()
        before = {"acc_top1_before_finetune": split_accuracy(model, data, "test")[1],
                  "val_acc_top1_before_finetune": split_accuracy(model, data, "val")[1]}
        start = time.perf_counter()
        model = arm.train(model)
        finetune_seconds = time.perf_counter() - start
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
        model_id = tracker.log_model(run_id, experiment_name(config), model, run_name,
                                     {"method": config.method, "arm": arm.name, "requested_ratio": f"{config.ratio:g}",
                                      "seed": config.seed, "protocol": config.protocol.label})
        tracker.log_metrics(run_id, metrics, model_id=model_id, dataset=record)
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


def _record_failure(tracker: Tracker, config: ExperimentConfig, method: methods.Method, parent_run_id: str | None,
                    extra_tags: dict[str, Any] | None, error: BaseException) -> None:
    """A run for a method that crashed or was interrupted before its run opened: FAILED (KILLED on Ctrl-C)."""
    tags = {**_tags(config, "compressed", config.method, {**run_tags(config), **(extra_tags or {})}),
            "error": f"{type(error).__name__}: {error}"[:5000]}
    run_id = tracker.start(experiment_name(config), f"{config.method}-{config.ratio:g}x-s{config.seed}", tags,
                           parent_run_id)
    tracker.log_params(run_id, {**config.params(), **_method_params(method)})
    tracker.finish(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")


def find_tracked(tracker: Tracker, config: ExperimentConfig, arms: tuple[str, ...] = ("method",)) -> RunResult | None:
    """The FINISHED runs of exactly this configuration (found by ``ExperimentConfig.key()``), one per arm, as a
    RunResult; None when any arm is missing. Sweeps use it so that a point already measured (by a study with
    fewer seeds, or another study of the same protocol) is not trained again."""
    exp = tracker.client.get_experiment_by_name(experiment_name(config))
    if exp is None:
        return None
    found = tracker.client.search_runs(
        [exp.experiment_id], f"tags.config_key = '{config.key()}' and tags.kind = 'compressed' "
                             f"and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    by_arm: dict[str, Any] = {}
    for run in found:
        by_arm.setdefault(run.data.tags.get("arm", "method"), run)
    if any(arm not in by_arm for arm in arms):
        return None

    def result(arm: str) -> RunResult:
        run = by_arm[arm]
        return RunResult(run.info.run_id, dict(run.data.metrics), config, arm=arm)

    main = result("method")
    main.controls = [result(arm) for arm in arms[1:]]
    return main


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


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
