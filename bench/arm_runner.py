"""The arm runner: one owner for an arm's life. It derives a control arm's model and budget from the method's
compressed model (``control_arm``), trains every arm under its step ledger inside the arm's open MLflow run
(``run_arm``: the final fine-tune with any rewind, or a control's training), trains the dense + fine-tune
control once per configuration (``ensure_control``), and hands each trained model to ``bench.records`` to be
measured and logged. Tracking never trains; training never logs a run."""
from __future__ import annotations

import time
from typing import Any, Callable

from torch import nn

import datasets
import methods
from bench.baseline import Baseline
from bench.budget import Ledger
from bench.config import ExperimentConfig
from bench.controls import get_control
from bench.export import clone
from bench.method_context import equal_total, train_rest
from bench.records import (Arm, RunResult, accuracy_before_training, arm_run, control_run, log_control,
                           log_trained_arm, tracked_control)
from bench.tracking import Tracker
from bench.training import fit


def run_arm(config: ExperimentConfig, method: methods.Method, arm: Arm, baseline: Baseline, data: datasets.Data,
            control: dict[str, float], tracker: Tracker, parent_run_id: str | None,
            extra_tags: dict[str, Any] | None, on_run_start: Callable[[str], None] | None,
            work_once: bool = True) -> RunResult:
    """Open the arm's run, record where its model starts, train it (``arm.train``, charged to ``arm.ledger``),
    then measure and log the trained model on that run."""
    with arm_run(config, method, arm, baseline, data, tracker, parent_run_id, extra_tags, on_run_start) as run:
        before = accuracy_before_training(arm.model, data)
        start = time.perf_counter()
        model = arm.train(arm.model)
        return log_trained_arm(run, config, method, arm, model, before, time.perf_counter() - start, baseline,
                               data, control, tracker, work_once)


def control_arm(name: str, config: ExperimentConfig, untuned: nn.Module, baseline: Baseline,
                data: datasets.Data, progress: bool) -> Arm:
    """A registered control (``bench.controls``) derived from the method's compressed model, with a budget equal
    to a one-shot arm's (``trains="finetune"``) or to a from-scratch arm's (``trains="scratch"``)."""
    control = get_control(name)
    n_train = data.sizes()["train"]
    model = control.derive(untuned, baseline.model, config.seed)
    if control.trains == "finetune":
        recipe = config.finetune
        ledger = Ledger(n_train, equal_total(config, recipe, n_train), from_init_epochs=config.baseline.epochs,
                        what=f"{name} control at {config.ratio:g}x")
    else:
        recipe = config.scratch_recipe()
        ledger = Ledger(n_train, equal_total(config, recipe, n_train), what=f"{name} control at {config.ratio:g}x")

    def train(m: nn.Module) -> nn.Module:
        return train_rest(m, recipe, ledger, config, data, progress, finetune=control.trains == "finetune")

    return Arm(name, model, train, ledger)


def ensure_control(tracker: Tracker, config: ExperimentConfig, baseline: Baseline,
                   data: datasets.Data, progress: bool = False) -> dict[str, float]:
    """The dense + fine-tune control (ratio 1): the protocol's fine-tune applied to the dense baseline, trained
    and logged once per configuration (found again by its ``control_key``); returns its metrics."""
    found = tracked_control(tracker, config)
    if found is not None:
        return found
    with control_run(tracker, config, baseline, data) as run_id:
        model = clone(baseline.model)
        start = time.perf_counter()
        fit(model, config.finetune, data, config.seed, progress=progress, accelerator=config.accelerator)
        return log_control(tracker, run_id, config, baseline, data, model, time.perf_counter() - start)
