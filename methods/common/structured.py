"""Structured surgery on a flat ``SequentialNet``: remove whole units and size the survivors to a budget.

A *unit* is an output of a Linear layer (a row of its weight and its bias entry) or an output channel of
a Conv2d (a filter, its bias entry and the matching entries of a BatchNorm that follows it). Removing a
unit also removes the inputs of the next Linear/Conv2d that read it: one column for Linear -> Linear,
one input channel for Conv2d -> Conv2d, and a group of H*W columns for Conv2d -> Flatten -> Linear
(``Flatten`` lays NCHW out channel-major, so channel c owns columns c*H*W ... (c+1)*H*W - 1).
Optionally each kept unit's columns in the next layer are multiplied by a scale (the coreset method's
reweighting). The result is a physically smaller dense model.

Budget helpers turn a parameter budget (or a ShrinkBench ratio) into kept widths per layer, by a common
keep fraction over relative *shares* (``widths_for_budget``) or by the allocation that maximises the
geometric mean of the widths (``geometric_widths``, "cost-aware"). The classifier is never pruned.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from bench.metrics import params_total
from bench.models import classifier_of
from methods.common.base import RATIO_TOLERANCE, CompressionError

WEIGHT_TYPES = (nn.Linear, nn.Conv2d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
# Parameter-free modules that act on each unit (channel) separately, so they survive a change of width.
ACTIVATION_TYPES = (
    nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink,
)
PASS_THROUGH_TYPES = (
    nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Flatten,
)


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


# ----------------------------------------------------------------------------------------------------
# Budget


@dataclass(frozen=True)
class WidthCount:
    """Parameters a model would have at given widths of its prunable units (layers of a chain, or coupled
    groups of any model), with ``full`` the current widths.

    The count is a sum of terms coef · Π(at most two widths): a layer's weights scale with its own width
    and with the width feeding it. Precomputed once and evaluated cheaply, also for real-valued widths (the
    budget solvers use the continuous relaxation), so one solver serves chains and graphs alike.
    """

    full: tuple[int, ...]
    terms: tuple[tuple[float, int | None, int | None], ...]

    @property
    def size(self) -> int:
        return len(self.full)

    def __call__(self, kept_widths: Sequence[float]) -> float:
        if len(kept_widths) != self.size:
            raise ValueError(f"need {self.size} widths (one per prunable layer), got {len(kept_widths)}")
        total = 0.0
        for coef, a, b in self.terms:
            total += coef * (1.0 if a is None else kept_widths[a]) * (1.0 if b is None else kept_widths[b])
        return total


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


def budget_for_ratio(dense_params: int, target_ratio: float) -> float:
    """The parameter budget dense_params / ratio (ShrinkBench's ratio); a ratio <= 1 is refused."""
    if not target_ratio > 1:
        raise CompressionError(f"compression ratio must be > 1, got {target_ratio}")
    return dense_params / target_ratio


def _ratio_error(budget: float, params: float) -> float:
    # achieved / target - 1 = (dense / params) / (dense / budget) - 1
    return budget / params - 1


def _bounds(count: WidthCount, fixed: dict[int, int]) -> tuple[list[float], list[float]]:
    full = count.full
    unknown = sorted(set(fixed) - set(range(len(full))))
    if unknown:
        raise ValueError(f"fixed widths name layer positions {unknown}; the model has {len(full)} prunable layers")
    lo = [float(fixed.get(i, 1)) for i in range(len(full))]
    hi = [float(fixed.get(i, w)) for i, w in enumerate(full)]
    return lo, hi


def _check_reach(count: WidthCount, budget: float, lo: list[float], hi: list[float], tolerance: float) -> None:
    p_min, p_max = count(lo), count(hi)
    if budget * (1 + tolerance) < p_min:
        raise CompressionError(
            f"the budget of {budget:,.0f} parameters is out of reach: even the narrowest widths "
            f"{[int(w) for w in lo]} leave {p_min:,.0f} parameters (the classifier is never pruned and every "
            f"layer keeps at least one unit); ask for a compression ratio at most {budget / p_min:.3g}x this one")
    if budget * (1 - tolerance) > p_max:
        raise CompressionError(f"the budget of {budget:,.0f} parameters exceeds the {p_max:,.0f} the model has; "
                               "the compression ratio must be > 1")


def widths_for_budget(count: WidthCount, budget: float, shares: Sequence[float] | None = None,
                      fixed: dict[int, int] | None = None, tolerance: float = RATIO_TOLERANCE) -> list[int]:
    """Integer widths whose parameter count meets ``budget`` within ``tolerance`` (as a ratio error).

    Free layer i gets width clip(t · shares[i] · n_i, 1, n_i) with one t for all (shares all 1: the same
    keep fraction everywhere); ``fixed`` maps layer positions (in ``slots`` order) to widths already
    decided. t is found by bisection on the continuous relaxation; ``integer_widths`` rounds. Raises
    CompressionError when no widths reach the budget within ``tolerance``.
    """
    fixed = dict(fixed or {})
    n = list(count.full)
    shares = [1.0] * len(n) if shares is None else [float(s) for s in shares]
    if len(shares) != len(n) or min(shares) <= 0:
        raise ValueError(f"need {len(n)} positive shares (one per prunable layer), got {shares}")
    lo, hi = _bounds(count, fixed)
    _check_reach(count, budget, lo, hi, tolerance)

    def at(t: float) -> list[float]:
        return [lo[i] if i in fixed else min(hi[i], max(1.0, t * shares[i] * n[i])) for i in range(len(n))]

    t_lo, t_hi = 0.0, max(1.0 / s for s in shares)
    for _ in range(100):
        t = (t_lo + t_hi) / 2
        t_lo, t_hi = (t, t_hi) if count(at(t)) < budget else (t_lo, t)
    return integer_widths(count, budget, at(t_hi), fixed, tolerance)


def integer_widths(count: WidthCount, budget: float, target: Sequence[float], fixed: dict[int, int] | None = None,
                   tolerance: float = RATIO_TOLERANCE) -> list[int]:
    """Round continuous widths ``target`` to integers that meet ``budget`` within ``tolerance``.

    Candidates: the integer widths within a couple of units of ``target`` in every free layer, each also
    with one layer moved to the width that fits the budget exactly given the others. Of those within a
    third of the tolerance, the one that departs least from ``target`` (sum of squared log ratios) wins;
    if none is that close, the nearest in parameter count.
    """
    fixed = dict(fixed or {})
    lo, hi = _bounds(count, fixed)
    _check_reach(count, budget, lo, hi, tolerance)
    free = [i for i in range(len(target)) if i not in fixed]
    radius = 2 if len(free) <= 4 else 1 if len(free) <= 7 else 0
    base = [int(min(hi[i], max(lo[i], round(target[i])))) for i in range(len(target))]

    def options(i: int) -> range:
        if i not in free:
            return range(base[i], base[i] + 1)
        return range(max(int(lo[i]), base[i] - radius), min(int(hi[i]), base[i] + radius) + 1)

    def departure(w: Sequence[int]) -> float:
        return sum(math.log(w[i] / target[i]) ** 2 for i in free)

    candidates = [list(w) for w in itertools.product(*(options(i) for i in range(len(target))))]
    # Rounding alone can miss a coarse budget (one first-layer unit of LeNet-300-100 costs ~800 parameters),
    # so each layer in turn also takes the exact width that fits the budget given the others.
    candidates += [fit for c in candidates for i in free for fit in _fit_one(count, budget, c, i, lo, hi)]
    errors = [abs(_ratio_error(budget, count(c))) for c in candidates]
    close = [c for c, e in zip(candidates, errors) if e <= tolerance / 3]
    best = min(close, key=departure) if close else candidates[errors.index(min(errors))]
    error = _ratio_error(budget, count(best))
    if abs(error) > tolerance:
        raise CompressionError(
            f"no widths reach the budget of {budget:,.0f} parameters within ±{tolerance:.0%}: the nearest, {best}, "
            f"give {count(best):,.0f} ({error:+.1%} off the requested ratio)")
    return best


def _fit_one(count: WidthCount, budget: float, w: list[int], i: int, lo: list[float],
             hi: list[float]) -> list[list[int]]:
    """Widths ``w`` with layer i's width replaced by the integers around the one that meets the budget
    exactly (the count is linear in any single width)."""
    base = count(w[:i] + [0] + w[i + 1:])
    slope = count(w[:i] + [1] + w[i + 1:]) - base
    if slope <= 0:
        return []
    exact = (budget - base) / slope
    values = {int(min(hi[i], max(lo[i], v))) for v in (math.floor(exact), math.ceil(exact))}
    return [w[:i] + [v] + w[i + 1:] for v in sorted(values)]


def geometric_widths(count: WidthCount, budget: float, fixed: dict[int, int] | None = None) -> list[float]:
    """Continuous widths that maximise Σ_i log w_i subject to P(w) = budget and 1 <= w_i <= n_i.

    The "cost-aware" allocation: at the optimum w_i · ∂P/∂w_i is the same for every layer not at a bound,
    i.e. one more percent of width costs the same number of parameters in every layer, so layers whose
    units are expensive (LeNet-300-100's first layer: 785 incoming weights each) are cut harder than
    cheap ones. In log-widths u the count P is a posynomial, hence convex, so this is a geometric
    program: coordinate ascent on Σ u_i − λ·P(e^u) (P is linear in each single width, so each coordinate
    has the closed form w_i = 1 / (λ ∂P/∂w_i)) inside a bisection on λ. Call ``integer_widths`` to round.
    """
    fixed = dict(fixed or {})
    lo, hi = _bounds(count, fixed)
    free = [i for i in range(len(lo)) if i not in fixed]

    def solve(lam: float) -> list[float]:
        w = list(hi)
        for _ in range(1000):
            change = 0.0
            for i in free:
                base = count(w[:i] + [0.0] + w[i + 1:])
                slope = count(w[:i] + [1.0] + w[i + 1:]) - base
                new = min(hi[i], max(lo[i], 1.0 / (lam * slope))) if slope > 0 else hi[i]
                change, w[i] = max(change, abs(new - w[i]) / w[i]), new
            if change < 1e-10:
                break
        return w

    log_lo, log_hi = -60.0, 10.0  # λ from "every layer at full width" to "every layer at one unit"
    for _ in range(80):
        mid = (log_lo + log_hi) / 2
        log_lo, log_hi = (mid, log_hi) if count(solve(math.exp(mid))) > budget else (log_lo, mid)
    return solve(math.exp(log_hi))
