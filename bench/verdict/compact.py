"""The compact view: one experiment's verdict as methods (with their controls) by requested ratio."""
from __future__ import annotations

from bench.verdict.values import _isna


def _compact_cell(row: "pandas.Series", reference: str, brief: bool = False) -> str:
    if row["n"] == 0 or _isna(row["acc_mean"]):
        return "unreachable"
    cell = f"{row['acc_mean'] * 100:.2f} ± {row['acc_std'] * 100:.2f}"
    verdict = row["vs_reference"]
    if brief:
        return cell + (f" {verdict}" if verdict in ("better", "worse", "tie") else "")
    if verdict in ("better", "worse", "tie"):
        cell += f" ({row['diff_mean'] * 100:+.2f} [{row['diff_low'] * 100:+.2f}, {row['diff_high'] * 100:+.2f}] {verdict})"
    elif verdict.startswith("n/a") and not _isna(row["diff_mean"]):
        cell += f" ({row['diff_mean'] * 100:+.2f}, 1 seed)"
    return cell


def compact_table(table: "pandas.DataFrame", reference: str = "magnitude", brief: bool = False) -> "pandas.DataFrame":
    """One experiment's verdict as rows (variant, with the arm when it is a control) by requested ratio: each
    cell "mean ± std (difference against the reference [95% interval] verdict)", in percent and points
    (``brief``: "mean ± std verdict")."""
    import pandas as pd

    if table["experiment"].nunique() > 1:
        raise ValueError("compact_table takes one experiment's verdict table")
    label = [v if a == "method" else f"{v} [{a}]" for v, a in zip(table["variant"], table["arm"])]
    cells = table.assign(row=label, cell=[_compact_cell(r, reference, brief) for _, r in table.iterrows()])
    wide = cells.pivot_table(index="row", columns="requested_ratio", values="cell", aggfunc="first")
    # Methods in the order of their mean rank over ratios, each method's controls right after it.
    order = cells.assign(rank=pd.to_numeric(cells["rank"], errors="coerce")).groupby("row")["rank"].mean()
    method_of = dict(zip(label, table["variant"]))
    method_rank = {m: order[[r for r in order.index if method_of[r] == m]].min() for m in set(method_of.values())}
    rows = sorted(wide.index, key=lambda r: (method_rank[method_of[r]], method_of[r], r != method_of[r], r))
    wide = wide.loc[rows].fillna("")
    wide.columns = [f"{c:g}x" for c in wide.columns]
    return wide.reset_index().rename(columns={"row": "method [control arm]"})
