"""End to end: a tiny sweep into a real MLflow tracking server and Optuna storage, then the MLflow UI and
the Optuna dashboard rendered in headless Chromium, asserting the runs and the study appear.

Runs in `make test` where Debian's chromium is installed, and is skipped (saying so) elsewhere;
`make test-e2e` installs chromium and runs it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BIN = Path(sys.executable).parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=15000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read(1)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server and the workers it forked, by process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _render(url: str, profile: Path, screenshot: Path) -> str:
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
    subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1400,900", url],
                   capture_output=True, timeout=120)
    return subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; `make test-e2e` installs it and runs this")
def test_mlflow_ui_and_optuna_dashboard_show_the_sweep(tmp_path):
    mlflow_port, dashboard_port = _free_port(), _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "COMPRESSION_BENCH_RESULTS": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    servers = []
    try:
        servers.append(_start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--artifacts-destination", str(tmp_path / "served-artifacts")], env, tmp_path / "mlflow.log"))
        tracking = f"http://127.0.0.1:{mlflow_port}"
        _wait_http(f"{tracking}/health")
        from bench.paths import REPO as repo
        sweep = subprocess.run(
            [sys.executable, "-m", "bench", "bench", "--dataset", "digits", "--model", "mlp", "--ratios", "2,4",
             "--epochs", "1", "--finetune-epochs", "1", "--protocol", "quick", "--storage", storage, "--quiet"],
            env={**env, "MLFLOW_TRACKING_URI": tracking}, capture_output=True, text=True, timeout=600, cwd=repo)
        assert sweep.returncode == 0, sweep.stderr
        links = subprocess.run([sys.executable, "-m", "bench", "links", "--url", tracking],
                               env={**env, "MLFLOW_TRACKING_URI": tracking}, capture_output=True, text=True,
                               timeout=120, cwd=repo)
        assert links.returncode == 0, links.stderr
        servers.append(_start([str(BIN / "optuna-dashboard"), "--host", "127.0.0.1", "--port", str(dashboard_port),
                               "--artifact-dir", str(tmp_path / "optuna-artifacts"), storage], env,
                              tmp_path / "dashboard.log"))
        _wait_http(f"http://127.0.0.1:{dashboard_port}/")

        from mlflow import MlflowClient
        import optuna

        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name("digits/mlp")
        run_names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])}
        # Run names carry the ratio, the learning-rate candidate and the seed; the sweep's, the protocol.
        assert {"magnitude-2x-lr0.0001-s0", "magnitude-4x-lr0.0001-s0", "sweep-magnitude-quick-grid"} <= run_names

        # The link `make ui` prints opens the runs table ("Model training"), not MLflow 3's GenAI overview: it
        # lists the sweep's parent run (trial runs are nested under it, collapsed) beside the dense baseline and
        # control, with the dataset in the Dataset column; each trial run has its own page.
        (link,) = [line.split()[-1] for line in links.stdout.splitlines() if line.startswith("digits/mlp")]
        assert link == f"{tracking}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        dom = _render(link, tmp_path / "profile-mlflow", tmp_path / "mlflow-runs.png")
        for name in ("sweep-magnitude-quick-grid", "baseline-mlp-s0"):
            assert name in dom, f"{name} not rendered in the MLflow runs page"
        digest = client.get_run(client.search_runs([experiment.experiment_id], "tags.kind = 'baseline'")[0].info.run_id
                                ).inputs.dataset_inputs[0].dataset.digest
        assert digest in dom or "digits (" in dom, "the Dataset column does not show the dataset"
        assert (tmp_path / "mlflow-runs.png").stat().st_size > 10_000
        models = client.search_logged_models([experiment.experiment_id])
        assert len(models) == 3  # the baseline and the two compressed runs
        dom = _render(f"{tracking}/#/experiments/{experiment.experiment_id}/models?workflowType=machine_learning",
                      tmp_path / "profile-mlflow", tmp_path / "mlflow-models.png")
        assert "magnitude-2x-lr0_0001-s0" in dom, "the Models tab does not list the logged model"
        nested = client.search_runs([experiment.experiment_id], "tags.kind = 'compressed'")
        for run in nested:
            dom = _render(f"{tracking}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}",
                          tmp_path / "profile-mlflow", tmp_path / "mlflow-run.png")
            assert run.info.run_name in dom and "compression_ratio" in dom, run.info.run_name

        (summary,) = optuna.get_all_study_summaries(storage)  # the claim lock is no study
        dashboard = f"http://127.0.0.1:{dashboard_port}/dashboard/studies/{summary._study_id}"
        dom = _render(dashboard, tmp_path / "profile-dashboard", tmp_path / "dashboard-study.png")
        assert summary.study_name in dom and "val_acc_top1" in dom
        assert (tmp_path / "dashboard-study.png").stat().st_size > 10_000
        dom = _render(f"{dashboard}/note", tmp_path / "profile-dashboard", tmp_path / "dashboard-note.png")
        assert "Command." in dom and "protocol quick" in dom, "the study note is not shown"
        dom = _render(f"{dashboard}/trials", tmp_path / "profile-dashboard", tmp_path / "dashboard-trial.png")
        assert "report-seed0.json" in dom and "per_layer-seed0.csv" in dom, "the trial's artifacts are not shown"
        keep = os.environ.get("E2E_SCREENSHOTS")  # where `make test-e2e` users want the pictures
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for png in ("mlflow-runs.png", "mlflow-models.png", "dashboard-study.png", "dashboard-note.png",
                        "dashboard-trial.png"):
                shutil.copy(tmp_path / png, Path(keep) / png)
    finally:
        for proc in servers:
            _stop(proc)
    assert all(p.poll() is not None for p in servers)
