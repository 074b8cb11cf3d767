"""compression-bench's dataset registry (not the Hugging Face ``datasets`` package; see README)."""
from datasets.core import DataError, DataSplits, carve, data_dir, dataset_origin, get, list_datasets, register_dataset
from datasets import sources as _sources  # noqa: F401  (registers the built-in datasets)
from datasets import cifar as _cifar  # noqa: F401  (registers cifar10, cifar100)
from datasets.fetch import IdxSource


def fetch(name: str, log=print) -> None:
    """Bring a dataset onto this machine (offline-first); a no-op for datasets that ship with packages."""
    if name not in list_datasets():
        get(name)  # raises the unknown-name error listing valid names
    source = {**_sources.SOURCES, **_cifar.SOURCES}.get(name)
    if source is not None:
        source.fetch(log)
    else:
        log(f"{name}: ships with the installed packages; nothing to fetch")


__all__ = ["DataError", "DataSplits", "IdxSource", "carve", "data_dir", "dataset_origin", "fetch", "get", "list_datasets", "register_dataset"]
