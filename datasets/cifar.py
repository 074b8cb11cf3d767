"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the official python-pickle batches.

On disk (as unpacked from the official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``):
``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled dict with
``data`` (uint8, N x 3072: the 1024 red, then green, then blue pixels of a 32x32 image, row-major) and
``labels``; ``cifar-100-python/train`` and ``test`` hold ``data`` and ``fine_labels`` (100 classes) the
same way. The files are found in ``$CIFAR10_DIR`` / ``$CIFAR100_DIR`` (the unpacked folder itself or
the directory that contains it) or in the data cache, ``data_dir()/cifar10`` / ``cifar100``.

``fetch`` installs a local copy of the official archive (in the env-var directory or the cache) or
downloads it from the official host, verifies its MD5 (the values published with the dataset and used
by torchvision) and unpacks only the expected files, by name, so no archive member can write outside
the cache. Loading never touches the network.

The pickles are read with an unpickler that accepts only numpy arrays, so a tampered file cannot run
code. Training batches get the standard augmentation (He et al. 2016, Sec. 4.2: pad 4, random 32x32
crop, random horizontal flip), done on tensors per batch; val and test are never augmented.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from datasets.core import DataError, DataSplits, carve, data_dir, fetch_command, register_dataset
from datasets.idx import file_digest

IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarSource:
    """Where one CIFAR variant lives, how it is laid out, and its official archive."""

    name: str
    folder: str  # the folder the archive unpacks to
    archive: str
    url: str
    md5: str  # of the archive, as published on https://www.cs.toronto.edu/~kriz/cifar.html
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    extra_files: tuple[str, ...]  # kept when unpacking (class names, readme), not needed to load
    label_key: str
    num_classes: int
    env: str

    @property
    def cache(self) -> Path:
        return data_dir() / self.name

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files

    def candidates(self) -> list[Path]:
        """Folders that may hold the batch files, in the order they are tried."""
        found = []
        env = os.environ.get(self.env)
        if env:
            found += [Path(env), Path(env) / self.folder]
        return found + [self.cache / self.folder]

    def locate(self) -> Path | None:
        return next((d for d in self.candidates() if all((d / f).is_file() for f in self.files)), None)

    def local_dir(self) -> Path:
        """The folder with the batch files, or a DataError naming both ways to provide them."""
        folder = self.locate()
        if folder is None:
            tried = ", ".join(str(d) for d in self.candidates())
            raise DataError(
                f"dataset {self.name!r} is not on this machine (looked for {', '.join(self.files)} in {tried}); "
                f"fetch it with: {fetch_command(self.name)}; or point ${self.env} at an unpacked {self.folder} folder"
            )
        return folder

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train images, train labels, test images, test labels); images uint8 (N, 3, 32, 32)."""
        folder = self.local_dir()
        x, y = _concat([read_batch(folder / f, self.label_key, self.num_classes) for f in self.train_files])
        tx, ty = _concat([read_batch(folder / f, self.label_key, self.num_classes) for f in self.test_files])
        return x, y, tx, ty

    def fetch(self, log=print) -> Path:
        """Make the batch files available: already there, a local archive, or a download; returns their folder."""
        folder = self.locate()
        if folder is not None:
            log(f"{self.name}: found in {folder}")
            return folder
        env = os.environ.get(self.env)
        for archive in ([Path(env) / self.archive] if env else []) + [self.cache / self.archive]:
            if archive.is_file():
                folder = install_archive(self, archive, self.md5)
                log(f"{self.name}: unpacked {archive} into {folder}")
                return folder
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = self.cache / f".{self.archive}.partial"
        try:
            with urllib.request.urlopen(self.url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise DataError(f"could not download {self.name!r} from {self.url}: {e}. Offline, copy "
                            f"{self.archive} (or the unpacked {self.folder} folder) into ${self.env}") from None
        folder = install_archive(self, partial, self.md5)
        partial.unlink(missing_ok=True)
        log(f"{self.name}: downloaded from {self.url} into {folder}")
        return folder


def md5(path: Path) -> str:
    """The archive's MD5, the checksum published with CIFAR (and used by torchvision)."""
    return file_digest(path, "md5")


def install_archive(source: CifarSource, archive: Path, expected_md5: str | None) -> Path:
    """Verify ``archive`` and unpack its batch files into the cache; returns the folder holding them.

    Only regular-file members named ``<folder>/<known file>`` are written, each under a name chosen
    here, never the member's own path; a member whose path is absolute or climbs out with ``..`` makes
    the whole archive rejected, since an archive that tries it is not the official one.
    """
    if expected_md5 is not None:
        actual = md5(archive)
        if actual != expected_md5:
            raise DataError(f"checksum mismatch for {archive}: expected md5 {expected_md5}, got {actual}; "
                            f"delete it and re-fetch with: {fetch_command(source.name)}")
    wanted = set(source.files + source.extra_files)
    target = source.cache / source.folder
    try:
        with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(dir=_mkdir(source.cache)) as tmp:
            members = []
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise DataError(f"{archive} has a member that would escape its folder ({member.name!r}); refusing it")
                if member.isfile() and len(path.parts) == 2 and path.parts[0] == source.folder and path.name in wanted:
                    members.append(member)
            # tarfile's "data" filter (PEP 706) refuses links, devices and paths outside ``tmp`` on top of the
            # check above, and drops owners and executable bits.
            tar.extractall(tmp, members=members, filter="data")
            got = {PurePosixPath(m.name).name for m in members}
            missing = [f for f in source.files if f not in got]
            if missing:
                raise DataError(f"{archive} lacks {source.folder}/{', '.join(missing)}; it is not the {source.name} archive")
            target.mkdir(parents=True, exist_ok=True)
            for name in sorted(got):
                os.replace(Path(tmp) / source.folder / name, target / name)  # never a half-written final name
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"{archive} is not a readable tar archive ({e}); re-fetch with: {fetch_command(source.name)}") from None
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: pickle can otherwise call any importable function."""

    def find_class(self, module: str, name: str):
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own _reconstruct, wherever this numpy keeps it
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how a Python 3 protocol-2 pickle spells bytes
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only numpy arrays and lists")


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as (uint8 images (N, 3, 32, 32), int64 labels); checks the layout, not the checksum."""
    try:
        with open(path, "rb") as f:
            # The official files are Python 2 pickles: their str keys arrive as bytes under encoding="bytes".
            raw = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{path} is not a CIFAR python batch ({e}); delete it and re-fetch") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} is not a CIFAR python batch (a {type(raw).__name__}, not a dict)")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path} has keys {sorted(batch)}; a CIFAR batch needs 'data' and {label_key!r}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(len(data), *IMAGE_SHAPE), labels


def _concat(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@dataclass(frozen=True)
class CropFlip:
    """Random crop with zero padding plus random horizontal flip, for a batch (N, C, H, W) at once.

    He et al. 2016, Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled
    from the padded image or its horizontal flip". There the padding follows mean subtraction, so the
    pad is the mean colour; here it is 0 after per-channel standardisation, which is the same.
    Each image gets its own offset and flip, drawn from ``generator``.
    """

    padding: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        rows = dy[:, None] + torch.arange(h)
        cols = dx[:, None] + torch.arange(w)
        if self.flip:
            mirrored = torch.rand(n, generator=generator) < 0.5
            cols = torch.where(mirrored[:, None], cols.flip(1), cols)
        padded = F.pad(x, (p, p, p, p))
        rows, cols = rows.to(x.device), cols.to(x.device)
        # One gather: output pixel (i, j) of image k reads padded[k, :, rows[k, i], cols[k, j]].
        return padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]


def _cifar_splits(source: CifarSource, train_limit: int | None, val_fraction: float, augment: bool) -> DataSplits:
    x, y, tx, ty = source.load()
    data = carve(source.name, x, y, tx, ty, IMAGE_SHAPE, source.num_classes, val_fraction=val_fraction,
                 train_limit=train_limit, per_channel=True)
    return replace(data, train_transform=CropFlip() if augment else None)


CIFAR10 = CifarSource(
    name="cifar10", folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
    extra_files=("batches.meta", "readme.html"), label_key="labels", num_classes=10, env="CIFAR10_DIR",
)

CIFAR100 = CifarSource(
    name="cifar100", folder="cifar-100-python", archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",), test_files=("test",), extra_files=("meta",),
    label_key="fine_labels", num_classes=100, env="CIFAR100_DIR",
)


@register_dataset("cifar10")
def cifar10(train_limit: int | None = None, val_fraction: float = 0.1, augment: bool = True) -> DataSplits:
    """CIFAR-10: 50k 32x32 colour training images (10 % carved off as val) and the official 10k test set.

    Per-channel standardisation with training statistics; crop + flip augmentation of training batches
    unless ``augment=False``.
    """
    return _cifar_splits(CIFAR10, train_limit, val_fraction, augment)


@register_dataset("cifar100")
def cifar100(train_limit: int | None = None, val_fraction: float = 0.1, augment: bool = True) -> DataSplits:
    """CIFAR-100 with its 100 fine labels; splits, standardisation and augmentation as ``cifar10``."""
    return _cifar_splits(CIFAR100, train_limit, val_fraction, augment)


SOURCES = {"cifar10": CIFAR10, "cifar100": CIFAR100}
