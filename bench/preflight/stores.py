"""Every store and folder the work will write, checked before any work, writing nothing that stays.

- the results folder (``COMPRESSION_BENCH_RESULTS``) and its ``baselines/`` cache;
- the MLflow tracking store, of any scheme (``check_tracking_store``): a SQLite file (the default,
  ``results/mlflow.db``) with its ``artifacts/`` folder beside it, a tracking server (it must answer), another
  database (it must accept a connection), or a folder (MLflow 3's file store, which MLflow itself refuses);
- for a sweep, the Optuna storage of any scheme (``bench.studies.check_storage``) and the folder of its trial
  artifacts (``--artifact-dir``).

Every refusal is one line naming the store, what is wrong and the fix. What cannot be known without writing is
left to the store (a database user without write grants, a server's disk filling up).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.preflight.environment import PreflightError, check_results_dir, check_tracking, error_line
from bench.writable import file_problem, folder_problem

# Schemes of SQL databases MLflow keeps its runs in (besides SQLite), as ``scheme`` or ``scheme+driver``.
SQL_SCHEMES = ("postgresql", "mysql", "mssql")


def check_stores(sweep: Any = None) -> None:
    """The results folder, the MLflow tracking store, and for a sweep its Optuna storage and artifact folder."""
    from bench.config import results_dir

    results = results_dir()
    check_results_dir(results)
    _folder(results / "baselines", "the baseline cache", "make it writable or set COMPRESSION_BENCH_RESULTS to a "
                                                         "writable folder")
    # ``bench.tracking.default_tracking_uri`` without making the results folder (nothing is written here).
    default = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results / 'mlflow.db'}"
    check_tracking_store((sweep.tracking_uri if sweep is not None else None) or default)
    if sweep is not None:
        from bench.studies import check_storage

        check_storage(sweep.storage)
        _folder(Path(sweep.artifact_path()), f"--artifact-dir {sweep.artifact_path()} (the trials' artifacts)",
                "give a writable folder with --artifact-dir, or leave it unset for results/optuna-artifacts")


def _folder(path: Path, what: str, fix: str) -> None:
    problem = folder_problem(path)
    if problem is not None:
        raise PreflightError(f"{what} is not writable ({problem}); {fix}")


def check_tracking_store(uri: str) -> None:
    """The MLflow tracking store at ``uri`` can take this work's runs; PreflightError with the fix otherwise."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("file:") else ""
    if scheme in ("http", "https"):
        check_tracking(uri)
    elif scheme == "sqlite":
        _check_sqlite_tracking(uri)
    elif scheme in ("", "file"):
        _check_file_store(uri)
    elif scheme.split("+")[0] in SQL_SCHEMES:
        _check_sql_tracking(uri)
    else:  # databricks, uc, plugins' schemes: MLflow says at once whether it knows the scheme (nothing written)
        from mlflow import MlflowClient

        try:
            MlflowClient(uri)
        except Exception as e:
            raise PreflightError(f"MLFLOW_TRACKING_URI={uri} is not a tracking store MLflow can use "
                                 f"({error_line(e)}); use http://host:port, sqlite:///path/mlflow.db, "
                                 "postgresql://..., or unset it for results/mlflow.db") from None


def _check_sqlite_tracking(uri: str) -> None:
    """A SQLite file that can be written where it is (MLflow makes missing folders, but retries a file it cannot
    open for about two minutes before a traceback), with the ``artifacts/`` folder ``bench.tracking`` puts
    beside it."""
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    fix = "point MLFLOW_TRACKING_URI at a writable folder (sqlite:////abs/path/mlflow.db) or unset it for " \
          "results/mlflow.db"
    problem = file_problem(path) or folder_problem(path.parent / "artifacts")
    if problem is not None:
        raise PreflightError(f"MLflow store {uri} cannot be written ({problem}); {fix}")


def _check_file_store(uri: str) -> None:
    """A bare folder or ``file:`` URI is MLflow's file store, in maintenance mode since MLflow 3: 3.17 refuses
    to open it unless ``MLFLOW_ALLOW_FILE_STORE=true``, and its own advice is a database. The suite's runs (logged
    models, datasets, saved views) are tested on SQLite and servers only; with MLflow's opt-out set, the folder
    must still be writable."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    folder = Path(uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):]
                  if uri.startswith("file:") else uri)
    if MLFLOW_ALLOW_FILE_STORE.get():
        problem = folder_problem(folder)
        if problem is not None:
            raise PreflightError(f"MLflow file store {uri} is not writable ({problem}); make it writable, or use "
                                 f"MLFLOW_TRACKING_URI=sqlite:///{folder.expanduser().absolute() / 'mlflow.db'}")
        return
    existing = " (an existing file store: copy it over with `mlflow migrate-filestore`)" \
        if (folder / "meta.yaml").exists() or (folder / "0").is_dir() else ""
    raise PreflightError(f"MLFLOW_TRACKING_URI={uri} is a folder: MLflow 3 no longer opens its file store there; "
                         f"use a database in it, MLFLOW_TRACKING_URI=sqlite:///"
                         f"{folder.expanduser().absolute() / 'mlflow.db'}{existing}, a server (http://host:port), "
                         "or unset it for results/mlflow.db")


def _check_sql_tracking(uri: str) -> None:
    """A database server must accept a connection within seconds (write grants cannot be seen without writing)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    shown = make_url(uri).render_as_string(hide_password=True)
    timeout = {"connect_timeout": 10} if uri.split(":", 1)[0].split("+")[0] in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout)
        with engine.connect():
            pass
        engine.dispose()
    except ImportError as e:  # the driver the URI names (a bare postgresql:// means psycopg 3 to SQLAlchemy)
        raise PreflightError(f"MLflow store {shown} needs a database driver that is not installed ({error_line(e)}); "
                             "install it, or name the installed one in the URI (postgresql+psycopg2://...)") from None
    except Exception as e:
        raise PreflightError(f"cannot reach the MLflow database {shown} ({error_line(e)}); start it or fix "
                             "MLFLOW_TRACKING_URI, or unset it for results/mlflow.db") from None

