"""Coreset neuron pruning (Mussay et al. 2020) and the structured surgery and budget helpers it uses."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import methods
from bench.export import bake, clone
from bench.metrics import params_total
from bench.models import SequentialNet, create_model
from conftest import CHAIN_MODELS, TINY_MODELS, make_context, tiny_model
from methods.common.base import CompressionError
from chain_surgery import param_count, param_counter, remove_units, resize, slots, widths
from methods.common.width_budget import budget_for_ratio, geometric_widths, integer_widths, widths_for_budget
from methods.common.unit_groups import group_widths, unit_groups
from methods.coreset import (
    Coreset, activation_after, draws_for_width, outgoing_weights, probabilities, sample_fixed, sample_until,
    sensitivity, sup_activation, unit_points,
)


def _group(model, pos, input_shape=None):
    """Unit group ``pos`` of a chain (the group of its pos-th prunable layer)."""
    return unit_groups(model, input_shape)[pos]

RATIOS = (2, 4, 8, 16, 32)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _layer_pair(n: int = 30, d: int = 10, k: int = 5, seed: int = 0, heavy: bool = False):
    """W1 (n, d), b1 (n), W2 (k, n); heavy: column scales from a Cauchy (some columns dominate)."""
    g = _gen(seed)
    w1, b1 = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    w2 = torch.randn(k, n, generator=g, dtype=torch.float64)
    if heavy:
        quantiles = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
        w2 = w2 * torch.distributions.Cauchy(0.0, 1.0).icdf(quantiles).abs()
    return w1, b1, w2


def _points(w1, b1):
    return torch.cat([w1, b1[:, None]], 1)


# ---------------------------------------------------------------------------------------------------
# Sensitivity and probabilities


def test_probabilities_match_relu_closed_form_and_ignore_beta():
    w1, b1, w2 = _layer_pair()
    pr = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), beta=1.0))
    closed = w2.abs().amax(0) * _points(w1, b1).norm(dim=1)
    assert (pr >= 0).all() and math.isclose(float(pr.sum()), 1.0, rel_tol=1e-12)
    torch.testing.assert_close(pr, closed / closed.sum())
    torch.testing.assert_close(probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), beta=7.0)), pr)


def test_sigmoid_probabilities_depend_on_beta_and_tend_to_outgoing_weights():
    w1, b1, w2 = _layer_pair()
    at = {beta: probabilities(sensitivity(_points(w1, b1), w2, nn.Sigmoid(), beta)) for beta in (1e-9, 1.0, 7.0)}
    assert not torch.allclose(at[1.0], at[7.0])
    # φ(0) = 1/2 for every neuron, so only the outgoing weights remain as β -> 0.
    reach = w2.abs().amax(0)
    torch.testing.assert_close(at[1e-9], reach / reach.sum())


@pytest.mark.parametrize("activation",
                         [nn.ReLU(), nn.LeakyReLU(0.01), nn.Sigmoid(), nn.Tanh(), nn.Softplus(), nn.Identity()])
def test_sup_activation_matches_a_grid_search(activation):
    radius = torch.tensor([0.0, 0.3, 2.0, 9.0], dtype=torch.float64)
    grid = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    brute = torch.stack([activation(r * grid).abs().max() for r in radius])
    torch.testing.assert_close(sup_activation(activation, radius), brute)


def test_zero_outgoing_neuron_is_never_sampled():
    w1, b1, w2 = _layer_pair(n=20)
    w2[:, [3, 11]] = 0
    pr = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), 1.0))
    assert pr[3] == 0 and pr[11] == 0
    for seed in range(200):
        assert not {3, 11} & set(sample_until(pr, 15, _gen(seed)).keep.tolist())
        assert not {3, 11} & set(sample_fixed(pr, 40, _gen(seed)).keep.tolist())


def test_zero_outgoing_neuron_is_never_kept_by_the_method():
    model = tiny_model("mlp")
    with torch.no_grad():
        model[3].weight[:, 5] = 0  # unit 5 of the first hidden layer feeds nothing
    rows = model[1].weight.detach().clone()
    for seed in range(20):
        pruned = clone(model)
        Coreset().prune_group(pruned, 0, 40, _gen(seed))
        kept = [int((rows == r).all(1).nonzero()) for r in pruned[1].weight.detach()]
        assert len(kept) == 40 and 5 not in kept


def test_until_k_gives_exactly_k_distinct_units_and_counts_the_draws():
    w1, b1, w2 = _layer_pair(n=40, heavy=True)
    pr = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), 1.0))
    for k in (1, 10, 39):
        sample = sample_until(pr, k, _gen(k))
        assert len(sample.keep) == k and int(sample.counts.sum()) == sample.draws >= k
        assert (sample.keep.diff() > 0).all()


def test_draws_for_width_expects_the_width():
    pr = probabilities(torch.rand(50, generator=_gen(1), dtype=torch.float64))
    m = draws_for_width(pr, 20)
    expected = lambda m: float((1 - (1 - pr).pow(m)).sum())  # noqa: E731
    assert expected(m - 1) < 20 <= expected(m)


# ---------------------------------------------------------------------------------------------------
# The estimator: unbiased for fixed draws, error ~ 1/sqrt(m), better than uniform on skewed weights


def _estimates(w1, b1, w2, pr, x, m: int, seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact next-layer pre-activations z (k, x) and the reweighted coreset estimates (seeds, k, x)."""
    act = torch.relu(w1 @ x + b1[:, None])  # (n, x)
    out = []
    for seed in seeds:
        s = sample_fixed(pr, m, _gen(seed))
        out.append((w2[:, s.keep] * s.scale(pr)) @ act[s.keep])
    return w2 @ act, torch.stack(out)


def test_fixed_draws_are_unbiased():
    w1, b1, w2 = _layer_pair()
    pr = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), 1.0))
    x = torch.randn(10, 6, generator=_gen(5), dtype=torch.float64)
    z, est = _estimates(w1, b1, w2, pr, x, m=10, seeds=range(3000))
    standard_error = est.std(0) / math.sqrt(len(est))
    assert ((est.mean(0) - z).abs() <= 4 * standard_error).all()
    assert (est.std(0) > 0).all()  # not trivially exact


def test_error_falls_like_one_over_sqrt_m():
    w1, b1, w2 = _layer_pair()
    pr = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), 1.0))
    x = torch.randn(10, 6, generator=_gen(5), dtype=torch.float64)
    x = x / x.norm(dim=0)  # inputs on the unit ball, as in the guarantee
    sizes = (16, 64, 256, 1024)
    rms = []
    for m in sizes:
        z, est = _estimates(w1, b1, w2, pr, x, m, range(300))
        rms.append(float((est - z).pow(2).mean().sqrt()))
    slope = torch.linalg.lstsq(torch.tensor([[math.log(m), 1.0] for m in sizes]),
                               torch.tensor(rms).log()[:, None]).solution[0, 0]
    assert -0.6 < float(slope) < -0.4


def test_coreset_beats_uniform_on_heavy_tailed_weights():
    w1, b1, w2 = _layer_pair(n=60, heavy=True, seed=2)
    x = torch.randn(10, 20, generator=_gen(5), dtype=torch.float64)
    coreset = probabilities(sensitivity(_points(w1, b1), w2, nn.ReLU(), 1.0))
    uniform = torch.full((60,), 1 / 60, dtype=torch.float64)
    errors = {}
    for name, pr in (("coreset", coreset), ("uniform", uniform)):
        z, est = _estimates(w1, b1, w2, pr, x, 20, range(400))
        errors[name] = float((est - z).abs().mean())
    assert errors["coreset"] < errors["uniform"]


# ---------------------------------------------------------------------------------------------------
# Points, outgoing weights and activations in real models


def test_folded_batchnorm_points_give_the_true_preactivation():
    model = tiny_model("cnn")
    norm = model[1]
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(8, generator=_gen(1)))
        norm.running_var.copy_(torch.rand(8, generator=_gen(2)) + 0.5)
        norm.weight.copy_(torch.randn(8, generator=_gen(3)))
        norm.bias.copy_(torch.randn(8, generator=_gen(4)))
    model.eval()
    x = torch.randn(3, 1, 16, 16, generator=_gen(5))
    points = unit_points(_group(model, 0))[0].float()
    patches = nn.functional.unfold(x, 3, padding=1)  # (batch, 9, 256)
    expected = model[1](model[0](x)).flatten(2)  # (batch, 8, 256)
    got = torch.einsum("cd,bdl->bcl", points[:, :-1], patches) + points[:, -1][None, :, None]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_conv_sensitivity_uses_l1_norm_of_next_layer_channel_weights():
    model = create_model("lenet5", (1, 28, 28), 4, seed=0, channels=(4, 6), hidden=16)
    conv_slot, flat_slot = slots(model)[0], slots(model)[1]
    assert (conv_slot.group, flat_slot.group) == (1, 16)  # 6 channels of 4x4 feed the Linear
    for pos, slot in enumerate((conv_slot, flat_slot)):
        w2, n = model[slot.next_index].weight.detach().double(), model[slot.index].weight.shape[0]
        reach = torch.stack([w2.reshape(w2.shape[0], n, -1)[:, i].abs().sum(1).max() for i in range(n)])
        group = _group(model, pos)
        points = unit_points(group)[0]
        manual = reach * points.norm(dim=1)  # ReLU: sup |φ| = ‖p‖ on the unit ball
        s = sensitivity(points, outgoing_weights(group)[0], activation_after(group), 1.0)
        torch.testing.assert_close(s, manual)


def test_unsupported_activation_and_norm_after_activation_are_refused():
    gelu = SequentialNet(nn.Flatten(), nn.Linear(8, 6), nn.GELU(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="monotone"):
        activation_after(_group(gelu, 0, (8,)))
    late_norm = SequentialNet(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="follows the activation"):
        activation_after(_group(late_norm, 0, (8,)))
    mixing = SequentialNet(nn.Flatten(), nn.Linear(8, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    with pytest.raises(ValueError, match="LayerNorm"):
        slots(mixing)


# ---------------------------------------------------------------------------------------------------
# Structured surgery


def _zero_columns(model, slot, keep, scale=None):
    """Reference: the same network with the removed units' next-layer inputs set to zero."""
    model = clone(model)
    nxt, n = model[slot.next_index], model[slot.index].weight.shape[0]
    factor = torch.zeros(n)
    factor[keep] = 1.0 if scale is None else scale.float()
    with torch.no_grad():
        shape = (1, n, -1) if isinstance(nxt, nn.Linear) else (1, n, 1, 1)
        grouped = nxt.weight.reshape(nxt.weight.shape[0], n, -1) if isinstance(nxt, nn.Linear) else nxt.weight
        grouped.mul_(factor.reshape(shape))
    return model


@pytest.mark.parametrize("case", ["linear", "conv-flatten-linear", "conv-bn-conv", "conv-pool-flatten-linear"])
def test_removing_units_equals_zeroing_them(case):
    if case == "linear":
        model, pos, x = tiny_model("mlp"), 0, torch.randn(5, 1, 8, 8)
    elif case == "conv-flatten-linear":
        model, pos = create_model("lenet5", (1, 28, 28), 4, seed=0, channels=(4, 6), hidden=16), 1
        x = torch.randn(5, 1, 28, 28)
    else:
        model, pos = tiny_model("cnn"), 0 if case == "conv-bn-conv" else 2
        x = torch.randn(5, 1, 16, 16)
        with torch.no_grad():
            for m in model:
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2)
    model.eval()
    slot = slots(model)[pos]
    n = model[slot.index].weight.shape[0]
    keep = torch.arange(0, n, 2)
    scale = torch.linspace(0.5, 3, len(keep), dtype=torch.float64)
    for s in (None, scale):
        pruned = clone(model)
        remove_units(pruned, slot, keep, s)
        assert widths(pruned)[pos] == len(keep)
        with torch.no_grad():
            torch.testing.assert_close(pruned(x), _zero_columns(model, slot, keep, s)(x), rtol=1e-5, atol=1e-5)


def test_surgery_keeps_rows_and_columns_and_leaves_other_layers_bit_identical():
    model = tiny_model("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    keep = torch.tensor([0, 7, 8, 150, 299])
    remove_units(model, slots(model)[0], keep)
    after = model.state_dict()
    assert after["1.weight"].shape == (5, 64) and after["3.weight"].shape == (100, 5)
    assert torch.equal(after["1.weight"], before["1.weight"][keep])
    assert torch.equal(after["1.bias"], before["1.bias"][keep])
    assert torch.equal(after["3.weight"], before["3.weight"][:, keep])
    assert torch.equal(after["3.bias"], before["3.bias"])  # the next layer's bias b2 is unchanged
    assert torch.equal(after["5.weight"], before["5.weight"]) and torch.equal(after["5.bias"], before["5.bias"])


def test_method_prune_layer_shapes_and_untouched_layers():
    model = tiny_model("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Coreset().prune_group(model, 1, 17, _gen(0))
    after = model.state_dict()
    assert after["3.weight"].shape == (17, 300) and after["5.weight"].shape == (4, 17)
    assert torch.equal(after["1.weight"], before["1.weight"]) and torch.equal(after["1.bias"], before["1.bias"])
    assert torch.equal(after["5.bias"], before["5.bias"])
    rows = [int((before["3.weight"] == r).all(1).nonzero()) for r in after["3.weight"]]
    assert rows == sorted(rows) and len(set(rows)) == 17
    # Each kept column is the original one times a positive scale count/(draws·pr).
    ratio = after["5.weight"] / before["5.weight"][:, rows]
    assert (ratio > 0).all() and torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)


def test_lenet300_parameter_accounting():
    model = create_model("lenet300", (1, 28, 28), 10, seed=0)
    assert params_total(model) == 266_610
    expected = 785 * 30 + 31 * 60 + 61 * 10
    assert param_count(model, [30, 60]) == expected
    resize(model, [30, 60])
    assert params_total(model) == expected and widths(model) == [30, 60]


@pytest.mark.parametrize("key", CHAIN_MODELS)
def test_param_counter_matches_resized_models(key):
    model = tiny_model(key)
    full = widths(model)
    g = _gen(1)
    for _ in range(5):
        kept = [int(torch.randint(1, w + 1, (1,), generator=g)) for w in full]
        small = clone(model)
        resize(small, kept)
        assert params_total(small) == param_counter(model)(kept)


# ---------------------------------------------------------------------------------------------------
# Budget


@pytest.mark.parametrize("key", CHAIN_MODELS)
def test_budget_widths_reach_every_ratio(key):
    model = tiny_model(key)
    dense = params_total(model)
    for ratio in RATIOS:
        budget = budget_for_ratio(dense, ratio)
        count = param_counter(model)
        for kept in (widths_for_budget(count, budget), integer_widths(count, budget, geometric_widths(count, budget))):
            small = clone(model)
            resize(small, kept)
            assert abs(dense / params_total(small) / ratio - 1) <= 0.03, (ratio, kept)


def test_uniform_allocation_keeps_one_fraction_where_granularity_allows():
    model = create_model("lenet300", (1, 28, 28), 10, seed=0)
    kept = widths_for_budget(param_counter(model), 266_610 / 4)
    assert abs(kept[0] / 300 - kept[1] / 100) < 0.03


def test_cost_aware_widths_solve_the_geometric_program():
    """Against an independent solver: scipy's SLSQP on max Σ log w s.t. P(w) = budget."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    model = create_model("mlp", (1, 28, 28), 10, seed=0, widths=(300, 200, 100))
    count, budget = param_counter(model), 266_610 / 40
    ours = geometric_widths(count, budget)
    assert math.isclose(count(ours), budget, rel_tol=1e-6)
    result = scipy_optimize.minimize(
        lambda w: -sum(math.log(v) for v in w), x0=[10.0, 10.0, 10.0], method="SLSQP",
        bounds=[(1, 300), (1, 200), (1, 100)],
        constraints=[{"type": "eq", "fun": lambda w: count(list(w)) / budget - 1}],
        options={"ftol": 1e-12, "maxiter": 500})
    assert result.success
    assert sum(map(math.log, ours)) >= -result.fun - 1e-6
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), torch.tensor(result.x), rtol=1e-3, atol=1e-3)


def test_out_of_reach_budget_and_ratio_one_are_refused():
    model = tiny_model("lenet300")
    with pytest.raises(CompressionError, match="out of reach"):
        widths_for_budget(param_counter(model), budget_for_ratio(params_total(model), 1000))
    with pytest.raises(CompressionError, match="ratio"):
        budget_for_ratio(params_total(model), 1.0)


# ---------------------------------------------------------------------------------------------------
# The method end to end (no fine-tuning: the budget and sampling logic only)


def _compress(params: dict, key: str, ratio: float, seed: int = 0):
    model = tiny_model(key)
    method = methods.build("coreset", {"finetune_each_layer": False, **params})
    return model, method.compress(clone(model), ratio, make_context(None, seed))


@pytest.mark.parametrize("params", [
    {}, {"sampling": "uniform"}, {"sampling": "topk"}, {"allocation": "cost-aware"}, {"reweight": False},
])
@pytest.mark.parametrize("key", sorted(TINY_MODELS))
def test_method_reaches_every_ratio_on_every_family(params, key):
    for ratio in RATIOS:
        try:
            dense, small = _compress(params, key, ratio)
        except CompressionError as e:
            # A residual stream is one group of many layers, so each of its units weighs hundreds of parameters:
            # on these tiny residual nets the cost-aware integer widths can miss ±3 % at high ratios, and say so.
            assert key not in CHAIN_MODELS and params.get("allocation") == "cost-aware" and ratio >= 16, (ratio, e)
            assert "no widths reach the budget" in str(e)
            continue
        achieved = params_total(dense) / params_total(small)
        assert abs(achieved / ratio - 1) <= 0.03, (ratio, achieved)
        x = torch.randn(4, *TINY_MODELS[key][1])
        with torch.no_grad():
            assert small(x).shape == (4, 4)
            torch.testing.assert_close(bake(small)(x), small.eval()(x))


def test_fixed_draws_run_the_paper_rule_and_stay_on_budget():
    dense, small = _compress({"draws": "fixed"}, "lenet300", 4)
    assert abs(params_total(dense) / params_total(small) / 4 - 1) <= 0.03


def test_topk_keeps_the_largest_points():
    model = tiny_model("mlp")
    norms = unit_points(_group(model, 0))[0].norm(dim=1)
    Coreset(sampling="topk").prune_group(model, 0, 10, _gen(0))
    kept = unit_points(_group(model, 0))[0].norm(dim=1)
    torch.testing.assert_close(kept.sort().values, norms.sort().values[-10:])


def test_explicit_shares_shape_the_allocation():
    _, small = _compress({"allocation": "explicit", "keep_shares": (1.0, 4.0)}, "lenet300", 8)
    w = group_widths(small)
    assert w[1] / 100 > 2 * w[0] / 300


def test_parameters_are_validated():
    for bad in ({"beta": 0}, {"allocation": "explicit"}, {"keep_shares": (1.0, 2.0)}, {"sampling": "random"}):
        with pytest.raises(methods.ParamError):
            methods.build("coreset", bad)
    with pytest.raises(ValueError, match="keep_shares"):
        _compress({"allocation": "explicit", "keep_shares": (1.0, 2.0, 3.0)}, "lenet300", 4)
