"""Several machines on one study (issue 9, part 3): Optuna on a real PostgreSQL server, one MLflow server.

A session fixture starts a throwaway PostgreSQL cluster (Debian's binaries, a temporary data directory,
127.0.0.1 and a free port; as the ``postgres`` user when we are root, since initdb refuses root) and a
lean MLflow tracking server; both are stopped by PID at the end. The sweep runs through the real CLI,
as ``make bench`` would on each machine. Skipped where PostgreSQL is not installed (``make test-scale``
installs it).
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from bench.studies import make_storage
from bench.tracking import Tracker
from test_parallel import RATIOS, REPO, WORKERS, assert_no_contention_errors, assert_one_run_per_trial

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them off PATH)."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0) if found else None


def _unavailable(reason: str) -> None:
    """Skip, or fail under ``make test-scale`` (COMPRESSION_BENCH_REQUIRE_POSTGRES=1), where skipping hides the point."""
    if os.environ.get("COMPRESSION_BENCH_REQUIRE_POSTGRES"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE on the throwaway server; returns its URL."""
    import psycopg2

    conn = psycopg2.connect(server_url + "/postgres", connect_timeout=10)
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{server_url}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the ``postgres`` system user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _wait_for(check, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s\n{tail}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://bench@127.0.0.1:PORT (no database): a throwaway cluster, stopped and deleted afterwards."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                     "`make test-scale` installs Debian's postgresql and runs these tests")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("the PostgreSQL driver is missing: pip install -e '.[dev]' (psycopg2-binary)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        _unavailable("running as root without runuser: cannot start PostgreSQL as the postgres user")
    # Under /tmp rather than pytest's tmp_path: the postgres user must reach it, and pytest's is 0700 root.
    base = Path(tempfile.mkdtemp(prefix="compression-bench-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
    data, log, port = base / "data", base / "server.log", _free_port()
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust",
                                      "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
    # Throwaway data: no fsync. Unix socket in our own directory (/var/run/postgresql may not exist).
    options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run(_as_postgres_user([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "60", "start"]),
                   check=True, capture_output=True)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://bench@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres_user([*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"]), capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # still there only if pg_ctl stop failed
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A lean MLflow tracking server (one worker, no job runner) on 127.0.0.1; its process group is stopped."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = tmp / "server.log"
    argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--workers", "1", "--host", "127.0.0.1",
            "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
            "--artifacts-destination", str(tmp / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, "mlflow server", timeout=120, log=log)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _bench_argv(storage: str, workers: int, epochs: int = 2) -> list[str]:
    # The tests share one tracking server, as studies do; a different baseline budget is a different study.
    return [sys.executable, "-m", "bench", "bench", "--method", "magnitude", "--dataset", "digits", "--model", "mlp",
            "--ratios", ",".join(f"{r:g}" for r in RATIOS), "--seeds", "1", "--epochs", str(epochs),
            "--finetune-epochs", "1", "--protocol", "quick",
            "--workers", str(workers), "--threads", "1", "--storage", storage,
            "--allow-large"]  # 3 workers may be more than the cores: contention on purpose, past the workers bound


def test_three_workers_against_postgres_and_a_tracking_server(postgres_url, mlflow_server, tmp_path):
    storage_url = _create_database(postgres_url, "workers")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "COMPRESSION_BENCH_RESULTS": str(tmp_path)}
    proc = subprocess.run(_bench_argv(storage_url, WORKERS), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_no_contention_errors(proc.stdout + proc.stderr)
    assert f"{len(RATIOS)} complete, 0 failed trials" in proc.stdout
    # Nothing went to the local default stores: the servers hold everything.
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()

    tracker = Tracker(mlflow_server)
    storage = make_storage(storage_url, mlflow_server)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert len(names) == 1
    assert_one_run_per_trial(optuna.load_study(study_name=names[0], storage=storage), tracker, names[0])


def test_three_machines_join_one_study(postgres_url, mlflow_server, tmp_path):
    """Three separate ``make bench`` runs started together, each with its own results/ (baseline cache), as
    on three machines: one study, one MLflow parent run, each grid point run once."""
    storage_url = _create_database(postgres_url, "machines")
    procs = []
    for machine in range(3):
        env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server,
               "COMPRESSION_BENCH_RESULTS": str(tmp_path / f"machine{machine}")}
        procs.append(subprocess.Popen(_bench_argv(storage_url, 1, epochs=1), cwd=REPO, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-4000:]
        assert_no_contention_errors(out + err)
    tracker = Tracker(mlflow_server)
    storage = make_storage(storage_url, mlflow_server)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert len(names) == 1
    assert_one_run_per_trial(optuna.load_study(study_name=names[0], storage=storage), tracker, names[0])
