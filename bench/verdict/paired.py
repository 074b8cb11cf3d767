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


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDiff:
    """mean(a) − mean(b) with Welch's interval (unequal variances, Welch–Satterthwaite degrees of freedom): for
    two arms whose seeds do not share a dense baseline (reference runs made elsewhere), so differences cannot be
    paired. ``n`` is the smaller sample; fewer than two points on either side give no interval."""
    from scipy import stats

    x = np.asarray([v for v in a if not _isna(v)], dtype=float)
    y = np.asarray([v for v in b if not _isna(v)], dtype=float)
    n = int(min(len(x), len(y)))
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, "n/a (no common seeds)")
    mean = float(x.mean() - y.mean())
    if n < 2:
        return PairedDiff(mean, math.nan, math.nan, n, "n/a (1 seed)")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return PairedDiff(mean, mean, mean, n, "better" if mean > 0 else "worse" if mean < 0 else "tie")
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    low, high = mean - half, mean + half
    return PairedDiff(mean, low, high, n, "better" if low > 0 else "worse" if high < 0 else "tie")


def arm_difference(own: "pandas.Series", other: "pandas.Series", paired: bool = True) -> PairedDiff:
    """``own`` − ``other`` (test accuracy by seed): paired on the seeds both have, or Welch's unpaired interval
    when their seeds do not share a dense baseline (``paired=False``)."""
    if not paired:
        return welch_interval(own.tolist(), other.tolist())
    common = own.index.intersection(other.index)
    return paired_interval((own[common] - other[common]).tolist())


def pairable(chosen: "pandas.DataFrame", a: "pandas.DataFrame", b: "pandas.DataFrame") -> bool:
    """Whether two arms' runs may be paired on seed: always, unless the frame mixes local and reference runs
    whose dense baselines differ (``attrs["unpaired_sources"]``) and the two arms come from different sources."""
    if not chosen.attrs.get("unpaired_sources") or "source" not in a or "source" not in b:
        return True
    return set(a["source"]) == set(b["source"])


def _per_seed(group: "pandas.DataFrame") -> "pandas.Series":
    """Test accuracy indexed by seed; the group must hold one row per seed (the output of the selection)."""
    if group["seed"].duplicated().any():
        raise ValueError("more than one run per seed: pass the output of select_on_validation")
    return group.set_index("seed")["acc_top1"].sort_index()
