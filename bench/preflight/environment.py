"""Checks run before any work, so a bad environment fails in seconds with one clear line: the results folder
can be written (``bench.writable``, without leaving anything in it), and the MLflow tracking server answers
(bounded wait, no hang)."""
from __future__ import annotations

import os
from pathlib import Path

from bench.writable import folder_problem


class PreflightError(RuntimeError):
    """The environment cannot hold results; the message names what and how to fix it."""


def check_results_dir(path: Path) -> None:
    """The results folder (``COMPRESSION_BENCH_RESULTS``) can be written; it is not created here."""
    problem = folder_problem(path)
    if problem is not None:
        raise PreflightError(f"results directory {path} is not writable ({problem}); make it writable or set "
                             f"COMPRESSION_BENCH_RESULTS to a writable folder")


def bound_http_retries() -> None:
    """MLflow's client retries an unreachable server for minutes by default; keep it to seconds unless the
    user chose otherwise."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def check_tracking(uri: str) -> None:
    """One cheap request to a tracking server; an unreachable server becomes a PreflightError. Other schemes
    are checked by ``bench.preflight.stores.check_tracking_store``."""
    if not uri.startswith(("http://", "https://")):
        return
    bound_http_retries()
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # requests/MLflow raise several types for a dead server
        raise PreflightError(f"cannot reach the MLflow tracking server at {uri} ({error_line(e)}); start it "
                             f"(`make ui`) or unset MLFLOW_TRACKING_URI to use the local SQLite store") from None


def error_line(error: BaseException) -> str:
    """The first line of an error (of the database error SQLAlchemy wraps, where it wraps one), for a refusal."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
