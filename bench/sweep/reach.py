"""A TPE sweep's ratio range clipped to what the method can reach on the model, so no trial is sampled out of reach.
"""
from __future__ import annotations

import dataclasses
import math

from bench.sweep.plan import SweepConfig
from bench.sweep.progress import _log


def reachable_range(cfg: SweepConfig) -> SweepConfig:
    """A TPE sweep whose ratio range ends where the method can reach on this model (``Method.max_ratio``),
    so no trial is sampled out of reach; raises CompressionError when the whole range is beyond it."""
    from bench.baseline import build_model
    from bench.pipeline import build_method, load_data
    from methods import CompressionError

    if cfg.mode != "tpe":
        return cfg
    t = cfg.template
    reach = build_method(t).max_ratio(build_model(t, load_data(t)))
    low, high = cfg.ratio_range
    if reach is None or high <= reach:
        return cfg
    if reach <= low:
        raise CompressionError(f"--ratio-range {low:g},{high:g} is out of reach: {t.method} reaches at most {reach:.1f}x "
                               f"on {t.model}; use --ratio-range {min(low, 1.5):g},{reach:.3g}")
    scale = 10 ** (3 - math.floor(math.log10(reach)))
    clipped = math.floor(reach * scale) / scale  # 4 significant digits, rounded down: never above the reach
    _log(cfg, f"ratio range {low:g}-{high:g} clipped to {low:g}-{clipped:g}: {t.method} reaches at most "
              f"{reach:.2f}x on {t.model}")
    return dataclasses.replace(cfg, ratio_range=(low, clipped))
