"""The method contract and what a method may use while compressing (``Context``).

A method turns a trained model into a smaller one: ``compress(model, target_ratio, context)`` returns a
model whose compression ratio, params_total(dense) / params_effective(result), is within ±3 % of the
target, or raises ``CompressionError`` saying why the target is out of reach. Everything a method needs
from the outside world comes through the ``Context``, so methods run inside the suite's pipeline and in a
user's own training code alike (``Context(seed=0)`` is enough for one-shot methods).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import nn

from bench.recipes import TrainRecipe
from datasets import Data


# The method contract: the achieved compression ratio is within ±3 % of the requested one (the pipeline
# refuses a result outside it as a bug in the method; planners aim inside it).
RATIO_TOLERANCE = 0.03


class CompressionError(ValueError):
    """A target the method cannot reach on this model; the message says why."""


def reach_floor(ratio: float, digits: int = 4) -> float:
    """A largest reachable ratio as messages print it: ``digits`` significant digits, rounded down, so that
    the ratio a message suggests is never beyond reach."""
    if not math.isfinite(ratio) or ratio <= 0:
        return ratio
    scale = 10 ** (digits - 1 - math.floor(math.log10(ratio)))
    return math.floor(ratio * scale) / scale


class Fit(Protocol):
    def __call__(
        self, model: nn.Module, recipe: TrainRecipe, teacher: nn.Module | None = None,
        kd_weight: float = 0.0, temperature: float = 1.0,
    ) -> nn.Module: ...


def _no_training(model: nn.Module) -> nn.Module:
    return model


def _no_fit(model: nn.Module, recipe: TrainRecipe, teacher: nn.Module | None = None, kd_weight: float = 0.0,
            temperature: float = 1.0) -> nn.Module:
    raise CompressionError("this method trains a model (train-time methods, students); give its Context a fit "
                           "callable, e.g. the suite's pipeline, or bench.api.run_experiment")


@dataclass
class Context:
    """What the pipeline hands a method: data, seed, and the shared training machinery.

    ``finetune`` applies the protocol's fine-tune (iterative methods call it between rounds; under an
    equal budget each call gets its share of the arm's optimiser steps, see ``Method.planned_finetunes``);
    ``fit`` trains with an explicit recipe; ``scratch_recipe`` is what the protocol gives a model trained
    from random initialisation (train-time methods start from it, see ``train_recipe``); ``teacher`` is the
    cached dense baseline, never to be modified; ``log_metrics`` records step metrics (a method's own
    trajectory) on the run. Every training call is charged to the run's budget, which refuses an overrun.

    Outside the pipeline every field has a default: no fine-tune between rounds, and a ``fit`` that refuses
    (methods that must train say so with a CompressionError).
    """

    data: Data | None = None
    seed: int = 0
    finetune: Callable[[nn.Module], nn.Module] = _no_training
    fit: Fit = _no_fit
    teacher: nn.Module | None = None
    log_metrics: Callable[[dict[str, float], int], None] = lambda metrics, step: None
    evaluate: Callable[[nn.Module], float] | None = None  # validation accuracy of a model
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    scratch_recipe: TrainRecipe = field(default_factory=lambda: TrainRecipe())

    def train_recipe(self, **overrides: Any) -> TrainRecipe:
        """The protocol's from-scratch recipe with the method's pinned fields (those not None) applied."""
        pinned = {k: v for k, v in overrides.items() if v is not None}
        return replace(self.scratch_recipe, **pinned) if pinned else self.scratch_recipe

    def generator(self, salt: int = 0) -> torch.Generator:
        """A fresh generator seeded from the run seed, so a method's randomness is reproducible.

        The seed is hashed (SeedSequence) rather than used as is: a generator seeded with the run seed
        itself would replay the very stream that initialised the model's weights, correlating
        "random" choices with the weights.
        """
        import numpy as np

        return torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, salt, 0xC0FFEE]).generate_state(1)[0]))


@dataclass(frozen=True)
class Method:
    """Base class: subclasses are frozen dataclasses whose fields are the method's parameters.

    Field types (including ``Literal`` choices) are the parameter schema; ``__post_init__`` checks
    ranges. ``family`` is "post-training" or "train-time"; ``structured`` says whether the result is
    a physically smaller dense model (True) or masked weights (False).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "post-training"
    structured: ClassVar[bool] = False
    # Parameters that make the method quick enough for the contract tests (e.g. fewer epochs).
    smoke_params: ClassVar[dict[str, Any]] = {}
    # The variants ``make compare`` runs (each its own study): the defaults, and any control the method
    # itself provides (magnitude adds random pruning).
    comparison_variants: ClassVar[tuple[dict[str, str], ...]] = ({},)
    # The method's own settings a comparison tunes beside the lr, in order of preference: its defaults
    # (``{}``) first, then alternatives that matter under a short, equal budget. A protocol tunes the first
    # ``Protocol.settings`` of them for every method alike (``fair``: two), so every method gets the same
    # number of configurations; a method declares at least as many as the built-in protocols use.
    tuning_candidates: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    @property
    def result(self) -> str:
        """What ``compress`` returns: ``"masked"`` weights, a ``"structured"`` (physically smaller) model, or
        ``"generated"`` weights (a generator that materialises them). Control arms apply by it."""
        return "structured" if self.structured else "masked"

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        raise NotImplementedError

    def planned_finetunes(self, model: nn.Module, target_ratio: float) -> int:
        """The most ``context.finetune`` calls ``compress`` will make (0 for one-shot methods).

        Under an equal budget the protocol's fine-tune steps are split evenly between these calls and the
        final fine-tune, so an iterative method spends exactly what a one-shot one does; a call beyond the
        plan is refused. A method that stops early leaves the unspent share to the final fine-tune.
        """
        return 0

    def max_ratio(self, model: nn.Module) -> float | None:
        """The largest compression ratio ``compress`` can reach on ``model`` (None: not known without trying).

        A sweep that samples ratios (TPE) clips its range to it, so no trial is spent out of reach.
        """
        return None

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Hyperparameters an Optuna study may tune (besides the ratio); none by default."""
        return {}
