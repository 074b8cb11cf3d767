import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import datasets
from datasets.fetch import FASHION_MNIST, SPLIT_FILES
from datasets.idx import read_idx


def test_our_datasets_package_is_the_one_imported():
    # The top-level name clashes with Hugging Face's `datasets`; this repository's must win.
    assert Path(datasets.__file__).resolve().parent == Path(__file__).resolve().parents[1] / "datasets"
    assert hasattr(datasets, "list_datasets") and hasattr(datasets, "DataSplits")


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(KeyError, match="fashion-mnist"):
        datasets.get("cifar-1000")


def _rows(x: torch.Tensor) -> set[bytes]:
    return {hashlib.sha1(r.numpy().tobytes()).digest() for r in x.reshape(len(x), -1)}


@pytest.mark.parametrize("name,shape,sizes", [
    ("mnist-5k", (1, 28, 28), {"train": 3600, "val": 400, "test": 1000}),
    ("digits", (1, 8, 8), {"train": 1294, "val": 144, "test": 359}),
    ("synthetic", (1, 8, 8), {"train": 1440, "val": 160, "test": 400}),
])
def test_offline_datasets_have_shapes_and_disjoint_splits(name, shape, sizes):
    d = datasets.get(name)
    assert d.input_shape == shape and d.sizes() == sizes
    assert d.train_x.shape[1:] == shape and d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert int(d.train_y.max()) < d.num_classes
    train, val, test = _rows(d.train_x), _rows(d.val_x), _rows(d.test_x)
    # digits has a few duplicate images across the original set; splits are disjoint by index, so allow those.
    assert len(train & val) <= 2 and len(train & test) <= 2


def test_splits_do_not_depend_on_anything_but_the_dataset():
    a, b = datasets.get("mnist-5k"), datasets.get("mnist-5k")
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)


def test_train_limit_keeps_val_and_test_whole():
    full, small = datasets.get("mnist-5k"), datasets.get("mnist-5k", train_limit=100)
    assert len(small.train_y) == 100 and torch.equal(small.val_y, full.val_y) and torch.equal(small.test_y, full.test_y)


@pytest.fixture(scope="module")
def fashion():
    try:
        return datasets.get("fashion-mnist")
    except datasets.DataError as e:
        pytest.skip(f"Fashion-MNIST is not fetched ({e}); `make test` fetches it")


def test_fashion_mnist_is_the_real_dataset(fashion):
    assert fashion.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert fashion.input_shape == (1, 28, 28) and fashion.num_classes == 10
    assert torch.bincount(fashion.test_y).tolist() == [1000] * 10  # the official test split is balanced
    assert abs(float(fashion.train_x.mean())) < 1e-3 and abs(float(fashion.train_x.std()) - 1) < 1e-3


def test_checksum_mismatch_names_the_file_and_expected_hash(tmp_path, monkeypatch, fashion):
    target = tmp_path / "fashion-mnist"
    shutil.copytree(FASHION_MNIST.cache, target)
    labels = target / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] ^= 1
    labels.write_bytes(bytes(data))
    monkeypatch.setenv("COMPRESSION_BENCH_DATA", str(tmp_path))
    expected = FASHION_MNIST.checksums["t10k-labels-idx1-ubyte"]
    with pytest.raises(datasets.DataError, match=f"checksum mismatch for .*t10k-labels-idx1-ubyte: expected sha256 {expected}"):
        datasets.get("fashion-mnist")


def test_missing_data_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_DATA", str(tmp_path))
    with pytest.raises(datasets.DataError, match="make data DATASET=mnist.*mnist-5k"):
        datasets.get("mnist")


def test_idx_reader_round_trips_and_rejects_truncation(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], ">u4").tobytes() + images.tobytes()
    (tmp_path / "ok").write_bytes(raw)
    (tmp_path / "ok.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(tmp_path / "ok"), images)
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), images)
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(datasets.DataError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"not an idx file")
    with pytest.raises(datasets.DataError, match="magic"):
        read_idx(tmp_path / "junk")


def test_installing_from_a_system_directory_verifies_decompressed_bytes(tmp_path, monkeypatch, fashion):
    # Re-gzip the cached files (different .gz bytes, as Debian's are) and install them from that directory.
    system = tmp_path / "system"
    system.mkdir()
    for f in SPLIT_FILES:
        (system / f"{f}.gz").write_bytes(gzip.compress((FASHION_MNIST.cache / f).read_bytes(), compresslevel=1))
    monkeypatch.setenv("COMPRESSION_BENCH_DATA", str(tmp_path / "cache"))
    source = datasets.IdxSource("fashion-mnist", FASHION_MNIST.checksums, (str(system),), None, ())
    files = source.local_files()
    assert all(p.read_bytes() == (FASHION_MNIST.cache / f).read_bytes() for f, p in files.items())
