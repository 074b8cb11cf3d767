"""What a frozen dataclass *is*, for hashing: its fields as plain data, leaving out the fields that were added
after runs were already tracked while they hold their default.

Config keys, baseline keys and protocol hashes name cached baselines and tracked runs. A field added to a
recipe or a protocol later (early stopping, a learning-rate schedule on plateaus, gradient clipping, a
paper's scale) must not rename every existing cache entry and run when it is left at its default, so such
fields are declared with ``later(default)`` and only enter the content when set.
"""
from __future__ import annotations

import dataclasses
from typing import Any

_LATER = "omit_when_default"


def later(default: Any, **kwargs: Any) -> Any:
    """A dataclass field added after runs existed: part of the content only when it differs from ``default``."""
    return dataclasses.field(default=default, metadata={_LATER: True}, **kwargs)


def content_of(obj: Any) -> Any:
    """``dataclasses.asdict`` without the ``later`` fields that hold their default (recursively)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: content_of(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get(_LATER) and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(content_of(v) for v in obj)
    if isinstance(obj, dict):
        return {k: content_of(v) for k, v in obj.items()}
    return obj
