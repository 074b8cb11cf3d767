"""The configured dataset, loaded once per process and shared by every run in it (``load_data``), and the way
to drop what is loaded (``forget_loaded_data``)."""
from __future__ import annotations

import functools
import os
from typing import Any

import datasets
from bench.config import ExperimentConfig


def load_data(config: ExperimentConfig) -> datasets.Data:
    """The configured dataset, loaded (its files read and checked) once per process: a sweep's trials and seeds,
    its baselines and controls all share one copy, which nothing changes. ``forget_loaded_data`` drops it."""
    try:
        return _load_once(config.dataset, config.dataset_options, str(datasets.data_dir()), _file_stamp(config.dataset))
    except TypeError:  # an option value that cannot be part of a key (unhashable): loaded every time
        return datasets.get(config.dataset, **dict(config.dataset_options))


@functools.lru_cache(maxsize=2)  # two datasets at most stay in memory (a script may alternate two)
def _load_once(name: str, options: tuple[tuple[str, Any], ...], where: str,
               stamp: tuple[int, int] | None) -> datasets.Data:
    # ``where`` (the data folder) and ``stamp`` (a file: dataset's size and mtime) are only part of the key:
    # data fetched elsewhere, or a file rewritten, is loaded anew. A registered name cannot change its builder.
    return datasets.get(name, **dict(options))


def _file_stamp(name: str) -> tuple[int, int] | None:
    if not name.startswith(datasets.FILE_PREFIX):
        return None
    try:
        st = os.stat(os.path.expanduser(name[len(datasets.FILE_PREFIX):]))
    except OSError:
        return None  # missing: ``datasets.get`` says so, and a failure is never cached
    return st.st_size, st.st_mtime_ns


def forget_loaded_data() -> None:
    """Drop this process's loaded datasets and its record of verified data files: the next load reads and
    checks everything again, as every run did before loads were shared (the benchmark's "before" arm)."""
    from datasets.fetch import forget_verified

    _load_once.cache_clear()
    forget_verified()
