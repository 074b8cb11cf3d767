"""Control arms derived from a method's compressed model, trained under the same budget as the method.

* ``scratch`` (Liu et al., ICLR 2019): the compressed *architecture* of a structured result (coreset's
  kept widths, lma's student), re-initialised and trained from scratch for the baseline's epochs plus E.
  It asks whether the method's weights are worth more than its architecture.
* ``shuffled`` (Frankle et al., ICLR 2021, layer-wise shuffling): each masked tensor keeps the method's
  density but at uniformly random positions, applied to the dense baseline's weights and fine-tuned like a
  one-shot method. It asks whether the criterion beats its own per-layer fractions.

Which arms apply: ``scratch`` to structured methods, ``shuffled`` to masked ones (not to random pruning,
whose shuffle is itself); multihash's generated weights get neither.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

import methods
from methods.common.pruning import apply_masks

_SHUFFLE_SALT = 0x5FF1E
_SCRATCH_SALT = 0x5C7A


def applicable_arms(method: methods.Method, controls: tuple[str, ...]) -> tuple[str, ...]:
    """``("method", ...)`` plus the protocol's controls that make sense for this method."""
    arms = ["method"]
    if "scratch" in controls and method.structured and method.name != "multihash":
        arms.append("scratch")
    if "shuffled" in controls and not method.structured and not getattr(method, "random", False):
        arms.append("shuffled")
    return tuple(arms)


def _seed(seed: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, salt]).generate_state(1)[0])


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """``module_name.param`` -> the pruning mask of every masked tensor of ``model``."""
    out = {}
    for name, module in model.named_modules():
        for param in ("weight", "bias"):
            mask = getattr(module, f"{param}_mask", None)
            if mask is not None:
                out[f"{name}.{param}"] = mask.detach().clone()
    return out


def shuffled(compressed: nn.Module, dense: nn.Module, seed: int) -> nn.Module:
    """The dense weights under the compressed model's masks, each permuted uniformly within its tensor."""
    masks = masks_of(compressed)
    if not masks:
        raise methods.CompressionError("the shuffled-mask control needs a masked result; this method's has no masks")
    model = copy.deepcopy(dense)
    modules = dict(model.named_modules())
    generator = torch.Generator().manual_seed(_seed(seed, _SHUFFLE_SALT))
    tensors, new = [], []
    for key, mask in masks.items():
        name, _, param = key.rpartition(".")
        flat = mask.flatten()
        new.append(flat[torch.randperm(flat.numel(), generator=generator)].view_as(mask))
        tensors.append((modules[name], param))
    apply_masks(tensors, new)
    return model


def scratch(compressed: nn.Module, seed: int) -> nn.Module:
    """The same architecture with freshly initialised parameters (and statistics) drawn from ``seed``."""
    if masks_of(compressed):
        raise methods.CompressionError("the scratch control re-initialises structured results; this one is masked")
    model = copy.deepcopy(compressed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(seed, _SCRATCH_SALT))
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return model
