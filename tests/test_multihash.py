"""Structured multi-hashing (methods/multihash.py): exact budget, slicing, gradients, init statistics, export."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import methods
from bench.export import bake
from bench.metrics import params_effective, params_total
from bench.models import classifier_of, create_model
from conftest import TINY_MODELS, make_context, tiny_model
from methods.multihash import KroneckerPool, MultiHashNet, ProductPool, compressed_layers, fanout_scale

POOLS = ("product", "kronecker")


def _build(model, ratio, seed=0, **params) -> MultiHashNet:
    return methods.build("multihash", params).build(model, ratio, torch.Generator().manual_seed(seed))


def _input(model, batch=16, seed=1):
    return torch.randn(batch, *model.spec.input_shape, generator=torch.Generator().manual_seed(seed))


def _lenet300_full():
    return create_model("lenet300", (1, 28, 28), 10, seed=0)


@pytest.mark.parametrize("learnable_scale", [False, True])
@pytest.mark.parametrize("compress_classifier", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("ratio", [2, 4, 8, 16, 32, 64])
def test_trainable_count_is_the_budget_formula_exactly(ratio, pool, compress_classifier, learnable_scale):
    dense = _lenet300_full()
    net = _build(dense, ratio, pool=pool, compress_classifier=compress_classifier, learnable_scale=learnable_scale)
    kernels = [m.weight for m in dense.modules() if isinstance(m, nn.Linear)]
    if not compress_classifier:
        kernels = kernels[:-1]
    n = sum(w.numel() for w in kernels)
    # Side and cost per component computed here independently: m = ceil(sqrt N), d = ceil(N^(1/4)).
    side = math.isqrt(n - 1) + 1 if pool == "product" else next(d for d in range(1, n) if d**4 >= n)
    cost = 2 * side if pool == "product" else 2 * side * side
    uncompressed = params_total(dense) - n + (len(kernels) if learnable_scale else 0)
    budget = round(params_total(dense) / ratio)
    ranks, extra = divmod(budget - uncompressed, cost)
    pool_params = dict(net.pool.named_parameters())
    if pool == "product":
        assert pool_params["x"].shape == (side, ranks) and pool_params["y"].shape == (ranks, side)
    else:
        assert pool_params["a"].shape == pool_params["b"].shape == (ranks, side, side)
    assert sum(p.numel() for k, p in pool_params.items() if k.startswith("part_")) == extra < cost
    assert net.stored_parameter_count() == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert params_effective(net) == cost * ranks + extra + uncompressed == budget
    assert abs(params_total(dense) / params_effective(net) / ratio - 1) <= 0.03


@pytest.mark.parametrize("pool", POOLS)
def test_slices_are_consecutive_row_major_runs_of_the_virtual_vector(pool):
    dense = tiny_model("cnn")  # conv kernels (4-d) and a Linear classifier
    net = _build(dense, 4, pool=pool)
    side = net.pool.rows
    counting = torch.arange(side * side, dtype=torch.float64).view(side, side)
    weights = net.slice_weights(counting)
    seen = []
    offset = 0
    for (name, module), key in zip(compressed_layers(dense), weights):
        w = weights[key] / fanout_scale(module.weight.shape)
        assert key == f"{name}.weight" and w.shape == module.weight.shape
        expected = torch.arange(offset, offset + w.numel(), dtype=torch.float64).view(w.shape)
        torch.testing.assert_close(w, expected)
        seen.append(w.flatten())
        offset += w.numel()
    assert torch.equal(torch.cat(seen).round(), torch.arange(offset, dtype=torch.float64))  # disjoint, cover 0..N-1


def test_every_weight_is_the_sum_over_components_of_x_times_y():
    dense = tiny_model("lenet5")
    net = _build(dense, 8)
    assert net.pool.extra > 0  # the partial component is part of what is checked
    pool: ProductPool = net.pool
    m = pool.rows
    # The partial component rebuilt from its trainable entries and their positions.
    col, row = torch.zeros(m), torch.zeros(m)
    col[pool.index_a], row[pool.index_b] = pool.part_a.detach(), pool.part_b.detach()
    with torch.no_grad():
        pool.part_b.normal_(generator=torch.Generator().manual_seed(5))  # make the partial row non-zero
        row[pool.index_b] = pool.part_b
        weights = net.virtual_weights()
    x, y = pool.x.detach().double(), pool.y.detach().double()
    gen = torch.Generator().manual_seed(2)
    for (name, module), offset in zip(compressed_layers(dense), net.offsets):
        w = weights[f"{name}.weight"].flatten()
        for i in torch.randint(w.numel(), (40,), generator=gen).tolist():
            a, b = divmod(offset + i, m)
            value = sum(x[a, j] * y[j, b] for j in range(pool.ranks)) + col[a].double() * row[b].double()
            assert float(w[i]) == pytest.approx(fanout_scale(module.weight.shape) * float(value), rel=1e-4, abs=1e-6)


def test_kronecker_pool_is_the_sum_of_kronecker_products():
    pool = KroneckerPool(d=5, ranks=3, extra=17, sigma=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pool.part_b.normal_(generator=torch.Generator().manual_seed(1))
    a, b = pool.factors()
    assert a.shape == b.shape == (4, 5, 5)
    assert int((a[-1] != 0).sum()) + int((b[-1] != 0).sum()) == 17  # only the trainable entries are non-zero
    expected = sum(torch.kron(a[i], b[i]) for i in range(4))
    torch.testing.assert_close(pool(), expected)


@pytest.mark.parametrize("pool", POOLS)
def test_gradients_reach_the_pool_and_no_other_copy_of_the_weights_exists(pool):
    dense = tiny_model("cnn")
    net = _build(dense, 4, pool=pool, learnable_scale=True)
    names = [f"{n}.weight" for n, _ in compressed_layers(dense)]
    state = net.state_dict()
    assert not any(key.endswith(tuple(names)) for key in state)
    for _, module in compressed_layers(net.body):
        assert "weight" not in module._parameters and "weight" not in module._buffers
    # Only the generator, the gains and the uncompressed (bias, norm) parameters are left.
    uncompressed = params_total(dense) - sum(dict(dense.named_parameters())[n].numel() for n in names)
    assert sum(p.numel() for p in net.body.parameters()) == uncompressed
    net.train()
    loss = nn.functional.cross_entropy(net(_input(dense)), torch.arange(16) % 4)
    loss.backward()
    grads = {k: p.grad for k, p in net.pool.named_parameters()}
    for key, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), key
        if key != "part_a":  # the partial factor whose partner starts at zero has zero gradient at init
            assert grad.abs().sum() > 0, key
    assert net.gains.grad is not None and net.gains.grad.abs().sum() > 0


def test_virtual_matrix_is_computed_once_per_forward():
    dense = tiny_model("lenet300")
    net = _build(dense, 4)
    calls = []
    net.pool.register_forward_hook(lambda *args: calls.append(1))
    net(_input(dense))
    assert len(calls) == 1


def test_folded_weights_have_the_rank_of_the_number_of_components():
    net = _build(tiny_model("lenet300"), 16)
    with torch.no_grad():
        assert net.pool.extra >= 2  # a partial component with entries on both sides
        net.pool.part_b.normal_(generator=torch.Generator().manual_seed(0))  # switch it on
    with torch.no_grad():
        raw = torch.cat([w.flatten() / s for w, s in zip(net.virtual_weights().values(), net.scales)])
    m = net.pool.rows
    folded = raw[: raw.numel() // m * m].view(-1, m).double()  # whole rows of M only
    bound = net.pool.ranks + (1 if net.pool.extra else 0)
    assert bound < min(folded.shape)
    # The weights are float32: singular values below ~1e-5 of the largest are rounding noise.
    assert int(torch.linalg.matrix_rank(folded, rtol=1e-5)) == bound


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("sigma", [1.0, 0.5])
def test_virtual_weights_have_the_intended_std_at_init(pool, sigma):
    dense = _lenet300_full()  # N = 266,200 virtual weights, r ~ 64 at 4x: small sampling error
    net = _build(dense, 4, pool=pool, sigma=sigma, seed=3)
    with torch.no_grad():
        weights = net.virtual_weights()
        raw = torch.cat([w.flatten() / s for w, s in zip(weights.values(), net.scales)])
    assert raw.std().item() == pytest.approx(sigma, rel=0.05)
    for (name, module), w in zip(compressed_layers(dense), weights.values()):
        if w.numel() >= 20 * net.pool.rows:  # layers spanning few rows of M share few X rows: too noisy
            assert w.std().item() == pytest.approx(sigma / math.sqrt(module.out_features), rel=0.1), name


def test_conv_weights_get_the_fanout_scale():
    dense = create_model("cnn", (1, 16, 16), 4, seed=0, channels=(32, 64, 128))
    net = _build(dense, 4, seed=1)
    with torch.no_grad():
        weights = net.virtual_weights()
    checked = 0
    for (name, module), w in zip(compressed_layers(dense), weights.values()):
        if isinstance(module, nn.Conv2d) and w.numel() >= 20 * net.pool.rows:
            c_out, _, kh, kw = w.shape
            assert w.std().item() == pytest.approx(math.sqrt(2 / (kh * kw * c_out)), rel=0.1), name
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("model_key", sorted(TINY_MODELS))
def test_export_is_a_plain_model_with_the_same_outputs(model_key, pool):
    dense = tiny_model(model_key)
    net = _build(dense, 4, pool=pool, learnable_scale=True)
    with torch.no_grad():  # move off the init so BatchNorm statistics and gains are not trivial
        net.train()(_input(dense, 64, seed=7))
        net.gains.mul_(1.5)
    net.eval()
    exported = net.export()
    assert type(exported) is type(dense) and exported.spec == dense.spec
    assert list(exported.state_dict()) == list(dense.state_dict())  # same layout as the dense model
    assert params_total(exported) == params_total(dense)
    x = _input(dense)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(exported.eval()(x), expected, rtol=0, atol=0)
        torch.testing.assert_close(bake(net)(x), expected, rtol=0, atol=0)
    classifier_of(exported).bias.data.add_(1.0)  # the export holds its own copies, not views of the generator
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


def test_deepcopy_and_state_dict_round_trip():
    dense = tiny_model("cnn")
    net = _build(dense, 8, seed=0).eval()
    other = _build(dense, 8, seed=1).eval()
    x = _input(dense)
    with torch.no_grad():
        expected = net(x)
        assert not torch.allclose(other(x), expected)
        torch.testing.assert_close(copy.deepcopy(net)(x), expected, rtol=0, atol=0)
        other.load_state_dict(net.state_dict())
        torch.testing.assert_close(other(x), expected, rtol=0, atol=0)


def test_unreachable_ratios_raise_with_the_reason():
    dense = tiny_model("lenet300")
    with pytest.raises(methods.CompressionError, match="ratio"):
        _build(dense, 1.0)
    with pytest.raises(methods.CompressionError, match="rank-one component"):
        _build(dense, 200)  # the budget is smaller than one component of 2m


def test_compress_trains_the_pool_with_distillation(tiny_data):
    dense = tiny_model("lenet300")
    method = methods.build("multihash", {"epochs": 1, "kd_weight": 0.5})
    context = make_context(tiny_data, seed=0, teacher=dense)
    untrained = method.build(dense, 8, context.generator())
    trained = method.compress(dense, 8, context)
    assert params_total(dense) / params_effective(trained) == pytest.approx(8, rel=0.03)
    assert not torch.equal(trained.pool.x, untrained.pool.x)  # same init, then trained
    assert set(trained.state_dict()) == set(untrained.state_dict())


def test_from_scratch_ignores_the_input_weights():
    a, b = tiny_model("mlp", seed=0), tiny_model("mlp", seed=1)
    x = _input(a)
    with torch.no_grad():
        torch.testing.assert_close(_build(a, 4)(x), _build(b, 4)(x), rtol=0, atol=0)


def test_parameters_are_validated():
    for bad in ({"sigma": 0.0}, {"kd_weight": 1.5}, {"lr": -1.0}, {"pool": "hash"}, {"temperature": 0.0}):
        with pytest.raises(methods.ParamError):
            methods.build("multihash", bad)


@pytest.mark.parametrize("pool", POOLS)
def test_what_is_saved_is_the_generator_and_the_uncompressed_parameters(pool):
    dense = _lenet300_full()  # no norm layers: every saved entry is a stored parameter
    net = _build(dense, 16, pool=pool)
    saved = sum(t.numel() for t in net.state_dict().values())
    assert saved == net.stored_parameter_count() == round(params_total(dense) / 16)
    assert sum(t.numel() for t in net.export().state_dict().values()) == params_total(dense)


@pytest.mark.parametrize("pool", POOLS)
def test_max_ratio_is_the_last_budget_that_holds_one_component(pool):
    """What a TPE sweep clips its range to: just below it the hashed net builds, just above it is refused."""
    dense = tiny_model("lenet300")
    method = methods.build("multihash", {"pool": pool})
    top = method.max_ratio(dense)
    assert method.build(dense, top * 0.999, torch.Generator().manual_seed(0)).stored_parameter_count() >= 1
    with pytest.raises(methods.CompressionError, match="less than one rank-one component"):
        method.build(dense, top * 1.01, torch.Generator().manual_seed(0))
