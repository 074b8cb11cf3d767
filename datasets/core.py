"""The dataset contract: train / val / test splits, plus what a model needs to know.

A registered builder returns ``DataSplits`` (tensors in memory, the usual case), a Lightning DataModule or a
(train, val, test) triple of DataLoaders; ``get`` adapts the latter two into ``datasets.loaders.LoaderSplits``.
The runner sees either through the same few members (``Data``): ``name``, ``input_shape``, ``num_classes``,
``sizes()``, ``sha256``, ``train_batches(batch_size, seed)`` and ``eval_batches(split)``.
"""
from __future__ import annotations

import functools
import hashlib

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from bench.paths import REPO
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

# Evaluation (validation during training, val / test metrics) cuts splits into batches of this size, whatever
# the data's origin: a batch's size can change a kernel's float rounding, so it is fixed, not the user's.
EVAL_BATCH = 1024

Batch = tuple[torch.Tensor, torch.Tensor]


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Optimiser steps in one pass over ``n_samples`` (the last, partial batch is a step too)."""
    return math.ceil(n_samples / batch_size)


class TensorBatches:
    """Mini-batches sliced from tensors held in memory; the order is reshuffled each epoch from a seed."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.y), self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n, size = len(self.y), self.batch_size
        if not self.shuffle:
            for i in range(0, n, size):
                yield self.x[i:i + size], self.y[i:i + size]
            return
        order = torch.randperm(n, generator=self.generator)
        # Each batch gathered when it is drawn (the same values as slicing a gathered epoch): a fit cut to a
        # fraction of an epoch (an iterative method's round) no longer copies the whole split first.
        for i in range(0, n, size):
            index = order[i:i + size]
            yield self.x[index], self.y[index]


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


class Data(Protocol):
    """What the runner uses of a dataset, served from tensors (``DataSplits``) or loaders (``LoaderSplits``).

    ``train_batches`` are the protocol's: the recipe's batch size and an order drawn from the run's seed
    (reshuffled every epoch), never the user's loader settings, so every method gets the same budget.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int

    def sizes(self) -> dict[str, int]: ...

    @property
    def sha256(self) -> str: ...

    def train_batches(self, batch_size: int, seed: int) -> Iterable[Batch]: ...

    def eval_batches(self, split: str, batch_size: int = EVAL_BATCH) -> Iterable[Batch]: ...


def hash_tensor(h: Any, t: torch.Tensor, rows: int | None = None, header: bool = True) -> None:
    """Feed tensor ``t`` to ``h`` as ``DataSplits.sha256`` does: a ``dtype(shape)`` header, then its bytes.

    A split streamed in batches gives the same digest as the whole tensor: the first batch passes the
    split's ``rows`` for the header, later ones ``header=False``.
    """
    a = t.detach().cpu().contiguous().numpy()
    if header:
        h.update(f"{a.dtype}{(len(a) if rows is None else rows, *a.shape[1:])}".encode())
    h.update(memoryview(a).cast("B"))


@dataclass(frozen=True)
class DataSplits:
    """Six in-memory tensors (train / val / test inputs and int64 labels) and what a model needs to know."""

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
            hash_tensor(h, t)
        return h.hexdigest()

    def augment(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seed: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches with ``train_transform`` applied (seeded); ``batches`` itself when there is none."""
        return batches if self.train_transform is None else TransformedBatches(batches, self.train_transform, seed)

    def train_batches(self, batch_size: int, seed: int) -> Iterable[Batch]:
        """One epoch per iteration of the training split, shuffled from ``seed`` (a fresh order every epoch),
        with the seeded ``train_transform`` applied."""
        return self.augment(TensorBatches(self.train_x, self.train_y, batch_size, shuffle=True, seed=seed), seed)

    def eval_batches(self, split: str, batch_size: int = EVAL_BATCH) -> Iterable[Batch]:
        """The ``"val"`` or ``"test"`` split in order, never transformed."""
        x, y = {"val": (self.val_x, self.val_y), "test": (self.test_x, self.test_y)}[split]
        return TensorBatches(x, y, batch_size)


# A builder returns DataSplits, a LightningDataModule or a (train, val, test) triple of DataLoaders.
_DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
register_dataset = _DATASETS.register


def data_dir() -> Path:
    """Where fetched data lives: ``$COMPRESSION_BENCH_DATA`` or ``results/data`` in the repository."""
    env = os.environ.get("COMPRESSION_BENCH_DATA")
    return Path(env) if env else REPO / "results" / "data"


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
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataSplits:
    """Split (seeded by SPLIT_SEED), scale, and standardise with statistics of the training part only.

    Where a dataset has no official test split, ``test_fraction`` of it is held out first; where it has no
    official validation split (``val``), ``val_fraction`` of the rest is held out as val.
    ``train_limit`` keeps the first n training images (for quick runs); val and test stay whole.
    ``per_channel`` standardises each channel (``input_shape[0]``) with its own mean and std, as is
    usual for colour images; otherwise one mean and std cover all pixels.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    if test_x is None:
        test_idx, rest = hold_out(rng, len(y), test_fraction)
        test_x, test_y = x[test_idx], y[test_idx]
        x, y = x[rest], y[rest]
    if val is None:
        val_idx, train_idx = hold_out(rng, len(y), val_fraction)
        val_x, val_y = x[val_idx], y[val_idx]
    else:
        (val_x, val_y), train_idx = val, np.arange(len(y))
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
        val_x=prep(val_x), val_y=labels(val_y),
        test_x=prep(test_x), test_y=labels(test_y),
        input_shape=tuple(input_shape), num_classes=num_classes,
    )


def hold_out(rng: np.random.Generator, n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(held-out indices, the rest): ``round(fraction * n)`` of ``range(n)`` in a random order drawn from ``rng``.

    The one carving rule: ``carve`` draws test and val with it from ``SPLIT_SEED``, and loader data whose
    validation split is missing gets its val the same way (``datasets.loaders``).
    """
    order = rng.permutation(n)
    k = int(round(fraction * n))
    return order[:k], order[k:]


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


# ``file:PATH`` names an .npz of arrays instead of a registered dataset (``datasets.files``).
FILE_PREFIX = "file:"


def is_known(name: str) -> bool:
    """Whether ``datasets.get`` resolves ``name``: a registered dataset or a ``file:PATH`` name. The file itself is
    read, and checked, only by ``datasets.get`` (a missing or malformed one raises ``DataError`` saying what is wrong)."""
    return name in _DATASETS or (name.startswith(FILE_PREFIX) and len(name) > len(FILE_PREFIX))


def builder_of(name: str) -> Callable[..., Any]:
    """The registered builder of dataset ``name`` (``datasets.get`` calls and adapts it)."""
    return _DATASETS.get(name)
