"""LMA: a compact student with Light Multi-segment Activations, trained by knowledge distillation
(Xu, Ke, Zhang, Bian, Liu, AAAI 2020). Spec: docs/methods/lma.md.

The compression is the choice of a smaller student of the teacher's family (hidden widths / conv
channels scaled to the parameter budget); LMA is the add-on that raises the student's accuracy at
(almost) the same size. Structured: the result is a physically smaller dense model.

The activation (``LMA``, below): a K-piece piecewise-linear activation whose cut points come from the
statistics of the layer input (mean ± 3 std split into K equal bins, eq. 3) and whose per-piece slope and
intercept are learned and shared by the whole layer (eq. 4). It costs 2K trainable scalars per layer and one
segment index per activation. It lives here because only this method uses it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import nn

from bench.metrics import params_total
from bench.models import SequentialNet, create_model
from bench.recipes import TrainRecipe
from methods import register
from methods.common.base import RATIO_TOLERANCE, CompressionError, Context, Method
from methods.common.unit_groups import group_param_counter, resize_groups, unit_groups

class LMA(nn.Module):
    """h(x) = A_{j(x)}·x + β_{j(x)} with A = α + a⁰ (paper eq. 4), j(x) the segment of x.

    Statistics are **per layer**: one scalar mean μ and (unbiased) std σ over every element of the
    input (batch, channels and positions together), as in the paper and the official code; the spec
    marks per-channel statistics as a pitfall. Cut points are b_j = μ − 3σ + j·6σ/K (eq. 3); bins are
    left-closed [b_j, b_{j+1}) and the first and last segments extend to −∞ and +∞.

    Training mode uses the batch statistics and updates running averages
    μ̄ ← ρ·μ̄ + (1−ρ)·μ_B (same for σ), started at 0 with ρ = 0.99 as in the official code. Eval mode
    uses μ̄, σ̄ and does **not** update them. Deviation from the official code, which updates them on
    every forward call (eval included): the paper says the statistics behave "like BatchNorm", and a
    model whose outputs drift each time it is evaluated cannot be measured or exported reproducibly.
    Like the official code there is no bias correction, so after t training steps μ̄ = (1−ρᵗ)·μ_B on a
    fixed input: eval outputs are only meaningful after a few hundred steps (about one epoch of
    Fashion-MNIST at batch 128 brings 1−ρᵗ to 0.98).

    Initialisation: α = β = 0 and a⁰ = (⌊K/2⌋ zeros, then ones), so for even K the function starts as
    x·1[x ≥ μ] (ReLU when the layer input has zero mean, e.g. after BatchNorm). For odd K the switch
    from slope 0 to 1 sits half a bin below μ (spec "Pitfalls"); K = 1 starts as the identity.

    No continuity is imposed: h may jump at the cut points. Cut points are computed without
    gradient, so gradients reach α, β and x (∂h/∂x = A_{j(x)}) but never μ or σ (spec step 6).
    ``eps`` keeps the bin width positive on a constant input (spec "Pitfalls": σ = 0).
    """

    def __init__(self, segments: int = 8, momentum: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        if segments < 1:
            raise ValueError(f"LMA needs at least 1 segment, got {segments}")
        if not 0 <= momentum < 1:
            raise ValueError(f"LMA momentum must be in [0, 1), got {momentum}")
        self.segments, self.momentum, self.eps = segments, momentum, eps
        self.alpha = nn.Parameter(torch.zeros(segments))  # learnable slope offsets
        self.beta = nn.Parameter(torch.zeros(segments))  # learnable intercepts
        offset = torch.zeros(segments)
        offset[segments // 2:] = 1.0
        # A fixed constant of the architecture (a⁰), not a parameter: kept in state_dict, never trained.
        self.register_buffer("slope_offset", offset)
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_std", torch.zeros(()))

    @property
    def slopes(self) -> torch.Tensor:
        """A_j = α_j + a⁰_j, the slope of each segment (paper eq. 4)."""
        return self.alpha + self.slope_offset

    @property
    def intercepts(self) -> torch.Tensor:
        return self.beta

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) this forward uses: batch statistics of ``x`` in training mode, running ones in eval."""
        if not self.training:
            return self.running_mean, self.running_std
        x = x.detach()
        mean = x.mean()
        # Tensor.std is unbiased (official code); a single element has no spread.
        std = x.std() if x.numel() > 1 else torch.zeros_like(mean)
        return mean, std

    def cut_points(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """b_0..b_K = μ − 3σ + j·6σ/K for j = 0..K (paper eq. 3), σ floored at ``eps``."""
        width = self._width(std)
        steps = torch.arange(self.segments + 1, dtype=width.dtype, device=width.device)
        return mean - 3 * std.clamp_min(self.eps) + steps * width

    def segment_index(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """j(x) = clamp(⌊(x − b_0)/Δ⌋, 0, K−1): floor, not truncation, so points below b_0 land in 0."""
        with torch.no_grad():
            start = mean - 3 * std.clamp_min(self.eps)
            position = ((x - start) / self._width(std)).floor()
            # NaN inputs (a diverged run) would otherwise become an out-of-range index.
            position = position.nan_to_num(0.0).clamp_(0, self.segments - 1)
            return position.long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.statistics(x)
        if self.training:
            self._update_running(mean, std)
        index = self.segment_index(x, mean, std)
        return self.slopes[index] * x + self.beta[index]

    def _width(self, std: torch.Tensor) -> torch.Tensor:
        return 6 * std.clamp_min(self.eps) / self.segments

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Back to the untrained state of ``__init__`` (slopes a⁰, zero intercepts, no statistics yet)."""
        self.alpha.zero_()
        self.beta.zero_()
        self.running_mean.zero_()
        self.running_std.zero_()

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        rho = self.momentum
        self.running_mean.mul_(rho).add_((1 - rho) * mean.to(self.running_mean.dtype))
        self.running_std.mul_(rho).add_((1 - rho) * std.to(self.running_std.dtype))

    def extra_repr(self) -> str:
        return f"segments={self.segments}, momentum={self.momentum}"


_SEED_SALT = 7  # the student's initialisation stream, apart from other uses of the run seed

Widths = tuple[int, ...]

# How each model family is rebuilt with other hidden widths: the widths are read off the teacher
# (conv out-channels, then hidden Linear out-features, in order) and mapped to the builder's kwargs.
# LeNet-300-100 is an MLP with fixed widths, so its students are MLPs.
_FAMILIES: dict[str, Callable[[Widths], tuple[str, dict[str, Any]]]] = {
    "mlp": lambda w: ("mlp", {"widths": w}),
    "lenet300": lambda w: ("mlp", {"widths": w}),
    "lenet5": lambda w: ("lenet5", {"channels": w[:2], "hidden": w[2]}),
    "cnn": lambda w: ("cnn", {"channels": w}),
    # Residual and VGG families scale as a whole: the widest stage (64·width) / first conv (64·width) sets it.
    **{name: (lambda n: lambda w: (n, {"width": w[-1] / 64}))(name) for name in ("resnet20", "resnet32", "resnet56")},
    "vgg16": lambda w: ("vgg16", {"width": w[0] / 64, "hidden": tuple(w[13:])}),
}


@register("lma")
@dataclass(frozen=True)
class LightMultiSegmentActivation(Method):
    """Distil the teacher into a student at the parameter budget, with LMA (or ReLU) activations.

    student_activation: ``lma`` replaces every hidden activation by LMA(``segments``); ``relu`` is the
    paper's baseline student of the same size. The student's parameter count, LMA's 2K scalars per
    layer included, is within ±3 % of params_total(teacher) / ratio (hidden widths / conv channels
    scaled uniformly, see ``_fit_widths``). LMA takes the place of the activation wherever the family
    has one: after BatchNorm in ``cnn`` (so it starts as ReLU, as in the paper's CIFAR students), but
    straight after the Linear/Conv in ``mlp``/``lenet300``/``lenet5``, which have no BatchNorm (the
    paper's FC layers do), so there it starts as x·1[x ≥ μ] with μ the layer mean, not as ReLU.
    Loss (paper eq. 5 with the code's T² factor): kd_weight·T²·KL(p_t ‖ p_s) + (1 − kd_weight)·CE;
    kd_weight = 0 trains without the teacher (the "no KD" control).
    epochs, lr, optimizer, schedule, batch_size: the student's training budget. Unset (None, the default)
    they come from the protocol's from-scratch recipe: under ``fair`` the dense baseline's epochs plus
    the extra budget E at the learning rate being tuned, so the student sees as many optimiser steps from
    initialisation as every other arm; under ``quick`` the dense baseline's recipe. Pinning them under an
    equal-budget protocol is refused when it over- or under-spends. (The paper used SGD at 1e-2 for up to
    200 epochs on CIFAR-10.)
    """

    family = "train-time"
    structured = True
    smoke_params = {"epochs": 1}
    # Fewer segments: the paper studies K from 4 up (its Fig. 2); fewer breakpoints train faster in a short budget.
    tuning_candidates = ({}, {"segments": 4})

    student_activation: Literal["lma", "relu"] = "lma"
    segments: int = 8
    kd_weight: float = 0.7
    temperature: float = 2.0
    epochs: int | None = None
    lr: float | None = None
    optimizer: Literal["adam", "sgd"] | None = None
    schedule: Literal["constant", "cosine"] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.segments <= 64:
            raise ValueError(f"segments must be between 1 and 64, got {self.segments}")
        if not 0 <= self.kd_weight <= 1:
            raise ValueError(f"kd_weight must be in [0, 1] (0 = no distillation), got {self.kd_weight}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (the student starts untrained), got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        # Even K keeps the x·1[x ≥ μ] initialisation; the paper studies K from 4 to above 10 (Fig. 2).
        return {
            "segments": trial.suggest_int("segments", 4, 12, step=2),
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        }

    def recipe(self, context: Context) -> TrainRecipe:
        """The protocol's from-scratch recipe with the fields this method pins."""
        return context.train_recipe(epochs=self.epochs, lr=self.lr, optimizer=self.optimizer,
                                    schedule=self.schedule, batch_size=self.batch_size)

    def compress(self, model: SequentialNet, target_ratio: float, context: Context) -> nn.Module:
        seed = int(torch.randint(2**31 - 1, (1,), generator=context.generator(_SEED_SALT)))
        student = build_student(model, target_ratio, self.student_activation, self.segments, seed)
        context.log_metrics({"student_params": params_total(student)}, 0)
        if self.kd_weight == 0:
            return context.fit(student, self.recipe(context))
        teacher = context.teacher if context.teacher is not None else model
        return context.fit(student, self.recipe(context), teacher, kd_weight=self.kd_weight, temperature=self.temperature)


def build_student(teacher: SequentialNet, ratio: float, activation: Literal["lma", "relu"] = "lma",
                  segments: int = 8, seed: int | None = None) -> SequentialNet:
    """An untrained student of the teacher's family with params_total(teacher)/ratio parameters (±3 %).

    Raises CompressionError for a ratio <= 1, an unknown family, or a budget no student meets.
    """
    if not ratio > 1:
        raise CompressionError(f"lma builds a smaller student, so the compression ratio must be > 1, got {ratio}")
    family = getattr(getattr(teacher, "spec", None), "name", None)  # a user's own module may carry no spec
    if family not in _FAMILIES:
        return _graph_student(teacher, ratio, activation, segments, seed)
    total = params_total(teacher)
    budget = total / ratio

    def make(widths: Widths, seed: int | None = None) -> SequentialNet:
        return _student(teacher, widths, activation, segments, seed)

    def count(widths: Widths) -> int:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            return params_total(make(widths))

    widths = _fit_widths(_hidden_widths(teacher), count, budget)
    achieved = total / count(widths)
    if abs(achieved / ratio - 1) > RATIO_TOLERANCE:
        raise CompressionError(
            f"lma: the closest {family} student ({activation}, hidden widths {widths}) has {count(widths)} "
            f"parameters, a compression ratio of {achieved:.3f}x, not within ±3 % of the requested {ratio}x "
            f"(teacher {total} parameters); use a smaller ratio or a larger teacher")
    return make(widths, seed)


def _graph_student(teacher: nn.Module, ratio: float, activation: str, segments: int, seed: int | None) -> nn.Module:
    """A student of a model outside ``_FAMILIES``: the teacher's own architecture with every coupled unit
    group (``methods.common.unit_groups``) resized to the widths that meet the budget, re-initialised from
    ``seed``. Its activation modules are the teacher's; with ``lma`` every ``nn.ReLU`` module becomes LMA
    (a model that calls ``torch.relu`` in its forward has none to swap and is refused)."""
    try:
        count = group_param_counter(teacher)
    except ValueError as e:
        raise CompressionError(f"lma cannot scale the widths of {type(teacher).__name__}: {e}") from None
    if not count.full:
        raise CompressionError(f"lma cannot scale {type(teacher).__name__}: the dependency graph finds no prunable "
                               "unit group (only its classifier has Linear/Conv2d outputs)")
    relus = [name for name, m in teacher.named_modules() if isinstance(m, nn.ReLU)]
    modules = set(teacher.modules())
    functional = any(a not in modules for g in unit_groups(teacher) for a in g.activations)
    if activation == "lma" and (functional or not relus):
        raise CompressionError(f"lma cannot give {type(teacher).__name__} LMA activations: not every activation is an "
                               "nn.ReLU module to swap (its forward calls some as functions); use student_activation=relu")
    lma_params = params_total(LMA(segments)) * len(relus) if activation == "lma" else 0
    total = params_total(teacher)
    widths = _fit_widths(count.full, lambda w: round(count(w)) + lma_params, total / ratio)
    student = copy.deepcopy(teacher)
    resize_groups(student, widths)
    if activation == "lma":
        for name in relus:
            parent, _, child = name.rpartition(".")
            setattr(student.get_submodule(parent) if parent else student, child, LMA(segments))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for module in student.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    achieved = total / params_total(student)
    if abs(achieved / ratio - 1) > RATIO_TOLERANCE:
        raise CompressionError(
            f"lma: the closest student of {type(teacher).__name__} (group widths {widths}) has "
            f"{params_total(student)} parameters, {achieved:.3f}x, not within ±3 % of the requested {ratio}x")
    return student


def _student(teacher: SequentialNet, widths: Widths, activation: str, segments: int,
             seed: int | None) -> SequentialNet:
    """The teacher's family at ``widths`` with ReLU, every hidden ReLU then swapped for LMA if asked.

    The teacher's own activation is not copied: the paper's students are ReLU or LMA. ``spec`` keeps
    what ``create_model`` built (activation "relu"); the swapped activations are visible in the modules.
    """
    spec = teacher.spec
    name, kwargs = _FAMILIES[spec.name](widths)
    student = create_model(name, spec.input_shape, spec.num_classes, seed=seed, activation="relu", **kwargs)
    if activation == "lma":
        for i, layer in enumerate(student):
            if isinstance(layer, nn.ReLU):
                student[i] = LMA(segments)
    return student


def _hidden_widths(model: nn.Module) -> Widths:
    """Conv out-channels then hidden Linear out-features, in order (the classifier excluded)."""
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    return tuple(convs + [m.out_features for m in linears])


def _scaled(widths: Widths, scale: float) -> Widths:
    return tuple(max(1, round(scale * w)) for w in widths)


def _fit_widths(widths: Widths, count: Callable[[Widths], int], budget: float) -> Widths:
    """Hidden widths whose student has about ``budget`` parameters.

    A uniform width scale (found by bisection) keeps the teacher's shape and is used whenever it lands
    within tolerance. Where rounding makes it too coarse (e.g. LeNet-300-100 at 32x, where one unit of
    the first layer is ~9 % of the budget), layer widths are moved one or two at a time by the number
    of units that closes the gap (the count is linear in each width with the others fixed).
    """
    error = lambda w: abs(budget / count(w) - 1)  # noqa: E731  (the contract's relative ratio error)
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if count(_scaled(widths, mid)) <= budget:
            lo = mid
        else:
            hi = mid
    best = min((_scaled(widths, lo), _scaled(widths, hi)), key=error)
    if error(best) <= RATIO_TOLERANCE:
        return best
    return _refine(best, count, budget, error)


def _refine(widths: Widths, count: Callable[[Widths], int], budget: float,
            error: Callable[[Widths], float], passes: int = 3) -> Widths:
    """Greedy search over moves of one layer (both roundings of the gap) followed by an exact fit of another."""
    for _ in range(passes):
        candidates = []
        for i, step in _moves(widths, count, budget):
            moved = _bump(widths, i, step)
            candidates.append(moved)
            candidates += [_bump(moved, j, s) for j, s in _moves(moved, count, budget, rounding=round) if j != i]
        better = min(candidates, key=error, default=widths)
        if error(better) >= error(widths):
            break
        widths = better
    return widths


def _moves(widths: Widths, count: Callable[[Widths], int], budget: float,
           rounding: Callable[[float], int] | None = None) -> list[tuple[int, int]]:
    """(layer, step) pairs that move the count towards the budget: floor and ceil of gap/unit, or ``rounding``."""
    current = count(widths)
    moves = []
    for i in range(len(widths)):
        unit = count(_bump(widths, i, 1)) - current
        if unit == 0:  # a width the family does not use on its own (e.g. inside a uniformly scaled ResNet)
            continue
        units = (budget - current) / unit
        steps = {rounding(units)} if rounding else {math.floor(units), math.ceil(units)}
        moves += [(i, s) for s in steps if s]  # _bump keeps every width >= 1
    return moves


def _bump(widths: Widths, i: int, step: int) -> Widths:
    return widths[:i] + (max(1, widths[i] + step),) + widths[i + 1:]
