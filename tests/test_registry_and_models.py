import pytest
import torch
from torch import nn

import methods
from bench.models import create_model, list_models, parameter_count
from bench.registry import Registry, UnknownNameError


def test_registry_resolves_only_registered_names():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    assert reg.get("a") == 1 and reg.names() == ["a"]
    for bad in ("b", "__class__", "get", "names"):
        with pytest.raises(UnknownNameError, match="unknown thing .* choose one of: a"):
            reg.get(bad)


def test_registering_a_different_object_under_a_taken_name_fails():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)


def test_method_registry_lists_magnitude_and_rejects_unknown():
    assert "magnitude" in methods.list_methods()
    with pytest.raises(UnknownNameError, match="magnitude"):
        methods.get("no-such-method")


@pytest.mark.parametrize("name,shape,expected", [("lenet300", (1, 28, 28), 266_610), ("lenet5", (1, 28, 28), 431_080),
                                                 ("mlp", (1, 28, 28), 784 * 128 + 128 + 128 * 256 + 256 + 2570)])
def test_parameter_counts_match_the_papers(name, shape, expected):
    assert parameter_count(create_model(name, shape, 10)) == expected


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_inputs_to_logits_and_marks_its_classifier(name):
    shape = (1, 28, 28)
    model = create_model(name, shape, 7, seed=0)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert model.classifier is linears[-1] and model.classifier.out_features == 7
    out.sum().backward()  # every model trains


@pytest.mark.parametrize("name", list_models())
def test_seeded_construction_is_deterministic_and_leaves_global_rng_alone(name):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = create_model(name, (1, 28, 28), 10, seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b = create_model(name, (1, 28, 28), 10, seed=5)
    c = create_model(name, (1, 28, 28), 10, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
