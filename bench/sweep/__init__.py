"""Sweeps: an Optuna study over compression ratios (and method hyperparameters), one MLflow parent run.

A trial is an operating point (ratio, learning-rate candidate, method parameters) evaluated on every
seed; each seed is one nested MLflow run per arm (the method and the protocol's controls for it), and the
trial's run ids are a user attribute. The study maximises the *validation* accuracy and the achieved
compression ratio; test accuracy is logged beside them for the figures. The protocol (``bench.protocol``)
gives the learning-rate candidates, the controls and the budget, and its label is part of the study name.

Modes: ``grid`` runs every (ratio, lr) pair of the protocol's operating points and candidates, each
exactly once across workers and machines (``_claim_and_run``); ``tpe`` suggests the ratio on a log scale
(1.5–64 by default), the lr among the candidates, and the method's own search space.

What optuna-dashboard shows: the objectives by name, the study's note (protocol in words, the command, the
MLflow parent run), each trial's artifacts (every seed's report and per-layer table, in the Optuna artifact
store under ``results/optuna-artifacts``), and the achieved-ratio constraint (feasible within ±3 %;
unreachable points are infeasible).

Re-running the same command resumes: completed points are not repeated, failed or killed ones are retried
(up to ``max_retries``), and points the method cannot reach are recorded once (an MLflow run of kind

The package, one file a job: ``plan`` (``SweepConfig``, ``GridPoint``, ``SweepSummary``), ``reach`` (a TPE range clipped to
what the method reaches), ``objective`` (one trial on every seed; the sampler and its constraint), ``grid``
(claiming missing grid points), ``workers`` (the worker loop and spawned workers), ``progress`` (messages and
the bar), ``study_record`` (the parent run, the study's note, the Pareto front), ``stages`` (what a tune, confirm or every-seed point trains), ``front`` (the measured points' Pareto front) and ``run`` (``run_sweep``).
"""
from bench.sweep.plan import DEFAULT_RATIOS, SweepConfig, SweepSummary
from bench.sweep.objective import Objective, ratio_constraint
from bench.sweep.progress import SweepProgress
from bench.sweep.reach import reachable_range
from bench.sweep.study_record import study_note
from bench.sweep.run import run_sweep
from bench.sweep.workers import worker_loop

__all__ = ["DEFAULT_RATIOS", "Objective", "SweepConfig", "SweepProgress", "SweepSummary", "reachable_range",
           "ratio_constraint", "run_sweep", "study_note", "worker_loop"]
