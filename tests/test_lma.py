"""LMA (docs/methods/lma.md): the activation against an independent reference, the students' budgets,
and the distillation loss against a direct computation."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods
from bench.metrics import params_total
from bench.models import create_model
from bench.training import distillation_loss
from conftest import make_context, tiny_model
from methods.lma import LMA
from methods.lma import build_student

RATIOS = (2, 4, 8, 16, 32)


def _randn(*shape: int, seed: int = 0, mean: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + mean)


def _stats(x: torch.Tensor) -> tuple[float, float]:
    """Layer-wide mean and unbiased std, written out rather than via Tensor.std."""
    values = x.flatten().tolist()
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _randomise(act: LMA, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        act.alpha.copy_(torch.randn(act.segments, generator=g))
        act.beta.copy_(torch.randn(act.segments, generator=g))


def _reference(x: torch.Tensor, act: LMA, mean: float, std: float) -> torch.Tensor:
    """A_j·x + β_j with j found by comparing x to the cut points μ − 3σ + j·6σ/K (left-closed bins)."""
    k = act.segments
    inner = torch.tensor([mean - 3 * std + j * 6 * std / k for j in range(1, k)], dtype=torch.float64)
    segment = torch.bucketize(x, inner, right=True)
    slopes = (act.alpha + act.slope_offset).detach().double()
    return slopes[segment] * x + act.beta.detach().double()[segment]


@pytest.mark.parametrize("segments", [2, 8])
@pytest.mark.parametrize("shape", [(64, 20), (8, 3, 5, 5)])
def test_at_init_activation_is_x_times_indicator_x_at_least_mean(segments, shape):
    x = _randn(*shape, mean=0.7, scale=2.0)
    mean, _ = _stats(x)
    out = LMA(segments)(x)
    torch.testing.assert_close(out, x * (x >= mean), rtol=0, atol=1e-12)
    assert out.shape == x.shape


def test_at_init_on_a_zero_mean_input_activation_is_relu():
    v = _randn(500)
    x = torch.cat([v, -v])  # mean exactly zero up to rounding
    torch.testing.assert_close(LMA(8)(x), torch.relu(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("segments", [1, 3, 8])
def test_cut_points_are_mean_minus_3_std_plus_j_bin_widths(segments):
    x = _randn(40, 30, mean=-1.5, scale=3.0)
    act = LMA(segments)
    cuts = act.cut_points(*act.statistics(x))
    mean, std = _stats(x)
    expected = torch.tensor([mean - 3 * std + j * 6 * std / segments for j in range(segments + 1)], dtype=torch.float64)
    torch.testing.assert_close(cuts, expected, rtol=0, atol=1e-10)
    assert cuts[0].item() == pytest.approx(mean - 3 * std) and cuts[-1].item() == pytest.approx(mean + 3 * std)


@pytest.mark.parametrize("segments", [2, 5, 8])
def test_affine_within_each_segment_with_that_segments_slope_and_intercept(segments):
    x = _randn(50, 40, mean=0.3, scale=1.7)
    x[0, :4] = torch.tensor([-100.0, -20.0, 20.0, 100.0], dtype=torch.float64)  # far outside μ ± 3σ
    act = LMA(segments)
    _randomise(act)
    out = act(x)
    mean, std = _stats(x)
    torch.testing.assert_close(out, _reference(x, act, mean, std), rtol=0, atol=1e-10)


def test_points_land_in_their_segment_and_outer_segments_extend_to_infinity():
    act = LMA(8).eval()
    act.running_mean.fill_(0.5)
    act.running_std.fill_(2.0)
    width = 6 * 2.0 / 8
    middles = torch.tensor([0.5 - 6.0 + (j + 0.5) * width for j in range(8)])
    index = act.segment_index(middles, act.running_mean, act.running_std)
    assert index.tolist() == list(range(8))
    outside = torch.tensor([-1e6, 0.5 - 6.0 - 1e-3, 0.5 + 6.0 + 1e-3, 1e6])
    assert act.segment_index(outside, act.running_mean, act.running_std).tolist() == [0, 0, 7, 7]


def test_one_segment_is_affine():
    act = LMA(1)
    x = _randn(100, scale=4.0)
    assert torch.equal(act(x), x)  # identity at init (a⁰ = (1))
    _randomise(act)
    x = _randn(10, 10, scale=5.0)
    x[0, 0] = 1e4  # far beyond μ + 3σ: still the same line
    a, b = 1 + act.alpha.item(), act.beta.item()
    torch.testing.assert_close(act(x), a * x + b, rtol=0, atol=1e-9)


def test_gradients_reach_slopes_and_intercepts_but_not_the_statistics():
    act = LMA(6)
    _randomise(act)
    x = _randn(30, 20, mean=0.4).requires_grad_(True)
    g = _randn(30, 20, seed=5)
    (act(x) * g).sum().backward()
    mean, std = _stats(x.detach())
    inner = torch.tensor([mean - 3 * std + j * std for j in range(1, 6)], dtype=torch.float64)
    segment = torch.bucketize(x.detach(), inner, right=True)
    slopes = (act.alpha + act.slope_offset).detach().double()
    for j in range(6):
        in_j = segment == j
        assert act.alpha.grad[j].item() == pytest.approx((g * x.detach())[in_j].sum().item(), rel=1e-5, abs=1e-5)
        assert act.beta.grad[j].item() == pytest.approx(g[in_j].sum().item(), rel=1e-5, abs=1e-5)
    # A gradient through μ or σ would add terms shared by every element; ∂h/∂x must be A_{j(x)} alone.
    torch.testing.assert_close(x.grad, slopes[segment] * g, rtol=0, atol=1e-12)
    assert all(not b.requires_grad and b.grad is None for b in act.buffers())
    assert [n for n, _ in act.named_parameters()] == ["alpha", "beta"]
    assert sum(p.numel() for p in act.parameters()) == 12  # 2K scalars per layer


def test_eval_mode_uses_and_does_not_change_the_running_statistics():
    act = LMA(8)
    _randomise(act)
    x = _randn(64, 16, mean=1.0, scale=2.0)
    mean, std = _stats(x)
    steps = 7
    for _ in range(steps):
        act(x)
    shrink = 1 - 0.99**steps  # running averages start at 0 (official code), no bias correction
    assert act.running_mean.item() == pytest.approx(shrink * mean, rel=1e-5)
    assert act.running_std.item() == pytest.approx(shrink * std, rel=1e-5)
    act.eval()
    before = [b.clone() for b in act.buffers()]
    other = _randn(64, 16, seed=3, mean=-2.0, scale=0.5)  # different statistics: must not be used
    out = act(other)
    assert all(torch.equal(b, a) for b, a in zip(before, act.buffers()))
    expected = _reference(other, act, act.running_mean.item(), act.running_std.item())
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(act(other[:5]), out[:5])  # no dependence on the batch in eval


def test_state_dict_and_deepcopy_round_trip_the_statistics():
    act = LMA(4)
    _randomise(act)
    x = _randn(32, 8, mean=0.5)
    for _ in range(3):
        act(x)
    state = act.state_dict()
    assert {"alpha", "beta", "slope_offset", "running_mean", "running_std"} <= set(state)
    restored = LMA(4)
    restored.load_state_dict(state)
    for name, value in restored.state_dict().items():
        assert torch.equal(value, state[name]), name
    act.eval(), restored.eval()
    probe = _randn(10, 8, seed=9)
    torch.testing.assert_close(restored(probe), act(probe), rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(act)(probe), act(probe), rtol=0, atol=0)


TEACHERS = {
    "lenet300": ("lenet300", (1, 28, 28), {}, "mlp"),
    "cnn": ("cnn", (3, 32, 32), {}, "cnn"),
}


@pytest.mark.parametrize("activation", ["lma", "relu"])
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("teacher_key", sorted(TEACHERS))
def test_student_parameter_count_is_within_3_percent_of_the_budget(teacher_key, ratio, activation):
    name, shape, kwargs, family = TEACHERS[teacher_key]
    with torch.device("meta"):  # counts only; the cnn teacher has 1.56 M parameters
        teacher = create_model(name, shape, 10, **kwargs)
        student = build_student(teacher, ratio, activation, segments=8)
    achieved = params_total(teacher) / params_total(student)
    assert abs(achieved / ratio - 1) <= 0.03, f"{achieved:.3f}x for {ratio}x"
    assert student.spec.name == family
    n_acts = sum(isinstance(m, nn.ReLU) for m in teacher)
    lmas = [m for m in student if isinstance(m, LMA)]
    assert len(lmas) == (n_acts if activation == "lma" else 0)
    assert sum(p.numel() for m in lmas for p in m.parameters()) == 2 * 8 * len(lmas)


def test_student_is_rejected_at_ratio_at_most_one_and_beyond_the_smallest_student():
    teacher = create_model("lenet300", (1, 28, 28), 10)
    with pytest.raises(methods.CompressionError, match="ratio"):
        build_student(teacher, 1.0)
    with pytest.raises(methods.CompressionError, match="ratio"):
        build_student(teacher, 5000.0)  # 53 parameters: less than one hidden unit per layer allows


def test_kd_loss_equals_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=g, dtype=torch.float64)
    teacher = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    targets = torch.tensor([0, 4, 2, 2, 1, 3])
    a, t = 0.7, 2.0
    total = 0.0
    for zs, zt, y in zip(student.tolist(), teacher.tolist(), targets.tolist()):
        p_t = [math.exp(v / t) for v in zt]
        p_t = [v / sum(p_t) for v in p_t]
        p_s = [math.exp(v / t) for v in zs]
        p_s = [v / sum(p_s) for v in p_s]
        kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        ce = -(zs[y] - math.log(sum(math.exp(v) for v in zs)))
        total += a * t**2 * kl + (1 - a) * ce
    loss = distillation_loss(student, teacher, targets, kd_weight=a, temperature=t)
    assert loss.item() == pytest.approx(total / len(targets), rel=1e-12)
    assert distillation_loss(student, teacher, targets, 0.0, t).item() == pytest.approx(
        F.cross_entropy(student, targets).item(), rel=1e-12)


def test_kd_term_is_zero_when_student_logits_equal_the_teachers():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    targets = torch.arange(8) % 10
    ce = F.cross_entropy(logits, targets).item()
    for a, t in [(0.7, 2.0), (1.0, 4.0)]:
        assert distillation_loss(logits, logits.clone(), targets, a, t).item() == pytest.approx((1 - a) * ce, abs=1e-12)


def test_compress_trains_the_lma_slopes_and_statistics(tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    method = methods.build("lma", {"epochs": 1, "kd_weight": 0})  # the no-KD control path
    student = method.compress(copy.deepcopy(dense), 4, make_context(tiny_data, 0, teacher=dense))
    lmas = [m for m in student if isinstance(m, LMA)]
    assert len(lmas) == 2
    assert all(m.alpha.abs().sum() > 0 and m.running_std > 0 for m in lmas)


@pytest.mark.parametrize("params", [{"kd_weight": 1.5}, {"temperature": 0}, {"segments": 0}, {"epochs": 0},
                                    {"student_activation": "gelu"}])
def test_out_of_range_parameters_are_rejected(params):
    with pytest.raises(methods.ParamError):
        methods.build("lma", params)
