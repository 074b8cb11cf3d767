"""Magnitude pruning baselines (Han et al. 2015; ShrinkBench's GlobalMagWeight / LayerMagWeight; IMP).

Spec: docs/methods/magnitude.md. Unstructured: the result keeps the dense shapes with fixed masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from methods import register
from methods.common.base import Context, Method
from methods.common.pruning import (apply_masks, effective, global_masks, keep_count, max_masked_ratio,
                                    prunable_count, prunable_tensors, topk_mask)


@register("magnitude")
@dataclass(frozen=True)
class Magnitude(Method):
    """Keep the largest |w| (or random positions, the control) at exactly the budget.

    scope: ``global`` ranks all prunable weights together; ``layer`` keeps the same fraction of each tensor.
    schedule: ``one-shot`` prunes once; ``iterative`` reaches the target in ``rounds`` geometric steps
    (equal fraction of survivors removed per round) with the shared fine-tune budget between rounds.
    Unlike ShrinkBench's quantile threshold, exactly the budgeted number of entries is kept
    (ties broken by position), so the achieved ratio is exact.
    """

    comparison_variants = ({}, {"random": "true"})  # random pruning: the control every masked method should beat
    # Global ranking or the same fraction of every tensor (the per-layer budget, the setting that matters most).
    tuning_candidates = ({}, {"scope": "layer"})

    scope: Literal["global", "layer"] = "global"
    schedule: Literal["one-shot", "iterative"] = "one-shot"
    rounds: int = 3
    random: bool = False
    prune_bias: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= 100:
            raise ValueError(f"rounds must be between 1 and 100, got {self.rounds}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"scope": trial.suggest_categorical("scope", ["global", "layer"])}

    def planned_finetunes(self, model: nn.Module, target_ratio: float) -> int:
        return self.rounds - 1 if self.schedule == "iterative" else 0

    def max_ratio(self, model: nn.Module) -> float:
        return max_masked_ratio(model, prunable_tensors(model, include_bias=self.prune_bias))

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        tensors = prunable_tensors(model, include_bias=self.prune_bias)
        final_keep = keep_count(model, target_ratio, tensors)
        total = prunable_count(tensors)
        rounds = self.rounds if self.schedule == "iterative" else 1
        generator = context.generator()
        for r in range(1, rounds + 1):
            # Geometric schedule: after round r a fraction (κ)^(r/R) survives (IMP's constant P per round).
            keep = final_keep if r == rounds else round(total * (final_keep / total) ** (r / rounds))
            self._prune_to(tensors, keep, generator)
            if r < rounds:
                model = context.finetune(model)
                context.log_metrics({"round_keep_fraction": keep / total}, r)
        return model

    def _prune_to(self, tensors: list[tuple[nn.Module, str]], keep: int, generator: torch.Generator) -> None:
        weights = [effective(m, n) for m, n in tensors]
        if self.random:
            scores = [torch.rand(w.shape, generator=generator) for w in weights]
        else:
            scores = [w.abs() for w in weights]
        # Already-pruned entries rank last so the surviving set only shrinks across rounds.
        scores = [torch.where(w != 0, s, torch.full_like(s, -1.0)) for s, w in zip(scores, weights)]
        if self.scope == "global":
            masks = global_masks(scores, keep)
        else:
            total = sum(s.numel() for s in scores)
            counts = _apportion(keep, [s.numel() / total for s in scores], [s.numel() for s in scores])
            masks = [topk_mask(s, c) for s, c in zip(scores, counts)]
        apply_masks(tensors, masks)


def _apportion(total: int, shares: list[float], caps: list[int]) -> list[int]:
    """Split an integer total by shares (largest remainders), each part within [1, cap]."""
    raw = [total * s for s in shares]
    counts = [max(1, min(c, int(r))) for r, c in zip(raw, caps)]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    i = 0
    while sum(counts) < total and i < 10 * len(order):
        j = order[i % len(order)]
        if counts[j] < caps[j]:
            counts[j] += 1
        i += 1
    return counts
