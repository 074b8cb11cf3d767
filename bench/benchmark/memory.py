"""Section 5, memory: peak RSS of a ``python -m bench run`` and of a lean MLflow server."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.benchmark.processes import run_measured
from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_server_rss(workdir: Path) -> tuple[int, list[int]]:
    """Peak RSS (KiB, summed over the server's process tree) of a lean MLflow server after a few
    requests; the server is stopped by its PID afterwards. Returns (peak, per-process peaks)."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--workers", "1", "--host", "127.0.0.1",
            "--port", str(port), "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
            "--default-artifact-root", str(workdir / "artifacts")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the MLflow server did not start ({' '.join(argv)})") from None
                time.sleep(0.5)
        for path in ("/", "/api/2.0/mlflow/experiments/search?max_results=10"):
            urllib.request.urlopen(base + path, timeout=30).read()
        pids = [proc.pid] + _children(proc.pid)
        peaks = [_vm_hwm_kib(p) for p in pids]
        return sum(peaks), peaks
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers by process group (never by remembered PIDs, which may be reused)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def memory(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        env = {**os.environ, "COMPRESSION_BENCH_RESULTS": tmp, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
        argv = [sys.executable, "-m", "bench", "run", "--method", "magnitude", "--dataset", settings.dataset,
                "--ratio", "8", "--epochs", "1", "--finetune-epochs", "1", "--protocol", "quick", "--threads", str(settings.threads)]
        seconds, peak, code = run_measured(argv, env)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with status {code}")
        notes.append(f"memory run: `{' '.join(['python'] + argv[1:])}` took {seconds:.1f} s (one run, load-dependent).")
        rows.append(Row("memory", "python -m bench run", "fashion-mnist, 8x, 1+1 epochs", "peak_rss_mib", [peak / 1024], "MiB"))
        total, peaks = mlflow_server_rss(Path(tmp))
        rows.append(Row("memory", "mlflow server (lean)", f"{len(peaks)} processes, after 2 requests", "peak_rss_mib",
                        [total / 1024], "MiB"))
