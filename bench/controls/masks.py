"""The pruning masks of a model, as the controls read them."""
from __future__ import annotations

import torch
from torch import nn


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """``module_name.param`` -> the pruning mask of every masked tensor of ``model``."""
    out = {}
    for name, module in model.named_modules():
        for param in ("weight", "bias"):
            mask = getattr(module, f"{param}_mask", None)
            if mask is not None:
                out[f"{name}.{param}"] = mask.detach().clone()
    return out
