"""Section 4, a sweep's per-trial overhead: everything a trial does but compress and fine-tune (loading the data and
the baseline, measuring, tracking), with the work done once (issue 18, item 7) and as before it, side by side.

Both arms run the same trial through ``bench.pipeline.run_experiment``: one operating point on every seed, each
with its shuffled control, as ``make bench`` runs it. The "before" arm passes ``work_once=False``: every seed
reloads and re-checks the dataset and bakes the model once per metric, as every run did before. A trial's
overhead is its wall time less the compress and fine-tune seconds its runs record.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, pair_ratios, threads

SEEDS = 2
ARMS = ("method", "shuffled")


@contextmanager
def _results_in(folder: str) -> Iterator[None]:
    """Baselines cached under ``folder`` for the section's duration (the user's results/ stays untouched)."""
    before = os.environ.get("COMPRESSION_BENCH_RESULTS")
    os.environ["COMPRESSION_BENCH_RESULTS"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COMPRESSION_BENCH_RESULTS", None)
        else:
            os.environ["COMPRESSION_BENCH_RESULTS"] = before


def trial_config(settings: Settings):
    """magnitude at 4x on LeNet-300-100 (one-epoch baseline and fine-tune: their time is not overhead)."""
    from bench.config import ExperimentConfig
    from bench.recipes import TrainRecipe

    options = {"train_limit": settings.train_limit} if settings.train_limit else None
    return ExperimentConfig.create(dataset=settings.dataset, dataset_options=options, model="lenet300",
                                   method="magnitude", ratio=4.0, baseline=TrainRecipe(epochs=1, lr=1e-2),
                                   finetune=TrainRecipe(epochs=1, lr=1e-3), accelerator="cpu")


def trial_overhead(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    from bench.pipeline import load_data, run_experiment
    from bench.tracking import Tracker

    config = trial_config(settings)
    with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp, _results_in(tmp), threads(settings.threads):
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db")
        seeds = [dataclasses.replace(config, seed=s) for s in range(SEEDS)]
        for seeded in seeds:  # trains and caches each seed's baseline, logs its baseline and control runs
            run_experiment(seeded, tracker, arms=ARMS)

        def arm(work_once: bool) -> Callable[[], float]:
            def run() -> float:
                load_data(config)  # a sweep loads its data before its first trial (``run_sweep``)
                start = time.perf_counter()
                results = [run_experiment(seeded, tracker, arms=ARMS, work_once=work_once) for seeded in seeds]
                wall = time.perf_counter() - start
                inside = sum(r.metrics.get("compress_seconds", 0.0) + r.metrics["finetune_seconds"]
                             for result in results for r in [result, *result.controls])
                return wall - inside
            return run

        times = alternate({"before": arm(False), "after": arm(True)}, settings.trial_repeats, warmup=0)
    subject = f"magnitude 4x lenet300, {SEEDS} seeds, method + shuffled"
    condition = f"{settings.dataset}" + (f" (first {settings.train_limit} training images)" if settings.train_limit else "")
    rows.append(Row("trial", subject, condition, "before_seconds", times["before"], "s"))
    rows.append(Row("trial", subject, condition, "after_seconds", times["after"], "s"))
    rows.append(Row("trial", subject, condition, "before/after", pair_ratios(times["before"], times["after"]), "x"))
    notes.append("trial overhead: one trial = `run_experiment` on each seed with its shuffled control, wall time less "
                 "the compress and fine-tune seconds the runs record; \"before\" is `work_once=False`.")
