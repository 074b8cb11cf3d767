"""The ℓq / PQ-index methods (methods/lq.py, methods/sap.py and their engine methods/common/adaptive_rounds.py;
spec docs/methods/lq.md): the PQ index, the
retained-count bound, the SAP and seed-rule counts, scopes, budget trimming, stalls and rewinding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import methods
from bench.export import clone
from bench.metrics import accuracy, params_effective, params_total, pq_index
from conftest import make_context, tiny_model
from methods.common.base import Context
from methods.common.pruning import current_mask, keep_count, prunable_tensors
from methods.common.adaptive_rounds import check_pq, pq_index_rows, prune_rows, retained_bound, scale_counts
from methods.lq import lq_prune_counts
from methods.sap import sap_prune_counts

PQ_PAIRS = [(0.5, 1.0), (1.0, 2.0), (0.3, 0.7), (1.5, 3.0)]


def _rows(n: int, d: int, seed: int = 0, heavy: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    return w ** 3 if heavy else w  # cubing gives heavier tails, i.e. larger PQI


def _index(w: torch.Tensor, p: float, q: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    mask = torch.ones_like(w, dtype=torch.bool) if mask is None else mask
    return pq_index_rows(w, mask, p, q)[0]


def _numpy_pqi(v: np.ndarray, p: float, q: float) -> float:
    d = v.size
    a = np.abs(v)
    return 1 - d ** (1 / q - 1 / p) * (a ** p).sum() ** (1 / p) / (a ** q).sum() ** (1 / q)


# --- PQ index ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("p,q", PQ_PAIRS)
def test_pqi_is_zero_for_constant_magnitudes(p, q):
    signs = torch.tensor([[1.0, -1, 1, -1, -1, 1, 1]], dtype=torch.float64)
    for c in (1e-4, 0.7, 3e3):
        assert _index(c * signs, p, q).item() == pytest.approx(0.0, abs=1e-12)
        assert pq_index(c * signs[0], p, q) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("p,q", PQ_PAIRS)
def test_pqi_is_maximal_for_one_hot(p, q):
    d = 50
    top = 1 - d ** (1 / q - 1 / p)
    one_hot = torch.zeros(1, d, dtype=torch.float64)
    one_hot[0, 17] = -2.5
    assert _index(one_hot, p, q).item() == pytest.approx(top, abs=1e-12)
    values = _index(_rows(200, d, heavy=True), p, q)
    assert bool((values >= 0).all()) and bool((values < top).all())


@pytest.mark.parametrize("p,q", PQ_PAIRS)
def test_pqi_is_scale_and_duplication_invariant(p, q):
    w = _rows(20, 31, seed=1)
    base = _index(w, p, q)
    torch.testing.assert_close(_index(123.0 * w, p, q), base)
    torch.testing.assert_close(_index(-1e-3 * w, p, q), base)
    torch.testing.assert_close(_index(torch.cat([w, w], 1), p, q), base)
    torch.testing.assert_close(_index(torch.cat([w, w, w], 1), p, q), base)


@pytest.mark.parametrize("p,q", PQ_PAIRS)
def test_pqi_an_unmasked_zero_raises_it_a_masked_one_does_not(p, q):
    w = _rows(10, 12, seed=2)
    padded = torch.cat([w, torch.zeros(10, 1, dtype=w.dtype)], 1)
    unmasked = _index(padded, p, q)
    mask = torch.ones_like(padded, dtype=torch.bool)
    mask[:, -1] = False
    assert bool((unmasked > _index(w, p, q)).all())
    torch.testing.assert_close(_index(padded, p, q, mask), _index(w, p, q))


@pytest.mark.parametrize("p,q", PQ_PAIRS)
def test_pqi_matches_numpy_and_the_metric_on_masked_rows(p, q):
    w = _rows(30, 40, seed=3, heavy=True)
    mask = torch.rand(30, 40, generator=torch.Generator().manual_seed(4)) > 0.4
    values = _index(w, p, q, mask)
    for i in range(30):
        kept = w[i][mask[i]]
        assert values[i].item() == pytest.approx(_numpy_pqi(kept.numpy(), p, q), abs=1e-10)
        assert values[i].item() == pytest.approx(pq_index(kept, p, q), abs=1e-10)


def test_pqi_of_empty_or_all_zero_rows_is_zero():
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    index, d = pq_index_rows(w, mask)
    assert index.tolist() == [0.0, 0.0] and d.tolist() == [2, 0]


@pytest.mark.parametrize("p,q", [(1.0, 1.0), (2.0, 1.0), (0.0, 1.0), (-0.5, 1.0)])
def test_p_at_or_above_q_is_rejected_clearly(p, q):
    w = _rows(2, 5)
    with pytest.raises(ValueError, match="0 < p < q"):
        check_pq(p, q)
    with pytest.raises(ValueError, match="0 < p < q"):
        pq_index_rows(w, torch.ones_like(w, dtype=torch.bool), p, q)
    with pytest.raises(ValueError, match="0 < p < q"):
        retained_bound(torch.tensor([5]), torch.tensor([0.1]), p, q)
    with pytest.raises(methods.ParamError, match="0 < p < q"):
        methods.build("sap", {"p": p, "q": q})


def test_seed_rule_needs_q_below_one():
    with pytest.raises(methods.ParamError, match=r"q must be in \(0, 1\)"):
        methods.build("lq", {"q": 1.0})


# --- bounds (spec section A) -------------------------------------------------------------------------

@pytest.mark.parametrize("p,q", PQ_PAIRS)
@pytest.mark.parametrize("heavy", [False, True])
def test_retained_count_bound_holds_for_every_r(p, q, heavy):
    """SAP Thm 2: r ≥ d(1+η_r)^{−q/(q−p)}(1−I)^{qp/(q−p)}, η_r from its definition on the top-r set."""
    for seed in range(5):
        v = _rows(1, 64, seed=seed, heavy=heavy)[0]
        d = v.numel()
        index = _index(v.unsqueeze(0), p, q)[0]
        a = v.abs().sort(descending=True).values.pow(p)
        for r in range(1, d + 1):
            eta_r = float(a[r:].sum() / a[:r].sum())
            bound = float(retained_bound(torch.tensor(d), index, p, q, eta_r))
            assert r >= bound - 1e-9, (seed, r, bound)


@pytest.mark.parametrize("q", [0.2, 0.5, 0.8])
def test_lq_tail_bound_holds(q):
    """Σ_{j>m}|w|_(j) ≤ ‖w‖_q·q/(1−q)·m^{1−1/q} (spec section A)."""
    for seed in range(5):
        a = _rows(1, 80, seed=seed, heavy=True)[0].abs().sort(descending=True).values
        norm_q = float(a.pow(q).sum() ** (1 / q))
        for m in range(1, 80):
            assert float(a[m:].sum()) <= norm_q * q / (1 - q) * m ** (1 - 1 / q) + 1e-12


# --- per-round counts --------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.9, 1.0, 0.05])
def test_sap_counts_closed_forms(beta):
    w = _rows(300, 57, seed=5, heavy=True)
    d = torch.full((300,), 57)
    i_half = _index(w, 0.5, 1.0)
    # (p, q) = (0.5, 1), η_r = 0, γ = 1: c = ⌊d·min(PQI, β)⌋.
    expected = torch.floor(d * torch.minimum(i_half, torch.tensor(beta, dtype=torch.float64))).long()
    assert torch.equal(sap_prune_counts(d, i_half, 0.5, 1.0, 0.0, 1.0, beta), expected)
    # (1, 2): c = ⌊d·min(1 − (1 − PQI)², β)⌋.
    i_12 = _index(w, 1.0, 2.0)
    expected = torch.floor(d * torch.clamp(1 - (1 - i_12) ** 2, max=beta)).long()
    assert torch.equal(sap_prune_counts(d, i_12, 1.0, 2.0, 0.0, 1.0, beta), expected)


def test_sap_counts_grow_with_eta_and_gamma_and_respect_the_cap():
    w = _rows(200, 40, seed=6)
    index, d = pq_index_rows(w, torch.ones_like(w, dtype=torch.bool), 0.5, 1.0)
    base = sap_prune_counts(d, index, 0.5, 1.0, 0.0, 1.0, 0.9)
    assert bool((sap_prune_counts(d, index, 0.5, 1.0, 0.5, 1.0, 0.9) >= base).all())
    big = sap_prune_counts(d, index, 0.5, 1.0, 0.0, 9.0, 0.9)
    assert bool((big >= base).all()) and bool((big <= math.floor(40 * 0.9)).all())
    assert int(sap_prune_counts(torch.tensor([0]), torch.tensor([0.0]), 0.5, 1.0, 0.0, 1.0, 0.9)[0]) == 0


@pytest.mark.parametrize("q,eta,scale,cap", [(0.5, 0.0, 5.0, 0.9), (0.2, 0.1, 1.0, 0.9), (0.8, 0.0, 3.0, 0.5)])
def test_seed_rule_equals_sap_with_p_q_set_to_q_1(q, eta, scale, cap):
    """Spec section A: the seed ℓq rule is the PQI bound with (p, q) → (q, 1)."""
    w = _rows(300, 45, seed=7, heavy=True)
    mask = torch.rand(300, 45, generator=torch.Generator().manual_seed(8)) > 0.3
    index, d = pq_index_rows(w, mask, q, 1.0)
    expected = sap_prune_counts(d, index, q, 1.0, eta, scale, cap)
    assert torch.equal(lq_prune_counts(w, mask, q, eta, scale, cap), expected)


def test_seed_rule_prunes_nothing_from_flat_rows_and_more_from_concentrated_ones():
    flat = torch.tensor([[0.3, -0.3, 0.3, 0.3, -0.3, 0.3, 0.3, -0.3]], dtype=torch.float64)
    ones = torch.ones_like(flat, dtype=torch.bool)
    assert int(lq_prune_counts(flat, ones, 0.5, 0.0, 5.0, 0.9)[0]) == 0
    # One large entry over a shrinking floor: the sparsity index s_j rises, so the count may only rise.
    rows = torch.stack([torch.tensor([1.0] + [a] * 63, dtype=torch.float64) for a in np.linspace(1.0, 0.01, 25)])
    counts = lq_prune_counts(rows, torch.ones_like(rows, dtype=torch.bool), 0.5, 0.0, 1.0, 1.0)
    assert bool((counts[1:] >= counts[:-1]).all()) and int(counts[-1]) > 0


def test_prune_rows_removes_exactly_the_smallest_unmasked_entries():
    w = _rows(50, 30, seed=9)
    mask = torch.rand(50, 30, generator=torch.Generator().manual_seed(10)) > 0.2
    counts = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(11))
    new = prune_rows(w, mask, counts)
    assert bool((new <= mask).all())
    assert torch.equal((mask & ~new).sum(1), counts)
    for i in range(50):
        removed, kept = w[i].abs()[mask[i] & ~new[i]], w[i].abs()[new[i]]
        if len(removed) and len(kept):
            assert removed.max() <= kept.min()


def test_scale_counts_trims_to_the_total_in_proportion():
    counts = torch.tensor([0, 7, 3, 20, 1, 9])
    for total in range(0, 41):
        out = scale_counts(counts, total)
        assert int(out.sum()) == total and bool((out <= counts).all()) and bool((out >= 0).all())
        assert bool(((out - counts.double() * total / 40).abs() < 1).all())
    assert torch.equal(scale_counts(counts, 100), counts)


# --- the method on a model ---------------------------------------------------------------------------

class _Recorder:
    """A context whose fine-tune trains nothing and records each round's masks and logged metrics."""

    def __init__(self, data, evaluate: bool = True):
        self.masks: list[list[torch.Tensor]] = []
        self.logged: dict[int, dict[str, float]] = {}
        self.context = Context(
            data=data, seed=0, finetune=self._finetune, fit=lambda *a, **k: None,
            log_metrics=lambda m, step: self.logged.setdefault(step, {}).update(m),
            evaluate=(lambda m: accuracy(m, data.val_x, data.val_y)[1]) if evaluate else None,
        )

    def _finetune(self, model):
        self.masks.append([current_mask(m, n).bool() for m, n in prunable_tensors(model)])
        return model


def _weights(model) -> list[torch.Tensor]:
    return [getattr(m, n).detach().double() for m, n in prunable_tensors(model)]


@pytest.mark.parametrize("beta", [0.9, 0.1])
def test_one_global_round_prunes_floor_d_min_pqi_beta(tiny_data, beta):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    flat = torch.cat([w.flatten() for w in _weights(dense)])
    expected = math.floor(flat.numel() * min(pq_index(flat, 0.5, 1.0), beta))
    rec = _Recorder(tiny_data)
    methods.build("sap", {"rounds": 2, "beta": beta}).compress(clone(dense), 32, rec.context)
    removed = flat.numel() - sum(int(m.sum()) for m in rec.masks[0])
    assert removed == expected == rec.logged[1]["round_pruned"] and rec.logged[1]["round_forced"] == 0
    # Global scope: one threshold over all tensors.
    kept = torch.cat([m.flatten() for m in rec.masks[0]])
    assert flat.abs()[~kept].max() <= flat.abs()[kept].min()


@pytest.mark.parametrize("scope", ["neuron", "layer"])
def test_neuron_and_layer_scopes_prune_each_unit_by_its_own_count(tiny_image_data, scope):
    dense = tiny_model("lenet5", num_classes=tiny_image_data.num_classes)
    rec = _Recorder(tiny_image_data)
    methods.build("sap", {"rounds": 2, "scope": scope}).compress(clone(dense), 8, rec.context)
    per_unit_counts = set()
    for w, mask in zip(_weights(dense), rec.masks[0]):
        rows = w.reshape(w.shape[0], -1) if scope == "neuron" else w.reshape(1, -1)
        kept = mask.reshape(rows.shape)
        for row, keep in zip(rows, kept):
            expected = math.floor(row.numel() * min(pq_index(row, 0.5, 1.0), 0.9))
            assert int((~keep).sum()) == expected
            per_unit_counts.add(expected)
            if (~keep).any() and keep.any():
                assert row.abs()[~keep].max() <= row.abs()[keep].min()
    assert len(per_unit_counts) > 1  # the units really got different counts


def test_rounds_trim_to_the_exact_budget_and_masks_only_shrink(tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    rec = _Recorder(tiny_data)
    # With γ = 3 (and no training between rounds) rounds 1-2 reach about 1.47x and 1.55x, and round 3 would
    # overshoot 1.6x, so it is trimmed to the budget.
    out = methods.build("sap", {"rounds": 30, "gamma": 3.0, "scope": "neuron"}).compress(clone(dense), 1.6, rec.context)
    final = [current_mask(m, n).bool() for m, n in prunable_tensors(out)]
    assert sum(int(m.sum()) for m in final) == keep_count(dense, 1.6, prunable_tensors(dense))
    steps = sorted(rec.logged)
    assert steps == list(range(len(steps))) and len(steps) >= 3
    assert all(rec.logged[s]["round_forced"] == 0 for s in steps[1:])  # reached by the rule, not forced
    for earlier, later in zip(rec.masks + [final], rec.masks[1:] + [final]):
        assert all(bool((b <= a).all()) for a, b in zip(earlier, later))
    ratios = [rec.logged[s]["round_ratio"] for s in steps]
    assert ratios == sorted(ratios) and ratios[-1] == pytest.approx(params_total(dense) / params_effective(out))
    assert "round_val_acc" in rec.logged[0] and "round_val_acc" not in rec.logged[steps[-1]]
    assert all("round_val_acc" in rec.logged[s] and "round_pq_index" in rec.logged[s] for s in steps[:-1])


def test_a_stalled_rule_finishes_with_a_recorded_forced_trim(tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    with torch.no_grad():  # equal magnitudes: PQI = 0 everywhere, so the rule prunes nothing
        for m, n in prunable_tensors(dense):
            getattr(m, n).copy_(0.05 * torch.sign(getattr(m, n)))
    for name in ("sap", "lq"):
        rec = _Recorder(tiny_data, evaluate=False)
        out = methods.build(name, {"rounds": 10}).compress(clone(dense), 8, rec.context)
        need = sum(getattr(m, n).numel() for m, n in prunable_tensors(dense)) - keep_count(
            dense, 8, prunable_tensors(dense))
        assert rec.logged[1]["round_pruned"] == 0 and rec.logged[1]["round_forced"] == need
        assert sorted(rec.logged) == [0, 1] and rec.masks == []
        assert abs(params_total(dense) / params_effective(out) / 8 - 1) <= 0.03


@pytest.mark.parametrize("model_key", ["lenet300", "cnn"])
def test_rewind_restores_the_baseline_weights_under_the_final_mask(tiny_data, tiny_image_data, model_key):
    """Unmasked weights, biases and norm-layer parameters and buffers equal the baseline's bit-exactly."""
    data = tiny_image_data if model_key == "cnn" else tiny_data
    dense = tiny_model(model_key, num_classes=data.num_classes)
    out = methods.build("sap", {"rounds": 3, "rewind": True, "scope": "layer"}).compress(
        clone(dense), 4, make_context(data, 0, teacher=dense))
    state = out.state_dict()
    for key, value in dense.state_dict().items():
        if f"{key}_orig" in state:
            mask = state[f"{key}_mask"].bool()
            assert not bool(mask.all())
            assert torch.equal(state[f"{key}_orig"][mask], value[mask]), key
        else:
            assert torch.equal(state[key], value), key


def test_without_rewind_the_fine_tune_changes_the_weights(tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    out = methods.build("sap", {"rounds": 3}).compress(clone(dense), 8, make_context(tiny_data, 0, teacher=dense))
    state = out.state_dict()
    masked = [(state[f"{key}_orig"], state[f"{key}_mask"].bool(), value)
              for key, value in dense.state_dict().items() if f"{key}_orig" in state]
    assert masked and any(not torch.equal(orig[mask], value[mask]) for orig, mask, value in masked)
