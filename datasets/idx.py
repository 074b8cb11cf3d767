"""Reading IDX files (the MNIST family's format) and verifying them by SHA-256; ``file_digest`` is the one
file-hashing loop of the package (CIFAR's MD5 check uses it too)."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from datasets.core import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file's bytes with ``hashlib``'s ``algorithm`` ("sha256", "md5", ...), read in 1 MiB
    blocks so large archives never sit in memory whole."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def verify(path: Path, expected: str, fix: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}; "
            f"delete the file and re-fetch it with: {fix}"
        )


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip'd): magic 0x0000TTNN, NN big-endian uint32 dims, then data."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise DataError(f"{path} is truncated or corrupt: header says {expected} data bytes, found {len(raw) - offset}")
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims)
