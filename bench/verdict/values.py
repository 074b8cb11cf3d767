"""How the verdict reads an absent value and prints the few values it writes by hand."""
from __future__ import annotations

from typing import Any

MISSING = "—"  # how an absent number is printed


def _isna(v: Any) -> bool:
    """NaN, None or pandas.NA (scalars only)."""
    import pandas as pd

    return v is None or (not isinstance(v, (str, bytes)) and bool(pd.isna(v)))


def _short_lr(lr: float) -> str:
    """3e-4, 1e-3, 2.5e-3: the lr in as few characters as stay exact to two digits."""
    if _isna(lr):
        return "?"
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
