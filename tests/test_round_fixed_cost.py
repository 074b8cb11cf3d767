"""What a fit costs beyond its optimiser steps (issue 24): batches are gathered as they are drawn, and a fit with
nothing to choose between (one epoch) skips validation, without changing the order, the steps or the weights."""
from __future__ import annotations

import dataclasses

import torch

from bench.models import create_model
from bench.recipes import TrainRecipe
from bench.training import fit, validation_chooses
from datasets.core import TensorBatches


def test_shuffled_batches_are_the_slices_of_one_gathered_epoch():
    x, y = torch.randn(103, 3), torch.arange(103)
    batches = TensorBatches(x, y, 10, shuffle=True, seed=4)
    reference = torch.Generator().manual_seed(4)
    for _ in range(2):  # a fresh order every epoch, drawn from the same generator as before
        order = torch.randperm(103, generator=reference)
        got = list(batches)
        assert [len(b[1]) for b in got] == [10] * 10 + [3]
        assert torch.equal(torch.cat([b[0] for b in got]), x[order]) and torch.equal(torch.cat([b[1] for b in got]), y[order])


@dataclasses.dataclass
class CountingVal:
    """The data, counting the validation batches a fit draws."""

    data: object
    drawn: int = 0

    def __getattr__(self, name):
        return getattr(self.data, name)

    def eval_batches(self, split, *args, **kwargs):
        return Counted(self, self.data.eval_batches(split, *args, **kwargs))


@dataclasses.dataclass
class Counted:
    """Batches that count themselves on their data each time they are drawn (every epoch iterates again)."""

    owner: CountingVal
    batches: object

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.owner.drawn += 1
            yield batch


def _trained(data, recipe, max_steps=None, callbacks=None):
    model = create_model("lenet300", data.input_shape, data.num_classes, seed=0)
    report: dict[str, int] = {}
    fit(model, recipe, data, 3, accelerator="cpu", max_steps=max_steps, report=report, callbacks=callbacks)
    return model, report


def test_a_one_epoch_fit_skips_validation_and_trains_the_same_steps(tiny_data):
    recipe = TrainRecipe(epochs=2, lr=1e-3, batch_size=32)
    counted = CountingVal(tiny_data)
    _, report = _trained(counted, recipe, max_steps=5)  # a round's share: part of one epoch
    assert report == {"steps": 5, "epochs": 1} and counted.drawn == 0
    counted = CountingVal(tiny_data)
    _, report = _trained(counted, recipe)  # two epochs: each is validated to choose the best
    assert report["epochs"] == 2 and counted.drawn == 2 * len(list(tiny_data.eval_batches("val")))


def test_skipping_validation_gives_the_weights_validating_would(tiny_data):
    """A one-epoch fit made to validate (a caller's callback keeps validation on) selects its only epoch: the
    weights of the fit that skips it, bit for bit."""
    from lightning.pytorch.callbacks import Callback

    recipe = TrainRecipe(epochs=1, lr=1e-2, batch_size=32)
    counted = CountingVal(tiny_data)
    validated, _ = _trained(counted, recipe, max_steps=7, callbacks=[Callback()])
    skipped, _ = _trained(tiny_data, recipe, max_steps=7)
    assert counted.drawn > 0
    assert all(torch.equal(a, b) for a, b in zip(validated.state_dict().values(), skipped.state_dict().values()))


def test_validation_is_kept_wherever_it_can_change_something():
    one = TrainRecipe(epochs=1, lr=1e-3)
    assert not validation_chooses(1, one)
    assert validation_chooses(2, one)  # the best of two epochs
    assert validation_chooses(1, dataclasses.replace(one, patience=2))  # early stopping reads it
    assert validation_chooses(1, one, callbacks=[object()])  # a caller's callback may read it
