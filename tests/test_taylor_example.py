"""The worked plugin example (``examples/taylor_score.py``): its importance scores against the same quantity
computed another way (``torch.func.grad`` of a functional call, batch by batch), its kept set, and that it never
trains. The method contract (ratios, determinism, model families) covers it too: conftest registers it."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

import methods
from examples.taylor_score import TaylorScore
from methods.common.pruning import keep_count, prunable_tensors
from tests.conftest import make_context, tiny_model


def _reference_scores(model, data, batches: int, accumulate: str) -> dict[str, torch.Tensor]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = [n for n, m in model.named_modules() if any(m is t for t, _ in prunable_tensors(model))]
    keys = [f"{n}.weight" for n in names]

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    grads = [grad(loss)(params, x, y) for (x, y), _ in zip(data.train_batches(128, 0), range(batches))]
    if accumulate == "squared":
        return {k: torch.stack([(g[k] * params[k]) ** 2 for g in grads]).mean(0) for k in keys}
    return {k: (params[k] * torch.stack([g[k] for g in grads]).mean(0)).abs() for k in keys}


@pytest.mark.parametrize("accumulate", ["squared", "mean"])
def test_scores_are_the_taylor_importance_computed_another_way(tiny_data, accumulate):
    model = tiny_model("lenet300", num_classes=tiny_data.num_classes).eval()
    method = TaylorScore(batches=3, accumulate=accumulate)
    tensors = prunable_tensors(model)
    ours = method.scores(model, tensors, make_context(tiny_data, 0))
    expected = _reference_scores(model, tiny_data, 3, accumulate)
    assert len(ours) == len(expected) == 2  # LeNet-300-100's two hidden layers; the classifier is kept
    for score, ref in zip(ours, expected.values()):
        torch.testing.assert_close(score, ref, rtol=1e-4, atol=1e-12)
        assert (score > 0).float().mean() > 0.5  # a real score, not zeros


def test_it_keeps_exactly_the_budget_of_the_highest_scores_and_never_trains(tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    model = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    method = methods.build("taylor", {"batches": "2"})
    scores = torch.cat([s.flatten() for s in method.scores(model, prunable_tensors(model), make_context(tiny_data))])
    compressed = method.compress(model, 8, make_context(tiny_data))
    tensors = prunable_tensors(compressed)
    kept = torch.cat([getattr(m, n).detach().flatten() != 0 for m, n in tensors])
    assert int(kept.sum()) == keep_count(compressed, 8, tensors)
    assert scores[kept].min() >= scores[~kept].max()  # the kept set is the top of the ranking
    for (m, n), (_, w) in zip(tensors, [(None, getattr(dm, dn)) for dm, dn in prunable_tensors(dense)]):
        kept_here = getattr(m, n).detach() != 0
        assert torch.equal(getattr(m, n).detach()[kept_here], w.detach()[kept_here])  # no optimiser step


def test_without_data_it_says_so():
    model = tiny_model("lenet300")
    with pytest.raises(methods.CompressionError, match="calibration batches"):
        TaylorScore().compress(model, 4, methods.common.base.Context())
