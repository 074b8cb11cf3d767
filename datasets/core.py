"""The dataset contract: in-memory train / val / test tensors, plus what a model needs to know."""
from __future__ import annotations

import functools
import hashlib

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from bench.registry import Registry

# The validation split is carved with this seed whatever the experiment seed, so every method,
# seed and trial is selected on the same held-out images.
SPLIT_SEED = 20200101


class DataError(RuntimeError):
    """Data that is missing or corrupt; the message says which file and the command that fixes it."""


# A training-time augmentation: (batch of inputs, seeded generator) -> batch of the same shape.
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Added to the training seed so augmentation draws from its own stream, not the shuffling one.
AUGMENT_SALT = 7919


class TransformedBatches:
    """Training batches with a seeded transform applied to the inputs (labels untouched).

    Wraps any sized iterable of (x, y) batches (``bench.training.TensorBatches``); the generator is
    created once, so successive epochs draw fresh augmentations while a fixed seed repeats the run.
    """

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], transform: BatchTransform, seed: int):
        self.batches, self.transform = batches, transform
        self.generator = torch.Generator().manual_seed(seed + AUGMENT_SALT)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.batches:
            yield self.transform(x, self.generator), y


@dataclass(frozen=True)
class DataSplits:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    # Augmentation for training batches only (e.g. CIFAR's crop + flip); val and test are never transformed.
    train_transform: BatchTransform | None = None

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 over the six tensors as loaded (after carving and normalising): what a model trained and was
        measured on, so a changed split, slice or preprocessing gives another digest. Computed once per object."""
        h = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y):
            a = t.detach().cpu().contiguous().numpy()
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        return h.hexdigest()

    def augment(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seed: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches with ``train_transform`` applied (seeded); ``batches`` itself when there is none."""
        return batches if self.train_transform is None else TransformedBatches(batches, self.train_transform, seed)


_DATASETS: Registry[Callable[..., DataSplits]] = Registry("dataset")
register_dataset = _DATASETS.register


def data_dir() -> Path:
    """Where fetched data lives: ``$COMPRESSION_BENCH_DATA`` or ``results/data`` in the repository."""
    env = os.environ.get("COMPRESSION_BENCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "results" / "data"


def fetch_command(name: str) -> str:
    return f"make data DATASET={name}  (or: python -m bench fetch {name})"


def carve(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    test_x: np.ndarray | None,
    test_y: np.ndarray | None,
    input_shape: tuple[int, ...],
    num_classes: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    scale: float = 255.0,
    train_limit: int | None = None,
    per_channel: bool = False,
) -> DataSplits:
    """Split (seeded by SPLIT_SEED), scale, and standardise with statistics of the training part only.

    Where a dataset has no official test split, ``test_fraction`` of it is held out first.
    ``train_limit`` keeps the first n training images (for quick runs); val and test stay whole.
    ``per_channel`` standardises each channel (``input_shape[0]``) with its own mean and std, as is
    usual for colour images; otherwise one mean and std cover all pixels.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    if test_x is None:
        order = rng.permutation(len(y))
        n_test = int(round(test_fraction * len(y)))
        test_x, test_y = x[order[:n_test]], y[order[:n_test]]
        x, y = x[order[n_test:]], y[order[n_test:]]
    order = rng.permutation(len(y))
    n_val = int(round(val_fraction * len(y)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_limit is not None:
        if train_limit < 1:
            raise ValueError(f"train_limit must be a positive integer, got {train_limit}")
        train_idx = train_idx[:train_limit]
    train = x[train_idx].astype(np.float32) / scale
    if per_channel:
        mean, std = channel_statistics(train.reshape(len(train), *input_shape))
    else:
        mean, std = float(train.mean()), float(train.std()) or 1.0
    del train

    def prep(a: np.ndarray) -> torch.Tensor:
        a = a.reshape(len(a), *input_shape) if per_channel else a
        t = torch.from_numpy(((a.astype(np.float32) / scale - mean) / std).astype(np.float32))
        return t.reshape(len(a), *input_shape)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return DataSplits(
        name=name,
        train_x=prep(x[train_idx]), train_y=labels(y[train_idx]),
        val_x=prep(x[val_idx]), val_y=labels(y[val_idx]),
        test_x=prep(test_x), test_y=labels(test_y),
        input_shape=tuple(input_shape), num_classes=num_classes,
    )


def channel_statistics(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of (N, C, ...) data, shaped to broadcast over it; a constant channel gets std 1.

    Accumulated in float64 one channel at a time: 45k CIFAR images are 46M values per channel, too many
    for a float32 sum, and one float64 copy of all channels at once would take over 1 GB.
    """
    channels = train.shape[1]
    mean, std = np.empty(channels), np.empty(channels)
    for c in range(channels):
        values = train[:, c]
        mean[c], std[c] = values.mean(dtype=np.float64), values.std(dtype=np.float64)
    std[std == 0] = 1.0
    shape = (channels,) + (1,) * (train.ndim - 2)
    return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)


def list_datasets(pattern: str = "*") -> list[str]:
    return _DATASETS.names(pattern)


def dataset_origin(name: str) -> str:
    """Where dataset ``name`` was defined: "built-in" or the plugin module that registered it."""
    return _DATASETS.origin(name)


def get(name: str, **options) -> DataSplits:
    """Load a registered dataset from local files; never touches the network (see ``fetch``)."""
    return _DATASETS.get(name)(**options)
