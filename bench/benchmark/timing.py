"""Side-by-side timing: arms run alternately in one process, so a shared machine's load hits both alike;
and the thread pinning and progress line every section uses."""
from __future__ import annotations

import math
import statistics
import sys
from typing import Callable, Sequence

import torch


def alternate(arms: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the arms in turn ``warmup + repeats`` times; each arm returns its own elapsed seconds (so its
    setup stays outside the clock). Warm-up rounds are dropped; the order rotates so no arm always goes first."""
    names = list(arms)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(warmup + repeats):
        order = names[i % len(names):] + names[:i % len(names)]
        for k in order:
            elapsed = arms[k]()
            if i >= warmup:
                times[k].append(elapsed)
    return times


def pair_ratios(a: list[float], b: list[float]) -> list[float]:
    """a/b for each repeat: both arms of one repeat ran back to back under the same load."""
    return [x / y for x, y in zip(a, b)]


def fit_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(time) on log(size): cost ~ size^exponent."""
    lx, ly = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum((x - mx) ** 2 for x in lx)



class threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)



def progress(text: str) -> None:
    print(f"[benchmark] {text}", file=sys.stderr, flush=True)
