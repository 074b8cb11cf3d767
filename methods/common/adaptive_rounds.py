"""The adaptive-rounds engine that ``sap`` (Diao et al., ICLR 2023, arXiv 2302.05601) and ``lq`` (Yang, Wang,
Ding, Yang 2022, arXiv 2206.05604) share: the PQ index of each pruning unit's surviving weights, SAP's bound on
how many of them are worth keeping, removing counted weights, and the round loop. Spec: docs/methods/lq.md
(both methods). Both rules decide *how many* weights each pruning unit loses from how concentrated its
magnitudes are, then remove that many smallest-|w| weights; both are unstructured (masks with dense shapes;
the scope only allocates counts). The rules themselves live with their methods (``sap_prune_counts`` in
``methods/sap.py``, ``lq_prune_counts`` in ``methods/lq.py``). The loop (``AdaptiveRounds``):

* prune by the rule, ``context.finetune`` between rounds, optionally rewinding the surviving weights (and
  biases / norm layers) to the weights the method was given (the dense baseline) before each fine-tune;
* rounds run until the requested compression ratio is reached: the round that would overshoot is trimmed to
  the exact budget (its per-unit counts scaled down in proportion), and if the rule stalls (a round prunes
  nothing) or ``rounds`` is used up, the remainder is removed by a *forced global magnitude trim*, recorded
  as ``round_forced`` in the trajectory;
* per-round trajectory metrics (``context.log_metrics``, step = round; step 0 is the input model):
  ``round_ratio`` (dense params / effective params), ``round_val_acc_pruned`` (validation accuracy right after
  pruning), ``round_val_acc`` (after the round's fine-tune; absent for the final round, whose fine-tune is the
  pipeline's shared one), ``round_pq_index`` (PQ index, (p, q) = (0.5, 1), of the surviving prunable weights,
  i.e. d = number of unmasked entries as in SAP), ``round_pruned`` and ``round_forced``.

Conventions (deviations from the SAP code, see the spec's Pitfalls): the benchmark's prunable tensors are
every Linear/Conv2d weight *except the classifier* (SAP also prunes the classifier); biases and norm layers
are never pruned (as in SAP). Within a unit exactly c_u entries are removed, ties broken by position, instead
of SAP's ``|w| < pivot`` (the two differ only on tied magnitudes). Fine-tuning is the benchmark's shared
fine-tune with best-*validation* epoch selection (the SAP code keeps the best-*test* checkpoint). No model is
chosen between rounds: the output must sit at the requested ratio, so validation accuracy per round is only
recorded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.metrics import params_effective, params_total, pq_index
from methods.common.base import Context, Method
from methods.common.pruning import (apply_masks, current_mask, effective, keep_count, max_masked_ratio,
                                    prunable_tensors, rewind_to)

# Relative slack for ceil/floor of quantities that are integers in exact arithmetic (d·(1 − r/d) = d − r),
# so float error cannot move a count by one.
ROUNDING_SLACK = 1e-9


# --- PQ index and the retained-count bound (spec section A/C) -------------------------------------------

def check_pq(p: float, q: float) -> None:
    """The PQ index and its bound need 0 < p < q (spec Pitfalls: swapping them flips both exponents)."""
    if not 0 < p < q:
        raise ValueError(f"the PQ index needs 0 < p < q, got p={p}, q={q}; swap them or pick p < q")


def pq_index_rows(w: torch.Tensor, mask: torch.Tensor, p: float = 0.5, q: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row PQ index I_{p,q} over each row's unmasked entries, and the rows' unmasked counts d.

    Each row is ``bench.metrics.pq_index`` of its unmasked entries (Diao et al., ICLR 2023, Def. 1; SAP
    Algorithm 1 step 3 with d the number of unmasked entries), so the metric a run reports and the index a
    round prunes by are one formula: an empty or all-zero row gets 0, tiny negatives from rounding are 0.
    """
    check_pq(p, q)
    w = w.detach()
    index = [pq_index(row[keep], p, q) for row, keep in zip(w, mask.bool())]
    return torch.tensor(index, dtype=torch.float64), mask.sum(dim=1)


def retained_bound(d: torch.Tensor, index: torch.Tensor, p: float, q: float, eta_r: float = 0.0) -> torch.Tensor:
    """SAP Theorem 2's lower bound on the number of weights worth keeping (before the ceil):

    r = d·(1+η_r)^{−q/(q−p)}·(1 − I_{p,q})^{qp/(q−p)}  (spec section A, "PQI bound").
    """
    check_pq(p, q)
    if eta_r < 0:
        raise ValueError(f"eta_r must be >= 0, got {eta_r}")
    d = torch.as_tensor(d).double()
    index = torch.as_tensor(index).double()
    return d * (1 + eta_r) ** (-q / (q - p)) * (1 - index).clamp(min=0).pow(q * p / (q - p))


# --- removing counted weights -----------------------------------------------------------------------

def prune_rows(w: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """New mask without the ``counts[i]`` smallest-|w| unmasked entries of each row (ties by position)."""
    scores = torch.where(mask, w.detach().abs().double(), torch.full_like(w, -1.0, dtype=torch.float64))
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(w.shape[1], device=w.device).expand_as(order))
    keep = (mask.sum(dim=1) - counts.to(mask.device).clamp(min=0)).unsqueeze(1)
    return mask & (rank < keep)


def scale_counts(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Counts scaled to sum to ``total`` (<= their sum), in proportion, each within [0, its own count].

    The round that would overshoot the budget is trimmed this way so the rule's allocation is kept.
    """
    counts = counts.long()
    available = int(counts.sum())
    if total >= available:
        return counts.clone()
    raw = counts.double() * total / max(available, 1)
    out = torch.floor(raw).long()
    short = total - int(out.sum())
    if short > 0:  # largest remainders first; each such unit has room since floor(raw) < raw <= count
        order = torch.argsort(raw - out.double(), descending=True, stable=True)
        out[order[:short]] += 1
    return out


# --- the round loop ---------------------------------------------------------------------------------

def _units(weights: list[torch.Tensor], masks: list[torch.Tensor], scope: str
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Weights and masks as 2-D blocks whose rows are the pruning units of ``scope``."""
    if scope == "neuron":  # a neuron's / filter's incoming weights
        return [(w.reshape(w.shape[0], -1), m.reshape(m.shape[0], -1)) for w, m in zip(weights, masks)]
    if scope == "layer":
        return [(w.reshape(1, -1), m.reshape(1, -1)) for w, m in zip(weights, masks)]
    return [(torch.cat([w.flatten() for w in weights]).unsqueeze(0),
             torch.cat([m.flatten() for m in masks]).unsqueeze(0))]


def _from_units(blocks: list[torch.Tensor], like: list[torch.Tensor], scope: str) -> list[torch.Tensor]:
    if scope == "global":
        return [part.view_as(t) for part, t in zip(torch.split(blocks[0].flatten(), [t.numel() for t in like]), like)]
    return [b.reshape(t.shape) for b, t in zip(blocks, like)]


def surviving_pq_index(tensors: list[tuple[nn.Module, str]], p: float = 0.5, q: float = 1.0) -> float:
    """PQ index of all surviving (unmasked) prunable weights together, d = their number (SAP's convention)."""
    w = torch.cat([effective(m, n).flatten() for m, n in tensors]).unsqueeze(0)
    mask = torch.cat([current_mask(m, n).bool().flatten() for m, n in tensors]).unsqueeze(0)
    return float(pq_index_rows(w, mask, p, q)[0][0])


@dataclass(frozen=True)
class AdaptiveRounds(Method):
    """Shared loop of ``lq`` and ``sap``: subclasses give the per-unit prune counts of one round."""

    rounds: int = 30
    rewind: bool = False

    def _check_rounds(self) -> None:
        if not 1 <= self.rounds <= 100:
            raise ValueError(f"rounds must be between 1 and 100, got {self.rounds}")

    def _unit_counts(self, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _scope(self) -> str:
        return "neuron"

    def max_ratio(self, model: nn.Module) -> float:
        return max_masked_ratio(model, prunable_tensors(model))

    def planned_finetunes(self, model: nn.Module, target_ratio: float) -> int:
        return self.rounds - 1  # the last round is never fine-tuned here: the pipeline's final fine-tune follows

    def compress(self, model: nn.Module, target_ratio: float, context: Context) -> nn.Module:
        tensors = prunable_tensors(model)
        target_keep = keep_count(model, target_ratio, tensors)  # raises CompressionError for ratio <= 1
        dense_total = params_total(model)
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()} if self.rewind else None
        self._log(model, tensors, context, 0, dense_total, {})
        for t in range(1, self.rounds + 1):
            masks = [current_mask(m, n).bool() for m, n in tensors]
            need = sum(int(m.sum()) for m in masks) - target_keep
            if need <= 0:
                break
            pruned, forced = self._prune_round(tensors, masks, need, force=t == self.rounds)
            done = pruned + forced >= need
            extra = {"round_pruned": pruned, "round_forced": forced, "round_val_acc_pruned": self._val(model, context)}
            if initial is not None:
                rewind_to(model, initial)
            if not done:
                model = context.finetune(model)
                tensors = prunable_tensors(model)  # in case the fine-tune handed back another object
                extra["round_val_acc"] = self._val(model, context)
            self._log(model, tensors, context, t, dense_total, extra)
            if done:
                break
        return model

    def _prune_round(self, tensors: list[tuple[nn.Module, str]], masks: list[torch.Tensor], need: int,
                     force: bool) -> tuple[int, int]:
        """One round: the rule's counts (trimmed to ``need``), then a forced magnitude trim if it stalls or
        this is the last allowed round. Returns (removed by the rule, removed by the forced trim)."""
        scope = self._scope()
        weights = [effective(m, n) for m, n in tensors]
        units = _units(weights, masks, scope)
        counts = [self._unit_counts(w, m) for w, m in units]
        flat = scale_counts(torch.cat(counts), need)
        counts = list(torch.split(flat, [len(c) for c in counts]))
        new = _from_units([prune_rows(w, m, c) for (w, m), c in zip(units, counts)], weights, scope)
        pruned = int(flat.sum())
        forced = 0
        if pruned < need and (force or pruned == 0):
            forced = need - pruned
            (w, m), = _units(weights, new, "global")
            new = _from_units([prune_rows(w, m, torch.tensor([forced]))], weights, "global")
        apply_masks(tensors, new)
        return pruned, forced

    @staticmethod
    def _val(model: nn.Module, context: Context) -> float:
        return float(context.evaluate(model)) if context.evaluate is not None else float("nan")

    @staticmethod
    def _log(model: nn.Module, tensors: list[tuple[nn.Module, str]], context: Context, step: int,
             dense_total: int, extra: dict[str, float]) -> None:
        metrics = {"round_ratio": dense_total / params_effective(model), "round_pq_index": surviving_pq_index(tensors)}
        if step == 0:
            metrics["round_val_acc"] = AdaptiveRounds._val(model, context)
        metrics.update(extra)
        context.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)}, step)
