"""Every store and folder the work will write, checked writable before any work (filled in by issue 25)."""
from __future__ import annotations

import os
from typing import Any

from bench.preflight.environment import check_results_dir, check_tracking


def check_stores(sweep: Any = None) -> None:
    """The results folder, the MLflow tracking store, and for a sweep its Optuna storage and artifact folder."""
    from bench.config import results_dir

    check_results_dir(results_dir())
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        check_tracking(uri)
