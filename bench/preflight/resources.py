"""The size of the work: bounds on seeds and workers, and an estimate printed before a study starts.

Bounds (past them only with ``--allow-large``, ``make ... ALLOW_LARGE=1``, or ``allow_large=True``):

- **seeds ≤ 10** (``MAX_SEEDS``). Each seed trains its own dense baseline and then every point of the study
  again, so the work grows linearly with seeds, while what seeds buy, the paired 95 % interval of the verdict,
  narrows only as t(n-1)/√n: 2.48 at 3 seeds, 0.72 at 10, 0.47 at 20. Ten is where more seeds stop changing
  a verdict of the size this suite reports, and far beyond any protocol's default (1 to 3); ``--seeds 1000`` is
  a typo for 10 or 100 that would train baselines one after another for days.
- **workers ≤ the CPU cores this process may use** (``max_workers``: the affinity mask, which also reflects
  ``taskset`` and most container limits). Each worker is a process with one torch thread and its own copy of
  the dataset, so a worker beyond the cores only time-slices with the others: the study takes as long and
  holds more memory (Fashion-MNIST: about 1.7 GiB per process).

The estimate counts the trainings the study asks for and their epochs from the protocol: each seed's
dense baseline, the dense + fine-tune control at each learning-rate candidate, and every arm of every trial
on every seed. Under an equal-budget protocol each arm's epochs are the protocol's (E for an arm that starts
from the baseline, baseline + E for one trained from scratch); under other protocols the figure is what the
protocol's recipes set, and methods that train inside their own rounds (iterative pruning) or train themselves
(train-time methods under ``quick``) add to it. It is an upper bound otherwise: cached baselines and points
already tracked are reused, and early stopping may end a training sooner. No wall time is printed: it depends
on the data, the model and the machine, which the protocol does not know.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from bench.preflight.environment import PreflightError

MAX_SEEDS = 10
PAST_THE_BOUND = "pass --allow-large (make ... ALLOW_LARGE=1; allow_large=True in Python) if you mean it"


def max_workers() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkEstimate:
    """The trainings a study asks for, by kind, and their epochs (see the module docstring)."""

    seeds: int
    baseline_epochs: int
    controls: int  # dense + fine-tune controls: seeds x learning-rate candidates (seed 0 only when tuned there)
    control_epochs: int
    arm_trainings: int  # every arm of every trial on every seed it runs on
    arm_epochs: int  # their epochs together
    detail: str  # how the trials make up the arms' trainings
    equal_budget: bool

    @property
    def trainings(self) -> int:
        return self.seeds + self.controls + self.arm_trainings

    @property
    def epochs(self) -> int:
        return self.seeds * self.baseline_epochs + self.controls * self.control_epochs + self.arm_epochs

    def total(self) -> str:
        return f"up to {self.trainings:,} trainings, {self.epochs:,} epochs"

    def line(self) -> str:
        more = "" if self.equal_budget else " (plus what methods train themselves: iterative rounds, train-time training)"
        return (f"work: {self.total()}{more}: {self.seeds} baseline(s) x "
                f"{self.baseline_epochs} ep, {self.controls} dense + fine-tune control(s) x {self.control_epochs} ep, "
                f"{self.detail}; cached baselines and tracked points are reused")


def estimate(sweep: Any) -> WorkEstimate:
    """The work of the study ``sweep`` (a ``bench.sweep.SweepConfig``), from its protocol and plan.

    Tuned on seed 0 (``Protocol.tuning``), a ratio trains the method at every configuration on seed 0, the chosen
    one on the other seeds, each control at every lr on seed 0 (the method compressed again to derive it) and at
    its chosen lr on the other seeds (compressed again when that lr is not the method's)."""
    import methods
    from bench.controls import applicable_arms

    template, protocol = sweep.template, sweep.template.protocol
    method = methods.build(template.method, dict(template.method_params))
    arms = applicable_arms(method, protocol.controls)
    extra = protocol.extra_epochs if protocol.equal_budget else protocol.finetune.epochs
    from_scratch = protocol.baseline.epochs + extra

    def epochs(arm: str) -> int:
        return from_scratch if _from_scratch(arm, method) and protocol.equal_budget else extra

    per_seed = sum(epochs(arm) for arm in arms)
    lrs, seeds = len(sweep.lrs), sweep.seeds
    if not sweep.tuned_on_seed0:
        trials = sweep.target
        return WorkEstimate(seeds, protocol.baseline.epochs, seeds * lrs, protocol.finetune_recipe(sweep.lrs[0]).epochs,
                            trials * seeds * len(arms), trials * seeds * per_seed,
                            f"{trials} trial(s) x {seeds} seed(s) x {len(arms)} arm(s) = {per_seed} ep per trial and seed",
                            protocol.equal_budget)
    ratios, configurations = len(sweep.ratios), lrs * len(sweep.settings_candidates)
    controls = arms[1:]
    # one control training, with the method compressed again to derive it (a method's own epochs, counted whole)
    derived = sum(epochs(c) + epochs("method") for c in controls)
    trainings = ratios * (configurations + (seeds - 1) + len(controls) * 2 * (lrs + seeds - 1))
    arm_epochs = ratios * ((configurations + seeds - 1) * epochs("method") + (lrs + seeds - 1) * derived)
    return WorkEstimate(seeds, protocol.baseline.epochs, lrs + (seeds - 1), protocol.finetune_recipe(sweep.lrs[0]).epochs,
                        trainings, arm_epochs,
                        f"per ratio {configurations} configuration(s) of the method on seed 0, the chosen one on "
                        f"{seeds - 1} more seed(s), {len(controls)} control(s) at {lrs} lr(s) on seed 0 and the chosen "
                        f"lr on the other seeds", protocol.equal_budget)


def _from_scratch(arm: str, method: Any) -> bool:
    """Whether an arm trains from random initialisation (baseline + E) rather than from the baseline (E)."""
    if arm == "method":
        return method.family == "train-time"
    from bench.controls import get_control

    return get_control(arm).trains == "scratch"


def check_resources(configs: Sequence[Any], sweep: Any = None, *, allow_large: bool = False) -> None:
    """Refuse seeds or workers past the bounds unless ``allow_large``; before a study, print its estimate."""
    seeds = sweep.seeds if sweep is not None else len({c.seed for c in configs})
    workers = sweep.workers if sweep is not None else 1
    if not allow_large:
        if seeds > MAX_SEEDS:
            size = f" ({estimate(sweep).total()})" if sweep is not None else ""
            raise PreflightError(f"--seeds {seeds} is more than {MAX_SEEDS}: each seed trains its own baseline and "
                                 f"every point again{size}; use --seeds {MAX_SEEDS} or fewer, or {PAST_THE_BOUND}")
        cores = max_workers()
        if workers > cores:
            raise PreflightError(f"--workers {workers} is more than the {cores} CPU core(s) this process may use: "
                                 f"extra workers only share the cores and each holds its own copy of the data; use "
                                 f"--workers {cores} or fewer, or {PAST_THE_BOUND}")
    if sweep is not None:
        print(estimate(sweep).line(), flush=True)
