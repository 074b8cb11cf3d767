"""A worked example for method authors: a pruning criterion the suite does not ship, as a plugin.

**First-order Taylor importance** (Molchanov et al., "Pruning convolutional neural networks for resource
efficient inference", ICLR 2017, and "Importance estimation for neural network pruning", CVPR 2019): removing
weight w changes the loss by about ``g * w`` (g = dL/dw), so a weight whose product with its gradient is small
can go. Scored on a few calibration batches of the training split at the dense weights, then the budgeted
number of weights with the largest scores is kept, globally (unstructured; the dense shapes stay, with masks).

Two ways to accumulate over the calibration batches, the one setting ``fair`` tunes beside the lr:
``squared`` (2019: the mean over batches of (g_b * w)^2, which counts a weight whose gradient changes sign
across batches as important) and ``mean`` (2017: |w * mean_b g_b|, the first-order loss change over the whole
calibration set).

Compare it against the published runs, training only this method (see the README, "Your method against the
published ones")::

    python -m bench compare --plugin examples.taylor_score --methods taylor --against reference \\
        --dataset mnist-5k --model lenet300 --protocol fair

Everything here is public API: ``methods.register``, ``methods.common.base`` (``Method``, ``Context``,
``CompressionError``) and the masking helpers of ``methods.common.pruning``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods import register
from methods.common.base import CompressionError, Context, Method
from methods.common.pruning import (apply_masks, effective, global_masks, keep_count, max_masked_ratio,
                                    prunable_tensors)


@register("taylor")
@dataclass(frozen=True)
class TaylorScore(Method):
    """Keep the weights with the largest first-order Taylor importance, at exactly the budget.

    batches: calibration batches of the training split (the protocol's batch size, the order drawn from the
    run's seed); they compute gradients only: no optimiser step, so the training budget is untouched.
    accumulate: ``squared`` (mean of (g_b * w)^2) or ``mean`` (|w * mean_b g_b|).
    """

    # One alternative beside the defaults, like every built-in method: 2 settings x the protocol's lrs.
    tuning_candidates = ({}, {"accumulate": "mean"})

    batches: int = 8
    accumulate: Literal["squared", "mean"] = "squared"

    def __post_init__(self) -> None:
        if not 1 <= self.batches <= 1000:
            raise ValueError(f"batches must be between 1 and 1000, got {self.batches}")
        if self.accumulate not in ("squared", "mean"):
            raise ValueError(f"accumulate must be 'squared' or 'mean', got {self.accumulate!r}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"accumulate": trial.suggest_categorical("accumulate", ["squared", "mean"])}

    def max_ratio(self, model: nn.Module) -> float:
        return max_masked_ratio(model, prunable_tensors(model))

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        if context.data is None:
            raise CompressionError("taylor scores weights on calibration batches: run it with data (the pipeline "
                                   "passes the training split)")
        tensors = prunable_tensors(model)
        scores = self.scores(model, tensors, context)
        apply_masks(tensors, global_masks(scores, keep_count(model, target_ratio, tensors)))
        return model

    def scores(self, model: nn.Module, tensors: list[tuple[nn.Module, str]], context: Context) -> list[torch.Tensor]:
        """Each prunable tensor's importance, from ``batches`` calibration batches at the current weights."""
        # the trained parameter (``weight_orig`` where a mask is attached: its gradient is zero where pruned)
        params = [getattr(m, f"{n}_orig", getattr(m, n)) for m, n in tensors]
        sums = [torch.zeros_like(p) for p in params]
        was_training = model.training
        model.eval()  # dropout off, batch-norm statistics untouched: the score is of the model as it is
        seen = 0
        for x, y in context.data.train_batches(context.scratch_recipe.batch_size, context.seed):
            if seen == self.batches:
                break
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x.to(context.device)), y.to(context.device)).backward()
            for total, p, (m, n) in zip(sums, params, tensors):
                g = p.grad.detach()
                total += (g * effective(m, n).detach()) ** 2 if self.accumulate == "squared" else g
            seen += 1
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        if seen == 0:
            raise CompressionError("taylor found no calibration batch in the training split")
        if self.accumulate == "squared":
            return [total / seen for total in sums]
        return [(effective(m, n).detach() * total / seen).abs() for (m, n), total in zip(tensors, sums)]
