"""The method's reach on the model, for every requested ratio (filled in by issue 25)."""
from __future__ import annotations

from typing import Any, Sequence


def check_reach(configs: Sequence[Any], sweep: Any, data: Any) -> None:
    """Every requested ratio is within the method's reach on this model."""
