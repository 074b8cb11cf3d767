import pytest
import torch
from torch.nn.utils import prune

import methods
from bench.export import clone
from bench.metrics import params_effective, params_total
from bench.models import create_model
from methods.common.base import CompressionError
from methods.common.pruning import effective, keep_fraction, prunable_tensors
from conftest import make_context


@pytest.fixture
def model():
    return create_model("lenet300", (1, 8, 8), 4, seed=0)


def _masks(model):
    return [effective(m, n) != 0 for m, n in prunable_tensors(model)]


def test_keep_fraction_solves_shrinkbench_equation(model):
    tensors = prunable_tensors(model)
    n_total = params_total(model)
    n_prunable = sum(m.weight.numel() for m, _ in tensors)
    kappa = keep_fraction(model, 8, tensors)
    assert n_total / (kappa * n_prunable + n_total - n_prunable) == pytest.approx(8)
    with pytest.raises(CompressionError, match="out of reach"):
        keep_fraction(model, 10_000, tensors)


def test_global_magnitude_equals_torch_global_unstructured(model, tiny_data):
    ours = methods.build("magnitude", {"scope": "global"}).compress(clone(model), 8, make_context(tiny_data))
    reference = clone(model)
    tensors = prunable_tensors(reference)
    n_keep = round(keep_fraction(reference, 8, tensors) * sum(m.weight.numel() for m, _ in tensors))
    n_prune = sum(m.weight.numel() for m, _ in tensors) - n_keep
    prune.global_unstructured(tensors, pruning_method=prune.L1Unstructured, amount=n_prune)
    for a, b in zip(_masks(ours), _masks(reference)):
        assert torch.equal(a, b)


def test_layer_scope_keeps_the_same_fraction_of_every_tensor(model, tiny_data):
    out = methods.build("magnitude", {"scope": "layer"}).compress(clone(model), 8, make_context(tiny_data))
    kappa = keep_fraction(model, 8, prunable_tensors(model))
    for mask in _masks(out):
        assert float(mask.float().mean()) == pytest.approx(kappa, abs=2 / mask.numel() + 1e-3)


def test_random_control_ignores_magnitudes(model, tiny_data):
    out = methods.build("magnitude", {"random": True}).compress(clone(model), 4, make_context(tiny_data))
    w = torch.cat([m.weight.detach().abs().flatten() for m, _ in prunable_tensors(model)])
    kept = torch.cat([mk.flatten() for mk in _masks(out)]).float()
    corr = torch.corrcoef(torch.stack([w, kept]))[0, 1]
    assert abs(float(corr)) < 0.05
    assert params_total(model) / params_effective(out) == pytest.approx(4, rel=0.03)


def test_classifier_and_biases_are_untouched(model, tiny_data):
    out = methods.build("magnitude", {}).compress(clone(model), 16, make_context(tiny_data))
    assert torch.equal(out.classifier.weight, model.classifier.weight)
    assert all(torch.equal(a.bias, b.bias) for a, b in zip(out.modules(), model.modules()) if hasattr(a, "bias") and a.bias is not None)


def test_iterative_pruning_is_nested_and_reaches_the_target(model, tiny_data):
    steps = []
    ctx = make_context(tiny_data)
    ctx.log_metrics = lambda metrics, step: steps.append((metrics["round_keep_fraction"], step))
    out = methods.build("magnitude", {"schedule": "iterative", "rounds": 3}).compress(clone(model), 8, ctx)
    assert params_total(model) / params_effective(out) == pytest.approx(8, rel=0.03)
    fractions = [f for f, _ in steps]
    assert len(fractions) == 2 and fractions[0] > fractions[1]


def test_masks_survive_finetuning_with_momentum_and_weight_decay(model, tiny_data):
    from bench.recipes import TrainRecipe
    from bench.training import fit

    out = methods.build("magnitude", {}).compress(clone(model), 8, make_context(tiny_data))
    before = _masks(out)
    fit(out, TrainRecipe(epochs=2, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=1e-3, select_on_val=False), tiny_data, 0)
    for mask, (m, n) in zip(before, prunable_tensors(out)):
        assert torch.all(effective(m, n)[~mask] == 0)


def test_pruning_twice_at_the_same_target_changes_nothing(model, tiny_data):
    method = methods.build("magnitude", {})
    once = method.compress(clone(model), 8, make_context(tiny_data))
    twice = method.compress(clone(once), 8, make_context(tiny_data))
    assert all(torch.equal(a, b) for a, b in zip(_masks(once), _masks(twice)))
