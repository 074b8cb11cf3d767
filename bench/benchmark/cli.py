"""``python -m bench.benchmark``: the command line, and ``run``, which measures every section in turn and writes
the report, CSV and figure."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from bench.benchmark.compress_cost import compress_cost, train_time_epochs
from bench.benchmark.deployed import csr_crossover, deploy_subjects, deployed_speed
from bench.benchmark.harness import overhead
from bench.benchmark.memory import memory
from bench.benchmark.plot import plot
from bench.benchmark.processes import time_commands
from bench.benchmark.markdown_report import conditions, csv_name, report
from bench.benchmark.round_cost import round_cost
from bench.benchmark.rows import Row, write_csv
from bench.benchmark.settings import REPO, Settings
from bench.benchmark.timing import progress, threads
from bench.benchmark.tracking_cost import tracking_cost
from bench.benchmark.trial_overhead import trial_overhead


def load_data(settings: Settings):
    import datasets

    options = {"train_limit": settings.train_limit} if settings.train_limit else {}
    return datasets.get(settings.dataset, **options)


def trained_lenet300(data, settings: Settings) -> nn.Module:
    from bench.models import create_model
    from bench.recipes import TrainRecipe
    from bench.training import fit

    model = create_model("lenet300", data.input_shape, data.num_classes, seed=0)
    with threads(settings.threads):
        fit(model, TrainRecipe(epochs=settings.baseline_epochs, lr=1e-3), data, 0, accelerator="cpu")
    return model.eval()


def run(settings: Settings, out_dir: Path, sweeps: Sequence[tuple[str, str]] = (), command: str = "") -> Path:
    """Measure everything, write the report, CSV and figure into ``out_dir``; returns the report's path."""
    import methods

    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(settings.methods) or methods.list_methods()
    structured = {label for label, name, _ in deploy_subjects(names) if methods.get(name).structured}
    data = load_data(settings)
    rows: list[Row] = []
    notes: list[str] = []
    if 1 in settings.sections:
        progress("1/6 harness overhead")
        overhead(data, settings, rows, notes)
    if {2, 3} & set(settings.sections):
        base = trained_lenet300(data, settings)
        progress("2/6 compress cost")
        compress_cost(data, base, names, settings, rows)
        if settings.train_time:
            train_time_epochs(data, base, names, settings, rows)
        progress("3/6 deployed speed")
        deployed_speed(data, base, names, settings, rows)
        csr_crossover(settings, rows)
    if sweeps:
        progress("4/6 sweep wall time")
        time_commands(sweeps, rows=rows)
    if settings.trial_repeats and 4 in settings.sections:
        progress("4/6 per-trial overhead")
        trial_overhead(settings, rows, notes)
    if settings.rounds_repeats and 4 in settings.sections:
        progress("4/6 an iterative method's rounds")
        round_cost(settings, rows, notes)
    if settings.memory and 5 in settings.sections:
        progress("5/6 memory")
        memory(settings, rows, notes)
    if settings.tracking_repeats and 6 in settings.sections:
        progress("6/6 tracking cost")
        tracking_cost(settings, rows, notes)
    cond = conditions(settings)
    csv_file = csv_name(cond)
    write_csv(out_dir / csv_file, rows)
    plot(rows, [label for label, _, _ in deploy_subjects(names)], out_dir / "speedup.png")
    text = report(rows, settings, cond, names, structured, notes, time.perf_counter() - start, csv_file,
                  command or "python -m bench.benchmark")
    path = out_dir / "report.md"
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmark",
                                description="The suite's own performance benchmark: python -m bench.benchmark [--quick].")
    p.add_argument("--quick", action="store_true", help="fewer repeats, a training subset, no memory runs (~1 min)")
    p.add_argument("--out", default=str(REPO / "results" / "benchmark"), help="report folder")
    p.add_argument("--dataset", default=None, help="dataset (default fashion-mnist)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: every registered one)")
    p.add_argument("--models", default=None, help="comma-separated models for the overhead section")
    p.add_argument("--no-memory", action="store_true", help="skip section 5")
    p.add_argument("--no-trial-overhead", action="store_true", help="skip section 4's per-trial overhead")
    p.add_argument("--no-tracking", action="store_true", help="skip section 6")
    p.add_argument("--trial-only", action="store_true", help="run section 4's per-trial overhead alone (a few minutes)")
    p.add_argument("--no-rounds", action="store_true", help="skip section 4's SAP 30-vs-3-rounds row")
    p.add_argument("--rounds-only", action="store_true",
                   help="run section 4's SAP 30-vs-3-rounds row alone (about 5 minutes)")
    p.add_argument("--tracking-only", action="store_true", help="run section 6 alone (about 5 minutes)")
    p.add_argument("--sweep", action="append", default=[], metavar="LABEL=COMMAND",
                   help="time a whole command for section 4 (repeatable)")
    args = p.parse_args(argv)
    settings = Settings.quick_settings() if args.quick else Settings()
    changes: dict[str, object] = {}
    if args.dataset:
        changes["dataset"] = args.dataset
    if args.train_limit:
        changes["train_limit"] = args.train_limit
    if args.methods:
        changes["methods"] = tuple(m for m in args.methods.split(",") if m)
    if args.models:
        changes["overhead_models"] = tuple(m for m in args.models.split(",") if m)
    if args.no_memory:
        changes["memory"] = False
    if args.no_trial_overhead:
        changes["trial_repeats"] = 0
    if args.no_tracking:
        changes["tracking_repeats"] = 0
    if args.no_rounds:
        changes["rounds_repeats"] = 0
    if args.trial_only:
        changes.update(sections=(4,), rounds_repeats=0)
    if args.rounds_only:
        changes.update(sections=(4,), trial_repeats=0)
    if args.tracking_only:
        changes["sections"] = (6,)
    settings = dataclasses.replace(settings, **changes)
    sweeps = [tuple(s.split("=", 1)) for s in args.sweep]
    if any(len(s) != 2 for s in sweeps):
        p.error("--sweep takes LABEL=COMMAND")
    command = "python -m bench.benchmark " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    path = run(settings, Path(args.out), sweeps, command.strip())
    print(path)
    return 0

