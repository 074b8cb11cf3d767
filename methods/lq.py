"""ℓq soft-sparsity adaptive pruning (Yang, Wang, Ding, Yang 2022, arXiv 2206.05604). Spec: docs/methods/lq.md.

The seed rule SAP (``methods/sap.py``) grew out of: each round every neuron loses a number of its smallest-|w|
weights set by its ℓq soft-sparsity index (``lq_prune_counts``). The PQ index, removing counted weights and the
round loop (rounds, trimming to the exact budget, the forced magnitude trim when the rule stalls, the logged
per-round trajectory) are the engine both share, ``methods/common/adaptive_rounds.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from methods import register
from methods.common.adaptive_rounds import ROUNDING_SLACK, AdaptiveRounds


def lq_prune_counts(w: torch.Tensor, mask: torch.Tensor, q: float, eta: float, scale: float, cap: float
                    ) -> torch.Tensor:
    """The seed ℓq rule per row (spec section B, steps 2-4; a *reconstruction* of arXiv 2206.05604):

    s_j = d_j^{1/q−1}·‖w_j‖_1/‖w_j‖_q, m_j = ⌈d_j·s_j^{q/(q−1)}·(1+η)^{1/(q−1)}⌉,
    ρ_j = min(c·(1 − m_j/d_j), cap) (0 if m_j > d_j), prune ⌊ρ_j·d_j⌋. Empty or all-zero rows prune nothing.
    """
    if not 0 < q < 1:
        raise ValueError(f"the seed ℓq rule needs 0 < q < 1, got q={q}")
    w = w.detach().double().abs() * mask
    d = mask.sum(dim=1)
    peak = w.amax(dim=1, keepdim=True)
    w = w / torch.where(peak > 0, peak, torch.ones_like(peak))
    norm_1 = w.sum(dim=1)
    norm_q = w.pow(q).sum(dim=1).pow(1 / q)
    valid = (d > 0) & (norm_1 > 0)
    d_safe = torch.where(valid, d, torch.ones_like(d)).double()
    s = d_safe.pow(1 / q - 1) * norm_1 / torch.where(valid, norm_q, torch.ones_like(norm_q))
    m = torch.ceil(d_safe * s.pow(q / (q - 1)) * (1 + eta) ** (1 / (q - 1)) * (1 - ROUNDING_SLACK))
    rho = torch.where(m > d_safe, torch.zeros_like(m), (scale * (1 - m / d_safe)).clamp(max=cap))
    counts = torch.floor(d_safe * rho * (1 + ROUNDING_SLACK) + ROUNDING_SLACK).long()
    return torch.where(valid, counts, torch.zeros_like(counts))


@register("lq")
@dataclass(frozen=True)
class LqAdaptive(AdaptiveRounds):
    """Seed ℓq rule, per neuron (spec section B; Yang, Wang, Ding, Yang, arXiv 2206.05604).

    Each round, neuron j with d_j unmasked incoming weights keeps m_j = ⌈d_j·s_j^{q/(q−1)}(1+η)^{1/(q−1)}⌉ of
    them, s_j = d_j^{1/q−1}‖w_j‖_1/‖w_j‖_q its ℓq soft-sparsity index, and loses ⌊min(c(1 − m_j/d_j), cap)·d_j⌋
    smallest-|w| weights (see ``lq_prune_counts``). RECONSTRUCTION: the paper's full text was not available;
    these steps, η, the scale c and the 0.9 cap follow the authors' prototype code (SAP repo, commit 80eab9c),
    defaults q = 0.5, η = 0, c = 5 from that prototype. Whether the paper rewinds is unverified (the
    prototype does; ``rewind`` is off by default here). Equals ``sap`` in neuron scope with (p, q) = (q, 1),
    γ = c, β = cap. Rounds, budget trimming, the forced magnitude trim when the rule stalls, and the logged
    trajectory are the module's (see the module docstring).
    """

    q: float = 0.5
    eta: float = 0.0
    scale: float = 5.0
    cap: float = 0.9

    smoke_params: ClassVar[dict[str, Any]] = {"rounds": 2}
    # Fewer rounds, for the same reason as SAP's: the rounds share the protocol's short fine-tune budget.
    tuning_candidates: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"rounds": 3})

    def __post_init__(self) -> None:
        self._check_rounds()
        if not 0 < self.q < 1:
            raise ValueError(f"q must be in (0, 1) for the ℓq rule, got {self.q}")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if not 0 < self.cap <= 1:
            raise ValueError(f"cap must be in (0, 1], got {self.cap}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"q": trial.suggest_float("q", 0.1, 0.9),
                "scale": trial.suggest_categorical("scale", [1.0, 3.0, 5.0, 7.0, 9.0])}

    def _unit_counts(self, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return lq_prune_counts(w, mask, self.q, self.eta, self.scale, self.cap)
