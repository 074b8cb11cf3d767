"""Checks run before any work, so a bad environment fails in seconds with one clear line: a folder the work
will write can be written (without leaving anything in it), and the MLflow tracking server answers (bounded
wait, no hang)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class PreflightError(RuntimeError):
    """The environment cannot hold results; the message names what and how to fix it."""


def folder_problem(path: Path) -> str | None:
    """Why files cannot be written in the folder ``path`` (made, with its parents, where missing), or None.

    Nothing stays behind: a probe file is created and removed in the folder, or, when the folder is still to
    be made, in its nearest existing ancestor (whoever can write there can make the rest). A regular file in
    the way (``<file>/sub``) is a problem for every user, root included; a folder without write permission
    for everyone but root (for whom permissions do not block writes, so the probe rightly succeeds).
    """
    target = path.expanduser().absolute()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-check-"):
            pass
    except OSError as e:
        return f"cannot write in {probe}: {e.strerror or e}"
    return None


def file_problem(path: Path) -> str | None:
    """Why the file ``path`` (existing, or to be created) cannot be written, or None; writes nothing that stays."""
    target = path.expanduser().absolute()
    if target.exists():
        if target.is_dir():
            return f"{target} is a folder, not a file"
        if not os.access(target, os.W_OK):
            return f"{target} is read-only"
        return None
    return folder_problem(target.parent)


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
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise PreflightError(f"cannot reach the MLflow tracking server at {uri} ({reason}); start it "
                             f"(`make ui`) or unset MLFLOW_TRACKING_URI to use the local SQLite store") from None
