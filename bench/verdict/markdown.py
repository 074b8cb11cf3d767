"""Verdict frames as GitHub Markdown: accuracies and differences in percent, missing values as a dash."""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.drawing import markdown
from bench.verdict.values import MISSING, _isna


def _cell(column: str, v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if _isna(v):
        return MISSING
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if column.startswith("acc_"):
            return f"{v * 100:.2f}"
        if column.startswith("diff_"):
            return f"{v * 100:+.2f}"  # a signed difference reads as one
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: "pandas.DataFrame") -> str:
    """A GitHub markdown table: acc_*/diff_* floats in percent (2 decimals; differences signed), other floats
    to 4 significant digits, missing values as "—"."""
    return markdown(df, _cell)
