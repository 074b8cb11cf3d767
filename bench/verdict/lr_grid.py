"""The learning-rate grid: whether chosen learning rates pile up at the edge of the candidates, and whether
every method was tuned over the same candidates."""
from __future__ import annotations

import math

from bench.verdict.selection import TUNED_KINDS
from bench.verdict.values import _short_lr


def lr_edge_report(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, variant, arm) of the tuned kinds: chosen points, how many had more than one lr
    candidate (``n_tuned``), how many chose the lowest / highest candidate, and ``frac_edge`` = edges / n_tuned
    (NaN when nothing was tuned — a single candidate says nothing about the grid)."""
    import pandas as pd

    tuned = chosen[chosen["kind"].isin(TUNED_KINDS)]
    rows = []
    for (exp, kind, variant, arm), g in tuned.groupby(["experiment", "kind", "variant", "arm"], sort=True):
        n_tuned = int((g["n_candidates"] > 1).sum())
        low, high = int((g["lr_edge"] == "low").sum()), int((g["lr_edge"] == "high").sum())
        rows.append({"experiment": exp, "kind": kind, "variant": variant, "arm": arm, "n_points": len(g),
                     "n_tuned": n_tuned, "n_low": low, "n_high": high,
                     "frac_edge": (low + high) / n_tuned if n_tuned else math.nan})
    return pd.DataFrame(rows, columns=["experiment", "kind", "variant", "arm", "n_points", "n_tuned", "n_low",
                                       "n_high", "frac_edge"])


def tuning_budgets(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, variant, arm) of the compressed runs: the learning-rate candidates it was run at and
    how many. Equal tuning budgets mean one row's candidates equal every other row's of the experiment."""
    comp = runs[(runs["kind"] == "compressed") & runs["lr"].notna()]
    rows = [{"experiment": e, "variant": v, "arm": a, "n_candidates": len(lrs),
             "candidates": ", ".join(_short_lr(lr) for lr in lrs)}
            for (e, v, a), g in comp.groupby(["experiment", "variant", "arm"], sort=True)
            for lrs in [sorted(g["lr"].unique())]]
    import pandas as pd

    return pd.DataFrame(rows, columns=["experiment", "variant", "arm", "n_candidates", "candidates"])


def unequal_tuning(runs: "pandas.DataFrame") -> list[str]:
    """One line per experiment whose methods were tuned over different candidate sets (empty when equal)."""
    budgets = tuning_budgets(runs)
    lines = []
    for exp, g in budgets.groupby("experiment", sort=True):
        if g["candidates"].nunique() > 1:
            sets = "; ".join(f"{v} [{a}]: {c}" for v, a, c in zip(g["variant"], g["arm"], g["candidates"]))
            lines.append(f"WARNING — {exp}: unequal tuning budgets (learning-rate candidates differ): {sets}")
    return lines


def grid_brackets_optimum(chosen: "pandas.DataFrame", threshold: float = 0.5) -> bool:
    """False when, for the compressed points of any (experiment, variant, arm), more than ``threshold`` of the
    tuned points chose an edge lr: the optimum may lie outside the grid, so widen the lr set (for every method,
    so the comparison stays fair)."""
    report = lr_edge_report(chosen)
    frac = report.loc[report["kind"] == "compressed", "frac_edge"].dropna()
    return not bool((frac > threshold).any())
