"""ShrinkBench-style vocabulary for pruning methods: which tensors, how many to keep, masks from scores.

Masks are applied with ``torch.nn.utils.prune`` so they stay fixed through fine-tuning (the
forward pre-hook multiplies by the mask, so momentum or weight decay on ``weight_orig`` cannot revive a
pruned weight); ``bench.export`` bakes them in for deployment.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from bench.metrics import params_total
from bench.models import classifier_of
from methods.common.base import CompressionError, reach_floor

PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Linear and Conv2d layers except the classifier, in forward order."""
    classifier = classifier_of(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES) and m is not classifier]


def prunable_tensors(model: nn.Module, include_bias: bool = False) -> list[tuple[nn.Module, str]]:
    """(module, parameter name) pairs a pruning method may mask."""
    names = ("weight", "bias") if include_bias else ("weight",)
    return [(m, n) for _, m in prunable_layers(model) for n in names if getattr(m, n, None) is not None]


def prunable_count(tensors: Iterable[tuple[nn.Module, str]]) -> int:
    """How many entries the (module, parameter name) pairs hold: the pool a pruning method removes from."""
    return sum(getattr(m, n).numel() for m, n in tensors)


def effective(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward pass uses: the masked weight where a prune hook is attached.

    Recomputed from ``name_orig`` and the mask, because the hook refreshes ``name`` only at the next
    forward (loading a best-validation state leaves it stale until then).
    """
    orig = getattr(module, f"{name}_orig", None)
    if orig is None:
        return getattr(module, name).detach()
    return (orig * getattr(module, f"{name}_mask")).detach()


def current_mask(module: nn.Module, name: str) -> torch.Tensor:
    mask = getattr(module, f"{name}_mask", None)
    return mask.detach().clone() if mask is not None else torch.ones_like(getattr(module, name), dtype=torch.bool)


def keep_fraction(model: nn.Module, target_ratio: float, tensors: Iterable[tuple[nn.Module, str]]) -> float:
    """ShrinkBench's fraction_to_keep: κ with N_total / (κ·N_prunable + N_other) = target_ratio."""
    if not target_ratio > 1:
        raise CompressionError(f"compression ratio must be > 1, got {target_ratio}")
    n_total = params_total(model)
    n_prunable = prunable_count(tensors)
    n_other = n_total - n_prunable
    kappa = (n_total / target_ratio - n_other) / n_prunable if n_prunable else -1.0
    if not 0 < kappa <= 1:
        raise CompressionError(
            f"ratio {target_ratio:g} is out of reach: the {n_other:,} parameters that are not pruned "
            f"(classifier, biases, norms) are kept, and at least one pruned entry; the largest ratio reachable on "
            f"this model is {reach_floor(n_total / (n_other + 1)):g}x"
        )
    return kappa


def max_masked_ratio(model: nn.Module, tensors: Iterable[tuple[nn.Module, str]]) -> float:
    """The largest ratio a masked method pruning ``tensors`` reaches: every parameter outside them is kept,
    and (``keep_count``) at least one entry of them."""
    n_total = params_total(model)
    n_other = n_total - prunable_count(tensors)
    return n_total / (n_other + 1)


def keep_count(model: nn.Module, target_ratio: float, tensors: list[tuple[nn.Module, str]]) -> int:
    """Exact number of prunable entries to keep for the target ratio (rounded, at least 1)."""
    kappa = keep_fraction(model, target_ratio, tensors)
    return max(1, round(kappa * prunable_count(tensors)))


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly the k largest scores (ties broken by position, so counts are exact)."""
    flat = scores.flatten()
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.argsort(flat, descending=True, stable=True)
        mask[order[:k]] = True
    return mask.view_as(scores)


def global_masks(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Keep the k largest scores over the union of tensors."""
    flat = topk_mask(torch.cat([s.flatten() for s in scores]), k)
    return [part.view_as(s) for part, s in zip(torch.split(flat, [s.numel() for s in scores]), scores)]


def apply_masks(tensors: list[tuple[nn.Module, str]], masks: list[torch.Tensor]) -> None:
    """Attach (or replace) prune masks; an existing mask is combined so pruned entries stay pruned."""
    for (module, name), mask in zip(tensors, masks):
        mask = mask.to(dtype=getattr(module, name).dtype)
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            mask = mask * getattr(module, f"{name}_mask")
            prune.remove(module, name)
        prune.custom_from_mask(module, name, mask)


def density(module: nn.Module, name: str = "weight") -> float:
    t = effective(module, name)
    return float((t != 0).sum()) / max(t.numel(), 1)


@torch.no_grad()
def rewind_to(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Reset every parameter and buffer of a (masked) model to ``state``, a state dict of the same architecture
    taken before pruning (its random initialisation: the lottery ticket's and SAP's rewind; or the weights a
    method was given); masks stay, so pruned entries stay zero. A pruned weight's ``<name>_orig`` receives the
    values.

    Raises CompressionError when the model no longer has the initial architecture (a structured method
    removed units: those layers have nothing to rewind to).
    """
    modules = dict(model.named_modules())
    for key, value in state.items():
        path, _, name = key.rpartition(".")
        module = modules.get(path)
        target = None if module is None else getattr(module, f"{name}_orig", getattr(module, name, None))
        if not isinstance(target, torch.Tensor) or target.shape != value.shape:
            raise CompressionError(
                f"cannot rewind {key}: the model no longer has that tensor with shape "
                f"{tuple(value.shape)} (rewinding needs a masked model of the dense architecture; use a "
                f"protocol without rewinding for structured methods)")
        target.copy_(value)
