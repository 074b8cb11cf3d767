"""``file:PATH.npz`` datasets: the user's own arrays, without writing a builder.

The file holds ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val`` (without them, val is
carved from train with ``SPLIT_SEED`` as every built-in dataset's is). Inputs are (N, ...) numbers, images
channel-first (N, C, H, W); 2-D images (N, H, W) get a channel axis; every input must be finite. Labels are
integers 0..C-1 (whole numbers stored as floats are accepted) and ``num_classes`` is the largest label over all
splits plus one. Inputs are standardised with statistics of the training part only (``carve``: one mean and
std, per channel for images of several channels).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from datasets.core import FILE_PREFIX, DataError, DataSplits, carve

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
LAYOUT = ("an .npz with arrays x_train, y_train, x_test, y_test and optionally x_val, y_val: inputs (N, ...) numbers "
          "(images (N, C, H, W) or (N, H, W)), labels (N,) integers 0..C-1")


def load_npz(name: str, val_fraction: float = 0.1, train_limit: int | None = None) -> DataSplits:
    """The ``file:PATH`` dataset ``name`` as ``DataSplits``; a ``DataError`` naming the file and what is wrong
    (and the layout allowed) for a missing or malformed one."""
    path = Path(name[len(FILE_PREFIX):] if name.startswith(FILE_PREFIX) else name).expanduser()

    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; a file: dataset is {LAYOUT}")

    if not path.is_file():
        raise bad("no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k in REQUIRED + OPTIONAL}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise bad(f"not a readable .npz ({type(e).__name__}: {e})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise bad(f"missing array(s) {', '.join(missing)}")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise bad("x_val and y_val must be given together")
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays]
    for s in splits:
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.ndim < 2 or x.dtype.kind not in "biuf":
            raise bad(f"x_{s} has shape {x.shape} and dtype {x.dtype}; inputs must be numbers shaped (N, ...)")
        if y.ndim != 1 or y.dtype.kind not in "iuf":
            raise bad(f"y_{s} has shape {y.shape} and dtype {y.dtype}; labels must be one integer per sample")
        if y.dtype.kind == "f":  # whole numbers stored as floats are labels; anything else is refused
            fractional = ~np.isfinite(y) | (y != np.round(y))
            if fractional.any():
                i = int(np.argmax(fractional))
                raise bad(f"y_{s} holds the label {float(y[i]):g} at sample {i}, not a whole number; labels must be "
                          "integers")
            y = arrays[f"y_{s}"] = y.astype(np.int64)
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            rows = ~np.isfinite(x.reshape(len(x), -1)).all(1)
            raise bad(f"x_{s} has NaN or inf in {int(rows.sum())} of {len(x)} samples, the first at sample "
                      f"{int(np.argmax(rows))}; every input must be a finite number: drop or repair those samples")
        if len(x) != len(y):
            raise bad(f"x_{s} has {len(x)} samples but y_{s} has {len(y)}")
        if len(y) and y.min() < 0:
            raise bad(f"y_{s} has the negative label {y.min()}")
        if x.shape[1:] != arrays["x_train"].shape[1:]:
            raise bad(f"x_{s} samples are shaped {x.shape[1:]} but x_train samples {arrays['x_train'].shape[1:]}")
    if len(arrays["y_train"]) == 0:
        raise bad("x_train is empty")
    sample = arrays["x_train"].shape[1:]
    input_shape = (1, *sample) if len(sample) == 2 else tuple(sample)
    num_classes = int(max(int(arrays[f"y_{s}"].max()) for s in splits if len(arrays[f"y_{s}"]))) + 1
    if num_classes < 2:
        raise bad("every label is 0; a classifier needs at least two classes")
    val = (arrays["x_val"], arrays["y_val"]) if "x_val" in arrays else None
    per_channel = len(input_shape) == 3 and input_shape[0] > 1
    return carve(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], input_shape,
                 num_classes, val_fraction=val_fraction, scale=1.0, train_limit=train_limit, per_channel=per_channel,
                 val=val)
