"""The training budget of one arm, counted in optimiser steps and charged on every fit.

Under an equal-budget protocol every arm's final model has seen the same number of epochs from random
initialisation (Liu et al., ICLR 2019, "Scratch-B"): a post-training arm starts from the dense baseline
and may take E epochs' worth of steps in all, split between its own rounds (``context.finetune``) and the
final fine-tune; a train-time arm trains ``baseline + E`` epochs from scratch and gets no fine-tune after.
Counting steps rather than epochs lets an iterative method give each round a fraction of an epoch and
still spend exactly what a one-shot method spends. A fit that would overrun is refused before it runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.recipes import TrainRecipe
from bench.training import fit_steps, steps_per_epoch
from methods.common.base import CompressionError


class BudgetError(CompressionError):
    """A configuration that would train an arm longer (or shorter) than its protocol allows."""


@dataclass
class Ledger:
    """Steps charged to one arm. ``total`` None: no equal budget (the ``quick`` protocol), only counted."""

    n_train: int
    total: int | None = None
    planned_finetunes: int = 0
    from_init_epochs: float = 0.0  # epochs the starting weights had already seen (the dense baseline's)
    spent: int = 0
    epochs: float = 0.0
    finetune_calls: int = 0
    finetune_epochs: float = 0.0
    what: str = "this arm"

    def steps_per_epoch(self, recipe: TrainRecipe) -> int:
        return steps_per_epoch(self.n_train, recipe.batch_size)

    def charge(self, recipe: TrainRecipe, max_steps: int | None = None, finetune: bool = False) -> int:
        """Charge one fit of ``recipe`` (capped at ``max_steps``); BudgetError if it overruns the total."""
        steps = fit_steps(recipe, self.n_train, max_steps)
        if self.total is not None and self.spent + steps > self.total:
            per_epoch = self.steps_per_epoch(recipe)
            raise BudgetError(
                f"{self.what} would train {(self.spent + steps) / per_epoch:g} epochs ({self.spent + steps} steps) "
                f"but the protocol allows {self.total / per_epoch:g} ({self.total} steps) on top of its starting "
                f"weights; leave the method's training parameters (epochs, lr, ...) unset so the protocol sets "
                f"them, or use --protocol quick")
        self.spent += steps
        epochs = steps / self.steps_per_epoch(recipe)
        self.epochs += epochs
        if finetune:
            self.finetune_epochs += epochs
        return steps

    def round_share(self) -> int | None:
        """Steps for each in-method fine-tune: an even share with the final fine-tune (None: unlimited)."""
        return None if self.total is None else self.total // (self.planned_finetunes + 1)

    def remaining(self) -> int | None:
        return None if self.total is None else self.total - self.spent

    def check_spent(self, recipe: TrainRecipe) -> None:
        """A train-time arm must use all of its budget itself (no fine-tune follows it)."""
        if self.total is not None and self.spent != self.total:
            per_epoch = self.steps_per_epoch(recipe)
            raise BudgetError(
                f"{self.what} trained {self.spent / per_epoch:g} epochs ({self.spent} steps) from scratch, but the "
                f"protocol gives every arm exactly {self.total / per_epoch:g} ({self.total} steps); leave the "
                f"method's epochs unset so the protocol sets them, or use --protocol quick")

    @property
    def train_epochs_total(self) -> float:
        """Epochs the final model has seen, counted from random initialisation (rounded to 1e-9: a sum of
        fractional rounds should read 15, not 14.999999999999998)."""
        return round(self.from_init_epochs + self.epochs, 9)
