"""The answer first: at each requested ratio, the best arm (or the set of arms it cannot be told apart from) and
its margin over the next one, paired on seed — what a reader wants before the long tables.

The rule, and why: the arm with the highest mean test accuracy leads; every other arm whose paired difference
against the leader has a 95 % interval covering 0 (or that shares fewer than two seeds with it, so no interval
exists) is in the leader's **tie set**, because the data cannot order them. The **margin** is the paired
difference between the leader and the best arm outside the tie set, with its interval. Controls take part
like methods, so a control that ties the best method shows up in the tie set.
"""
from __future__ import annotations

from typing import Any

from bench.verdict.paired import _per_seed, arm_difference, pairable

HEADLINE_COLUMNS = ["experiment", "requested_ratio", "leader", "leader_mean", "n", "tie_set", "next", "next_mean",
                    "margin_mean", "margin_low", "margin_high"]


def _label(variant: str, arm: str) -> str:
    return variant if arm == "method" else f"{variant} [{arm}]"


def headline(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """One row per (experiment, requested ratio) of the compressed runs chosen on validation (the output of
    ``select_on_validation``): the leader, its tie set, the next arm outside it and the margin (fractions)."""
    import pandas as pd

    comp = chosen[(chosen["kind"] == "compressed") & chosen["acc_top1"].notna()]
    rows: list[dict[str, Any]] = []
    for (exp, ratio), g in comp.groupby(["experiment", "requested_ratio"], sort=True):
        rows_of = {_label(v, a): p for (v, a), p in g.groupby(["variant", "arm"], sort=True)}
        arms = {k: _per_seed(p) for k, p in rows_of.items()}
        order = sorted(arms, key=lambda k: (-round(float(arms[k].mean()), 10), k))
        leader = order[0]
        ties, outside = [leader], []
        for other in order[1:]:
            diff = arm_difference(arms[leader], arms[other], pairable(chosen, rows_of[leader], rows_of[other]))
            if diff.verdict == "better":
                outside.append((other, diff))
            else:
                ties.append(other)
        nxt = outside[0] if outside else None
        rows.append({"experiment": exp, "requested_ratio": ratio, "leader": leader,
                     "leader_mean": float(arms[leader].mean()), "n": len(arms[leader]), "tie_set": ties,
                     "next": nxt[0] if nxt else "", "next_mean": float(arms[nxt[0]].mean()) if nxt else float("nan"),
                     "margin_mean": nxt[1].mean if nxt else float("nan"),
                     "margin_low": nxt[1].low if nxt else float("nan"),
                     "margin_high": nxt[1].high if nxt else float("nan")})
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


def headline_lines(table: "pandas.DataFrame") -> list[str]:
    """The headline as Markdown bullets, one per (experiment, ratio), accuracies in % and margins in points."""
    lines = []
    for _, r in table.iterrows():
        lead = f"**{r['leader']}** ({r['leader_mean'] * 100:.2f} %, {r['n']} seed{'s' if r['n'] != 1 else ''})"
        others = [t for t in r["tie_set"] if t != r["leader"]]
        tie = f", tied with {', '.join(others)}" if others else ""
        if r["next"]:
            margin = (f"; ahead of {r['next']} ({r['next_mean'] * 100:.2f} %) by {r['margin_mean'] * 100:+.2f} "
                      f"[{r['margin_low'] * 100:+.2f}, {r['margin_high'] * 100:+.2f}] points")
        else:
            margin = "; no arm is behind it with confidence" if others else ""
        prefix = f"{r['experiment']} @ " if table["experiment"].nunique() > 1 else ""
        lines.append(f"- {prefix}{r['requested_ratio']:g}x: {lead}{tie}{margin}")
    return lines


def headline_text(chosen: "pandas.DataFrame") -> str:
    """``headline_lines`` of ``chosen`` joined, or a line saying there is nothing to rank yet."""
    table = headline(chosen)
    if table.empty:
        return "- nothing to rank: no compressed run was tracked"
    return "\n".join(headline_lines(table))
