"""The method contract (docs/design.md), checked for every registered method: a new method is tested the
moment it registers."""
from __future__ import annotations

import pytest
import torch

import methods
from bench.export import bake, clone, deployable
from bench.metrics import params_effective, params_total
from conftest import EXPECTED_REFUSALS, TINY_MODELS, make_context, tiny_model

RATIOS = (2, 4, 8, 16, 32)


def _compress(name: str, model_key: str, ratio: float, data, seed: int = 0):
    dense = tiny_model(model_key, num_classes=data.num_classes)
    method = methods.build(name, methods.get(name).smoke_params)
    compressed = method.compress(clone(dense), ratio, make_context(data, seed, teacher=dense))
    return dense, compressed


def _data_for(model_key, tiny_data, tiny_image_data):
    return tiny_image_data if TINY_MODELS[model_key][1][-1] == 16 else tiny_data


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", methods.list_methods())
def test_reaches_requested_ratio_within_3_percent(name, ratio, tiny_data):
    dense, compressed = _compress(name, "lenet300", ratio, tiny_data)
    achieved = params_total(dense) / params_effective(compressed)
    assert abs(achieved / ratio - 1) <= 0.03, f"{name} at {ratio}x achieved {achieved:.3f}x"


@pytest.mark.parametrize("model_key", sorted(TINY_MODELS))
@pytest.mark.parametrize("name", methods.list_methods())
def test_every_model_family_compresses_and_exports_identically(name, model_key, tiny_data, tiny_image_data):
    data = _data_for(model_key, tiny_data, tiny_image_data)
    if (name, model_key) in EXPECTED_REFUSALS:
        with pytest.raises(methods.CompressionError, match=EXPECTED_REFUSALS[name, model_key]):
            _compress(name, model_key, 4, data)
        return
    dense, compressed = _compress(name, model_key, 4, data)
    assert abs(params_total(dense) / params_effective(compressed) / 4 - 1) <= 0.03
    compressed.eval()
    x = data.test_x[:32]
    with torch.no_grad():
        expected = compressed(x)
        for form in (bake(compressed), deployable(compressed)):
            torch.testing.assert_close(form(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", methods.list_methods())
def test_same_seed_gives_identical_result(name, tiny_data):
    _, a = _compress(name, "lenet300", 8, tiny_data, seed=3)
    _, b = _compress(name, "lenet300", 8, tiny_data, seed=3)
    sa, sb = bake(a).state_dict(), bake(b).state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", methods.list_methods())
def test_ratio_at_or_below_one_is_rejected(name, tiny_data):
    with pytest.raises(methods.CompressionError, match="ratio"):
        _compress(name, "lenet300", 1.0, tiny_data)


@pytest.mark.parametrize("name", methods.list_methods())
def test_dense_input_model_is_not_modified(name, tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    method = methods.build(name, methods.get(name).smoke_params)
    method.compress(clone(dense), 8, make_context(tiny_data, 0, teacher=dense))
    after = dense.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
