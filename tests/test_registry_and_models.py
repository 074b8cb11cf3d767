import pytest
import torch
from torch import nn

import methods
from bench.metrics import params_total
from bench.models import classifier_of, create_model, list_models, mark_classifier
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
    assert params_total(create_model(name, shape, 10)) == expected


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_inputs_to_logits_and_marks_its_classifier(name):
    shape = (1, 28, 28)
    model = create_model(name, shape, 7, seed=0)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert classifier_of(model) is linears[-1] and classifier_of(model).out_features == 7
    out.sum().backward()  # every model trains


class _TwoHeads(nn.Module):
    """A projection to 10 features registered after the 10-class head: the rule must not take it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 10)
        self.head = nn.Linear(10, 3)
        self.proj = nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_classifier_rule_last_linear_with_one_output_per_class_unless_named():
    model = _TwoHeads()
    assert classifier_of(model, 3) is model.head  # output size decides, not position
    assert classifier_of(model) is model.proj  # without the class count: the last Linear
    assert classifier_of(mark_classifier(_TwoHeads(), 3)).out_features == 3  # marked once, known thereafter
    named = mark_classifier(_TwoHeads(), 3, name="body")
    assert classifier_of(named) is named.body
    seq = create_model("mlp", (1, 8, 8), 10, classifier="1")  # an override wins over SequentialNet's own
    assert classifier_of(seq) is seq[1] and seq[1].out_features != 10
    with pytest.raises(ValueError, match=r"no Linear layer with 5 outputs.*the num_classes outputs its builder is called with \(5 here\)"):
        mark_classifier(_TwoHeads(), 5)
    with pytest.raises(ValueError, match="'nope' is not a Linear layer of _TwoHeads; choose one of: body, head, proj"):
        mark_classifier(_TwoHeads(), 3, name="nope")


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
