"""The drawing vocabulary every figure shares (the cross-method figures in ``bench.figures`` and each paper's in
``bench.papers``): matplotlib without a display, saving as PNG + PDF, tables as CSV + Markdown, captions that
name the runs and the protocol, and the dense reference lines. It imports nothing else of the suite, so the
figures and the papers both depend on it and never on each other's internals.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, stem: Path) -> list[Path]:
    """``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (the suffix is appended, so a stem with dots stays whole)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_name(stem.name + ext) for ext in (".png", ".pdf")]
    for p in out:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    pyplot().close(fig)
    return out


def dense_reference(runs: "pandas.DataFrame") -> dict[str, tuple[float, float, int]]:
    """(mean, std, n) test accuracy of the dense baseline and of the dense + fine-tune control."""
    out = {}
    for kind in ("baseline", "control"):
        acc = runs[runs["kind"] == kind].drop_duplicates("seed")["acc_top1"]
        if len(acc):
            out[kind] = (float(acc.mean()), float(acc.std()) if len(acc) > 1 else 0.0, len(acc))
    return out


def dense_lines(ax: Any, dense: dict[str, tuple[float, float, int]]) -> None:
    styles = {"baseline": ("k", "--", "dense"), "control": ("0.4", ":", "dense + fine-tune")}
    for kind, (mean, std, n) in dense.items():
        color, ls, label = styles[kind]
        ax.axhline(mean, color=color, ls=ls, lw=1, label=f"{label} ({mean:.4f}±{std:.4f}, n={n})")


def caption(runs: "pandas.DataFrame", experiment: str) -> str:
    seeds = runs["seed"].dropna().nunique()
    protocol = runs.attrs.get("protocol_caption")
    head = f"{experiment} — {seeds} seed{'s' if seeds != 1 else ''}, {len(runs)} tracked runs"
    return f"{head}\n{protocol}" if protocol else head


def write_table(df: "pandas.DataFrame", path: Path, title: str) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    csv, md = path.with_suffix(".csv"), path.with_suffix(".md")
    df.to_csv(csv, index=False)
    md.write_text(f"# {title}\n\n{markdown(df)}\n")
    return [csv, md]


def plain_cell(column: str, v: Any) -> str:
    """A table cell as the figures' tables print it: floats to 4 significant digits, missing values empty."""
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def markdown(df: "pandas.DataFrame", cell: Callable[[str, Any], str] = plain_cell) -> str:
    """``df`` as a GitHub Markdown table through ``DataFrame.to_markdown``; ``cell(column, value)`` writes each
    cell first, and tabulate's number parsing is off so it never re-formats a number that ``cell`` wrote."""
    import pandas as pd

    columns = [str(c) for c in df.columns]
    rows = [[cell(c, v) for c, v in zip(columns, row)] for row in df.itertuples(index=False, name=None)]
    return pd.DataFrame(rows, columns=columns).to_markdown(index=False, tablefmt="github", disable_numparse=True)
