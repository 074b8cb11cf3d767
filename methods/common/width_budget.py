"""Sizing a model's prunable units to a parameter budget: how many parameters a model has at given widths
(``WidthCount``, built for any model from its coupled unit groups by ``unit_groups.group_param_counter``),
and the widths that meet a budget (or a ShrinkBench ratio), by a common keep fraction over relative
*shares* (``widths_for_budget``), by the allocation that maximises the geometric mean of the widths
(``geometric_widths``, "cost-aware"), and rounded to integers within the contract's tolerance
(``integer_widths``). The classifier is never pruned.

The module types below say which layers hold units (``WEIGHT_TYPES``), which follow a unit's width
(``NORM_TYPES``) and which act on each unit alone and so survive a change of width (``ACTIVATION_TYPES``,
``PASS_THROUGH_TYPES``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from methods.common.base import RATIO_TOLERANCE, CompressionError, reach_floor

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
        dense = count(list(count.full))
        raise CompressionError(
            f"ratio {dense / budget:g}x (a budget of {budget:,.0f} parameters) is out of reach: even the narrowest "
            f"widths {[int(w) for w in lo]} leave {p_min:,.0f} parameters (the classifier is never pruned and every "
            f"layer keeps at least one unit); the largest ratio reachable on this model is "
            f"{reach_floor(dense / p_min):g}x")
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
