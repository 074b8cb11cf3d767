"""Per-seed statistics: test accuracy by seed, and the Student-t interval of a per-seed paired difference."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from bench.verdict.values import _isna


@dataclasses.dataclass(frozen=True)
class PairedDiff:
    """Mean per-seed paired difference with its Student-t interval and the verdict it supports."""

    mean: float
    low: float
    high: float
    n: int
    verdict: str


def paired_interval(diffs: Sequence[float], confidence: float = 0.95) -> PairedDiff:
    """Mean of per-seed differences ± t_{n-1,(1+confidence)/2} · sd / √n (sd with ddof=1).

    "better" if the whole interval is above 0, "worse" if below, "tie" if it covers 0. With one seed there is
    no spread to estimate, so no interval ("n/a (1 seed)"); with none, "n/a (no common seeds)". NaN differences
    (a seed without a result) are left out.
    """
    from scipy import stats

    d = np.asarray([x for x in diffs if not _isna(x)], dtype=float)
    n = len(d)
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, "n/a (no common seeds)")
    mean = float(d.mean())
    if n < 2:
        return PairedDiff(mean, math.nan, math.nan, n, "n/a (1 seed)")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = "better" if low > 0 else "worse" if high < 0 else "tie"
    return PairedDiff(mean, low, high, n, verdict)


def _per_seed(group: "pandas.DataFrame") -> "pandas.Series":
    """Test accuracy indexed by seed; the group must hold one row per seed (the output of the selection)."""
    if group["seed"].duplicated().any():
        raise ValueError("more than one run per seed: pass the output of select_on_validation")
    return group.set_index("seed")["acc_top1"].sort_index()
