"""The size of the work: an estimate printed before a long study, and bounds on seeds and workers (issue 25)."""
from __future__ import annotations

from typing import Any, Sequence


def check_resources(configs: Sequence[Any], sweep: Any = None, *, allow_large: bool = False) -> None:
    """Refuse seeds or workers past the bounds unless ``allow_large``."""
