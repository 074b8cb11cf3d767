"""``scratch`` (Liu et al., ICLR 2019, "Rethinking the value of network pruning"): the compressed *architecture*
of a structured result (coreset's kept widths, lma's student), re-initialised and trained from scratch for the
baseline's epochs plus E. It asks whether the method's weights are worth more than its architecture."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

import methods
from bench.controls import Control, register_control, seed_for
from bench.controls.masks import masks_of

_SALT = 0x5C7A


@dataclass(frozen=True)
class Scratch(Control):
    name = "scratch"
    trains = "scratch"
    applies_to = ("structured",)  # not generated weights: a fresh generator is multihash itself
    line_style = "--"
    summary = "the compressed architecture re-initialised and trained baseline + E epochs"

    def derive(self, compressed: nn.Module, dense: nn.Module, seed: int) -> nn.Module:
        """The same architecture with freshly initialised parameters (and statistics) drawn from ``seed``."""
        if masks_of(compressed):
            raise methods.CompressionError("the scratch control re-initialises structured results; this one is masked")
        model = copy.deepcopy(compressed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(seed, _SALT))
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
        return model


register_control(Scratch())
