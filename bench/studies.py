"""Optuna storages and studies: one multi-objective study per method/dataset/model (and settings).

Default storage is a SQLite file under results/; any Optuna storage URL works (PostgreSQL for several
machines), and ``journal:PATH`` selects the journal-file storage. RDB storages run with heartbeats, so a
trial whose worker died (SIGKILL, power loss) is marked FAIL once its heartbeat is stale, and the
tracked MLflow runs it left RUNNING are closed as KILLED.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.config import results_dir

OBJECTIVES = ("val_acc_top1", "compression_ratio")  # both maximised
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20


# The file behind each journal storage ``make_storage`` built (Optuna's storage does not say it publicly).
_JOURNAL_FILES: "weakref.WeakKeyDictionary[Any, Path]" = weakref.WeakKeyDictionary()


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


class _NoInterruptTraceback(logging.Filter):
    """Drops Optuna's report of a trial interrupted by Ctrl-C (the record carrying the KeyboardInterrupt, or an
    error raised while handling one, and its traceback), and its "Trial n failed with value None." after any exception, which says nothing the line with
    the exception (or the sweep's own line for the trial) has not said."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        while error is not None:  # an error raised while a Ctrl-C was being handled counts as the Ctrl-C
            if isinstance(error, KeyboardInterrupt):
                return False
            error = error.__cause__ or error.__context__
        return not re.fullmatch(r"Trial \d+ failed with value None\.", record.getMessage())


def quiet_optuna() -> None:
    """Heartbeats and fail_stale_trials are marked experimental; they are what crash recovery needs."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ctrl-C is not a failure to explain: Optuna logs the interrupted trial with its traceback (30 lines) before
    # the CLI's one line. Other failed trials keep theirs.
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _NoInterruptTraceback) for f in handler.filters):
            handler.addFilter(_NoInterruptTraceback())
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


def _journal_path(url: str) -> Path:
    return Path(url[len("journal:"):]).expanduser()


def _require_url(url: str) -> None:
    """A storage that is not a journal file must be a URL (``scheme://...``)."""
    if "://" not in url:
        raise StorageError(f"storage {url!r} is not a URL; use e.g. sqlite:///results/optuna.db, "
                           "postgresql://user:pass@host/db, or journal:/path/to/file.log")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local workers share one file: wait for the write lock instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}}
    return {}


@contextmanager
def _explained(url: str) -> Iterator[None]:
    """What SQLAlchemy raises for a storage URL, as one StorageError line."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as e:
        raise StorageError(f"storage URL {url!r} is malformed ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    except ImportError as e:  # a URL naming a driver that is not installed (mysql://, postgresql+pg8000://)
        raise StorageError(f"storage {url!r}: {e}; install the database driver it names") from None
    except sqlalchemy.exc.OperationalError as e:
        raise StorageError(f"cannot reach storage {url!r}: {str(e.orig).strip().splitlines()[0]}") from None


def check_storage(url: str | None) -> None:
    """The Optuna storage ``url`` (None: the default SQLite file) can hold a study, checked without writing to it:
    a journal file or SQLite database whose folder exists and can be written (the file itself too, where it
    exists), or a database server that accepts a connection (the tables are made later, by ``make_storage``).
    Raises StorageError with the fix."""
    from bench.writable import file_problem

    if url is None:
        problem = file_problem(results_dir() / "optuna.db")
        if problem is not None:
            raise StorageError(f"the default Optuna storage results/optuna.db cannot be written ({problem}); make "
                               "it writable, or give --storage")
        return
    if url.startswith("journal:"):
        path = _journal_path(url)
        _check_storage_file(path, f"journal storage {path}", f"journal storage directory {path.parent} does not exist",
                            "journal:/path/in/a/writable/folder.log")
        return
    _require_url(url)
    import sqlalchemy
    from sqlalchemy.engine import make_url

    full = _with_postgres_driver(url)
    with _explained(url):
        parsed = make_url(full)
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                return
            path = Path(parsed.database)
            _check_storage_file(path, f"storage {url!r}", f"cannot reach storage {url!r}: folder {path.parent} does "
                                "not exist", "sqlite:////path/in/a/writable/folder.db")
            return
        engine = sqlalchemy.create_engine(full, **_engine_kwargs(full))
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()


def _check_storage_file(path: Path, what: str, missing: str, example: str) -> None:
    """A journal or SQLite file whose folder exists (Optuna's journal and SQLite, unlike MLflow, do not make it)
    and that can be written; nothing is written."""
    from bench.writable import file_problem

    if not path.parent.exists():
        raise StorageError(f"{missing}; create it (mkdir -p {path.parent}) or give --storage {example}")
    problem = file_problem(path)
    if problem is not None:
        raise StorageError(f"{what} cannot be written ({problem}); give --storage {example}")


def make_storage(url: str | None, tracking_uri: str) -> Any:
    """An Optuna storage for ``url`` (None: the default SQLite file); raises StorageError clearly."""
    quiet_optuna()
    url = url or default_storage_url()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = _journal_path(url)
        if not path.parent.is_dir():
            raise StorageError(f"journal storage directory {path.parent} does not exist")
        storage = JournalStorage(JournalFileBackend(str(path)))
        _JOURNAL_FILES[storage] = path.resolve()  # where study_lock keeps its lock files
        return storage
    _require_url(url)
    url = _with_postgres_driver(url)
    with _explained(url):
        return _rdb_storage(url, _engine_kwargs(url), tracking_uri)


@contextmanager
def study_lock(storage: Any, name: str, timeout: float = 300.0) -> Iterator[None]:
    """A mutex across processes (and, on a database server, machines) for check-then-act steps on one study:
    finding or creating the sweep's parent run, enqueuing the missing grid points.

    It lives outside Optuna's tables, so nothing of it shows in optuna-dashboard, and the operating system or
    the database releases it when its holder dies (no stale lock to break): a ``filelock`` beside a SQLite
    database or a journal file (one machine), a PostgreSQL advisory lock or a MySQL named lock (every
    machine that shares the server).
    """
    lock = _lock_for(storage, name)
    if not lock.acquire(timeout):
        raise StorageError(f"study {name!r} stayed locked for {timeout:.0f}s by another worker; is a sweep "
                           "of it still running?")
    try:
        yield
    finally:
        lock.release()


def _lock_key(name: str) -> str:
    """A study name as a short, file- and SQL-safe key (study names hold '/', '=' and spaces)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


class _FileLock:
    """``filelock`` on a file in a hidden folder beside the storage's file."""

    def __init__(self, beside: Path, name: str) -> None:
        from filelock import FileLock

        folder = beside.parent / f".{beside.name}.locks"
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(folder / f"{_lock_key(name)}.lock"))

    def acquire(self, timeout: float) -> bool:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=timeout)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self.lock.release()


class _ServerLock:
    """A named lock of the database server, held by one dedicated connection of the storage's engine: the
    server frees it when that connection ends, however its process ended."""

    SQL = {  # dialect: (try to take it now -> true when taken, release)
        "postgresql": ("SELECT pg_try_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:key, 0) = 1", "SELECT RELEASE_LOCK(:key)"),
    }

    def __init__(self, engine: Any, name: str) -> None:
        self.engine, self.take, self.give = engine, *self.SQL[engine.dialect.name]
        digest = _lock_key(name)
        # PostgreSQL's advisory locks take a 64-bit integer; MySQL's named locks a string of up to 64 characters.
        self.key = int(digest, 16) - (1 << 63) if engine.dialect.name == "postgresql" else f"bench-{digest}"
        self.connection: Any = None

    def acquire(self, timeout: float) -> bool:
        from sqlalchemy import text

        self.connection = self.engine.connect()
        deadline = time.monotonic() + timeout
        while True:
            taken = bool(self.connection.execute(text(self.take), {"key": self.key}).scalar())
            self.connection.commit()  # a session-level lock: the transaction need not stay open
            if taken:
                return True
            if time.monotonic() > deadline:
                self.connection.close()
                return False
            time.sleep(0.2)

    def release(self) -> None:
        from sqlalchemy import text

        try:
            self.connection.execute(text(self.give), {"key": self.key})
            self.connection.commit()
        finally:
            self.connection.close()


def _lock_for(storage: Any, name: str) -> Any:
    """The lock that fits the storage ``make_storage`` built."""
    import optuna

    if isinstance(storage, optuna.storages.JournalStorage) and storage in _JOURNAL_FILES:
        return _FileLock(_JOURNAL_FILES[storage], name)
    if isinstance(storage, optuna.storages.RDBStorage):
        dialect = storage.engine.dialect.name
        if dialect in _ServerLock.SQL:
            return _ServerLock(storage.engine, name)
        database = storage.engine.url.database
        if dialect == "sqlite" and database and database != ":memory:":
            return _FileLock(Path(database).resolve(), name)
    raise StorageError(f"no lock for sweeps on {type(storage).__name__} storage; use SQLite, PostgreSQL, MySQL "
                       "or journal:PATH")
