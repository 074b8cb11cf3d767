"""compression-bench's dataset registry (not the Hugging Face ``datasets`` package; see README)."""
from datasets.core import (FILE_PREFIX, Data, DataError, DataSplits, carve, data_dir, dataset_origin, is_known,
                           list_datasets, register_dataset)
from datasets import sources as _sources  # noqa: F401  (registers the built-in datasets)
from datasets import cifar as _cifar  # noqa: F401  (registers cifar10, cifar100)
from datasets.fetch import IdxSource
from datasets.loaders import LoaderSplits, from_datamodule, from_loaders
from datasets.loading import get


def fetch(name: str, log=print) -> None:
    """Bring a dataset onto this machine (offline-first); a no-op for datasets that ship with packages."""
    if name not in list_datasets():
        get(name)  # raises the unknown-name error listing valid names (or a file: dataset's DataError)
    source = {**_sources.SOURCES, **_cifar.SOURCES}.get(name)
    if source is not None:
        source.fetch(log)
    elif name.startswith(FILE_PREFIX):
        log(f"{name}: a local file; nothing to fetch")
    elif dataset_origin(name) != "built-in":
        log(f"{name}: registered by the plugin {dataset_origin(name)}, which loads its own data; nothing to fetch")
    else:
        log(f"{name}: ships with the installed packages; nothing to fetch")


__all__ = ["Data", "DataError", "DataSplits", "IdxSource", "LoaderSplits", "carve", "data_dir", "dataset_origin",
           "fetch", "from_datamodule", "from_loaders", "get", "is_known", "list_datasets", "register_dataset"]
