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


# The edge rule: more than a third of one method's tuned cells at one edge of the candidates means the grid may
# not bracket its optimum. A third, not a half: with 3-5 candidates a method whose optimum sits at the edge
# chooses it on about half its cells only by luck of the seeds, and a half-rule let such grids pass.
EDGE_THRESHOLD = 1 / 3


def grid_brackets_optimum(chosen: "pandas.DataFrame", threshold: float = EDGE_THRESHOLD) -> bool:
    """False when, for the compressed points of any (experiment, variant, arm), more than ``threshold`` of the
    tuned points chose an edge lr: the optimum may lie outside the grid, so widen the lr set (for every
    method, so the comparison stays fair)."""
    return not _edges_hit(chosen, threshold)


def _edges_hit(chosen: "pandas.DataFrame", threshold: float) -> dict[str, tuple[bool, bool]]:
    """Per experiment failing the edge rule (some method at an edge on more than ``threshold`` of its tuned
    points): whether those methods chose the low and the high edge, so the grid is widened on those sides."""
    report = lr_edge_report(chosen)
    failing = report[(report["kind"] == "compressed") & (report["frac_edge"] > threshold)]
    return {exp: (bool(g["n_low"].gt(0).any()), bool(g["n_high"].gt(0).any()))
            for exp, g in failing.groupby("experiment", sort=True)}


def widened_candidates(runs: "pandas.DataFrame", chosen: "pandas.DataFrame",
                       threshold: float = EDGE_THRESHOLD) -> dict[str, tuple[float, ...]]:
    """Per experiment whose grid fails the edge rule: its candidates (every lr its tuned runs were trained at)
    widened by one step beyond each edge chosen by a method that sits at an edge on more than ``threshold`` of
    its tuned compressed cells; the step is the log-spacing of the two outermost candidates on that side (1e-1 after
    3e-2, 1e-1 gives 3e-1 for a half-decade grid). Empty when every grid brackets its optima. The widening is
    for every method alike, and tracked points are reused, so a rerun trains only the new candidates."""
    out: dict[str, tuple[float, ...]] = {}
    for exp, (low, high) in _edges_hit(chosen, threshold).items():
        tuned = runs[(runs["experiment"] == exp) & runs["kind"].isin(TUNED_KINDS)]
        candidates = sorted(float(lr) for lr in tuned["lr"].dropna().unique())
        if len(candidates) < 2:
            continue
        extra = ([float(f"{candidates[0] ** 2 / candidates[1]:.1g}")] if low else []) + \
                ([float(f"{candidates[-1] ** 2 / candidates[-2]:.1g}")] if high else [])
        out[exp] = tuple(sorted(set(candidates) | set(extra)))
    return out
