"""End to end: the comparison view that ``python -m bench links`` (and the end of ``make bench``) prints opens,
in a real MLflow UI in headless Chromium driven by Playwright, on the runs of one protocol grouped by operating
point, and its chart holds one point per group — every ratio of every method and control, not the first 10
(MLflow's default hides all but the first 10 runs or groups from charts). Beside it: every compressed run
reaches its logged model by its ``logged_model`` tag (more than 50 models: past the UI's own Models column),
the README's searches separate the methods from their control arms, and optuna-dashboard receives ``ratio``
and ``lr`` as log-scale numbers, so its plots order the operating points.

Skipped, saying so, where Debian's chromium or Playwright (the ``e2e`` extra) is missing; ``make test-e2e``
installs both.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from test_e2e_ui import BIN, CHROMIUM, FLAGS, _free_port, _start, _stop, _wait_http

pytestmark = pytest.mark.e2e
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[e2e]')")
METHODS = ("magnitude", "rate-distortion", "lq")
RATIOS = "2,4,8,16,32,64,128"
WIDTHS = (512, 512, 512, 16)  # a narrow last layer: the unpruned classifier and biases still allow 128x


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; `make test-e2e` installs it")
def test_the_printed_comparison_link_charts_every_group(tmp_path):
    from bench.paths import REPO

    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "COMPRESSION_BENCH_RESULTS": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for method in METHODS:  # 3 methods x 7 ratios x 2 seeds, each with its shuffled control, under `fair`
        done = subprocess.run([sys.executable, "-m", "bench", "bench", "--method", method, "--dataset", "digits",
                               "--model", "mlp", "--model-option", f"widths={WIDTHS}", "--ratios", RATIOS, "--seeds", "2", "--epochs", "1",
                               "--finetune-epochs", "1", "--finetune-lr", "1e-2", "--storage", storage, "--quiet",
                               "--no-progress"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr
    port = _free_port()
    servers = [_start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--default-artifact-root",
                     str(tmp_path / "artifacts")], env, tmp_path / "mlflow.log")]
    try:
        tracking = f"http://127.0.0.1:{port}"
        _wait_http(f"{tracking}/health")
        links = subprocess.run([sys.executable, "-m", "bench", "links", "--url", tracking], env=env, cwd=REPO,
                               capture_output=True, text=True, timeout=120, check=True).stdout
        (link,) = [line.split()[-1] for line in links.splitlines() if line.strip().startswith("comparison fair-")]
        assert "viewStateShareKey=comparison-fair-" in link

        from mlflow import MlflowClient

        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name("digits/mlp")
        protocol_hash = link.rsplit("-", 1)[-1]
        shown = client.search_runs([experiment.experiment_id],
                                   f"tags.protocol_hash = '{protocol_hash}' and tags.chosen = 'yes'",
                                   max_results=10_000)
        groups = {r.data.tags["group"] for r in shown if "acc_top1" in r.data.metrics}
        arms = {r.data.tags["arm"] for r in shown if r.data.tags.get("kind") == "compressed"}
        ratios = {r.data.tags["requested_ratio"] for r in shown if r.data.tags.get("kind") == "compressed"}
        assert arms == {"method", "shuffled"} and len(ratios) == 7
        assert len(groups) > 10  # more than the UI's default of 10 charted groups, or this test proves nothing
        # The view shows the verdict's points: one group per (method, arm, ratio), every seed in it, the chosen
        # configuration; the other candidates tuned on seed 0 are tagged chosen = 'no'.
        cells = Counter((r.data.tags["variant"], r.data.tags["arm"], r.data.tags["requested_ratio"]) for r in shown
                        if r.data.tags.get("kind") == "compressed")
        assert set(cells.values()) == {2}
        assert len({r.data.tags["group"] for r in shown if r.data.tags.get("kind") == "compressed"}) == len(cells)
        assert client.search_runs([experiment.experiment_id], "tags.chosen = 'no'", max_results=10)

        # Every compressed run (chosen or not) reaches its logged model through its tag, past the UI's page of 50.
        compressed = client.search_runs([experiment.experiment_id], "tags.kind = 'compressed'", max_results=10_000)
        assert len(compressed) > len([r for r in shown if r.data.tags.get("kind") == "compressed"])
        assert len(client.search_logged_models([experiment.experiment_id], max_results=1000)) > 50
        for run in compressed:
            model = client.get_logged_model(run.data.tags["logged_model"].removeprefix("models:/"))
            assert model.source_run_id == run.info.run_id
        # The README's searches: the methods alone, the control arms alone.
        exp = [experiment.experiment_id]
        methods_only = client.search_runs(exp, "tags.kind = 'compressed' and tags.arm = 'method'", max_results=10_000)
        controls_only = client.search_runs(exp, "tags.arm != 'method'", max_results=10_000)
        assert {r.data.tags["arm"] for r in methods_only} == {"method"}
        assert {r.data.tags["arm"] for r in controls_only} == {"shuffled"}
        assert len(methods_only) + len(controls_only) == len(compressed)

        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=[f for f in FLAGS if not f.startswith(("--headless", "--virtual"))])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(link)
            page.wait_for_timeout(5000)
            # The comparison's columns are on the first screen (header cells of the runs table).
            page_columns = {c.strip() for c in page.locator("[role=columnheader]").all_inner_texts()}
            # The first screen is the comparison: grouped, filtered to the protocol, no search typed.
            assert page.get_by_text("Group by: group").count() >= 1
            assert protocol_hash in page.get_by_test_id("search-box").input_value()
            page.locator("label:has(input[value=CHART])").first.click()
            page.wait_for_timeout(4000)
            charts = page.locator(".js-plotly-plot")
            assert charts.count() == 2  # test and validation accuracy against log2 of the achieved ratio
            points = charts.first.locator(".scatterlayer .point").count()
            page.screenshot(path=str(tmp_path / "comparison-chart.png"))
            browser.close()
        assert points == len(groups), f"{points} points charted for {len(groups)} groups"
        # the answer's columns on the first screen (the rest, lr to logged_model, a scroll to the right)
        assert page_columns >= {"method", "arm", "requested_ratio", "compression_ratio", "acc_top1", "val_acc_top1"}

        # optuna-dashboard gets the grid's ratio and lr as log-scale numbers, which its plots sort as numbers.
        dashboard_port = _free_port()
        servers.append(_start([str(BIN / "optuna-dashboard"), "--host", "127.0.0.1", "--port", str(dashboard_port),
                               storage], env, tmp_path / "dashboard.log"))
        _wait_http(f"http://127.0.0.1:{dashboard_port}/")
        import json
        import urllib.request

        import optuna

        for summary in optuna.get_all_study_summaries(storage):
            url = f"http://127.0.0.1:{dashboard_port}/api/studies/{summary._study_id}"
            detail = json.loads(urllib.request.urlopen(url, timeout=30).read())
            params = {p["name"]: p["distribution"] for t in detail["trials"] for p in t["params"]}
            assert params["ratio"]["type"] == params["lr"]["type"] == "FloatDistribution"
            assert params["ratio"]["log"] and params["lr"]["log"]
    finally:
        for proc in servers:
            _stop(proc)
