"""Light Multi-segment Activation (Xu, Ke, Zhang, Bian, Liu, AAAI 2020, Sec. 3; spec: docs/methods/lma.md).

A K-piece piecewise-linear activation whose cut points come from the statistics of the layer input
(mean ± 3 std split into K equal bins, eq. 3) and whose per-piece slope and intercept are learned and
shared by the whole layer (eq. 4). It costs 2K trainable scalars per layer and one segment index per
activation.
"""
from __future__ import annotations

import torch
from torch import nn


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
