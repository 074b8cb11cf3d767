"""Data that is not tensors in memory: a Lightning DataModule, or a (train, val, test) triple of DataLoaders.

A registered builder may return either; ``adapt`` turns it into ``LoaderSplits``, which the runner trains
and evaluates through as it does through ``DataSplits`` (the members of ``datasets.core.Data``).

Fairness. Batch size and shuffling order belong to the protocol's recipe (equal budgets across methods),
not to the user's loaders: the runner takes each loader's *dataset* and batches it itself, with the
recipe's batch size and the same seeded order ``TensorBatches`` draws for tensors (``torch.randperm`` from a
generator seeded with the run seed, a fresh permutation every epoch). The loader contributes only how a
batch is assembled and loaded (its ``collate_fn`` and ``num_workers``). Hence the same data given as a
DataModule and as tensors gives the same metrics; over a ``TensorDataset`` the runner slices its tensors
directly, exactly as for ``DataSplits``.

Datasets must be map-style (``__len__`` and ``__getitem__``). A loader over an ``IterableDataset`` is refused
with a ``DataError``: its size and order are the user's, so budgets counted in optimiser steps could not be
equalised across methods nor its samples drawn in the protocol's order.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset

from datasets.core import (EVAL_BATCH, SPLIT_SEED, Batch, DataError, DataSplits, TensorBatches, hash_tensor, hold_out,
                           steps_per_epoch)

SPLITS = ("train", "val", "test")


def _as_batch(batch: Any, where: str) -> Batch:
    """A collated batch as (inputs, int64 labels); a clear error for anything else (dicts, triples, ...)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise DataError(f"{where}: a batch must be an (inputs, labels) pair of tensors, got {type(batch).__name__}"
                        f"{'' if not isinstance(batch, (tuple, list)) else f' of {len(batch)}'}; return (x, y) per sample")
    x, y = batch
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"{where}: labels must be integers 0..C-1, got dtype {y.dtype}")
    return x, y.long()


class DatasetBatches:
    """Batches of a map-style dataset in the runner's order, loaded through a DataLoader whose batch sampler
    is that order (so the dataset's own ``collate_fn`` and ``num_workers`` still apply).

    The order is ``TensorBatches``'s: a generator seeded once, ``torch.randperm`` drawn from it every epoch
    when shuffling, consecutive ``batch_size`` chunks of it; in dataset order otherwise.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 collate_fn: Callable[[list[Any]], Any] | None = None, num_workers: int = 0, where: str = "data"):
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.collate_fn, self.num_workers, self.where = collate_fn, num_workers, where
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.dataset), self.batch_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.dataset)  # type: ignore[arg-type]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        chunks = [order[i:i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        loader = DataLoader(self.dataset, batch_sampler=chunks, collate_fn=self.collate_fn, num_workers=self.num_workers)
        for batch in loader:
            yield _as_batch(batch, self.where)


def _tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(inputs, labels) of a two-tensor ``TensorDataset`` (or a ``Subset`` of one), else None."""
    if isinstance(dataset, Subset):
        inner = _tensors(dataset.dataset)
        if inner is None:
            return None
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return inner[0][index], inner[1][index]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    return None


@dataclass(frozen=True)
class LoaderSplit:
    """One split: a map-style dataset the runner batches itself, with the loader's ``collate_fn`` and workers."""

    dataset: Dataset
    collate_fn: Callable[[list[Any]], Any] | None = None
    num_workers: int = 0
    where: str = "data"  # names the split in errors: "<dataset> train"

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @functools.cached_property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The inputs and int64 labels of a ``TensorDataset`` split (sliced directly, as ``DataSplits`` are)."""
        t = _tensors(self.dataset)
        return None if t is None else _as_batch(t, self.where)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterable[Batch]:
        if self.tensors is not None:
            return TensorBatches(*self.tensors, batch_size, shuffle=shuffle, seed=seed)
        return DatasetBatches(self.dataset, batch_size, shuffle, seed, self.collate_fn, self.num_workers, self.where)

    def part(self, indices: np.ndarray, where: str) -> LoaderSplit:
        """The samples at ``indices`` (a carved part, named ``where`` in errors), loaded the same way."""
        t = self.tensors
        dataset = TensorDataset(*(a[torch.from_numpy(indices)] for a in t)) if t is not None else Subset(
            self.dataset, indices.tolist())
        return LoaderSplit(dataset, self.collate_fn, self.num_workers, where)


@dataclass(frozen=True)
class Scan:
    """One pass over every sample: the content digest and the largest label seen."""

    sha256: str
    max_label: int


def scan(splits: Sequence[LoaderSplit], input_shape: tuple[int, ...]) -> Scan:
    """Stream every split once, in order and in ``EVAL_BATCH`` batches, hashing it as ``DataSplits.sha256``
    hashes tensors (train x, train y, val x, ... each with a dtype(shape) header): the same samples and
    labels give the same digest whether served as tensors or by a loader. Labels are held (they are small);
    inputs are hashed batch by batch. Every input must have ``input_shape``."""
    h, top = hashlib.sha256(), -1
    for split in splits:
        labels = []
        for i, (x, y) in enumerate(split.batches(EVAL_BATCH)):
            if tuple(x.shape[1:]) != tuple(input_shape):
                raise DataError(f"{split.where}: inputs of shape {tuple(x.shape[1:])} where the dataset's input "
                                f"shape is {tuple(input_shape)}; every sample must have the same shape")
            hash_tensor(h, x, rows=len(split), header=i == 0)
            labels.append(y)
        if not labels:
            h.update(f"float32{(0, *input_shape)}".encode())
        y_all = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        hash_tensor(h, y_all)
        if len(y_all):
            if int(y_all.min()) < 0:
                raise DataError(f"{split.where}: labels must be integers 0..C-1, found {int(y_all.min())}")
            top = max(top, int(y_all.max()))
    return Scan(h.hexdigest(), top)


@dataclass(frozen=True)
class LoaderSplits:
    """Train / val / test served from map-style datasets (see the module's docstring): the runner's
    ``Data``, like ``DataSplits``, for data that is not tensors in memory.

    ``input_shape``: the DataModule's ``input_shape`` attribute where it has one, else the shape of the first
    training sample. ``num_classes``: its ``num_classes`` attribute, else the largest label over all three
    splits plus one (found by streaming every sample once, at load time, which also yields ``sha256``).
    ``sha256`` digests every sample once, streamed (see ``scan``); over ``TensorDataset``s it is the digest
    ``DataSplits`` gives the same tensors. No ``train_transform``: augmentation lives in the user's dataset.
    """

    name: str
    train: LoaderSplit
    val: LoaderSplit
    test: LoaderSplit
    input_shape: tuple[int, ...]
    num_classes: int
    digest: str | None = None  # sha256 when loading had to stream the data anyway (to count the classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @functools.cached_property
    def sha256(self) -> str:
        return self.digest or scan((self.train, self.val, self.test), self.input_shape).sha256

    def train_batches(self, batch_size: int, seed: int) -> Iterable[Batch]:
        """One epoch per iteration of the training split in the protocol's seeded order (as ``DataSplits``)."""
        return self.train.batches(batch_size, shuffle=True, seed=seed)

    def eval_batches(self, split: str, batch_size: int = EVAL_BATCH) -> Iterable[Batch]:
        """The ``"val"`` or ``"test"`` split in order."""
        return {"val": self.val, "test": self.test}[split].batches(batch_size)


def _split(loader: Any, name: str, split: str) -> LoaderSplit:
    where = f"{name} {split}"
    if not isinstance(loader, DataLoader):
        raise DataError(f"{where}: expected a torch DataLoader, got {type(loader).__name__}")
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise DataError(f"{where}: the loader's dataset is iterable-style ({type(dataset).__name__}); give a map-style "
                        "dataset (with __len__ and __getitem__): the protocol batches and orders training data itself, "
                        "so that every method gets the same budget")
    # A loader with automatic batching off (batch_size=None) collates nothing; the runner batches, so it collates.
    collate = loader.collate_fn if loader.batch_size is not None else None
    return LoaderSplit(dataset, collate, loader.num_workers, where)


def from_loaders(name: str, train: DataLoader, val: DataLoader | None, test: DataLoader,
                 input_shape: Sequence[int] | None = None, num_classes: int | None = None,
                 val_fraction: float = 0.1) -> LoaderSplits:
    """``LoaderSplits`` over three DataLoaders' datasets. Without ``val``, ``val_fraction`` of train is held out
    as val exactly as ``carve`` holds it out (a permutation drawn from ``SPLIT_SEED``), whatever the run's seed."""
    parts = {"train": _split(train, name, "train"), "test": _split(test, name, "test")}
    if val is None:
        val_idx, train_idx = hold_out(np.random.default_rng(SPLIT_SEED), len(parts["train"]), val_fraction)
        parts["val"] = parts["train"].part(val_idx, f"{name} val")
        parts["train"] = parts["train"].part(train_idx, f"{name} train")
    else:
        parts["val"] = _split(val, name, "val")
    if len(parts["train"]) == 0:
        raise DataError(f"{name}: the training split is empty")
    shape = tuple(int(d) for d in input_shape) if input_shape is not None else _first_shape(parts["train"])
    splits = [parts[s] for s in SPLITS]
    found = scan(splits, shape) if num_classes is None else None
    classes = int(num_classes) if num_classes is not None else found.max_label + 1
    if classes < 2:
        raise DataError(f"{name}: found {classes} class(es); a classifier needs labels 0..C-1 with C >= 2")
    return LoaderSplits(name, *splits, input_shape=shape, num_classes=classes,
                        digest=found.sha256 if found is not None else None)


def _first_shape(split: LoaderSplit) -> tuple[int, ...]:
    x, _ = next(iter(split.batches(1)))
    return tuple(int(d) for d in x.shape[1:])


def from_datamodule(name: str, module: Any, val_fraction: float = 0.1) -> LoaderSplits:
    """``LoaderSplits`` over a LightningDataModule, prepared as Lightning would (``prepare_data``, then ``setup``
    for "fit" and "test"). Its ``input_shape`` and ``num_classes`` attributes are used where present; a
    module without a ``val_dataloader`` (or one returning no loader) gets val carved from train."""
    module.prepare_data()
    module.setup("fit")
    module.setup("test")
    val = module.val_dataloader() if _defines(module, "val_dataloader") else None
    if isinstance(val, (list, tuple)):
        if len(val) > 1:
            raise DataError(f"{name}: val_dataloader returned {len(val)} loaders; the suite selects on one")
        val = val[0] if val else None
    return from_loaders(name, module.train_dataloader(), val, module.test_dataloader(),
                        getattr(module, "input_shape", None), getattr(module, "num_classes", None), val_fraction)


def _defines(obj: Any, hook: str) -> bool:
    """Whether ``obj``'s class implements ``hook`` itself, rather than inheriting Lightning's placeholder that
    raises (a DataModule of ``lightning`` or of its old name ``pytorch_lightning`` alike: duck-typed)."""
    for cls in type(obj).__mro__:
        if hook in vars(cls):
            return not cls.__module__.startswith(("lightning.", "pytorch_lightning."))
    return False


def adapt(name: str, built: Any) -> DataSplits | LoaderSplits:
    """What a dataset builder returned, as the runner's data: ``DataSplits`` as is; a LightningDataModule or a
    (train, val, test) triple of DataLoaders (val may be None) as ``LoaderSplits``."""
    if isinstance(built, (DataSplits, LoaderSplits)):
        return built
    if isinstance(built, (tuple, list)):
        if len(built) != 3:
            raise DataError(f"{name}: the builder returned {len(built)} items; return (train, val, test) DataLoaders "
                            "(val may be None)")
        return from_loaders(name, *built)
    if _defines(built, "train_dataloader") and _defines(built, "test_dataloader"):
        return from_datamodule(name, built)
    raise DataError(f"{name}: the builder returned {type(built).__name__}; return DataSplits, a LightningDataModule "
                    "or a (train, val, test) triple of DataLoaders")
