"""Structured multi-hashing (Eban et al., "Structured Multi-Hashing for Model Compression", CVPR 2020).

Spec: docs/methods/multihash.md. A train-time, structured method: every compressed weight tensor is a
slice of one virtual matrix M = X·Y generated from two thin trainable matrices, and the network is
trained end to end from scratch. What is stored (and counted) is the generator plus the parameters that
stay outside the pool; ``export`` materialises the weights into a plain model for deployment.

Which tensors are compressed: every Linear/Conv2d weight (the library's ``.*kernel.*`` rule), the
classifier's included unless ``compress_classifier=False``. Biases and norm-layer affine parameters stay
uncompressed, trainable and counted on top (spec, "Hitting a parameter budget"); BatchNorm running
statistics are buffers and never come from the pool.

Reaching the budget exactly: whole rank-one components cost 2m parameters each (2d² for the Kronecker
pool), so the r = ⌊B/2m⌋ whole components leave k = B − 2mr < 2m parameters over. They are spent on one
last *partial* rank-one component: an extra column of X with ⌈k/2⌉ trainable entries and an extra row of
Y with ⌊k/2⌋ trainable entries, at evenly spaced positions, every other entry fixed at zero. The stored
count is then exactly round(params_total / ratio). The partial row of Y starts at zero (so the virtual
weights' statistics at init are exactly the spec's r-component ones, and the component starts as a
no-op that training switches on, as in LoRA); with k = 1 the lone X entry stays inert. This exact-budget
device is ours, not the paper's (the spec reports 2·m·r ≤ budget, within 2m).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call

from bench.metrics import params_total
from bench.models import ModelSpec, classifier_of
from bench.recipes import TrainRecipe
from methods import register
from methods.common.base import CompressionError, Context, Method, reach_floor

COMPRESSED_TYPES = (nn.Linear, nn.Conv2d)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


# --------------------------------------------------------------------------------------------------
# Pools: the generators of the virtual matrix
# --------------------------------------------------------------------------------------------------

def _ceil_root(n: int, k: int) -> int:
    """The smallest integer d with d**k >= n (exact, no float rounding)."""
    d = max(1, int(round(n ** (1.0 / k))))
    while d ** k < n:
        d += 1
    while d > 1 and (d - 1) ** k >= n:
        d -= 1
    return d


def _spread(count: int, size: int) -> torch.Tensor:
    """``count`` distinct, evenly spaced positions in [0, size) (the partial component's live entries)."""
    return torch.arange(count, dtype=torch.long) * size // max(count, 1)


def _scatter(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """A length-``size`` vector that is ``values`` at ``index`` and zero (fixed, untrainable) elsewhere."""
    return values.new_zeros(size).index_put((index,), values)


class _Pool(nn.Module):
    """A generator of one virtual matrix; ``forward`` returns it (so hooks can count the calls).

    ``ranks`` whole components plus, when ``extra`` > 0, one partial component with ``extra``
    trainable entries split ⌈extra/2⌉ / ⌊extra/2⌋ between its two factors.
    """

    rows: int
    cols: int

    def _make_partial(self, extra: int, size_a: int, size_b: int, std: float, generator: torch.Generator) -> None:
        self.extra = extra
        if extra == 0:
            return
        ka, kb = (extra + 1) // 2, extra // 2
        self.part_a = nn.Parameter(torch.randn(ka, generator=generator) * std)
        self.part_b = nn.Parameter(torch.zeros(kb))  # zero: the component starts as a no-op
        self.register_buffer("index_a", _spread(ka, size_a), persistent=False)
        self.register_buffer("index_b", _spread(kb, size_b), persistent=False)

    @property
    def size(self) -> int:
        return self.rows * self.cols

    def trainable_count(self) -> int:
        return params_total(self)


class ProductPool(_Pool):
    """M = X·Y with X ∈ R^{m×r}, Y ∈ R^{r×m} (spec, Algorithm steps 1-3).

    Init X, Y ~ N(0, s²) with s = √(σ₀/√r), so each entry of XY has variance r·s⁴ = σ₀² (step 2).
    """

    def __init__(self, m: int, ranks: int, extra: int, sigma: float, generator: torch.Generator) -> None:
        super().__init__()
        if ranks < 1 or not 0 <= extra < 2 * m:
            raise ValueError(f"a product pool needs ranks >= 1 and 0 <= extra < 2m, got {ranks}, {extra}")
        self.rows = self.cols = m
        self.ranks = ranks
        std = math.sqrt(sigma / math.sqrt(ranks))
        self.x = nn.Parameter(torch.randn(m, ranks, generator=generator) * std)
        self.y = nn.Parameter(torch.randn(ranks, m, generator=generator) * std)
        self._make_partial(extra, m, m, std, generator)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, Y) with the partial component appended as one more column of X and row of Y."""
        if not self.extra:
            return self.x, self.y
        m = self.rows
        column = _scatter(self.part_a, self.index_a, m)
        row = _scatter(self.part_b, self.index_b, m)
        return torch.cat([self.x, column[:, None]], 1), torch.cat([self.y, row[None, :]], 0)

    def extra_repr(self) -> str:
        return f"m={self.rows}, ranks={self.ranks}, extra={self.extra}"

    def forward(self) -> torch.Tensor:
        x, y = self.factors()
        return x @ y


class KroneckerPool(_Pool):
    """M = Σ_i A_i ⊗ B_i with A_i, B_i ∈ R^{d×d}, d = ⌈P^{1/4}⌉ (spec, "Library variants": Kronecker pool).

    Init A_i, B_i ~ N(0, s²), s = √(σ₀/√r): each entry of M sums r products, variance r·s⁴ = σ₀².
    """

    def __init__(self, d: int, ranks: int, extra: int, sigma: float, generator: torch.Generator) -> None:
        super().__init__()
        if ranks < 1 or not 0 <= extra < 2 * d * d:
            raise ValueError(f"a Kronecker pool needs ranks >= 1 and 0 <= extra < 2d², got {ranks}, {extra}")
        self.d = d
        self.rows = self.cols = d * d
        self.ranks = ranks
        std = math.sqrt(sigma / math.sqrt(ranks))
        self.a = nn.Parameter(torch.randn(ranks, d, d, generator=generator) * std)
        self.b = nn.Parameter(torch.randn(ranks, d, d, generator=generator) * std)
        self._make_partial(extra, d * d, d * d, std, generator)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) stacks of d×d factors with the partial component appended."""
        if not self.extra:
            return self.a, self.b
        d = self.d
        part_a = _scatter(self.part_a, self.index_a, d * d).view(1, d, d)
        part_b = _scatter(self.part_b, self.index_b, d * d).view(1, d, d)
        return torch.cat([self.a, part_a], 0), torch.cat([self.b, part_b], 0)

    def extra_repr(self) -> str:
        return f"d={self.d}, ranks={self.ranks}, extra={self.extra}"

    def forward(self) -> torch.Tensor:
        a, b = self.factors()
        d = self.d
        # (A ⊗ B)[i·d + k, j·d + l] = A[i, j]·B[k, l], summed over components.
        return torch.einsum("tij,tkl->ikjl", a, b).reshape(d * d, d * d)


# --------------------------------------------------------------------------------------------------
# The budget
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """How a requested ratio becomes a pool: ``total / stored`` is the achieved ratio.

    stored = round(total / ratio) = uncompressed + cost_per_rank·ranks + extra, exactly.
    """

    total: int          # parameters of the dense model
    compressed: int     # N: weights generated by the pool
    uncompressed: int   # biases, norm layers, an uncompressed classifier, learnable per-tensor scales
    side: int           # m (product) or d (Kronecker)
    ranks: int          # whole rank-one components r
    extra: int          # trainable entries of the last, partial component (< cost_per_rank)
    cost_per_rank: int  # 2m or 2d²

    @property
    def stored(self) -> int:
        return self.uncompressed + self.cost_per_rank * self.ranks + self.extra


def component(compressed: int, pool: Literal["product", "kronecker"]) -> tuple[int, int]:
    """(side, parameters) of one rank-one component of the pool for ``compressed`` virtual weights."""
    side = _ceil_root(compressed, 2) if pool == "product" else _ceil_root(compressed, 4)
    return side, (2 * side if pool == "product" else 2 * side * side)


def plan_budget(total: int, compressed: int, uncompressed: int, target_ratio: float,
                pool: Literal["product", "kronecker"] = "product") -> Budget:
    """Split the budget round(total/ratio) into uncompressed parameters and a pool (spec, "Hitting a budget").

    Product: m = ⌈√N⌉, one component costs 2m. Kronecker: d = ⌈N^{1/4}⌉, one component costs 2d².
    Raises CompressionError when the ratio is <= 1 or when the uncompressed parameters leave less than
    one whole component. A ratio > 1 keeps the pool at most N variables (the spec's f <= 1) by itself.
    """
    if not target_ratio > 1:
        raise CompressionError(f"multihash needs a compression ratio > 1, got ratio {target_ratio}")
    if compressed < 1:
        raise CompressionError("multihash found no Linear/Conv2d weight to generate from a pool")
    side, cost = component(compressed, pool)
    stored = round(total / target_ratio)
    pool_budget = stored - uncompressed
    if pool_budget < cost:
        raise CompressionError(
            f"multihash cannot reach ratio {target_ratio:g}: the budget of {stored} parameters minus the "
            f"{uncompressed} kept outside the pool (biases, norm layers, scales) leaves {pool_budget}, less "
            f"than one rank-one component of the {pool} pool ({cost}); the largest ratio reachable on this model is "
            f"{reach_floor(total / (uncompressed + cost)):g}x")
    ranks, extra = divmod(pool_budget, cost)
    return Budget(total, compressed, uncompressed, side, ranks, extra, cost)


def fanout_scale(weight_shape: torch.Size) -> float:
    """Per-tensor modifier s_l (spec, Algorithm step 5, the library's fan-out modifier).

    Conv kernel: √(2 / (k_h·k_w·C_out)); dense kernel: 1/√out_dim; anything else: 1. PyTorch's
    (C_out, C_in, k_h, k_w) layout gives the same fan-out as TF's (k_h, k_w, C_in, C_out).
    """
    if len(weight_shape) == 4:
        c_out, _, kh, kw = weight_shape
        return math.sqrt(2.0 / (kh * kw * c_out))
    if len(weight_shape) == 2:
        return 1.0 / math.sqrt(weight_shape[0])
    return 1.0


# --------------------------------------------------------------------------------------------------
# The hashed network
# --------------------------------------------------------------------------------------------------

def compressed_layers(model: nn.Module, compress_classifier: bool = True) -> list[tuple[str, nn.Module]]:
    """Linear/Conv2d layers whose weights the pool generates, in registration (= forward) order."""
    classifier = None if compress_classifier else classifier_of(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, COMPRESSED_TYPES) and m is not classifier]


def _reset_from_scratch(body: nn.Module, skip: set[int], generator: torch.Generator) -> None:
    """Train from scratch (the paper): biases zero, norm layers identity, other kernels PyTorch-style.

    Uncompressed Linear/Conv2d weights (only the classifier, if excluded) get U(±1/√fan_in), PyTorch's
    default bound, drawn from ``generator`` so the result depends on the run seed only.
    """
    for module in body.modules():
        if isinstance(module, NORM_TYPES):
            module.reset_parameters()  # BatchNorm: also its running statistics
        if isinstance(module, COMPRESSED_TYPES):
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            if id(module) not in skip:
                w = module.weight
                bound = 1.0 / math.sqrt(w[0].numel())
                with torch.no_grad():
                    w.copy_((torch.rand(w.shape, generator=generator) * 2 - 1) * bound)


def _reorder_first(module: nn.Module, name: str) -> None:
    """Move parameter ``name`` first, so an exported layer's state_dict order is the dense layer's."""
    params = dict(module._parameters)
    module._parameters.clear()
    module._parameters[name] = params.pop(name)
    module._parameters.update(params)


class MultiHashNet(nn.Module):
    """A model whose Linear/Conv2d weights are slices of one virtual matrix (spec, Algorithm steps 3-6).

    ``body`` is the original architecture with the compressed ``weight`` parameters deleted; each
    forward computes M once, cuts the slices W_l = g_l·s_l·reshape(v[o_l : o_l + n_l]) (v = row-major
    flatten of M, offsets in layer order, PyTorch weight layout) and runs ``body`` with them via
    ``torch.func.functional_call``. Gradients reach only the pool (and the gains); no other copy of
    the compressed weights is held.
    """

    def __init__(self, model: nn.Module, budget: Budget, pool: Literal["product", "kronecker"] = "product",
                 sigma: float = 1.0, learnable_scale: bool = False, compress_classifier: bool = True,
                 generator: torch.Generator | None = None, from_scratch: bool = True) -> None:
        super().__init__()
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        body = copy.deepcopy(model)
        layers = compressed_layers(body, compress_classifier)
        if from_scratch:
            _reset_from_scratch(body, {id(m) for _, m in layers}, generator)
        self.names = [f"{n}.weight" for n, _ in layers]
        self.shapes = [tuple(m.weight.shape) for _, m in layers]
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.scales = [fanout_scale(torch.Size(s)) for s in self.shapes]
        self.compressed = sum(sizes)
        for _, m in layers:
            del m.weight  # the pool is now the only source of these weights
        self.body = body
        pool_cls = ProductPool if pool == "product" else KroneckerPool
        self.pool = pool_cls(budget.side, budget.ranks, budget.extra, sigma, generator)
        if self.pool.size < self.compressed:
            raise CompressionError(f"the pool's {self.pool.size} virtual weights cannot hold {self.compressed}")
        self.gains = nn.Parameter(torch.ones(len(layers))) if learnable_scale else None

    @property
    def spec(self) -> ModelSpec:
        """The wrapped model's ModelSpec, so the pipeline can read it from either form."""
        return self.body.spec

    def slice_weights(self, matrix: torch.Tensor) -> dict[str, torch.Tensor]:
        """The compressed weights cut from a virtual matrix: name -> g_l·s_l·reshape(v[o_l : o_l + n_l])."""
        v = matrix.reshape(-1)
        if v.numel() < self.compressed:
            raise ValueError(f"a virtual matrix of {v.numel()} entries cannot hold {self.compressed} weights")
        out = {}
        for i, (name, shape, offset, scale) in enumerate(zip(self.names, self.shapes, self.offsets, self.scales)):
            w = v[offset:offset + math.prod(shape)].view(shape) * scale
            out[name] = w * self.gains[i] if self.gains is not None else w
        return out

    def virtual_weights(self) -> dict[str, torch.Tensor]:
        return self.slice_weights(self.pool())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.body, self.virtual_weights(), (x,))

    def stored_parameter_count(self) -> int:
        """Trainable stored parameters: the pool, the gains and everything left outside the pool."""
        return params_total(self)

    @torch.no_grad()
    def export(self) -> nn.Module:
        """A plain copy of the architecture with the weights materialised (``bench.export.bake`` calls it)."""
        weights = self.virtual_weights()
        out = copy.deepcopy(self.body)
        for name, w in weights.items():
            module = out.get_submodule(name.rpartition(".")[0])
            module.weight = nn.Parameter(w.detach().clone())
            _reorder_first(module, "weight")
        out.train(self.training)
        return out


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------

@register("multihash")
@dataclass(frozen=True)
class MultiHash(Method):
    """Structured multi-hashing at an exact parameter budget, trained from scratch (spec: multihash.md).

    pool: ``product`` (M = X·Y, the paper's) or ``kronecker`` (M = Σ A_i ⊗ B_i, a library variant).
    sigma: σ₀, the std of a virtual weight before the fan-out scale. learnable_scale: one trainable
    gain per tensor (the library's VAR_FANOUT modifier; counted in the budget). Training recipe:
    epochs/lr/optimizer/weight_decay/batch_size/schedule; unset (None) they come from the protocol's
    from-scratch recipe (``fair``: baseline epochs + E at the tuned learning rate; ``quick``: the dense
    baseline's recipe, as the paper trains with "the optimiser, LR and epochs of the base model"). kd_weight > 0 distils from the dense baseline
    (off by default: the paper trains from scratch without a teacher).
    """

    family = "train-time"
    structured = True
    smoke_params = {"epochs": 1}
    # The pool that generates the weights: the paper's product M = X·Y, or the Kronecker sum (another rank).
    tuning_candidates = ({}, {"pool": "kronecker"})

    @property
    def result(self) -> str:
        return "generated"  # a generator and its hashes: no architecture to re-initialise, no mask to shuffle

    pool: Literal["product", "kronecker"] = "product"
    sigma: float = 1.0
    learnable_scale: bool = False
    compress_classifier: bool = True
    epochs: int | None = None
    lr: float | None = None
    optimizer: Literal["adam", "sgd"] | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    schedule: Literal["constant", "cosine"] | None = None
    kd_weight: float = 0.0
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not 0 <= self.kd_weight <= 1:
            raise ValueError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        TrainRecipe(**self._pinned())  # epochs, lr and batch_size are checked by TrainRecipe

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        # Weight decay and LR act on X, Y rather than on the weights: the spec expects them retuned.
        return {
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
            "pool": trial.suggest_categorical("pool", ["product", "kronecker"]),
        }

    def _pinned(self) -> dict[str, Any]:
        fields = dict(epochs=self.epochs, lr=self.lr, optimizer=self.optimizer, weight_decay=self.weight_decay,
                      batch_size=self.batch_size, schedule=self.schedule)
        return {k: v for k, v in fields.items() if v is not None}

    def recipe(self, context: Context) -> TrainRecipe:
        """The protocol's from-scratch recipe with the fields this method pins."""
        return context.train_recipe(**self._pinned())

    def _sizes(self, model: nn.Module) -> tuple[int, int, int]:
        """(all parameters, weights generated from the pool, parameters kept outside it)."""
        layers = compressed_layers(model, self.compress_classifier)
        total = params_total(model)
        compressed = sum(m.weight.numel() for _, m in layers)
        return total, compressed, total - compressed + (len(layers) if self.learnable_scale else 0)

    def max_ratio(self, model: nn.Module) -> float | None:
        """The ratio at which the budget holds the parameters outside the pool and one rank-one component."""
        total, compressed, uncompressed = self._sizes(model)
        return total / (uncompressed + component(compressed, self.pool)[1]) if compressed else None

    def build(self, model: nn.Module, target_ratio: float, generator: torch.Generator) -> MultiHashNet:
        """The untrained hashed network at exactly round(params_total / target_ratio) stored parameters."""
        total, compressed, uncompressed = self._sizes(model)
        budget = plan_budget(total, compressed, uncompressed, target_ratio, self.pool)
        return MultiHashNet(model, budget, self.pool, self.sigma, self.learnable_scale, self.compress_classifier,
                            generator)

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        hashed = self.build(model, target_ratio, context.generator())
        teacher = context.teacher if self.kd_weight > 0 else None
        if self.kd_weight > 0 and teacher is None:
            raise CompressionError("multihash: kd_weight > 0 needs the dense baseline as teacher; the context has none")
        return context.fit(hashed, self.recipe(context), teacher=teacher, kd_weight=self.kd_weight,
                           temperature=self.temperature)
