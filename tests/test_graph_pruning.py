"""Structural pruning through Torch-Pruning's dependency graph (methods.common.unit_groups): the coupled
groups of chains and residual networks, the parameter counter, coreset and its controls on residual
networks, and lma students of models outside its family table."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import examples.residual_plugin  # noqa: F401  (registers residual-cnn)
import methods
from bench.export import clone
from bench.metrics import params_total
from bench.models import PadShortcut, classifier_of, create_model
from conftest import make_context, tiny_model
from methods.common.base import RATIO_TOLERANCE, CompressionError
from chain_surgery import param_counter, remove_units, slots
from methods.common.width_budget import (
    ACTIVATION_TYPES, NORM_TYPES, budget_for_ratio, geometric_widths, integer_widths, widths_for_budget,
)
from methods.common.unit_groups import group_param_counter, group_widths, keep_units, resize_groups, unit_groups
from methods.coreset import Coreset, probabilities, sensitivity
from methods.lma import build_student

RESIDUAL = {
    "resnet20": ("resnet20", (3, 32, 32), {}),
    "resnet20-B": ("resnet20", (3, 32, 32), {"shortcut": "B"}),
    "residual-cnn": ("residual-cnn", (1, 8, 8), {}),
}
CHAINS = {
    "lenet300": ("lenet300", (1, 28, 28), {}),
    "cnn": ("cnn", (1, 16, 16), {"channels": (8, 16, 16)}),
}


def _model(table: dict, key: str, seed: int = 0) -> nn.Module:
    name, shape, kwargs = table[key]
    return create_model(name, shape, 10, seed=seed, **kwargs)


def _randomise_norms(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BatchNorm statistics and affine maps, so folding and pruning them is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NORM_TYPES):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))


# ---------------------------------------------------------------------------------------------------
# The old slot-based coreset step, kept inline as the chain reference


def _old_points(model, slot) -> torch.Tensor:
    layer = model[slot.index]
    n = layer.weight.shape[0]
    weight = layer.weight.detach().reshape(n, -1).double()
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros(n, dtype=torch.float64)
    for i in slot.between:
        norm = model[i]
        if isinstance(norm, ACTIVATION_TYPES):
            break
        if isinstance(norm, NORM_TYPES):
            scale = (norm.running_var.double() + norm.eps).rsqrt()
            shift = -norm.running_mean.double() * scale
            scale, shift = scale * norm.weight.double(), shift * norm.weight.double() + norm.bias.double()
            weight, bias = weight * scale[:, None], bias * scale + shift
    return torch.cat([weight, bias[:, None]], dim=1)


def _old_prune_layer(method: Coreset, model, slot, k: int, generator) -> None:
    points = _old_points(model, slot)
    n = points.shape[0]
    if k >= n:
        return
    if method.sampling == "topk":
        keep = torch.argsort(points.norm(dim=1), descending=True, stable=True)[:k].sort().values
        remove_units(model, slot, keep)
        return
    nxt = model[slot.next_index]
    outgoing = nxt.weight.detach().double().reshape(nxt.weight.shape[0], n, -1)
    activation = next((model[i] for i in slot.between if isinstance(model[i], ACTIVATION_TYPES)), nn.Identity())
    s = sensitivity(points, outgoing, activation, method.beta)
    pr = probabilities(s) if method.sampling == "coreset" else torch.full((n,), 1.0 / n, dtype=torch.float64)
    keep, scale, _ = method._sample(pr, k, generator)
    remove_units(model, slot, keep, scale if method.reweight else None)


@pytest.mark.parametrize("sampling", ["coreset", "uniform", "topk"])
@pytest.mark.parametrize("reweight", [True, False])
@pytest.mark.parametrize("key", sorted(CHAINS))
def test_graph_coreset_equals_the_slot_path_on_chains(key, sampling, reweight):
    for seed in range(3):
        dense = _model(CHAINS, key, seed)
        _randomise_norms(dense, seed + 1)
        method = Coreset(sampling=sampling, reweight=reweight, finetune_each_layer=False)
        plan = method.plan(group_param_counter(dense), budget_for_ratio(params_total(dense), 4))
        assert plan == widths_for_budget(param_counter(dense), budget_for_ratio(params_total(dense), 4))
        ours, ref = clone(dense), clone(dense)
        for pos, k in enumerate(plan):
            method.prune_group(ours, pos, k, torch.Generator().manual_seed(100 * seed + pos))
            _old_prune_layer(method, ref, slots(ref)[pos], k, torch.Generator().manual_seed(100 * seed + pos))
        a, b = ours.state_dict(), ref.state_dict()
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), (key, seed, name)


@pytest.mark.parametrize("key", sorted(CHAINS) + ["lenet5"])
def test_graph_counter_has_the_chain_counter_terms(key):
    model = tiny_model("lenet5") if key == "lenet5" else _model(CHAINS, key)
    chain, graph = param_counter(model), group_param_counter(model)
    assert chain.full == graph.full
    # The chain counter also lists zero terms for parameter-free modules; adding 0.0 changes no float.
    assert [t for t in chain.terms if t[0] != 0 or t[1] is not None] == list(graph.terms)
    budget = budget_for_ratio(params_total(model), 8)
    assert geometric_widths(chain, budget) == geometric_widths(graph, budget)
    assert integer_widths(chain, budget, geometric_widths(chain, budget)) == \
        integer_widths(graph, budget, geometric_widths(graph, budget))


# ---------------------------------------------------------------------------------------------------
# Groups and the parameter counter on residual networks


def test_residual_groups_couple_each_stage():
    groups = unit_groups(_model(RESIDUAL, "resnet20"))
    assert [g.width for g in groups] == [16] * 4 + [32] * 4 + [64] * 4
    stream = groups[0]
    # Stage 1's stream: the stem conv and three conv2 write into it; three conv1 read it (plus the option A
    # shortcut into stage 2, a parameter-free path, and stage 2's first conv1).
    assert len(stream.producers) == 4 and len(stream.consumers) == 4 and len(stream.pads_in) == 1
    assert all(isinstance(a, nn.ReLU) for a in stream.activations)
    plugin = unit_groups(_model(RESIDUAL, "residual-cnn"))
    assert [g.width for g in plugin] == [16, 16, 16, 32, 32, 32]
    assert all(type(a) is nn.ReLU for a in plugin[0].activations)  # functional torch.relu, read off autograd


@pytest.mark.parametrize("key", sorted(RESIDUAL) + ["lenet300"])
def test_group_counter_matches_resized_models(key):
    model = _model(CHAINS, key) if key == "lenet300" else _model(RESIDUAL, key)
    count = group_param_counter(model)
    assert count(count.full) == params_total(model)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        kept = [int(torch.randint(1, w + 1, (1,), generator=g)) for w in count.full]
        small = clone(model)
        resize_groups(small, kept)
        assert group_widths(small) == kept
        assert params_total(small) == count(kept)
        shape = (2, *model.spec.input_shape)
        assert small(torch.randn(shape)).shape == (2, 10)


def _masked(model: nn.Module, index: int, keep: torch.Tensor, scale: torch.Tensor | None) -> nn.Module:
    """Reference: the removed units zeroed at every producer (rows, biases, BN affine maps: ReLU(0) = 0 in
    every block of the stream) and at every option A shortcut routing a channel into them, the kept units'
    consumer columns multiplied by their scale."""
    model = clone(model)
    group = unit_groups(model)[index]
    drop = torch.tensor(sorted(set(range(group.width)) - set(keep.tolist())), dtype=torch.long)
    with torch.no_grad():
        for p in group.producers:
            p.layer.weight[p.rows[drop]] = 0
            if p.layer.bias is not None:
                p.layer.bias[p.rows[drop]] = 0
        for norm in group.norms:
            norm.weight[drop] = 0
            norm.bias[drop] = 0
        for pad in group.pads_out:
            pad.positions[torch.isin(pad.positions, drop)] = -1
        if scale is not None:
            for c in group.consumers:
                cols = c.columns[keep]
                factor = scale.float().repeat_interleave(cols.shape[1])
                shape = (1, -1) + (1,) * (c.layer.weight.ndim - 2)
                c.layer.weight[:, cols.flatten()] *= factor.view(shape)
    return model


@pytest.mark.parametrize("key", sorted(RESIDUAL))
def test_removing_units_of_a_residual_group_equals_masking_them(key):
    model = _model(RESIDUAL, key)
    _randomise_norms(model)
    model.eval()
    x = torch.randn(3, *model.spec.input_shape, generator=torch.Generator().manual_seed(0))
    for index in range(len(unit_groups(model))):
        n = unit_groups(model)[index].width
        same = clone(model)
        keep_units(same, index, torch.arange(n))
        with torch.no_grad():
            assert torch.equal(same(x), model(x))
        keep = torch.arange(0, n, 3)
        scale = torch.linspace(0.5, 2.0, len(keep), dtype=torch.float64)
        for s in (None, scale):
            pruned = clone(model)
            keep_units(pruned, index, keep, s)
            assert group_widths(pruned)[index] == len(keep)
            with torch.no_grad():
                torch.testing.assert_close(pruned(x), _masked(model, index, keep, s)(x), rtol=1e-4, atol=1e-4)


def test_pad_shortcut_keeps_its_state_dict_keys_and_routes_survivors():
    model = _model(RESIDUAL, "resnet20")
    keys = list(model.state_dict().keys())
    groups = unit_groups(model)
    stage2 = next(g.index for g in groups if g.pads_out)  # the stream the first shortcut pads into
    kept = [g.width for g in groups]
    kept[0], kept[stage2] = 10, 20
    resize_groups(model, kept)
    assert list(model.state_dict().keys()) == keys
    pads = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert (pads[0].in_channels, pads[0].out_channels) == (10, 20)
    # Of stage 1's first 10 channels, those whose padded position (c + 8) survives the first 20 of stage 2.
    assert pads[0].positions.tolist() == [8, 9, 10, 11, 12, 13, 14, 15, 16, 17]


# ---------------------------------------------------------------------------------------------------
# Coreset and its controls on residual networks


@pytest.mark.parametrize("sampling", ["coreset", "uniform", "topk"])
@pytest.mark.parametrize("key", ["resnet20", "residual-cnn"])
def test_coreset_prunes_residual_networks_to_the_ratio(key, sampling):
    for ratio in (2, 4):
        dense = _model(RESIDUAL, key)
        classifier = classifier_of(dense)
        before = {k: v.clone() for k, v in classifier.state_dict().items()}
        method = methods.build("coreset", {"finetune_each_layer": False, "sampling": sampling})
        small = method.compress(clone(dense), ratio, make_context(None, 0))
        achieved = params_total(dense) / params_total(small)
        assert abs(achieved / ratio - 1) <= RATIO_TOLERANCE, (ratio, achieved)
        # The classifier is never pruned: all its outputs and its bias stay; only the input columns of the
        # last stream's removed units go, the kept ones are the dense columns (times a positive scale).
        after = classifier_of(small)
        assert after.out_features == 10 and torch.equal(after.bias, before["bias"])
        dense_columns = before["weight"].T
        for column in after.weight.detach().T:
            ratio = column / dense_columns
            assert ((ratio - ratio[:, :1]).abs() < 1e-4 * ratio.abs().clamp(min=1)).all(1).any()
        with torch.no_grad():
            assert small(torch.randn(2, *dense.spec.input_shape)).shape == (2, 10)


def test_coreset_refuses_a_residual_stream_whose_activation_is_not_contracting():
    model = create_model("resnet20", (3, 32, 32), 10, seed=0, activation="sigmoid")
    with pytest.raises(CompressionError, match="residual stream"):
        Coreset(finetune_each_layer=False).compress(model, 2, make_context(None, 0))


# ---------------------------------------------------------------------------------------------------
# LMA students of models outside the family table


@pytest.mark.parametrize("activation", ["relu", "lma"])
def test_lma_student_of_the_residual_plugin(activation):
    teacher = _model(RESIDUAL, "residual-cnn")
    if activation == "lma":
        # The plugin calls torch.relu in its forward: there is no activation module to swap for LMA.
        with pytest.raises(CompressionError, match="not every activation is an nn.ReLU module"):
            build_student(teacher, 4, activation, seed=0)
        return
    student = build_student(teacher, 4, activation, seed=5)  # not the teacher's seed: a fresh init
    assert abs(params_total(teacher) / params_total(student) / 4 - 1) <= RATIO_TOLERANCE
    again = build_student(teacher, 4, activation, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(student.stem[0].weight, teacher.stem[0].weight[:student.stem[0].out_channels])
    with torch.no_grad():
        assert student(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name,shape,kwargs", [("mlp", (1, 8, 8), {"widths": (32, 16)}),
                                               ("residual-cnn", (1, 8, 8), {"channels": 8})])
def test_coreset_max_ratio_is_every_group_at_one_unit(name, shape, kwargs):
    """What a TPE sweep clips its range to: exact against the model actually resized to one unit per group."""
    import copy

    import methods
    from bench.models import create_model
    from methods.common.unit_groups import resize_groups, unit_groups

    model = create_model(name, shape, 10, seed=0, **kwargs)
    smallest = copy.deepcopy(model)
    resize_groups(smallest, [1] * len(unit_groups(model)))
    expected = sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in smallest.parameters())
    method = methods.build("coreset", {"finetune_each_layer": False})
    assert method.max_ratio(model) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(methods.CompressionError):
        method.compress(copy.deepcopy(model), 1.05 * expected, methods.Context(seed=0))
