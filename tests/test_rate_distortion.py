"""SuRP (rate-distortion): invariants of the refinement path (spec docs/methods/rate_distortion.md,
"Test ideas") and of the method built on it."""
from __future__ import annotations

import math

import pytest
import torch

import methods
from bench.export import clone
from bench.metrics import params_effective, params_total
from conftest import make_context, tiny_model
from methods.common.pruning import current_mask, effective, keep_count, prunable_tensors, topk_mask
from methods.rate_distortion import surp_path


def laplacian(n: int, seed: int) -> torch.Tensor:
    """i.i.d. Laplace(0, 1): exponential magnitudes with independent fair signs."""
    g = torch.Generator().manual_seed(seed)
    magnitude = -torch.log1p(-torch.rand(n, generator=g, dtype=torch.float64))
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    return sign * magnitude


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


BUDGETS = [1, 7, 50, 333, 1000, 2500, 4000]


@pytest.fixture(scope="module")
def path():
    w = laplacian(5000, seed=1)
    return w, surp_path(w, BUDGETS, gen(), record_steps=True)


def test_every_snapshot_has_exactly_its_budget_of_nonzeros(path):
    w, snaps = path
    assert [s.budget for s in snaps] == BUDGETS
    for snap in snaps:
        assert int((snap.magnitudes > 0).sum()) == snap.budget
        assert int((snap.values != 0).sum()) == snap.budget


def test_supports_are_nested_and_magnitudes_only_grow_along_the_path(path):
    _, snaps = path
    for earlier, later in zip(snaps, snaps[1:]):
        assert bool(((earlier.magnitudes > 0) <= (later.magnitudes > 0)).all())
        assert bool((later.magnitudes >= earlier.magnitudes).all())
        assert later.steps > earlier.steps


def test_residual_l1_never_increases_and_drops_by_exactly_the_thresholds_spent(path):
    w, snaps = path
    u = w.abs()
    for snap in snaps:
        assert bool((snap.magnitudes <= u).all()), "reconstruction overshoots a magnitude"
        idx, taus = snap.trace
        expected = (u.sum() - taus.sum()) / u.numel()
        assert snap.distortion == pytest.approx(float(expected), rel=1e-12)
    distortions = [s.distortion for s in snaps]
    assert all(b < a for a, b in zip(distortions, distortions[1:]))
    assert distortions[0] < float(u.mean())


def test_every_nonzero_magnitude_is_a_sum_of_thresholds_each_below_the_residual(path):
    w, snaps = path
    last = snaps[-1]
    idx, taus = last.trace
    assert idx.numel() == last.steps and bool((taus > 0).all())
    residual = w.abs().tolist()
    rebuilt = [0.0] * w.numel()
    for i, tau in zip(idx.tolist(), taus.tolist()):
        # The selection rule: a weight is refined only while its residual exceeds the threshold.
        assert residual[i] > tau
        residual[i] -= tau
        rebuilt[i] += tau
    torch.testing.assert_close(last.magnitudes, torch.tensor(rebuilt, dtype=torch.float64), rtol=1e-12, atol=0)
    # The first τ is α·mean|w| (spec step 2), lowered only by refreshes before the first step, each
    # run of 20 multiplying it by 0.9 (mean(R) = mean|w| until something is refined).
    decays = math.log(taus[0].item() / (10.0 * float(w.abs().mean()))) / math.log(0.9)
    assert decays == pytest.approx(round(decays), abs=1e-9) and round(decays) >= 0
    assert bool((torch.sign(last.values[idx]) == torch.sign(w[idx])).all())


def test_kept_set_overlaps_top_magnitudes_on_a_laplacian_source():
    w = laplacian(20_000, seed=2)
    k = 2_000  # 90 % sparsity
    (snap,) = surp_path(w, [k], gen(5))
    top = topk_mask(w.abs(), k)
    overlap = int(((snap.magnitudes > 0) & top).sum()) / k
    assert overlap >= 0.9
    # ... and about one new non-zero per step (spec's scratch simulation: ≈ k steps).
    assert snap.steps <= 1.05 * k


def test_same_seed_gives_identical_path_and_another_seed_another_support():
    w = laplacian(4000, seed=3)
    a = surp_path(w, [100, 1200], gen(7))
    b = surp_path(w, [100, 1200], gen(7))
    c = surp_path(w, [100, 1200], gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x.magnitudes, y.magnitudes) and x.rate_bits == y.rate_bits
    assert not torch.equal(a[1].magnitudes > 0, c[1].magnitudes > 0)


def _per_step_reference(w: torch.Tensor, budget: int, generator: torch.Generator, alpha: float) -> torch.Tensor:
    """Spec steps 2-3 transcribed literally: one weight per step, refresh loop unskipped."""
    u = w.abs().to(torch.float64)
    n = u.numel()
    c = math.log(n / math.log(n))
    alpha_p = alpha / c
    R, U = u.clone(), torch.zeros_like(u)
    scale, refreshes = alpha_p * float(R.mean()), 0
    while int((U > 0).sum()) < budget:
        tau = c * scale
        candidates = torch.nonzero(R > tau).flatten()
        while candidates.numel() == 0:
            refreshes += 1
            if refreshes % 20 == 0:
                alpha_p *= 0.9
            scale = alpha_p * float(R.mean())
            tau = c * scale
            candidates = torch.nonzero(R > tau).flatten()
        m = candidates[torch.randperm(candidates.numel(), generator=generator)[0]]
        U[m] += tau
        R[m] -= tau
        scale *= 1 - 1 / n
    return U


def test_blocks_of_one_reproduce_the_per_step_algorithm():
    w = laplacian(400, seed=4)
    (snap,) = surp_path(w, [150], gen(9), alpha=6.0, block_fraction=1e-9)
    reference = _per_step_reference(w, 150, gen(9), alpha=6.0)
    assert snap.refreshes > 20  # the refresh decay (and its skipping) was exercised
    torch.testing.assert_close(snap.magnitudes, reference, rtol=1e-12, atol=0)


def test_rate_counts_index_and_sign_bits():
    w = laplacian(3000, seed=5)
    small, large = surp_path(w, [30, 600], gen())
    # ≥ one index per step, each costing log2(n/|C|) ≥ 0 bits, plus one sign bit per non-zero.
    assert small.rate_bits >= small.budget and small.index_bits > 0
    assert large.rate_bits > small.rate_bits
    assert large.index_bits <= large.steps * math.log2(3000)


def test_budget_beyond_the_nonzero_weights_is_rejected():
    w = laplacian(100, seed=6)
    w[:60] = 0
    with pytest.raises(methods.CompressionError, match="budgets"):
        surp_path(w, [41], gen())


# --- the method on a model -----------------------------------------------------------------


def _compress(params: dict, ratio: float, data, model_key: str = "lenet300", **context_kw):
    dense = tiny_model(model_key, num_classes=data.num_classes)
    context = make_context(data, 0, teacher=dense)
    for key, value in context_kw.items():
        setattr(context, key, value)
    model = methods.build("rate-distortion", params).compress(clone(dense), ratio, context)
    return dense, model


def test_reconstructed_weights_keep_sign_never_exceed_the_original_and_scale_with_the_tensor(tiny_data):
    dense, model = _compress({}, 8, tiny_data)
    tensors = prunable_tensors(model)
    assert sum(int(current_mask(m, n).sum()) for m, n in tensors) == keep_count(dense, 8, prunable_tensors(dense))
    for (m, n), (d, _) in zip(tensors, prunable_tensors(dense)):
        new, old = effective(m, n), d.weight.detach()
        kept = new != 0
        assert bool((torch.sign(new[kept]) == torch.sign(old[kept])).all())
        assert bool((new.abs() <= old.abs() + 1e-7).all())
        assert not torch.equal(new[kept], old[kept])  # values are quantised, not copied

    # Per-tensor normalisation (spec step 1): doubling one tensor (exact in floating point) keeps
    # the mask and doubles that tensor's reconstruction.
    scaled = clone(dense)
    with torch.no_grad():
        scaled[1].weight.mul_(2.0)
    model2 = methods.build("rate-distortion", {}).compress(scaled, 8, make_context(tiny_data, 0))
    for (m, n), (m2, n2) in zip(prunable_tensors(model), prunable_tensors(model2)):
        factor = 2.0 if m2 is model2[1] else 1.0
        assert torch.equal(current_mask(m, n), current_mask(m2, n2))
        torch.testing.assert_close(effective(m2, n2), factor * effective(m, n), rtol=1e-6, atol=0)


def test_original_values_variant_keeps_the_dense_weights_on_the_same_support(tiny_data):
    dense, reconstructed = _compress({}, 4, tiny_data)
    _, original = _compress({"values": "original"}, 4, tiny_data)
    triples = zip(prunable_tensors(reconstructed), prunable_tensors(original), prunable_tensors(dense))
    for (m, n), (o, _), (d, _) in triples:
        mask = current_mask(m, n)
        assert torch.equal(mask, current_mask(o, n))
        assert torch.equal(effective(o, n), d.weight.detach() * mask)


def test_one_shot_logs_a_rate_distortion_curve(tiny_data):
    logged: list[tuple[int, dict]] = []
    _compress({"curve_points": 5}, 16, tiny_data, log_metrics=lambda d, s: logged.append((s, d)))
    assert [s for s, _ in logged] == list(range(5))
    keep = [d["keep_fraction"] for _, d in logged]
    rate = [d["rate_bits"] for _, d in logged]
    dist = [d["distortion_l1"] for _, d in logged]
    assert keep == sorted(keep) and rate == sorted(rate) and dist == sorted(dist, reverse=True)
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    total = sum(m.weight.numel() for m, _ in prunable_tensors(dense))
    assert keep[-1] * total == keep_count(dense, 16, prunable_tensors(dense))


def test_iterative_rounds_follow_the_survivor_schedule_with_nested_masks(tiny_data):
    logged: list[tuple[int, dict]] = []
    supports: list[torch.Tensor] = []
    data = tiny_data
    base = make_context(data, 0)

    def finetune(model):  # the real shared fine-tune, observed: masks are read before it runs
        supports.append(torch.cat([current_mask(m, n).flatten() for m, n in prunable_tensors(model)]))
        return base.finetune(model)

    dense, model = _compress({"schedule": "iterative", "round_fraction": 0.5}, 4, data,
                             finetune=finetune, log_metrics=lambda d, s: logged.append((s, d)))
    total = sum(m.weight.numel() for m, _ in prunable_tensors(dense))
    final = keep_count(dense, 4, prunable_tensors(dense))
    expected = [k for k in (round(total * 0.5 ** r) for r in range(1, 20)) if k > final] + [final]
    assert [round(d["keep_fraction"] * total) for _, d in logged] == expected
    assert [s for s, _ in logged] == list(range(1, len(expected) + 1))
    assert len(supports) == len(expected) - 1
    supports.append(torch.cat([current_mask(m, n).flatten() for m, n in prunable_tensors(model)]))
    assert [int(s.sum()) for s in supports] == expected
    for earlier, later in zip(supports, supports[1:]):
        assert bool((later <= earlier).all()), "a pruned weight came back"
    assert abs(params_total(dense) / params_effective(model) / 4 - 1) <= 0.03


def test_norm_and_bias_option_masks_them_within_the_same_budget(tiny_image_data):
    dense, model = _compress({"include_norm_and_bias": True}, 4, tiny_image_data, model_key="cnn")
    assert abs(params_total(dense) / params_effective(model) / 4 - 1) <= 0.03
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(hasattr(m, "weight_mask") and hasattr(m, "bias_mask") for m in norms)
    assert not hasattr(model.classifier, "weight_mask")
    _, default = _compress({}, 4, tiny_image_data, model_key="cnn")
    assert not any(hasattr(m, "weight_mask") for m in default.modules() if isinstance(m, torch.nn.BatchNorm2d))
