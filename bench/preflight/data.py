"""The data, checked before any training (filled in by issue 25)."""
from __future__ import annotations

from typing import Any


def check_data(config: Any) -> Any:
    """Load the configured data once and refuse what cannot train; returns the loaded data."""
    from bench.data_cache import load_data

    return load_data(config)
