"""What the benchmark measures and how much of it (``Settings``), and the targets its verdicts hold it to."""
from __future__ import annotations

from dataclasses import dataclass

from bench.paths import REPO  # noqa: F401  (imported from here by the benchmark modules)
from bench.protocol import QUICK_RATIOS as RATIOS
# Issue 10's targets.
OVERHEAD_TARGET = 1.2
COMPRESS_TARGET_MS = 50.0
STRUCTURED_TARGETS = ((4.0, 0.8), (10.0, 0.7))  # (up to this theoretical speedup, fraction of it reached)
TRACKING_TARGET = 1.10  # issue 17: what MLflow/Optuna users see may cost at most 10 % of a bench's wall time
ROUNDS_TARGET = 1.3  # issue 24: SAP with 30 rounds may cost at most 1.3x SAP with 3 at the same optimiser steps


@dataclass
class Settings:
    """How much to measure. ``quick`` trades precision for a run of about a minute."""

    dataset: str = "fashion-mnist"
    train_limit: int | None = None
    threads: int = 2           # training threads (section 1); latency is measured at 1 thread, as the pipeline does
    overhead_repeats: int = 5
    overhead_models: tuple[str, ...] = ("lenet300", "lenet5")
    compress_repeats: int = 3
    widths_k: int = 4          # MLP widths (300, 100) * 2^k, k < widths_k
    ratios: tuple[float, ...] = RATIOS
    latency_repeats: int = 15
    methods: tuple[str, ...] = ()  # empty: every registered method
    baseline_epochs: int = 2
    train_time: bool = True    # time train-time methods' own training epoch (section 2)
    memory: bool = True
    trial_repeats: int = 3     # section 4: pairs of (before, after) sweep trials (issue 18, item 7); 0 skips it
    tracking_repeats: int = 3  # section 6: pairs of (full logging, lean logging) bench commands; 0 skips it
    rounds_repeats: int = 3    # section 4: pairs of (SAP 30 rounds, SAP 3 rounds) trials at equal steps (issue 24); 0 skips it
    sections: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> "Settings":
        return cls(train_limit=6000, overhead_repeats=3, compress_repeats=1, widths_k=2, ratios=(8.0,),
                   latency_repeats=5, baseline_epochs=1, train_time=False, memory=False, trial_repeats=2, tracking_repeats=1,
                   rounds_repeats=1,
                   quick=True)
