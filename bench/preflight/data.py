"""The data, checked before any training: what would otherwise train into garbage or crash after the baseline.

Every split (train, val, test) must be non-empty, hold as many labels as inputs, inputs of the dataset's
``input_shape`` that are finite floating-point numbers, and integer labels in 0..num_classes-1; training must
hold at least two classes. Each refusal is one ``PreflightError`` line naming the dataset, the split, what is
wrong and the fix.

Data in memory (``DataSplits``, or loaders over a ``TensorDataset``) is checked whole: it is in memory already
and the checks are a few vectorised passes. Other loader-backed data is checked as far as is affordable
without streaming it: every split's size, and the first batch of each split (its shape, finite inputs, labels
in range). Not checked for those: samples beyond each first batch (loading already streamed every sample once
where ``num_classes`` had to be counted, which refuses negative labels and other shapes), and how many classes
training holds.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.preflight.environment import PreflightError
from datasets import DataSplits
from datasets.core import FILE_PREFIX
from datasets.loaders import LoaderSplits

SPLITS = ("train", "val", "test")
FIRST_BATCH = 256  # samples read from a split that is not in memory


def check_data(config: Any) -> Any:
    """Load the configured data once (``bench.data_cache``: the run reuses this copy) and refuse what cannot
    train; returns the loaded data."""
    from bench.data_cache import load_data

    data = load_data(config)
    name = config.dataset
    if data.num_classes < 2:
        raise PreflightError(f"dataset {name}: num_classes is {data.num_classes}; a classifier needs at least two "
                             "classes: give labels 0..C-1 with C >= 2")
    for split, size in data.sizes().items():
        if size == 0:
            raise PreflightError(f"dataset {name}: the {split} split is empty; every split needs samples (train to "
                                 f"fit, val to choose on, test to report): {_fill_hint(name, split)}")
    for split in SPLITS:
        tensors = _in_memory(data, split)
        whole = tensors is not None
        x, y = tensors if whole else _first_batch(data, split)
        _check_split(name, split, x, y, data.input_shape, data.num_classes, whole)
        if split == "train" and whole:
            _check_classes(name, y)
    return data


def _in_memory(data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(data, DataSplits):
        return getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
    if isinstance(data, LoaderSplits):
        return getattr(data, split).tensors
    return None


def _first_batch(data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, LoaderSplits):
        return next(iter(getattr(data, split).batches(FIRST_BATCH)))
    if split == "train":  # any other ``Data``: its own training order
        return next(iter(data.train_batches(FIRST_BATCH, 0)))
    return next(iter(data.eval_batches(split, FIRST_BATCH)))


def _check_split(name: str, split: str, x: torch.Tensor, y: torch.Tensor, input_shape: tuple[int, ...],
                 num_classes: int, whole: bool) -> None:
    what = f"dataset {name}: the {split} split"
    if len(x) != len(y):
        raise PreflightError(f"{what} has {len(x)} inputs but {len(y)} labels; give exactly one label per input")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise PreflightError(f"{what} has inputs shaped {tuple(x.shape[1:])} where the dataset's input shape is "
                             f"{tuple(input_shape)}; every sample of every split must have that shape")
    if not x.dtype.is_floating_point:
        raise PreflightError(f"{what} has inputs of dtype {x.dtype}; inputs must be floating-point numbers: convert "
                             f"them (e.g. x.float())")
    finite = torch.isfinite(x.reshape(len(x), -1)).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        scope = "" if whole else f" (in its first {len(x)} samples)"
        raise PreflightError(f"{what} has NaN or inf in {len(bad)} of {len(x)} inputs{scope}, the first at sample "
                             f"{int(bad[0])}; every input must be a finite number: drop or repair those samples")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise PreflightError(f"{what} has labels of dtype {y.dtype}; labels must be integers 0..{num_classes - 1}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        label = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise PreflightError(f"{what} has the label {label}, outside 0..{num_classes - 1} (the dataset has "
                             f"num_classes={num_classes}); labels must be integers 0..C-1: relabel them, or give "
                             f"the dataset the num_classes its labels need")


def _check_classes(name: str, train_y: torch.Tensor) -> None:
    present = torch.unique(train_y)
    if len(present) < 2:
        raise PreflightError(f"dataset {name}: the train split holds one class only (label {int(present[0])}); "
                             f"a classifier needs at least two classes in training: add samples of other classes")


def _fill_hint(name: str, split: str) -> str:
    if name.startswith(FILE_PREFIX):
        if split == "val":
            return "give x_val and y_val samples, or leave both out to carve val from train"
        return f"give x_{split} and y_{split} samples"
    return f"give the {split} split samples"
