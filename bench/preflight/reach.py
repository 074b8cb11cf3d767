"""The method's reach on the model, for every requested ratio, before the baseline trains.

A method that knows its largest ratio on a model (``Method.max_ratio``) is asked once; a ratio beyond it is
refused in one line that names that largest ratio ("the largest ratio magnitude reaches on mlp is 56.9x"),
rounded down so that the ratio it suggests is reachable. ``run`` refuses any requested ratio beyond it; a TPE
sweep a range that starts beyond it (one that ends beyond it is clipped by ``bench.sweep.reach``, and says
so); a grid sweep only when every ratio of its grid is beyond it, since a grid point out of reach is recorded as
an ``unreachable`` run by design (the verdict reports it). A method whose reach is not known without trying
(``max_ratio`` None) is not checked here: its ``compress`` refuses with a ``CompressionError``.
"""
from __future__ import annotations

from typing import Any, Sequence

from bench.preflight.environment import PreflightError


def check_reach(configs: Sequence[Any], sweep: Any, data: Any) -> None:
    """Every requested ratio is within the method's reach on this model."""
    from bench.baseline import build_model
    from bench.method_context import build_method
    from methods.common.base import reach_floor

    template = configs[0]
    reach = build_method(template).max_ratio(build_model(template, data))
    if reach is None:
        return
    top = reach_floor(reach)
    largest = f"the largest ratio {template.method} reaches on {template.model} is {top:g}x"
    if sweep is None:
        beyond = sorted({c.ratio for c in configs if c.ratio > reach})
        if beyond:
            raise PreflightError(f"ratio {_ratios(beyond)} is out of reach: {largest}; ask for --ratio {top:g} "
                                 f"or less")
    elif sweep.mode == "tpe":
        low, high = sweep.ratio_range
        if reach <= low:
            raise PreflightError(f"--ratio-range {low:g},{high:g} is out of reach: {largest}; use --ratio-range "
                                 f"{min(low, 1.5):g},{top:g}")
    elif all(r > reach for r in sweep.ratios):
        raise PreflightError(f"every ratio of the grid ({_ratios(sorted(sweep.ratios))}) is out of reach: {largest}; "
                             f"ask for --ratios of {top:g} or less")


def _ratios(ratios: Sequence[float]) -> str:
    return ", ".join(f"{r:g}x" for r in ratios)
