"""Data-independent coreset neuron pruning (Mussay et al., "Data-Independent Neural Pruning via
Coresets", ICLR 2020, arXiv:1907.04018; first titled "On Activation Function Coresets for Network Pruning").

Spec: docs/methods/coreset.md. Structured: every coupled unit group (a hidden layer of a chain, or a
residual stage with every layer that writes into or reads its stream; ``methods.common.unit_groups``) keeps a
sampled subset of its units and the result is a physically smaller dense network. No data is touched to
choose the units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from bench.metrics import params_total
from methods import register
from methods.common.base import RATIO_TOLERANCE, CompressionError, Context, Method
from methods.common.width_budget import WidthCount, budget_for_ratio, geometric_widths, integer_widths, widths_for_budget
from methods.common.unit_groups import UnitGroup, group_param_counter, group_widths, keep_units, unit_groups

# Activations for which sup_{|z|<=r} |φ(z)| = max(|φ(r)|, |φ(−r)|): monotone ones (Cor. 8/9 of the paper).
MONOTONE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.ELU, nn.CELU, nn.SELU, nn.ReLU6,
            nn.Hardtanh, nn.Hardsigmoid, nn.LogSigmoid, nn.Softsign)
# Activations with |φ(z)| <= |z|: a residual stream's value after the activation is then bounded by its
# pre-activation, so one radius (the sum over the stream's producers) bounds every block's pre-activation.
CONTRACTING = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh, nn.Tanh, nn.Softsign, nn.Identity)
MAX_DRAWS = 100_000_000  # safety net for "until k distinct" with vanishing probabilities


# ----------------------------------------------------------------------------------------------------
# Sensitivity (Alg. 2 line 2; Cor. 8/9)


def activation_after(group: UnitGroup) -> nn.Module:
    """The activation φ applied to the group's units (the identity where there is none).

    BatchNorm right after a producer is folded into the points (``unit_points``); pools, Flatten and the
    like keep every value inside [inf φ, sup φ] on the ball, so the bound still holds. Refused
    (ValueError): a BatchNorm after the activation, different activations on one group, an op the bound
    does not cover, and an activation that is not monotone. A group with several producers (a residual
    stream) or a parameter-free shortcut needs |φ(z)| <= |z| as well (``sensitivity_of``).
    """
    producers = {p.layer for p in group.producers}
    for norm in group.norms:
        if norm not in {p.norm for p in group.producers}:
            raise ValueError(f"{type(norm).__name__} follows the activation of group {group.index}; the coreset "
                             "bound needs the unit's output to be φ(p·x)")
    if group.other_ops:
        raise ValueError(f"group {group.index} passes through {', '.join(sorted(set(group.other_ops)))}, which the "
                         "coreset bound does not cover")
    kinds = {(type(a), repr(a)) for a in group.activations}
    if len(kinds) > 1:
        raise ValueError(f"group {group.index} has different activations ({', '.join(sorted(k[1] for k in kinds))})")
    activation = group.activations[0] if group.activations else nn.Identity()
    if not isinstance(activation, MONOTONE + (nn.Identity,)):
        names = ", ".join(c.__name__ for c in MONOTONE)
        raise ValueError(f"coreset sensitivity needs a monotone activation ({names}); "
                         f"group {group.index} is followed by {type(activation).__name__}")
    if (len(producers) > 1 or group.pads_out or group.pads_in) and not _contracting(activation):
        raise ValueError(f"group {group.index} is a residual stream with {type(activation).__name__}: its bound "
                         "needs |φ(z)| <= |z| (ReLU, LeakyReLU, ReLU6, Hardtanh, Tanh, Softsign)")
    return activation


def _contracting(activation: nn.Module) -> bool:
    if isinstance(activation, nn.LeakyReLU):
        return abs(activation.negative_slope) <= 1
    if isinstance(activation, nn.Hardtanh):
        return activation.min_val <= 0 <= activation.max_val
    return isinstance(activation, CONTRACTING)


@torch.no_grad()
def unit_points(group: UnitGroup) -> list[torch.Tensor]:
    """Per producer, p_i = [incoming weights (flattened filter), bias] per unit, shape (n, d+1) (paper §3,
    x̂ = (x, 1)).

    A BatchNorm right after the producer is folded in with its running statistics (its eval-mode affine
    map), so p_i·x̂ is the true pre-activation: our reading, as the paper has no BN.
    """
    out = []
    for producer in group.producers:
        layer, rows = producer.layer, producer.rows
        # On the CPU in float64: sampling uses a CPU generator, and tiny probabilities should not underflow.
        weight = layer.weight.detach().cpu()[rows].reshape(len(rows), -1).double()
        bias = (layer.bias.detach().cpu()[rows].double() if layer.bias is not None
                else torch.zeros(len(rows), dtype=torch.float64))
        norm = producer.norm
        if norm is not None:
            if not norm.track_running_stats:
                raise ValueError(f"{type(norm).__name__} keeps no running statistics; it cannot be folded")
            var, mean = norm.running_var.detach().cpu()[rows].double(), norm.running_mean.detach().cpu()[rows].double()
            scale = (var + norm.eps).rsqrt()
            shift = -mean * scale
            if norm.affine:
                gamma, beta = norm.weight.detach().cpu()[rows].double(), norm.bias.detach().cpu()[rows].double()
                scale, shift = scale * gamma, shift * gamma + beta
            weight, bias = weight * scale[:, None], bias * scale + shift
        out.append(torch.cat([weight, bias[:, None]], dim=1))
    return out


@torch.no_grad()
def outgoing_weights(group: UnitGroup) -> list[torch.Tensor]:
    """Per consumer, its weights grouped per unit, shape (k, n, g): g = 1 for Linear -> Linear, the kernel
    positions for Conv2d -> Conv2d, H*W for Conv2d -> Flatten -> Linear."""
    out = []
    for consumer in group.consumers:
        weight = consumer.layer.weight.detach().cpu().double()
        n = consumer.columns.shape[0]
        out.append(weight[:, consumer.columns.flatten()].reshape(weight.shape[0], n, -1))
    return out


def sensitivity_of(group: UnitGroup, beta: float) -> torch.Tensor:
    """s_i of every unit of a group; for one producer and one consumer exactly ``sensitivity`` (the paper).

    A group with several producers and consumers (a residual stage: every block's conv2+BN writes into the
    summed stream, every block's conv1 reads it) is bounded the same way, under the same assumption that
    every layer's input lies in the β-ball:
    * radius: the stream's pre-activation at any block is the sum of what its producers wrote so far, each
      at most β‖p_i‖, plus at most β from an option A shortcut that routes a unit of the previous stage
      into it; with |φ(z)| <= |z| the activation between blocks does not enlarge it (triangle
      inequality), so β·Σ_producers ‖p_i‖ (+β) bounds every block's pre-activation;
    * reach: the largest ‖W[j, i, :]‖₁ over all consumers (each reads the unit once), at least 1 where a
      parameter-free shortcut passes the unit on with weight 1.
    """
    points, outgoing = unit_points(group), outgoing_weights(group)
    activation = activation_after(group)
    if len(points) == 1 and len(outgoing) == 1 and not group.pads_in and not group.pads_out:
        return sensitivity(points[0], outgoing[0], activation, beta)
    norms = sum(p.double().norm(dim=1) for p in points)
    radius = beta * norms
    for pad in group.pads_out:  # units that receive a channel of the previous stage
        radius[pad.positions[pad.positions >= 0].cpu()] += beta
    reach = torch.zeros(group.width, dtype=torch.float64)
    for w in outgoing:
        reach = torch.maximum(reach, w.abs().sum(dim=2).amax(dim=0))
    for pad in group.pads_in:  # units passed on unscaled by the shortcut
        carried = (pad.positions >= 0).cpu()
        reach[carried] = reach[carried].clamp(min=1.0)
    return reach * sup_activation(activation, radius)


@torch.no_grad()
def sup_activation(activation: nn.Module, radius: torch.Tensor) -> torch.Tensor:
    """sup_{|z| <= r} |φ(z)| for a monotone φ: max(|φ(r)|, |φ(−r)|) (paper, Cor. 8/9)."""
    r = radius.double()
    return torch.maximum(activation(r).abs(), activation(-r).abs())


def sensitivity(points: torch.Tensor, outgoing: torch.Tensor, activation: nn.Module, beta: float) -> torch.Tensor:
    """s_i = max_j ‖W2[j, i, :]‖₁ · sup_{‖x̂‖<=β} |φ(p_i·x̂)| (Alg. 2 line 2).

    For fully connected layers the group has one entry and this is max_j |W2[j,i]| · max(|φ(±β‖p_i‖)|).
    For channels the ℓ1 norm over the kernel (or the H*W columns) bounds channel i's contribution to one
    output of the next layer when every activation lies in [−sup, sup]: the spec's suggested reading of
    the extended version (arXiv:2008.08316), whose text we could not obtain (unverified).
    """
    if outgoing.ndim == 2:
        outgoing = outgoing[:, :, None]
    reach = outgoing.abs().sum(dim=2).amax(dim=0)
    return reach * sup_activation(activation, beta * points.double().norm(dim=1))


def probabilities(s: torch.Tensor) -> torch.Tensor:
    """pr_i = s_i / Σ_l s_l; uniform where every sensitivity is zero (then no unit matters)."""
    total = s.sum()
    return s / total if total > 0 else torch.full_like(s, 1.0 / len(s))


# ----------------------------------------------------------------------------------------------------
# Sampling (Alg. 2 steps 2-4)


@dataclass(frozen=True)
class Sample:
    """Kept units (sorted), how often each was drawn, and the number of draws."""

    keep: torch.Tensor
    counts: torch.Tensor
    draws: int

    def scale(self, pr: torch.Tensor) -> torch.Tensor:
        """The reweighting c_i / (draws · pr_i) of Alg. 2 step 4 (unbiased for a fixed number of draws)."""
        return self.counts.double() / (self.draws * pr[self.keep].double())


def sample_fixed(pr: torch.Tensor, draws: int, generator: torch.Generator) -> Sample:
    """The paper's rule: ``draws`` i.i.d. draws from pr with replacement; the distinct ones are kept."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    counts = torch.zeros(len(pr), dtype=torch.long)
    chunk = 1_000_000
    for start in range(0, draws, chunk):
        idx = torch.multinomial(pr.double(), min(chunk, draws - start), replacement=True, generator=generator)
        counts += torch.bincount(idx, minlength=len(pr))
    keep = counts.nonzero().flatten()
    return Sample(keep, counts[keep], draws)


def sample_until(pr: torch.Tensor, k: int, generator: torch.Generator) -> Sample:
    """The official code's rule: draw with replacement until k distinct units are seen; the number of
    draws is then random (only approximately unbiased, spec "Pitfalls"), but the width is exactly k."""
    if not 1 <= k <= int((pr > 0).sum()):
        raise ValueError(f"k must be between 1 and the {int((pr > 0).sum())} units of positive probability, got {k}")
    seen = torch.zeros(len(pr), dtype=torch.bool)
    counts = torch.zeros(len(pr), dtype=torch.long)
    draws, chunk = 0, max(1024, 4 * k)
    while draws < MAX_DRAWS:
        idx = torch.multinomial(pr.double(), chunk, replacement=True, generator=generator)
        # Positions where an unseen unit appears for the first time, in draw order.
        first = torch.full((len(pr),), chunk, dtype=torch.long).scatter_reduce(
            0, idx, torch.arange(chunk), reduce="amin")
        new = first[~seen & (first < chunk)].sort().values
        missing = k - int(seen.sum())
        if len(new) >= missing:
            stop = int(new[missing - 1]) + 1  # the draw that brought the k-th distinct unit
            counts += torch.bincount(idx[:stop], minlength=len(pr))
            keep = counts.nonzero().flatten()
            return Sample(keep, counts[keep], draws + stop)
        counts += torch.bincount(idx, minlength=len(pr))
        seen |= counts > 0
        draws += chunk
    raise CompressionError(f"{MAX_DRAWS:,} draws did not give {k} distinct units: some sampling probabilities "
                           "are vanishingly small; use a smaller width or sampling=topk")


def draws_for_width(pr: torch.Tensor, k: int, limit: int = 10_000_000) -> int:
    """The smallest m whose expected number of distinct units, Σ_i 1 − (1 − pr_i)^m, reaches k."""
    def expected(m: int) -> float:
        return float((1 - (1 - pr.double()).pow(m)).sum())

    if expected(limit) < k:
        raise CompressionError(f"even {limit:,} draws are not expected to give {k} distinct units")
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if expected(mid) < k else (lo, mid)
    return lo


# ----------------------------------------------------------------------------------------------------
# The method


@register("coreset")
@dataclass(frozen=True)
class Coreset(Method):
    """Sensitivity sampling of neurons / channels, unit group by unit group in forward order.

    sampling: ``coreset`` draws from pr ∝ s (the paper); ``uniform`` draws from pr = 1/n with the same
    reweighting (the paper's uniform control); ``topk`` keeps the k largest ‖p_i‖ with no reweighting
    (the paper's "percentile"; ``draws`` and ``reweight`` do not apply).
    draws: ``until-k`` draws until the planned width is reached (official code; hits widths exactly);
    ``fixed`` makes m draws, m set so that the expected number of distinct units is the planned width
    (the paper; exactly unbiased), and re-plans the later layers around the width it gets.
    reweight: scale kept columns of the next layer by c_i/(draws·pr_i) (the estimator) or leave them.
    allocation: kept widths per layer for the whole-model budget: ``uniform`` (one keep fraction),
    ``cost-aware`` (maximise the geometric mean of widths, so expensive units are cut harder) or
    ``explicit`` (keep fractions proportional to ``keep_shares``, one per prunable layer).
    beta: radius of the input ball (irrelevant for ReLU: positively homogeneous).
    finetune_each_layer: the shared fine-tune after every pruned layer but the last (the paper, §4);
    otherwise only the pipeline's fine-tune at the end.
    A layer whose planned width is its full width is left untouched (sampling all n units would still
    reweight them). The model is modified in place and returned.
    """

    structured: ClassVar[bool] = True
    smoke_params: ClassVar[dict[str, Any]] = {"finetune_each_layer": False}
    # The whole fine-tune budget after the last layer instead of shared out after every pruned layer (§4).
    tuning_candidates: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"finetune_each_layer": False})

    sampling: Literal["coreset", "uniform", "topk"] = "coreset"
    draws: Literal["until-k", "fixed"] = "until-k"
    reweight: bool = True
    allocation: Literal["uniform", "cost-aware", "explicit"] = "uniform"
    keep_shares: tuple[float, ...] = ()
    beta: float = 1.0
    finetune_each_layer: bool = True

    def __post_init__(self) -> None:
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta (the input-ball radius) must be a positive number, got {self.beta}")
        if self.allocation == "explicit":
            if not self.keep_shares or min(self.keep_shares) <= 0:
                raise ValueError(f"allocation=explicit needs keep_shares, one positive number per prunable layer, "
                                 f"got {self.keep_shares}")
        elif self.keep_shares:
            raise ValueError(f"keep_shares is used only with allocation=explicit (allocation={self.allocation})")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "allocation": trial.suggest_categorical("allocation", ["uniform", "cost-aware"]),
            "reweight": trial.suggest_categorical("reweight", [True, False]),
            "finetune_each_layer": trial.suggest_categorical("finetune_each_layer", [True, False]),
        }

    def planned_finetunes(self, model: nn.Module, target_ratio: float) -> int:
        if not self.finetune_each_layer:
            return 0
        try:
            return max(len(unit_groups(model)) - 1, 0)
        except ValueError:  # compress refuses such a model with a CompressionError
            return 0

    def max_ratio(self, model: nn.Module) -> float | None:
        """Every unit group at one unit (the classifier and the parameters outside groups stay): exact, from
        the dependency graph's parameter count. None for a model the graph cannot prune (compress says why)."""
        try:
            count = group_param_counter(model)
        except ValueError:
            return None
        return params_total(model) / count([1] * count.size) if count.size else None

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        dense_params = params_total(model)
        budget = budget_for_ratio(dense_params, target_ratio)
        try:
            groups = unit_groups(model)
            for group in groups:
                activation_after(group)  # refuse unsupported activations before any work
            count = group_param_counter(model)
        except ValueError as e:
            # Structural limits of the model (grouped convs, non-monotone activations, layers whose units
            # cannot be removed) make the target out of reach for this method: a CompressionError, not a crash.
            raise CompressionError(f"coreset cannot prune {type(model).__name__} group by group: {e}") from None
        if not groups:
            raise CompressionError(f"coreset found no prunable unit group in {type(model).__name__} "
                                   "(only its classifier has Linear/Conv2d outputs)")
        plan = self.plan(count, budget)
        for pos in range(len(groups)):
            if self.draws == "fixed" and self.sampling != "topk" and pos > 0:
                plan = self._replan(model, count, budget, plan, pos, target_ratio)
            stats = self.prune_group(model, pos, plan[pos], context.generator(salt=pos))
            if context.evaluate is not None:
                stats["val_acc"] = context.evaluate(model)
            context.log_metrics({f"coreset_{k}": v for k, v in stats.items()}, pos)
            if self.finetune_each_layer and pos < len(groups) - 1:
                model = context.finetune(model)
        achieved = dense_params / params_total(model)
        if abs(achieved / target_ratio - 1) > RATIO_TOLERANCE:
            raise CompressionError(f"draws=fixed gave widths {group_widths(model)}, {achieved:.3g}x against the "
                                   f"requested {target_ratio:g}x (beyond ±3%); use draws=until-k to hit widths exactly")
        return model

    def plan(self, count: WidthCount, budget: float, fixed: dict[int, int] | None = None) -> list[int]:
        """Kept width per unit group for a parameter budget (the classifier is never pruned)."""
        if self.allocation == "cost-aware":
            return integer_widths(count, budget, geometric_widths(count, budget, fixed), fixed)
        shares = None
        if self.allocation == "explicit":
            if len(self.keep_shares) != count.size:
                raise ValueError(f"keep_shares has {len(self.keep_shares)} entries; the model has "
                                 f"{count.size} prunable unit groups")
            shares = self.keep_shares
        return widths_for_budget(count, budget, shares, fixed)

    def _replan(self, model: nn.Module, count: WidthCount, budget: float, plan: list[int], pos: int,
                target_ratio: float) -> list[int]:
        """Widths for the groups from ``pos`` on, given the random widths fixed draws gave the earlier ones."""
        got = group_widths(model)[:pos]
        try:
            return self.plan(count, budget, fixed=dict(enumerate(got)))
        except CompressionError:
            raise CompressionError(
                f"draws=fixed (the paper's rule, random widths) kept {got} units where {plan[:pos]} were planned, "
                f"and the later layers cannot make up the difference for {target_ratio:g}x within ±3%; "
                "use draws=until-k, which hits the planned widths exactly") from None

    def prune_group(self, model: nn.Module, index: int, k: int, generator: torch.Generator) -> dict[str, float]:
        """Keep k units of unit group ``index`` (in place); returns what happened, for logging."""
        group = unit_groups(model)[index]
        n = group.width
        if k >= n:
            return {"width": n, "draws": 0, "max_scale": 1.0}
        if self.sampling == "topk":
            norms = sum(p.norm(dim=1) for p in unit_points(group))
            keep = torch.argsort(norms, descending=True, stable=True)[:k].sort().values
            keep_units(model, index, keep)
            return {"width": k, "draws": 0, "max_scale": 1.0}
        s = sensitivity_of(group, self.beta)
        pr = probabilities(s) if self.sampling == "coreset" else torch.full((n,), 1.0 / n, dtype=torch.float64)
        keep, scale, draws = self._sample(pr, k, generator)
        keep_units(model, index, keep, scale if self.reweight else None)
        return {"width": len(keep), "draws": draws, "max_scale": float(scale.max()),
                "total_sensitivity": float(s.sum())}

    def _sample(self, pr: torch.Tensor, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(kept units, their scales, number of draws) for a planned width k."""
        positive = (pr > 0).nonzero().flatten()
        if k >= len(positive):
            # Units of zero probability add nothing on the ball (zero outgoing weights): keep every other
            # unit as it is and pad with zero-probability ones (lowest index first) to reach the width.
            zero = (pr == 0).nonzero().flatten()[: k - len(positive)]
            keep = torch.cat([positive, zero]).sort().values
            return keep, torch.ones(len(keep), dtype=torch.float64), 0
        if self.draws == "fixed":
            sample = sample_fixed(pr, draws_for_width(pr, k), generator)
        else:
            sample = sample_until(pr, k, generator)
        return sample.keep, sample.scale(pr), sample.draws
