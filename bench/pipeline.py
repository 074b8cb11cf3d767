"""One experiment end to end: data -> cached dense baseline -> compress -> shared fine-tune -> measure -> track.

``run_experiment`` is the function sweeps call per trial. The MLflow run is opened once the method has
produced a model, so a target the method cannot reach (a bad input) leaves nothing in the store, while
any other failure is recorded as a FAILED run with its error.

The rooms it draws on, one job each: ``bench.data_cache`` (the dataset loaded once per process),
``bench.method_context`` (the method, its step budget, the training charged to it, the ``Context``),
``bench.arm_runner`` (each arm's life: a control's model and budget, its training inside its open run, the
dense + fine-tune control) and ``bench.records`` (what is tracked: runs, tags, measurements; it never trains).
Their public names are importable from here as well.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

from bench.arm_runner import control_arm, ensure_control, run_arm
from bench.baseline import ensure_baseline
from bench.config import ExperimentConfig
from bench.data_cache import forget_loaded_data, load_data
from bench.export import clone
from bench.method_context import (build_method, charged_fit, method_context, method_ledger,
                                  rewind_if_asked, train_rest)
from bench.metrics import params_effective, params_total
from bench.plugins import load_plugins
from bench.records import (Arm, RunResult, csv_text, dataset_record, ensure_baseline_run, experiment_name,
                           find_tracked, group_tag, measure, record_failure, record_unreachable, run_tags)
from bench.tracking import Tracker
from bench.validity import InvalidResultError
from methods import CompressionError
from methods.common.base import RATIO_TOLERANCE  # the contract's ±3 % (sweeps read it from here too)

__all__ = ["RATIO_TOLERANCE", "RunResult", "build_method", "charged_fit", "control_arm", "csv_text",
           "dataset_record", "ensure_baseline_run", "ensure_control", "experiment_name", "find_tracked",
           "forget_loaded_data", "group_tag", "load_data", "measure", "method_ledger", "record_unreachable",
           "rewind_if_asked", "run_experiment", "run_tags", "set_threads"]


def run_experiment(config: ExperimentConfig, tracker: Tracker | None = None, parent_run_id: str | None = None,
                   extra_tags: dict[str, Any] | None = None, progress: bool = False,
                   on_run_start: Callable[[str], None] | None = None,
                   arms: tuple[str, ...] = ("method",), work_once: bool = True,
                   method_run: RunResult | None = None) -> RunResult:
    """Compress, fine-tune, measure and track one configuration; ``on_run_start`` gets each MLflow run id
    as soon as the run exists (a sweep stores them on its trial, so a killed trial's runs can be closed).

    ``arms`` beyond ``"method"`` (registered controls: ``scratch``, ``shuffled``; see ``bench.controls``) are derived from the
    same compressed model and trained under the same budget; their results are in ``RunResult.controls``.

    ``work_once=False`` is for the benchmark alone (``bench.benchmark.trial_overhead``): the run does its work as
    every run did before issue 18, reloading and re-checking the data and baking the model once per metric, so
    that what sharing saves is measured side by side. The metrics are the same either way.

    ``method_run``: the method arm of this configuration, already tracked (a comparison tuned on seed 0 adds the
    controls of the chosen settings afterwards): the method compresses again (deterministic given the seed),
    only the control arms in ``arms`` are trained and logged, and they are appended to ``method_run.controls``.
    """
    load_plugins(config.plugins, entry_points=False)  # no-op where this process has loaded them already
    method = build_method(config)
    if not work_once:
        forget_loaded_data()
    data = load_data(config)
    tracker = tracker or Tracker()
    try:
        baseline, _ = ensure_baseline(config, data, progress=progress)
    except InvalidResultError as e:  # a baseline at chance, or its loss went non-finite: FAILED, never a result
        record_failure(tracker, config, method, parent_run_id, extra_tags, e)
        raise
    steps: list[tuple[dict[str, float], int]] = []
    ledger = method_ledger(config, method, baseline.model, data, config.ratio)

    start = time.perf_counter()
    try:
        compressed = method.compress(clone(baseline.model), config.ratio,
                                     method_context(config, data, baseline, steps, progress, ledger))
        achieved = params_total(baseline.model) / max(params_effective(compressed), 1)
        if abs(achieved / config.ratio - 1) > RATIO_TOLERANCE:
            raise RuntimeError(f"{config.method} returned {achieved:.3f}x for a requested {config.ratio:g}x "
                               f"(the contract allows ±{RATIO_TOLERANCE:.0%}); this is a bug in the method")
        if method.family == "train-time":
            ledger.check_spent(config.scratch_recipe())
    except CompressionError:
        raise  # a target out of reach, or a budget the protocol refuses: bad input, nothing is tracked
    except BaseException as e:
        record_failure(tracker, config, method, parent_run_id, extra_tags, e)
        raise
    compress_seconds = time.perf_counter() - start

    ensure_baseline_run(tracker, config, baseline, data)
    control = ensure_control(tracker, config, baseline, data, progress)
    untuned = clone(compressed) if len(arms) > 1 or method_run is not None else None
    post_training = method.family != "train-time"

    def final_finetune(model: nn.Module) -> nn.Module:
        if not post_training and config.protocol.equal_budget:
            return model  # a train-time arm has spent its whole budget training from scratch
        if post_training:
            rewind_if_asked(model, config, baseline)
        return train_rest(model, config.finetune, ledger, config, data, progress, finetune=True)

    if method_run is None:
        arm = Arm("method", compressed, final_finetune, ledger, steps, {"compress_seconds": compress_seconds})
        result = run_arm(config, method, arm, baseline, data, control, tracker, parent_run_id, extra_tags,
                         on_run_start, work_once)
    else:
        result = method_run
    for name in (a for a in arms if a != "method"):
        derived = control_arm(name, config, untuned, baseline, data, progress)
        result.controls.append(run_arm(config, method, derived, baseline, data, control, tracker,
                                       parent_run_id, {**(extra_tags or {}),
                                                       **({"derived_from": result.run_id} if result.run_id else {})},
                                       on_run_start, work_once))
    return result


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
