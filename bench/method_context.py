"""What a method's arm trains with: the method built from the configuration, its step budget (``Ledger``), the
training charged to that budget, the protocol's rewind to the initialisation, and the ``Context`` a method's
``compress`` receives."""
from __future__ import annotations

from typing import Any

from torch import nn

import datasets
import methods
from bench.baseline import Baseline
from bench.budget import BudgetError, Ledger
from bench.config import ExperimentConfig
from bench.export import clone
from bench.metrics import split_accuracy
from bench.recipes import TrainRecipe
from bench.training import fit, fit_steps
from methods import CompressionError, Context
from methods.common.pruning import rewind_to


def build_method(config: ExperimentConfig) -> methods.Method:
    """The configured method; raises the registry's or the parameter schema's clear error."""
    return methods.build(config.method, config.method_kwargs())


def equal_total(config: ExperimentConfig, recipe: TrainRecipe, n_train: int) -> int | None:
    """The steps ``recipe`` takes when the protocol equalises budgets (None: it does not, steps are only counted)."""
    return fit_steps(recipe, n_train) if config.protocol.equal_budget else None


def method_ledger(config: ExperimentConfig, method: methods.Method, dense: nn.Module, data: datasets.Data,
                  ratio: float) -> Ledger:
    """The method arm's budget: E epochs of steps on top of the baseline for post-training methods (split
    with their planned rounds), or baseline + E from scratch for train-time methods."""
    n_train = data.sizes()["train"]
    what = f"{config.method} at {ratio:g}x"
    if method.family == "train-time":
        return Ledger(n_train, equal_total(config, config.scratch_recipe(), n_train), what=what)
    return Ledger(n_train, equal_total(config, config.finetune, n_train), method.planned_finetunes(dense, ratio),
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


def train_rest(model: nn.Module, recipe: TrainRecipe, ledger: Ledger, config: ExperimentConfig,
                data: datasets.Data, progress: bool, finetune: bool) -> nn.Module:
    """Train ``model`` with ``recipe`` for what is left of ``ledger`` (the whole recipe when it has no total)."""
    return charged_fit(model, recipe, ledger, config, data, progress, ledger.remaining(), finetune)


def method_context(config: ExperimentConfig, data: datasets.Data, baseline: Baseline,
                   steps: list[tuple[dict[str, float], int]], progress: bool, ledger: Ledger) -> Context:
    """The ``Context`` a method's ``compress`` gets: its fine-tunes and fits charged to ``ledger`` (rewound first
    under a protocol that rewinds), the dense baseline as teacher, step metrics appended to ``steps``."""
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
