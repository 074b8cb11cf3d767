"""``datasets.get``: a dataset name to the runner's data. A registered builder's result is adapted (tensors
as they are, a DataModule or DataLoaders as ``LoaderSplits``); a ``file:PATH`` name is read as an .npz.

Its own module because it sits above the three it dispatches to (``core``, ``files``, ``loaders``), which
import ``core`` themselves: kept in ``core`` it would tie them into a loop.
"""
from __future__ import annotations

import inspect
from typing import Any

from datasets.core import FILE_PREFIX, Data, DataError, builder_of
from datasets.files import load_npz
from datasets.loaders import adapt


def get(name: str, **options: Any) -> Data:
    """Load a registered dataset (or a ``file:PATH`` .npz) from local files; never touches the network (see
    ``datasets.fetch``). An option the builder does not take is a DataError naming the options it does."""
    if name.startswith(FILE_PREFIX):
        return load_npz(name, **options)
    builder = builder_of(name)
    try:
        inspect.signature(builder).bind(**options)
    except TypeError:
        raise DataError(f"dataset {name!r} does not take {', '.join(f'{k}={v}' for k, v in options.items())}; its "
                        f"options: {', '.join(inspect.signature(builder).parameters) or 'none'}") from None
    return adapt(name, builder(**options))
