"""Section 6, tracking cost: a sweep with MLflow logged models and system metrics vs without."""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Callable

from bench.benchmark.processes import run_measured
from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, pair_ratios


def tracking_argv(settings: Settings) -> list[str]:
    """A ``make bench METHOD=magnitude``-shaped sweep (fair protocol: each point with its shuffled control,
    the dense + fine-tune control), cut to two ratios, one seed and one lr candidate to time it repeatedly."""
    argv = [sys.executable, "-m", "bench", "bench", "--method", "magnitude", "--dataset", settings.dataset,
            "--model", "lenet300", "--ratios", "4,16", "--seeds", "1", "--finetune-lr", "0.001",
            "--threads", str(settings.threads), "--quiet", "--no-progress"]
    return argv + (["--train-limit", str(settings.train_limit)] if settings.train_limit else [])


def tracking_cost(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    """The same sweep with logged models and system metrics (the default) vs with both switched off, run
    alternately, each in fresh MLflow/Optuna stores that share one trained baseline cache (so the ratio is the
    cost of tracking, not of training a baseline)."""
    import shutil

    lean = ["--no-log-models", "--no-system-metrics"]
    argv = tracking_argv(settings)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        env = {**os.environ, "COMPRESSION_BENCH_RESULTS": f"{tmp}/warm", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
        _, _, code = run_measured(argv + lean, env)  # trains and caches the baseline once
        if code != 0:
            raise RuntimeError(f"{shlex.join(argv)} exited with status {code}")

        def arm(extra: list[str]) -> Callable[[], float]:
            def run() -> float:
                results = Path(tempfile.mkdtemp(dir=tmp))
                shutil.copytree(Path(tmp) / "warm" / "baselines", results / "baselines")
                seconds, _, status = run_measured(argv + extra, {**env, "COMPRESSION_BENCH_RESULTS": str(results)})
                if status != 0:
                    raise RuntimeError(f"{shlex.join(argv + extra)} exited with status {status}")
                return seconds
            return run

        times = alternate({"full": arm([]), "lean": arm(lean)}, settings.tracking_repeats, warmup=0)
    condition = "fresh stores, cached baseline"
    rows.append(Row("tracking", "models + system metrics", condition, "full_seconds", times["full"], "s"))
    rows.append(Row("tracking", "models + system metrics", condition, "lean_seconds", times["lean"], "s"))
    rows.append(Row("tracking", "models + system metrics", condition, "full/lean",
                    pair_ratios(times["full"], times["lean"]), "x"))
    notes.append(f"tracking command: `python -m bench {shlex.join(argv[3:])}` (full) and the same with "
                 f"`{' '.join(lean)}` (lean).")
