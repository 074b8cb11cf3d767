"""One preflight, before any training or any write, shared by the CLI, ``make`` and the Python API.

``check_before_work`` is the single entry point: every command that trains (``run``, ``bench``, each study of
``compare``) and every API call that trains (``api.experiment``, ``api.sweep``) calls it once, after the
configuration is built and before the first baseline is trained or the first record is written. Each check
lives in the module named after what it looks at; each refusal is a ``PreflightError`` with one line that says
what was wrong, what is allowed and the fix (the CLI prints it and exits with status 2).

- ``bench.preflight.data``: the data (finite, non-empty splits, labels, classes, shapes);
- ``bench.preflight.model``: the model, run once on a real batch (output shape, classifier width);
- ``bench.preflight.reach``: the method's reach on that model for every requested ratio;
- ``bench.preflight.stores``: every store and folder the work will write;
- ``bench.preflight.resources``: the size of the work (an estimate, and bounds on seeds and workers);
- ``bench.preflight.environment``: the results folder and the MLflow server answer (bounded wait).
"""
from __future__ import annotations

from typing import Any, Sequence

from bench.preflight.environment import PreflightError, bound_http_retries, check_results_dir, check_tracking

__all__ = ["PreflightError", "bound_http_retries", "check_before_work", "check_results_dir", "check_tracking"]


def check_before_work(configs: Sequence[Any], sweep: Any = None, *, allow_large: bool = False) -> None:
    """Every check, in the order that fails cheapest first; raises ``PreflightError`` (or a more specific
    refusal the CLI already reports in one line) before anything is trained or written.

    ``configs`` are the experiment configurations about to run (for a sweep: its template); ``sweep`` the
    ``bench.sweep.SweepConfig`` when a study is about to run; ``allow_large`` lets work past the resource
    bounds go ahead (``--allow-large``).
    """
    from bench.preflight import data as data_checks
    from bench.preflight import model as model_checks
    from bench.preflight import reach, resources, stores

    configs = list(configs)
    resources.check_resources(configs, sweep, allow_large=allow_large)
    stores.check_stores(sweep)
    loaded = data_checks.check_data(configs[0])
    model_checks.check_model(configs[0], loaded)
    reach.check_reach(configs, sweep, loaded)
