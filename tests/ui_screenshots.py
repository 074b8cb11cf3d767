"""The README's screenshots of the MLflow UI and optuna-dashboard, made by clicking through them in headless
Chromium with Playwright, exactly as the README describes (``make screenshots``; needs the ``e2e`` extra and
Debian's chromium, which that target installs).

Three small studies (magnitude, rate-distortion, coreset on scikit-learn's digits, an MLP, ratios 2-128,
2 seeds, protocol ``fair`` with 5 dense epochs, 2 more and one learning rate, each method with its control) go into
fresh stores in a temporary folder; then, in the MLflow UI opened at the comparison link ``make ui`` prints
(a saved view, ``bench.ui_view``: no search typed, no column picked): the runs table grouped by the ``group``
tag (mean over seeds per point), its chart view (test and validation accuracy against log2 of the achieved
ratio, one point per group), and the Models tab; in optuna-dashboard: a trial's page with its artifacts, and
the study's note.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_e2e_ui import BIN, FLAGS, _free_port, _start, _stop, _wait_http  # noqa: E402

from bench.paths import REPO  # noqa: E402
METHODS = ("magnitude", "rate-distortion", "coreset")


def _sweeps(env: dict[str, str], storage: str) -> None:
    for method in METHODS:
        subprocess.run([sys.executable, "-m", "bench", "bench", "--method", method, "--dataset", "digits",
                        "--model", "mlp", "--model-option", "widths=(512, 512, 512, 16)",
                        "--ratios", "2,4,8,16,32,64,128", "--seeds", "2", "--epochs", "5", "--finetune-epochs", "2",
                        "--finetune-lr", "1e-3", "--storage", storage, "--quiet", "--no-progress"],
                       env=env, cwd=REPO, check=True)


def _mlflow_pages(page, link: str, out: Path) -> None:
    page.goto(link)
    page.wait_for_timeout(5000)
    close = page.get_by_role("button", name="Close")  # MLflow 3's assistant panel
    if close.count():
        close.first.click()
    page.screenshot(path=str(out / "mlflow-runs-grouped.png"))
    page.locator("label:has(input[value=CHART])").first.click()
    page.wait_for_timeout(4000)
    page.screenshot(path=str(out / "mlflow-chart.png"))
    page.goto(link.split("/runs?")[0] + "/models?workflowType=machine_learning")
    page.wait_for_timeout(4000)
    page.screenshot(path=str(out / "mlflow-models.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "results" / "reference" / "ui"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "COMPRESSION_BENCH_RESULTS": tmp, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        _sweeps(env, storage)
        mlflow_port, dashboard_port = _free_port(), _free_port()
        servers = [
            _start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--default-artifact-root",
                    str(tmp_path / "artifacts")], env, tmp_path / "mlflow.log"),
            _start([str(BIN / "optuna-dashboard"), "--host", "127.0.0.1", "--port", str(dashboard_port),
                    "--artifact-dir", str(tmp_path / "optuna-artifacts"), storage], env, tmp_path / "dashboard.log"),
        ]
        try:
            tracking = f"http://127.0.0.1:{mlflow_port}"
            _wait_http(f"{tracking}/health")
            _wait_http(f"http://127.0.0.1:{dashboard_port}/")
            links = subprocess.run([sys.executable, "-m", "bench", "links", "--url", tracking], env=env, cwd=REPO,
                                   capture_output=True, text=True, check=True).stdout
            link = next(line.split()[-1] for line in links.splitlines() if line.strip().startswith("comparison fair-"))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=[f for f in FLAGS if not f.startswith(("--headless", "--virtual"))])
                page = browser.new_page(viewport={"width": 1500, "height": 950})
                _mlflow_pages(page, link, out)
                dashboard = f"http://127.0.0.1:{dashboard_port}/dashboard/studies/1"
                page.goto(f"{dashboard}/trials")
                page.wait_for_timeout(3000)
                page.mouse.wheel(0, 600)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(out / "dashboard-trial-artifacts.png"))
                page.goto(f"{dashboard}/note")
                page.wait_for_timeout(3000)
                page.screenshot(path=str(out / "dashboard-note.png"))
                browser.close()
        finally:
            for proc in servers:
                _stop(proc)
    for png in sorted(out.glob("*.png")):
        print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
