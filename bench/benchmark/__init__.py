"""The suite's own performance benchmark (issue 10): ``python -m bench.benchmark [--quick]``.

Machines here are shared and noisy, so every speed figure is a ratio of two things measured side by
side in one process: the arms alternate (A, B, A, B, ...), each is repeated, and the report gives the
median with the min-max of the per-pair ratios. Absolute times appear only next to the ratio they form.

Sections (issue 10's numbering):
1. harness overhead: one training epoch through ``bench.training.fit`` vs a plain PyTorch loop;
2. compress-step cost at 8x on LeNet-300-100 and its growth with MLP width (fitted exponent);
3. deployed speed: theoretical (FLOPs) vs measured latency speedup of ``deployable`` at batch 1 / 256;
4. sweep wall time: ``time_commands`` is the hook (not run by default; pass ``--sweep LABEL=COMMAND``); and a
   sweep's per-trial overhead (all but compress and fine-tune) before and after the work done once (issue 18); and
   SAP with 30 rounds vs 3 at the same optimiser steps, the fixed cost of an iterative method's rounds (issue 24);
5. memory: peak RSS of a ``python -m bench run`` and of a lean MLflow server;
6. tracking cost: a sweep with MLflow logged models and system metrics vs without (target <= 1.10x).

The package, one file a job: ``settings`` (what to measure, the targets), ``timing`` (alternating arms), ``harness``
(1), ``compress_cost`` (2), ``deployed`` (3), ``processes`` (4, and the child-process probe), ``trial_overhead`` (4,
a sweep's per-trial overhead), ``round_cost`` (4, the rounds' fixed cost), ``memory`` (5), ``tracking_cost`` (6),
``rows`` (the CSV), ``markdown_report``, ``plot`` and ``cli`` (``run`` and ``main``).

Writes ``report.md``, ``speedup.png`` and ``benchmark_<torch>_t<threads>_<cpu>.csv`` (long format, one
row per measured quantity) under ``--out`` (default ``results/benchmark``).
"""
from bench.benchmark.cli import main, run
from bench.benchmark.harness import plain_epoch
from bench.benchmark.processes import time_commands
from bench.benchmark.rows import CSV_COLUMNS, Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, fit_exponent, pair_ratios

__all__ = ["CSV_COLUMNS", "Row", "Settings", "alternate", "fit_exponent", "main", "pair_ratios", "plain_epoch", "run",
           "time_commands"]
