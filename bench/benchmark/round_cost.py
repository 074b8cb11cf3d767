"""Section 4, an iterative method's rounds (issue 24): SAP at 32x with 30 rounds vs 3 rounds at the same optimiser
steps, side by side. Under an equal-budget protocol the rounds share the arm's steps with the final fine-tune
(``Method.planned_finetunes``), so both arms train exactly as many steps; what 30 rounds cost beyond 3 is the
fixed cost of a round (building a fit, validating, pruning, evaluating, logging), the tax this row watches.

Both arms run one trial through ``bench.pipeline.run_experiment`` as a sweep runs it: one seed, the method and its
shuffled control, under protocol ``fair`` (its baseline, trained once before timing, its extra budget E and
cosine fine-tune). The step counts the runs record are checked equal before timing.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Callable

from bench.benchmark.rows import Row, cell, find
from bench.benchmark.settings import ROUNDS_TARGET, Settings
from bench.benchmark.timing import alternate, pair_ratios, progress, threads
from bench.benchmark.trial_overhead import _results_in

ROUNDS = (30, 3)  # SAP's default rounds, and the few rounds it is compared with
ARMS = ("method", "shuffled")
SUBJECT = "sap 32x lenet300 lr 1e-2, 1 seed, method + shuffled, fair"


def rounds_config(settings: Settings, rounds: int):
    """SAP at 32x under ``fair`` with ``rounds`` rounds (the protocol's baseline, trained once and not timed: a
    shorter one can be refused as no better than chance on small data)."""
    from bench.config import ExperimentConfig
    from bench.protocol_registry import get_protocol

    options = {"train_limit": settings.train_limit} if settings.train_limit else None
    return ExperimentConfig.for_protocol(get_protocol("fair"), lr=1e-2, dataset=settings.dataset,
                                         dataset_options=options, model="lenet300", method="sap", ratio=32.0,
                                         method_params={"rounds": rounds}, accelerator="cpu")


def steps_charged(results) -> dict[str, int]:
    """Optimiser steps each arm of a trial charged to its budget."""
    return {r.arm: int(r.metrics["train_steps_charged"]) for r in [results, *results.controls]}


def round_cost(settings: Settings, rows: list[Row], notes: list[str]) -> None:
    from bench.pipeline import load_data, run_experiment
    from bench.tracking import Tracker

    configs = {n: rounds_config(settings, n) for n in ROUNDS}
    with tempfile.TemporaryDirectory(prefix="bench-rounds-") as tmp, _results_in(tmp), threads(settings.threads):
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db")
        load_data(configs[ROUNDS[0]])
        steps = {n: steps_charged(run_experiment(c, tracker, arms=ARMS)) for n, c in configs.items()}  # warm-up
        progress(f"   optimiser steps per arm: " + "; ".join(f"{n} rounds {s}" for n, s in steps.items()))
        if len({tuple(sorted(s.items())) for s in steps.values()}) != 1:
            raise RuntimeError(f"the arms train different numbers of optimiser steps ({steps}): the comparison "
                               f"would not be at equal steps")

        def arm(rounds: int) -> Callable[[], float]:
            def run() -> float:
                start = time.perf_counter()
                run_experiment(configs[rounds], tracker, arms=ARMS)
                return time.perf_counter() - start
            return run

        times = alternate({f"{n} rounds": arm(n) for n in ROUNDS}, settings.rounds_repeats, warmup=0)
    many, few = (times[f"{n} rounds"] for n in ROUNDS)
    condition = f"{settings.dataset}" + (f" (first {settings.train_limit} training images)" if settings.train_limit else "")
    condition += f", {settings.threads} threads, {steps[ROUNDS[0]]['method']} steps per arm"
    extra = ROUNDS[0] - ROUNDS[1]
    rows.append(Row("rounds", SUBJECT, condition, f"rounds{ROUNDS[0]}_seconds", many, "s"))
    rows.append(Row("rounds", SUBJECT, condition, f"rounds{ROUNDS[1]}_seconds", few, "s"))
    rows.append(Row("rounds", SUBJECT, condition, f"rounds{ROUNDS[0]}/rounds{ROUNDS[1]}", pair_ratios(many, few), "x"))
    rows.append(Row("rounds", SUBJECT, condition, "seconds_per_extra_round",
                    [(a - b) / extra for a, b in zip(many, few)], "s"))
    notes.append(f"rounds: one trial = `run_experiment` on SAP at 32x (method + shuffled control), {ROUNDS[0]} rounds vs "
                 f"{ROUNDS[1]} at the same optimiser steps per arm ({steps[ROUNDS[0]]}); seconds per extra round = the "
                 f"pair's difference over the {extra} extra rounds.")


def rounds_section(rows: list[Row], notes: list[str]) -> list[str]:
    """The report's lines for this row."""
    got = {r.quantity: r for r in find(rows, "rounds")}
    out = [f"### An iterative method's rounds (target <= {ROUNDS_TARGET:.1f}x)", ""]
    if not got:
        return out + ["Not measured in this run (`--no-rounds` skips it).", ""]
    many, few = (got[f"rounds{n}_seconds"] for n in ROUNDS)
    ratio = got[f"rounds{ROUNDS[0]}/rounds{ROUNDS[1]}"]
    fastest = min(many.values) / min(few.values)
    verdict = "met" if statistics.median(ratio.values) <= ROUNDS_TARGET else "MISSED"
    out += [f"{ratio.subject}; {ratio.condition}.", "",
            f"| {ROUNDS[0]} rounds s | {ROUNDS[1]} rounds s | ratio per pair | fastest/fastest | s per extra round | target |",
            "|---|---|---|---|---|---|",
            f"| {cell(many)} | {cell(few)} | {cell(ratio)} | {fastest:.2f} | {cell(got['seconds_per_extra_round'])} "
            f"| {verdict} |", ""]
    return out + [f"- {n}" for n in notes if n.startswith("rounds:")] + [""]
