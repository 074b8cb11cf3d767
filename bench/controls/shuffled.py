"""``shuffled`` (Frankle et al., ICLR 2021, layer-wise shuffling): each masked tensor keeps the method's density
but at uniformly random positions, applied to the dense baseline's weights and fine-tuned like a one-shot
method. It asks whether the criterion beats its own per-layer fractions."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

import methods
from bench.controls import Control, register_control, seed_for
from bench.controls.masks import masks_of
from methods.common.pruning import apply_masks

_SALT = 0x5FF1E


@dataclass(frozen=True)
class Shuffled(Control):
    name = "shuffled"
    trains = "finetune"
    applies_to = ("masked",)
    line_style = ":"
    summary = "the method's per-layer densities at random positions on the dense weights, fine-tuned like it"

    def applies(self, method: object) -> bool:
        # Random pruning's shuffled control would be random pruning again: nothing to learn from it.
        return super().applies(method) and not getattr(method, "random", False)

    def derive(self, compressed: nn.Module, dense: nn.Module, seed: int) -> nn.Module:
        """The dense weights under the compressed model's masks, each permuted uniformly within its tensor."""
        masks = masks_of(compressed)
        if not masks:
            raise methods.CompressionError("the shuffled-mask control needs a masked result; this method's has no masks")
        model = copy.deepcopy(dense)
        modules = dict(model.named_modules())
        generator = torch.Generator().manual_seed(seed_for(seed, _SALT))
        tensors, new = [], []
        for key, mask in masks.items():
            name, _, param = key.rpartition(".")
            flat = mask.flatten()
            new.append(flat[torch.randperm(flat.numel(), generator=generator)].view_as(mask))
            tensors.append((modules[name], param))
        apply_masks(tensors, new)
        return model


register_control(Shuffled())
