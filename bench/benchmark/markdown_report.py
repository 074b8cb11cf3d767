"""``report.md``: the machine's conditions and one section per measurement, with the targets' verdicts."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

import torch

from bench.benchmark.deployed import deploy_subjects
from bench.benchmark.round_cost import rounds_section
from bench.benchmark.rows import Row, cell, find, median_of
from bench.benchmark.settings import (COMPRESS_TARGET_MS, OVERHEAD_TARGET, STRUCTURED_TARGETS, TRACKING_TARGET,
                                      Settings)
from bench.benchmark.timing import fit_exponent


def conditions(settings: Settings) -> dict[str, str]:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"torch": torch.__version__, "threads": str(settings.threads), "cpu": cpu,
            "cores": str(os.cpu_count()), "python": platform.python_version(),
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg())}


def csv_name(cond: dict[str, str]) -> str:
    cpu = "".join(c if c.isalnum() else "-" for c in cond["cpu"]).strip("-")
    while "--" in cpu:
        cpu = cpu.replace("--", "-")
    return f"benchmark_torch{cond['torch'].split('+')[0]}_t{cond['threads']}_{cpu}.csv"



def structured_verdicts(rows: list[Row], names: list[str], structured: set[str]) -> list[str]:
    """Issue 10's structured target: measured >= 0.8 x theoretical up to 4x, >= 0.7 x at about 10x (batch 256)."""
    lines = []
    for name in [n for n in names if n in structured]:
        for variant in ("eager", "lean"):
            for r in find(rows, "deployed", name, quantity="theoretical_speedup"):
                got = find(rows, "deployed", name, f"{r.condition} b256", f"{variant}_speedup")
                if not got:
                    continue
                theory, per_pair = median_of(r), median_of(got[0])
                need = next((f for bound, f in STRUCTURED_TARGETS if theory <= bound * 1.25), None)
                if need is None:
                    continue
                ref = "dense_ms" if variant == "eager" else "dense_lean_ms"
                fastest = (min(find(rows, "deployed", name, f"{r.condition} b256", ref)[0].values)
                           / min(find(rows, "deployed", name, f"{r.condition} b256", f"{variant}_ms")[0].values))
                frac = fastest / theory
                verdict = "met" if frac >= need else f"MISSED by {need - frac:.2f}"
                lines.append(f"| {name} | {variant} | {r.condition} | {theory:.2f} | {per_pair:.2f} | {fastest:.2f} | "
                             f"{frac:.2f} | {need:.1f} | {verdict} |")
    return lines


def report(rows: list[Row], settings: Settings, cond: dict[str, str], names: list[str], structured: set[str],
           notes: list[str], elapsed: float, csv_file: str, command: str) -> str:
    out = [f"# Benchmark: the suite's own speed ({'quick' if settings.quick else 'full'})", "",
           f"Command: `{command}`. Torch {cond['torch']}, {cond['cpu']} ({cond['cores']} cores), Python "
           f"{cond['python']}; training at {settings.threads} threads, latency at 1 thread. Load average at the "
           f"end: {cond['load_average']} (the machine is shared: read the ratios, not the absolute times). "
           f"Took {elapsed / 60:.1f} min. Data: `{csv_file}`.", "",
           "Every ratio comes from arms run alternately in one process; cells read `median (min-max)` over repeats. "
           "Under heavy shared load the per-pair ratios swing widely, so verdicts use the ratio of the fastest "
           "repeats (the least-disturbed estimate of each arm's own cost); the per-pair median is shown beside it.", ""]
    out += ["## 1. Harness overhead (target <= 1.2x)", "",
            "One epoch through `bench.training.fit` (Lightning, in-memory grouped batches, manual optimisation, "
            "per-epoch validation and best-epoch selection) vs a plain loop over the same `TensorBatches` with "
            "the same Adam, seed and one validation pass.", "",
            "| model | suite s | plain s | suite/plain per pair | fastest/fastest | target |", "|---|---|---|---|---|---|"]
    for model in settings.overhead_models:
        r = find(rows, "overhead", model)
        if r:
            by = {x.quantity: x for x in r}
            fastest = min(by["suite_seconds"].values) / min(by["plain_seconds"].values)
            out.append(f"| {model} | {cell(by['suite_seconds'])} | {cell(by['plain_seconds'])} | "
                       f"{cell(by['suite/plain'], '.3f')} | {fastest:.3f} | "
                       f"{'met' if fastest <= OVERHEAD_TARGET else f'MISSED by {fastest - OVERHEAD_TARGET:.2f}'} |")
    out += [""] + [f"- {n}" for n in notes if "identical" in n] + [""]

    out += ["## 2. Compress-step cost (target <= 50 ms post-training on LeNet-300-100; near-linear growth)", "",
            "`compress` alone at 8x, 1 thread, with a no-op fine-tune/fit in the context: iterative methods make "
            "all their rounds without training between them; train-time methods (lma, multihash) only build "
            "their untrained model (their training is timed below). LeNet-300-100 trained "
            f"{settings.baseline_epochs} epoch(s); the width sweep uses seeded random-init MLPs.", "",
            "| method | family | LeNet-300-100 ms | exponent (cost ~ params^e) | widths: ms |", "|---|---|---|---|---|"]
    import methods as registry
    for name in names:
        lenet = find(rows, "compress", name)
        scale = find(rows, "scaling", name)
        sizes = [int(r.quantity.split("@")[1]) for r in scale]
        exp = fit_exponent(sizes, [median_of(r) for r in scale]) if len(scale) >= 2 else float("nan")
        family = registry.get(name).family
        target = "" if family == "train-time" else (" (met)" if lenet and median_of(lenet[0]) <= COMPRESS_TARGET_MS
                                                     else " (MISSED)")
        widths = ", ".join(f"{s / 1e6:.2g}M: {median_of(r):.0f}" for s, r in zip(sizes, scale))
        out.append(f"| {name} | {family} | {cell(lenet[0], '.1f') if lenet else '-'}{target} | {exp:.2f} | {widths} |")
    train_rows = find(rows, "train-time", quantity="method/dense")
    if train_rows:
        out += ["", "Train-time methods' own training, one epoch of their 8x model vs one epoch of dense LeNet-300-100 "
                f"({settings.threads} threads):", "", "| method | method s | dense s | method/dense |", "|---|---|---|---|"]
        for r in train_rows:
            a = find(rows, "train-time", r.subject, quantity="epoch_seconds")[0]
            b = find(rows, "train-time", r.subject, quantity="dense_epoch_seconds")[0]
            out.append(f"| {r.subject} | {cell(a)} | {cell(b)} | {cell(r)} |")
    out += [""]

    out += ["## 3. Deployed speed", "",
            "Theoretical speedup = dense MACs / (MACs x weight density) from `bench.metrics.flops`; measured = "
            "dense latency / compressed latency of `bench.export.deployable(model)`, 1 thread, the two alternating. "
            "Compressed without fine-tuning from the LeNet-300-100 above (lma/multihash: untrained students, "
            "which run at the same speed; `lma[relu]` is its ReLU student). `eager` = `deployable(model)` as is "
            "(inference mode, no hooks) vs the dense model's; `lean` = `bench.export.lean` of it (TorchScript trace + "
            "freeze + optimize_for_inference; CSR forms fall back to eager) vs the dense model made lean the same way.",
            "", "![measured vs theoretical](speedup.png)", "",
            "| method | ratio | theoretical | b1 eager | b1 lean | b256 eager | b256 lean |", "|---|---|---|---|---|---|---|"]
    for name in [label for label, _, _ in deploy_subjects(names)]:
        for r in find(rows, "deployed", name, quantity="theoretical_speedup"):
            cells = []
            for batch in (1, 256):
                for variant in ("eager", "lean"):
                    got = find(rows, "deployed", name, f"{r.condition} b{batch}", f"{variant}_speedup")
                    cells.append(cell(got[0]) if got else "-")
            out.append(f"| {name} | {r.condition} | {median_of(r):.2f} | " + " | ".join(cells) + " |")
    lines = structured_verdicts(rows, [label for label, _, _ in deploy_subjects(names)], structured)
    if lines:
        out += ["", "Structured target at batch 256 (>= 0.8 x theoretical up to 4x, >= 0.7 x near 10x):", "",
                "| method | form | ratio | theoretical | measured per pair | measured fastest | fraction | needed | verdict |",
                "|---|---|---|---|---|---|---|---|---|"] + lines
    dense_ms = {b: find(rows, "deployed", condition=None, quantity="dense_ms") for b in (1, 256)}
    b1 = [median_of(r) for r in dense_ms[1] if r.condition.endswith("b1")]
    b256 = [median_of(r) for r in dense_ms[256] if r.condition.endswith("b256")]
    if b1 and b256:
        out += ["", f"Dense LeNet-300-100 forward (eager, for scale only): {statistics.median(b1) * 1e3:.0f} us at batch 1, "
                f"{statistics.median(b256):.2f} ms at batch 256."]
    csr = find(rows, "csr")
    if csr:
        out += ["", "CSR vs dense on LeNet-300-100's first layer (784->300), speedup of `CSRLinear` over `nn.Linear`:",
                "", "| density | batch 1 | batch 256 |", "|---|---|---|"]
        for density in dict.fromkeys(r.condition.split()[1] for r in csr):
            cells = [cell(find(rows, "csr", condition=f"density {density} b{b}")[0]) for b in (1, 256)]
            out.append(f"| {density} | " + " | ".join(cells) + " |")
    out += [""]

    sweep = find(rows, "sweep")
    out += ["## 4. Sweep wall time", ""]
    if sweep:
        out += ["| command | quantity | value |", "|---|---|---|"] + [f"| {r.subject} | {r.quantity} | {cell(r)} |" for r in sweep]
    else:
        out += ["Whole commands: not measured in this run (the hook is `bench.benchmark.time_commands`; pass "
                "`--sweep LABEL=COMMAND`)."]
    out += [""] + trial_section(rows, notes) + rounds_section(rows, notes)

    mem = find(rows, "memory")
    out += ["## 5. Memory", ""]
    if mem:
        out += ["| process | condition | peak RSS MiB |", "|---|---|---|"] + [f"| {r.subject} | {r.condition} | {cell(r, '.0f')} |" for r in mem]
        out += [""] + [f"- {n}" for n in notes if n.startswith("memory")]
    else:
        out += ["Not measured in this run (`--quick` skips it; the full run measures it)."]

    out += ["", f"## 6. Tracking cost (target <= {TRACKING_TARGET:.2f}x)", ""]
    track = {r.quantity: r for r in find(rows, "tracking")}
    if track:
        fastest = min(track["full_seconds"].values) / min(track["lean_seconds"].values)
        verdict = "met" if fastest <= TRACKING_TARGET else f"MISSED by {fastest - TRACKING_TARGET:.2f}"
        out += ["Wall time of one sweep with MLflow logged models and system metrics (the default) vs with "
                "`--no-log-models --no-system-metrics`; both log dataset inputs, the study note and trial artifacts "
                "(those have no switch). Fresh stores per run, one cached baseline.", "",
                "| full s | lean s | full/lean per pair | fastest/fastest | target |", "|---|---|---|---|---|",
                f"| {cell(track['full_seconds'])} | {cell(track['lean_seconds'])} | {cell(track['full/lean'], '.3f')} | "
                f"{fastest:.3f} | {verdict} |", ""] + [f"- {n}" for n in notes if n.startswith("tracking")]
    else:
        out += ["Not measured in this run (`--no-tracking` skips it)."]
    return "\n".join(out) + "\n"


def trial_section(rows: list[Row], notes: list[str]) -> list[str]:
    """Section 4's per-trial overhead, before and after the work done once (issue 18, item 7)."""
    trial = {r.quantity: r for r in find(rows, "trial")}
    out = ["### Per-trial overhead (everything but compress and fine-tune)", ""]
    if not trial:
        return out + ["Not measured in this run (`--no-trial-overhead` skips it).", ""]
    r = trial["before/after"]
    fastest = min(trial["before_seconds"].values) / min(trial["after_seconds"].values)
    out += ["Loading the data and the baseline, measuring and tracking one trial of a sweep, with the dataset loaded "
            "and checked once per process and each model baked once per run (after) vs once per seed and once per "
            f"metric (before). {r.subject}; {r.condition}.", "",
            "| before s | after s | before/after per pair | fastest/fastest |", "|---|---|---|---|",
            f"| {cell(trial['before_seconds'])} | {cell(trial['after_seconds'])} | {cell(r)} | {fastest:.2f} |", ""]
    return out + [f"- {n}" for n in notes if n.startswith("trial overhead")] + [""]
