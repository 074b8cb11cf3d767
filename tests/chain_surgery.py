"""Structured surgery on a flat ``SequentialNet``, kept as the tests' reference implementation: the methods
prune through the dependency graph (``methods.common.unit_groups``), and ``tests/test_graph_pruning.py`` checks
that graph pruning keeps bit-identical weights to this chain surgery on flat chains.

A *unit* is an output of a Linear layer (a row of its weight and its bias entry) or an output channel of
a Conv2d (a filter, its bias entry and the matching entries of a BatchNorm that follows it). Removing a
unit also removes the inputs of the next Linear/Conv2d that read it: one column for Linear -> Linear,
one input channel for Conv2d -> Conv2d, and a group of H*W columns for Conv2d -> Flatten -> Linear
(``Flatten`` lays NCHW out channel-major, so channel c owns columns c*H*W ... (c+1)*H*W - 1).
Optionally each kept unit's columns in the next layer are multiplied by a scale (the coreset method's
reweighting). The result is a physically smaller dense model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from bench.metrics import params_total
from bench.models import classifier_of
from methods.common.width_budget import (ACTIVATION_TYPES, NORM_TYPES, PASS_THROUGH_TYPES, WEIGHT_TYPES,
                                         WidthCount)


@dataclass(frozen=True)
class Slot:
    """One prunable layer of the chain and what its width reaches.

    index: position of the Linear/Conv2d in the Sequential; between: positions of the modules up to the
    next Linear/Conv2d (norms, activations, pools, Flatten); next_index: position of that next layer;
    group: input columns of the next layer per unit (H*W for Conv2d -> Flatten -> Linear, else 1).
    Slots hold positions only, so they stay valid after ``remove_units`` swaps modules in place.
    """

    index: int
    between: tuple[int, ...]
    next_index: int
    group: int


def width(layer: nn.Module) -> int:
    """Number of units (outputs) of a Linear or Conv2d layer."""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _in_width(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _check_layer(layer: nn.Module, where: str) -> None:
    if any(name.endswith("_orig") for name, _ in layer.named_parameters(recurse=False)):
        raise ValueError(f"{where} carries a prune mask; bake it (bench.export.bake) before structural surgery")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError(f"{where} is a grouped convolution (groups={layer.groups}); only groups=1 is supported")


def slots(model: nn.Sequential) -> list[Slot]:
    """Every Linear/Conv2d except the classifier (the last Linear), in forward order.

    Raises ValueError where a unit cannot be removed cleanly: a module between two layers that mixes
    units (anything but norms, element-wise activations, pools, dropout and Flatten), a grouped conv,
    a Linear feeding a Conv2d, or a Flatten whose column count is not a multiple of the channel count.
    """
    layers = [i for i, m in enumerate(model) if isinstance(m, WEIGHT_TYPES)]
    classifier = classifier_of(model)
    if classifier is None or not isinstance(model[layers[-1]], nn.Linear) or model[layers[-1]] is not classifier:
        raise ValueError("structured surgery needs a flat chain that ends with its classifier Linear")
    out = []
    for index, next_index in zip(layers, layers[1:]):
        layer, nxt = model[index], model[next_index]
        _check_layer(layer, f"layer {index}")
        _check_layer(nxt, f"layer {next_index}")
        between = tuple(range(index + 1, next_index))
        for i in between:
            module = model[i]
            if isinstance(module, NORM_TYPES):
                if module.num_features != width(layer):
                    raise ValueError(f"norm at {i} has {module.num_features} features; "
                                     f"layer {index} has {width(layer)} units")
            elif isinstance(module, nn.Flatten):
                if (module.start_dim, module.end_dim) != (1, -1):
                    raise ValueError(f"Flatten at {i} must flatten dims 1..-1, "
                                     f"got {module.start_dim}..{module.end_dim}")
            elif not isinstance(module, ACTIVATION_TYPES + PASS_THROUGH_TYPES) or list(module.parameters()):
                raise ValueError(f"cannot remove units across {type(module).__name__} at position {i}: "
                                 "it is not a per-unit operation")
        out.append(Slot(index, between, next_index, _group(model, index, next_index)))
    return out


def _group(model: nn.Sequential, index: int, next_index: int) -> int:
    layer, nxt = model[index], model[next_index]
    n, n_in = width(layer), _in_width(nxt)
    if isinstance(nxt, nn.Conv2d):
        if isinstance(layer, nn.Linear):
            raise ValueError(f"Linear at {index} feeds Conv2d at {next_index}; cannot map units to channels")
        group = 1
    elif isinstance(layer, nn.Conv2d):
        if n_in % n:
            raise ValueError(f"Linear at {next_index} has {n_in} inputs, not a multiple of the {n} channels at {index}")
        group = n_in // n
    else:
        group = 1
    if n * group != n_in:
        raise ValueError(f"layer {next_index} expects {n_in} inputs but layer {index} gives {n} units x {group}")
    return group


def widths(model: nn.Sequential) -> list[int]:
    """Current widths of the prunable layers, in forward order."""
    return [width(model[s.index]) for s in slots(model)]


# ----------------------------------------------------------------------------------------------------
# Surgery


def _linear_like(layer: nn.Module, in_width: int, out_width: int) -> nn.Module:
    kw = {"bias": layer.bias is not None, "device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Linear):
        new = nn.Linear(in_width, out_width, **kw)
    else:
        new = nn.Conv2d(in_width, out_width, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                        groups=1, padding_mode=layer.padding_mode, **kw)
    new.train(layer.training)
    return new


@torch.no_grad()
def _keep_outputs(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = _linear_like(layer, _in_width(layer), len(keep))
    new.weight.copy_(layer.weight[keep])
    if layer.bias is not None:
        new.bias.copy_(layer.bias[keep])
    return new


@torch.no_grad()
def _keep_inputs(layer: nn.Module, keep: torch.Tensor, group: int, scale: torch.Tensor | None) -> nn.Module:
    out_w = width(layer)
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        grouped = weight.reshape(out_w, -1, group)[:, keep]  # (out, kept units, group)
        if scale is not None:
            grouped = grouped * scale.to(weight)[None, :, None]
        weight = grouped.reshape(out_w, len(keep) * group)
        new = _linear_like(layer, len(keep) * group, out_w)
    else:
        weight = weight[:, keep]
        if scale is not None:
            weight = weight * scale.to(weight)[None, :, None, None]
        new = _linear_like(layer, len(keep), out_w)
    new.weight.copy_(weight)
    if layer.bias is not None:
        new.bias.copy_(layer.bias)
    return new


@torch.no_grad()
def _keep_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    device = next(iter(norm.state_dict().values()), keep).device
    new = type(norm)(len(keep), norm.eps, norm.momentum, norm.affine, norm.track_running_stats, device=device)
    if norm.affine:
        new.weight.copy_(norm.weight[keep])
        new.bias.copy_(norm.bias[keep])
    if norm.track_running_stats:
        new.running_mean.copy_(norm.running_mean[keep])
        new.running_var.copy_(norm.running_var[keep])
        new.num_batches_tracked.copy_(norm.num_batches_tracked)
    new.train(norm.training)
    return new


def remove_units(model: nn.Sequential, slot: Slot, keep: torch.Tensor | Sequence[int],
                 scale: torch.Tensor | None = None) -> None:
    """Keep only units ``keep`` of the layer at ``slot`` (in place; other modules are not touched).

    The layer keeps those rows (filters) and bias entries, a BatchNorm before the next layer keeps those
    features, and the next layer keeps the matching input columns (channels, or H*W-column groups after
    a Flatten), multiplied by ``scale[j]`` for the j-th kept unit when a scale is given. ``keep`` is
    used in the order given; pass it sorted to preserve the original order of units.
    """
    keep = torch.as_tensor(keep, dtype=torch.long)
    n = width(model[slot.index])
    if keep.ndim != 1 or len(keep) == 0 or len(torch.unique(keep)) != len(keep) or keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep must list 1..{n} distinct unit indices below {n}, got {keep.tolist()}")
    if scale is not None and tuple(scale.shape) != (len(keep),):
        raise ValueError(f"scale must have one entry per kept unit ({len(keep)}), got shape {tuple(scale.shape)}")
    model[slot.index] = _keep_outputs(model[slot.index], keep)
    for i in slot.between:
        if isinstance(model[i], NORM_TYPES):
            model[i] = _keep_norm(model[i], keep)
    model[slot.next_index] = _keep_inputs(model[slot.next_index], keep, slot.group, scale)


def resize(model: nn.Sequential, kept_widths: Sequence[int]) -> None:
    """Keep the first ``kept_widths[i]`` units of every prunable layer (a reference architecture, e.g. to
    count parameters or to train the same small network from scratch)."""
    for slot, w in zip(slots(model), kept_widths, strict=True):
        remove_units(model, slot, torch.arange(w))



def param_counter(model: nn.Sequential) -> WidthCount:
    """The ``WidthCount`` of a chain over its ``slots``: weights, biases, affine BatchNorm entries, the
    classifier and every other parameter as is."""
    found = slots(model)
    out_of = {s.index: k for k, s in enumerate(found)}
    in_of = {s.next_index: (k, s.group) for k, s in enumerate(found)}
    norm_of = {i: k for k, s in enumerate(found) for i in s.between if isinstance(model[i], NORM_TYPES)}
    terms: list[tuple[float, int | None, int | None]] = []
    for i, module in enumerate(model):
        if isinstance(module, WEIGHT_TYPES):
            per_pair = math.prod(module.kernel_size) if isinstance(module, nn.Conv2d) else 1
            out_slot = out_of.get(i)
            out_const = 1 if out_slot is not None else width(module)
            if i in in_of:
                in_slot, group = in_of[i]
                terms.append((per_pair * group * out_const, out_slot, in_slot))
            else:
                terms.append((per_pair * _in_width(module) * out_const, out_slot, None))
            if module.bias is not None:
                terms.append((out_const, out_slot, None))
        elif i in norm_of:
            terms.append((2.0 if module.affine else 0.0, norm_of[i], None))
        else:
            terms.append((float(params_total(module)), None, None))
    return WidthCount(tuple(width(model[s.index]) for s in found), tuple(terms))


def param_count(model: nn.Sequential, kept_widths: Sequence[float]) -> float:
    """Parameters of the chain ``model`` with its prunable layers at ``kept_widths`` (see ``param_counter``)."""
    return param_counter(model)(kept_widths)
