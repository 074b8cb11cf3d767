"""Optuna storages and studies: one multi-objective study per method/dataset/model (and settings).

Default storage is a SQLite file under results/; any Optuna storage URL works (PostgreSQL for several
machines), and ``journal:PATH`` selects the journal-file storage. RDB storages run with heartbeats, so a
trial whose worker died (SIGKILL, power loss) is marked FAIL once its heartbeat is stale, and the
tracked MLflow runs it left RUNNING are closed as KILLED.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.config import results_dir

OBJECTIVES = ("val_acc_top1", "compression_ratio")  # both maximised
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20


class StorageError(RuntimeError):
    """An Optuna storage URL that is malformed or cannot be reached."""


def default_storage_url() -> str:
    path = results_dir() / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class CloseKilledRuns:
    """Heartbeat callback: a stale trial's MLflow runs still RUNNING become KILLED."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def __call__(self, study: Any, trial: Any) -> None:
        from bench.tracking import Tracker

        tracker = Tracker(self.tracking_uri)
        for run_id in trial.user_attrs.get("mlflow_run_ids", []):
            try:
                if tracker.client.get_run(run_id).info.status == "RUNNING":
                    tracker.finish(run_id, "KILLED")
            except Exception:  # a run that never reached the store: nothing to close
                pass


def quiet_optuna() -> None:
    """Heartbeats and fail_stale_trials are marked experimental; they are what crash recovery needs."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Optuna 5 deprecates the sampler's constraints_func for Trial.set_constraint, but optuna-dashboard
    # 0.21 (the newest) shows feasibility only from what constraints_func records; see bench.sweep.
    warnings.filterwarnings("ignore", message="`constraints_func` has been deprecated", category=FutureWarning)


def _with_postgres_driver(url: str) -> str:
    """Name the installed PostgreSQL driver in a bare ``postgresql://`` (or Heroku-style ``postgres://``) URL.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, while the dev extra installs psycopg2
    (``psycopg2-binary``); a URL that names its driver (``postgresql+psycopg://``) is left alone.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{driver}{sep}{rest}"
    raise StorageError(f"storage {url!r} needs a PostgreSQL driver: pip install psycopg2-binary "
                       "(it is in the dev extra: pip install -e '.[dev]')")


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], tracking_uri: str, attempts: int = 6) -> Any:
    """RDBStorage, retried while another machine is creating the same fresh schema: concurrent CREATE TABLEs
    on one new database collide (PostgreSQL: a unique violation in pg_type); once one wins, the tables exist."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=CloseKilledRuns(tracking_uri))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def make_storage(url: str | None, tracking_uri: str) -> Any:
    """An Optuna storage for ``url`` (None: the default SQLite file); raises StorageError clearly."""
    import optuna
    import sqlalchemy.exc

    quiet_optuna()
    url = url or default_storage_url()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):]).expanduser()
        if not path.parent.is_dir():
            raise StorageError(f"journal storage directory {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise StorageError(f"storage {url!r} is not a URL; use e.g. sqlite:///results/optuna.db, "
                           "postgresql://user:pass@host/db, or journal:/path/to/file.log")
    url = _with_postgres_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the write lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return _rdb_storage(url, engine_kwargs, tracking_uri)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as e:
        raise StorageError(f"storage URL {url!r} is malformed ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    except ImportError as e:  # a URL naming a driver that is not installed (mysql://, postgresql+pg8000://)
        raise StorageError(f"storage {url!r}: {e}; install the database driver it names") from None
    except sqlalchemy.exc.OperationalError as e:
        raise StorageError(f"cannot reach storage {url!r}: {str(e.orig).strip().splitlines()[0]}") from None


@contextmanager
def study_lock(storage: Any, name: str, timeout: float = 300.0, stale_after: float = 120.0) -> Iterator[None]:
    """A mutex across processes and machines for check-then-act steps on one study (finding or creating
    the sweep's parent run, enqueuing the missing grid points), built from the storage's unique study names
    so it works on every Optuna storage. A lock older than ``stale_after`` seconds (its holder died) is broken.
    """
    import optuna
    from optuna.study import StudyDirection

    lock_name = f"{name}#lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock_id = storage.create_new_study([StudyDirection.MINIMIZE], lock_name)
            storage.set_study_user_attr(lock_id, "acquired", time.time())
            break
        except optuna.exceptions.DuplicatedStudyError:
            try:
                holder = storage.get_study_id_from_name(lock_name)
                acquired = storage.get_study_user_attrs(holder).get("acquired")
                if acquired is not None and time.time() - acquired > stale_after:
                    storage.delete_study(holder)
                    continue
            except KeyError:  # released between our attempt and the look-up
                continue
            if time.monotonic() > deadline:
                raise StorageError(f"study {name!r} stayed locked for {timeout:.0f}s by another worker "
                                   f"(lock study {lock_name!r}); delete it if no sweep is running") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        try:
            storage.delete_study(lock_id)
        except KeyError:  # broken as stale by another process
            pass
