import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from bench.export import CSRLinear, deployable, serialized_size
from bench.metrics import accuracy, flops, layer_macs, params_effective, params_total, pq_index, size_metrics
from bench.models import SequentialNet


def _tiny() -> SequentialNet:
    torch.manual_seed(0)
    return SequentialNet(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_parameter_counts_by_hand():
    model = _tiny()
    assert params_total(model) == 4 * 3 + 3 + 3 * 2 + 2
    prune.custom_from_mask(model[1], "weight", torch.tensor([[1, 0, 0, 0]] * 3, dtype=torch.float32))
    assert params_effective(model) == 3 + 3 + 3 * 2 + 2
    assert params_total(model) == 23  # weight_orig still counts once, the mask is a buffer


def test_dense_model_with_zero_parameters_is_still_1x():
    model = _tiny()
    with torch.no_grad():
        model[1].bias.zero_()
    assert params_effective(model) == params_total(model)


def test_linear_and_conv_macs_by_hand():
    lin = SequentialNet(nn.Flatten(), nn.Linear(784, 300))
    assert layer_macs(lin, (1, 28, 28)) == {"1": 235_200}
    conv = SequentialNet(nn.Conv2d(3, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 32 * 32, 2))
    assert layer_macs(conv, (3, 32, 32))["0"] == 3 * 16 * 9 * 1024


def test_half_masked_layer_has_half_effective_flops():
    model = SequentialNet(nn.Conv2d(3, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 32 * 32, 2))
    mask = torch.zeros_like(model[0].weight)
    mask[:8] = 1
    prune.custom_from_mask(model[0], "weight", mask)
    dense, effective = flops(model, (3, 32, 32))
    assert dense == 3 * 16 * 9 * 1024 + 16 * 1024 * 2
    assert effective == pytest.approx(3 * 16 * 9 * 1024 / 2 + 16 * 1024 * 2)


def _pq_numpy(w: np.ndarray, p: float, q: float) -> float:
    w = np.abs(w)
    return 1 - len(w) ** (1 / q - 1 / p) * np.sum(w**p) ** (1 / p) / np.sum(w**q) ** (1 / q)


@pytest.mark.parametrize("p,q", [(0.5, 1.0), (1.0, 2.0), (0.3, 1.7)])
def test_pq_index_matches_numpy_and_its_extremes(p, q):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(500)
    assert pq_index(torch.tensor(w), p, q) == pytest.approx(_pq_numpy(w, p, q), rel=1e-9)
    assert pq_index(torch.full((50,), -3.0), p, q) == pytest.approx(0.0, abs=1e-12)
    one_hot = torch.zeros(50)
    one_hot[7] = 2.0
    assert pq_index(one_hot, p, q) == pytest.approx(1 - 50 ** (1 / q - 1 / p))
    assert pq_index(torch.zeros(5), p, q) == 0.0 and pq_index(torch.zeros(0), p, q) == 0.0


def test_pq_index_is_scale_and_duplication_invariant():
    w = torch.randn(300, generator=torch.Generator().manual_seed(1)).double()
    assert pq_index(7.5 * w) == pytest.approx(pq_index(w), rel=1e-12)
    assert pq_index(torch.cat([w, w])) == pytest.approx(pq_index(w), rel=1e-12)
    with pytest.raises(ValueError, match="0 < p < q"):
        pq_index(w, 1.0, 1.0)


def test_accuracy_is_weighted_by_samples_not_batches():
    model = SequentialNet(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model[1].bias.zero_()
    x = torch.tensor([[1.0]] * 9 + [[-1.0]]).reshape(10, 1, 1)
    y = torch.zeros(10, dtype=torch.long)
    # Batches of 3: per-batch means would average 1, 1, 1, 0 -> 0.75; the true accuracy is 0.9.
    assert accuracy(model, x, y, batch_size=3)[1] == pytest.approx(0.9)


def test_csr_export_where_smaller_gives_identical_outputs_and_fewer_bytes():
    model = SequentialNet(nn.Flatten(), nn.Linear(100, 80), nn.ReLU(), nn.Linear(80, 3))
    mask = (torch.rand(80, 100, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    prune.custom_from_mask(model[1], "weight", mask)
    deployed = deployable(model)
    assert isinstance(deployed[1], CSRLinear) and isinstance(deployed[3], nn.Linear)
    x = torch.randn(16, 1, 100)
    torch.testing.assert_close(deployed(x), model(x))
    assert not list(deployed[1]._forward_pre_hooks.values())
    assert serialized_size(deployed)[0] < serialized_size(deployable(SequentialNet(nn.Flatten(), nn.Linear(100, 80), nn.ReLU(), nn.Linear(80, 3))))[0]


def test_size_metrics_of_a_dense_model_are_unit_ratios():
    model = _tiny()
    m = size_metrics(model, model, (1, 4))
    assert m["compression_ratio"] == 1 and m["fraction_removed"] == 0 and m["theoretical_speedup"] == 1
