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
``unreachable``, a PRUNED trial) and not retried.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.config import ExperimentConfig, _frozen, content_hash, results_dir
from bench.content import content_of
from bench.protocol import QUICK_RATIOS
from bench.studies import OBJECTIVES, make_storage, study_lock
from bench.tracking import TrackingOptions

DEFAULT_RATIOS = QUICK_RATIOS


@dataclass(frozen=True)
class SweepConfig:
    template: ExperimentConfig  # method, dataset, model, fixed method params, budgets; ratio and seed vary
    mode: Literal["grid", "tpe"] = "grid"
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    ratio_range: tuple[float, float] = (1.5, 64.0)
    trials: int | None = None  # tpe: completed trials wanted (grid: one per ratio)
    seeds: int = 1
    storage: str | None = None
    tracking_uri: str | None = None
    workers: int = 1
    max_retries: int = 2
    quiet: bool = False
    progress: bool = False  # Lightning's bars and the sweep's bar (the CLI: on when stderr is a terminal)
    tracking: TrackingOptions = TrackingOptions()
    artifact_dir: str | None = None  # Optuna artifact store (default results/optuna-artifacts)
    command: str = ""  # the command line that made the study, for its note

    def artifact_path(self) -> str:
        return self.artifact_dir or str(results_dir() / "optuna-artifacts")

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.mode == "tpe" and (self.trials is None or self.trials < 1):
            raise ValueError(f"tpe mode needs trials >= 1, got {self.trials}")
        lo, hi = self.ratio_range
        if not 1 < lo < hi:
            raise ValueError(f"ratio range must satisfy 1 < low < high, got {self.ratio_range}")

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning-rate candidates every point is run at (the protocol's)."""
        return self.template.protocol.lr_candidates

    @property
    def points(self) -> list[tuple[float, float]]:
        """Grid mode's (ratio, lr) pairs."""
        return [(r, lr) for r in self.ratios for lr in self.lrs]

    @property
    def target(self) -> int:
        return len(self.points) if self.mode == "grid" else int(self.trials)

    def study_name(self) -> str:
        """method/dataset/model/protocol-hash/mode-<hash of what else makes points comparable>."""
        t = self.template
        settings = {"method_params": t.method_params, "dataset_options": t.dataset_options,
                    "model_options": t.model_options, "baseline": content_of(t.baseline),
                    "finetune": {k: v for k, v in content_of(t.finetune).items() if k != "lr"},
                    "protocol": t.protocol.content(), "seeds": self.seeds, "lrs": self.lrs,
                    "space": self.ratios if self.mode == "grid" else self.ratio_range}
        return f"{t.method}/{t.dataset}/{t.model}/{t.protocol.label}/{self.mode}-{content_hash(settings)[:8]}"


@dataclass
class SweepSummary:
    study_name: str
    parent_run_id: str
    complete: int
    failed: int
    pareto: list[dict[str, Any]] = field(default_factory=list)


def _log(cfg: SweepConfig, message: str) -> None:
    if not cfg.quiet:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)  # above a progress bar, when one is shown


def ratio_constraint(trial: Any) -> tuple[float]:
    """Optuna constraint (feasible when <= 0): the worst seed's relative miss of the requested ratio minus the
    ±3 % tolerance. An unreachable (PRUNED) point has no ratio and is infeasible; the dashboard greys it."""
    from bench.pipeline import RATIO_TOLERANCE

    miss = trial.user_attrs.get("ratio_error_max")
    return (1.0,) if miss is None else (float(miss) - RATIO_TOLERANCE,)


class _PinnedTrial:
    """A trial seen through the user's pinned method parameters: ``suggest_*`` of a pinned name returns the
    pinned value without adding it to the search space, so a pinned parameter is neither tuned nor shown
    as a trial parameter (the study name says it is fixed)."""

    def __init__(self, trial: Any, pinned: dict[str, Any]) -> None:
        self._trial, self._pinned = trial, pinned

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            return self._pinned[param] if param in self._pinned else attr(param, *args, **kwargs)

        return suggest


class Objective:
    """Evaluates one operating point on every seed; returns (mean val accuracy, mean achieved ratio)."""

    def __init__(self, cfg: SweepConfig, tracking_uri: str, parent_run_id: str) -> None:
        import methods
        from bench.tracking import Tracker

        self.cfg, self.parent_run_id = cfg, parent_run_id
        self.tracker = Tracker(tracking_uri, cfg.tracking)
        self.method_cls = methods.get(cfg.template.method)
        self.artifacts = None
        self.on_point: Any = None  # called with (trial number, ratio, lr) when a trial starts
        self.on_claimed: Any = None  # called first thing in a trial: a grid worker's claim is complete

    def __call__(self, trial: Any) -> tuple[float, float]:
        import optuna

        import methods
        from bench.arms import applicable_arms
        from bench.pipeline import find_tracked, record_unreachable, run_experiment

        if self.on_claimed is not None:
            self.on_claimed()
        cfg = self.cfg
        if cfg.mode == "grid":
            ratio = float(trial.suggest_categorical("ratio", list(cfg.ratios)))
            tuned: dict[str, Any] = {}
        else:
            ratio = trial.suggest_float("ratio", *cfg.ratio_range, log=True)
            tuned = self.method_cls.search_space(_PinnedTrial(trial, dict(cfg.template.method_params)))
        lr = float(trial.suggest_categorical("lr", list(cfg.lrs)))
        if self.on_point is not None:
            self.on_point(trial.number, ratio, lr)
        params = {**tuned, **dict(cfg.template.method_params)}  # what the user pinned is never overridden
        arms = applicable_arms(methods.build(cfg.template.method, params), cfg.template.protocol.controls)
        trial.set_user_attr("arms", list(arms))
        run_ids: list[str] = []

        def started(run_id: str) -> None:
            run_ids.append(run_id)
            trial.set_user_attr("mlflow_run_ids", list(run_ids))

        results = []
        tags = {"study": cfg.study_name(), "trial": trial.number}
        for seed in range(cfg.seeds):
            config = dataclasses.replace(cfg.template, ratio=ratio, seed=seed, method_params=_frozen(params),
                                         finetune=dataclasses.replace(cfg.template.finetune, lr=lr))
            tracked = find_tracked(self.tracker, config, arms)
            if tracked is not None:  # measured before (a study with fewer seeds, or a rerun): not trained again
                results.append(tracked)
                trial.set_user_attr("reused_runs", trial.user_attrs.get("reused_runs", 0) + len(arms))
                continue
            try:
                results.append(run_experiment(config, self.tracker, self.parent_run_id, progress=cfg.progress,
                                              on_run_start=started, extra_tags=tags, arms=arms))
            except methods.CompressionError as e:
                # Out of reach for this method and model (the same for every seed): recorded once, and the
                # trial is PRUNED so a resumed sweep does not retry it.
                trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
                record_unreachable(self.tracker, config, e, self.parent_run_id, tags)
                raise optuna.TrialPruned(str(e)) from None
            except Exception as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
                raise
        metrics = [r.metrics for r in results]

        def mean(key: str) -> float:
            return statistics.fmean(m[key] for m in metrics)

        def std(key: str) -> float:
            return statistics.stdev(m[key] for m in metrics) if len(metrics) > 1 else 0.0

        for key in ("acc_top1", "val_acc_top1", "compression_ratio", "theoretical_speedup", "measured_speedup",
                    "train_epochs_total"):
            trial.set_user_attr(f"{key}_mean", mean(key))
            trial.set_user_attr(f"{key}_std", std(key))
        trial.set_user_attr("controls", [{"arm": c.arm, "seed": c.config.seed, "run_id": c.run_id,
                                          "val_acc_top1": c.metrics["val_acc_top1"], "acc_top1": c.metrics["acc_top1"]}
                                         for r in results for c in r.controls])
        trial.set_user_attr("method_params", {k: str(v) for k, v in params.items()})
        trial.set_user_attr("ratio_error_max", max(abs(m["compression_ratio"] / ratio - 1) for m in metrics))
        self._upload(trial, results)
        return mean("val_acc_top1"), mean("compression_ratio")

    def _upload(self, trial: Any, results: list[Any]) -> None:
        """Each seed's report and per-layer table as the trial's artifacts (optuna-dashboard's Artifacts tab)."""
        import tempfile
        from pathlib import Path

        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        fresh = [r for r in results if r.artifacts]
        if not fresh:
            return  # every seed reused a tracked run: its artifacts are in MLflow
        if self.artifacts is None:
            Path(self.cfg.artifact_path()).mkdir(parents=True, exist_ok=True)
            self.artifacts = FileSystemArtifactStore(self.cfg.artifact_path())
        with tempfile.TemporaryDirectory() as tmp:
            for result in fresh:
                for name, text in result.artifacts.items():
                    stem, _, ext = name.rpartition(".")
                    path = Path(tmp) / f"{stem}-seed{result.config.seed}.{ext}"
                    path.write_text(text)
                    upload_artifact(artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial)


def _make_sampler(cfg: SweepConfig, worker: int) -> Any:
    """TPE with the ratio constraint. In grid mode every trial is enqueued with fixed parameters, so TPE never
    samples there; it only records each trial's constraint (what the dashboard shows as feasibility)."""
    import optuna

    seed = 1000 * cfg.template.seed + worker
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, cfg.target // 3)),
                                      constraints_func=ratio_constraint)


def _state_counts(study: Any) -> dict[str, int]:
    from collections import Counter

    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def worker_loop(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int = 0,
                threads: int | None = None, bar: "SweepProgress | None" = None) -> None:
    """Run trials until the study has enough (grid: no point left to claim; tpe: complete+running >= target)."""
    import optuna

    from bench.pipeline import set_threads

    set_threads(threads)
    storage = make_storage(cfg.storage, tracking_uri)
    study = optuna.load_study(study_name=cfg.study_name(), storage=storage, sampler=_make_sampler(cfg, worker))
    objective = Objective(cfg, tracking_uri, parent_run_id)
    if bar is not None:
        objective.on_point = bar.running
    callbacks = [lambda s, trial: _report_trial(cfg, s, trial, worker, bar)]
    while True:
        optuna.storages.fail_stale_trials(study)
        if cfg.mode == "grid":
            if not _claim_and_run(cfg, study, storage, objective, callbacks):
                return
            continue
        counts = _state_counts(study)
        if counts.get("COMPLETE", 0) + counts.get("RUNNING", 0) >= cfg.target:
            return
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)


def _claim_and_run(cfg: SweepConfig, study: Any, storage: Any, objective: Objective, callbacks: list) -> bool:
    """Run one grid point that no other worker runs, or return False when none is left.

    The claim is a critical section under the study's claim lock: enqueue the next missing point (or take a
    WAITING one a dead worker left), then ``study.optimize`` pops it; the objective releases the lock as its
    first act, once the trial is RUNNING. Workers therefore never pop the same trial (on SQLite the storage's
    own WAITING -> RUNNING check is not atomic across processes) and never find the queue empty inside
    ``optimize`` (where Optuna would create a fresh trial and the sampler fill it with a duplicate point).
    Only public Optuna calls are involved: ``enqueue_trial``, ``optimize``, trial states.
    """
    with contextlib.ExitStack() as claim:
        claim.enter_context(study_lock(storage, f"{cfg.study_name()}#claim"))
        if _state_counts(study).get("WAITING", 0) == 0:
            missing = _missing_grid_points(cfg, study)
            if not missing:
                return False
            ratio, lr = missing[0]
            study.enqueue_trial({"ratio": ratio, "lr": lr})
        objective.on_claimed = claim.close
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        finally:
            objective.on_claimed = None
    return True


def _report_trial(cfg: SweepConfig, study: Any, trial: Any, worker: int, bar: "SweepProgress | None" = None) -> None:
    counts = _state_counts(study)
    if bar is not None:
        bar.update(study)
    head = f"[{counts.get('COMPLETE', 0)}/{cfg.target} complete, {counts.get('FAIL', 0)} failed] worker {worker} trial #{trial.number}"
    if trial.state.name == "COMPLETE":
        a = trial.user_attrs
        _log(cfg, f"{head}: ratio {trial.params['ratio']:g} lr {trial.params.get('lr', float('nan')):g} -> val {a['val_acc_top1_mean']:.4f} test {a['acc_top1_mean']:.4f} "
                  f"(achieved {a['compression_ratio_mean']:.2f}x), Pareto front size {len(study.best_trials)}")
    else:
        _log(cfg, f"{head}: {trial.state.name} {trial.user_attrs.get('error', '')}")


class SweepProgress:
    """The sweep's progress bar (tqdm, on stderr): trials finished of the target, the point(s) being run, and
    tqdm's rate and ETA. Lives in the main process; with several workers it polls the study."""

    def __init__(self, cfg: SweepConfig, study: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=cfg.target, initial=self._finished(study), unit="trial", file=sys.stderr,
                        desc=f"{cfg.template.method} {cfg.mode}", dynamic_ncols=True, smoothing=0)

    @staticmethod
    def _finished(study: Any) -> int:
        counts = _state_counts(study)
        return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0)

    def running(self, number: int, ratio: float, lr: float) -> None:
        self.bar.set_postfix_str(f"trial #{number}: {ratio:g}x lr {lr:g}")

    def update(self, study: Any) -> None:
        self.bar.update(max(0, min(self._finished(study), self.bar.total) - self.bar.n))
        points = [f"{t.params['ratio']:g}x lr {t.params.get('lr', float('nan')):g}"
                  for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING" and "ratio" in t.params]
        self.bar.set_postfix_str(f"running {', '.join(points)}" if points else "")

    def close(self) -> None:
        self.bar.close()


def _spawned_worker(cfg: SweepConfig, tracking_uri: str, parent_run_id: str, worker: int) -> None:
    from bench.plugins import load_plugins

    load_plugins(cfg.template.plugins)  # a spawned process starts with the built-in registries only
    # Two 2-thread training processes on 2 cores run 5-6x slower each: one thread per worker.
    worker_loop(cfg, tracking_uri, parent_run_id, worker, threads=1)


def _missing_grid_points(cfg: SweepConfig, study: Any) -> list[tuple[float, float]]:
    """Grid (ratio, lr) pairs with no COMPLETE, PRUNED (unreachable), WAITING or RUNNING trial and fewer than
    max_retries+1 failures."""
    busy, failures = set(), {}
    for t in study.get_trials(deepcopy=False):
        fixed = t.system_attrs.get("fixed_params", {})
        ratio, lr = t.params.get("ratio", fixed.get("ratio")), t.params.get("lr", fixed.get("lr"))
        if ratio is None or lr is None:
            continue
        point = (float(ratio), float(lr))
        if t.state.name in ("COMPLETE", "PRUNED", "WAITING", "RUNNING"):
            busy.add(point)
        elif t.state.name == "FAIL":
            failures[point] = failures.get(point, 0) + 1
    return [p for p in cfg.points if p not in busy and failures.get(p, 0) <= cfg.max_retries]


def _prepare_baselines(cfg: SweepConfig, tracker: Any) -> None:
    """Train/cache each seed's baseline and log its baseline and control runs once, before workers race."""
    from bench.baseline import ensure_baseline
    from bench.pipeline import ensure_baseline_run, ensure_control, load_data

    data = load_data(cfg.template)
    for seed in range(cfg.seeds):
        config = dataclasses.replace(cfg.template, seed=seed)
        baseline, trained = ensure_baseline(config, data, progress=cfg.progress)
        _log(cfg, f"baseline seed {seed}: {'trained' if trained else 'cached'}, test acc {baseline.test_acc:.4f}")
        ensure_baseline_run(tracker, config, baseline, data)
        for lr in cfg.lrs:  # the dense + fine-tune control is tuned over the same candidates as every method
            ensure_control(tracker, dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, lr=lr)),
                           baseline, data, progress=cfg.progress)


def _parent_run(cfg: SweepConfig, tracker: Any, study: Any) -> str:
    from bench.pipeline import experiment_name

    name = cfg.study_name()
    found = tracker.client.search_runs(
        [tracker.experiment_id(experiment_name(cfg.template))],
        f"tags.kind = 'sweep' and tags.study = '{name}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        tracker.client.update_run(run_id, status="RUNNING")
        return run_id
    t = cfg.template
    run_id = tracker.start(experiment_name(t), f"sweep-{t.method}-{t.protocol.name}-{cfg.mode}",
                           {"kind": "sweep", "study": name, "method": t.method, "dataset": t.dataset,
                            "model": t.model, "seed": "all", **t.protocol.tags(), "variant": t.variant()})
    params = {k: v for k, v in t.params().items() if k not in ("finetune.lr", "config_key", "requested_ratio")}
    tracker.log_params(run_id, {**params, "mode": cfg.mode, "seeds": cfg.seeds, "target_trials": cfg.target,
                                "ratios": ",".join(f"{r:g}" for r in cfg.ratios), "ratio_range": cfg.ratio_range,
                                "storage": cfg.storage or "default", **{f"method.{k}": v for k, v in t.method_params}})
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


def _wait_for_running(cfg: SweepConfig, study: Any, timeout: float) -> None:
    """Let trials of other (or dead) workers finish or go stale, so the study can be completed."""
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        if _state_counts(study).get("RUNNING", 0) == 0:
            return
        time.sleep(2)


def reachable_range(cfg: SweepConfig) -> SweepConfig:
    """A TPE sweep whose ratio range ends where the method can reach on this model (``Method.max_ratio``),
    so no trial is sampled out of reach; raises CompressionError when the whole range is beyond it."""
    from bench.baseline import build_model
    from bench.pipeline import build_method, load_data
    from methods import CompressionError

    if cfg.mode != "tpe":
        return cfg
    t = cfg.template
    reach = build_method(t).max_ratio(build_model(t, load_data(t)))
    low, high = cfg.ratio_range
    if reach is None or high <= reach:
        return cfg
    if reach <= low:
        raise CompressionError(f"--ratio-range {low:g},{high:g} is out of reach: {t.method} reaches at most {reach:.1f}x "
                               f"on {t.model}; use --ratio-range {min(low, 1.5):g},{reach:.3g}")
    scale = 10 ** (3 - math.floor(math.log10(reach)))
    clipped = math.floor(reach * scale) / scale  # 4 significant digits, rounded down: never above the reach
    _log(cfg, f"ratio range {low:g}-{high:g} clipped to {low:g}-{clipped:g}: {t.method} reaches at most "
              f"{reach:.2f}x on {t.model}")
    return dataclasses.replace(cfg, ratio_range=(low, clipped))


def run_sweep(cfg: SweepConfig) -> SweepSummary:
    """Create or resume the study, run the workers, and log the Pareto front on the parent run."""
    import optuna

    from bench.pipeline import build_method, load_data
    from bench.studies import GRACE_SECONDS, HEARTBEAT_SECONDS
    from bench.tracking import Tracker, default_tracking_uri

    build_method(cfg.template)  # parameter errors before anything is written
    load_data(cfg.template)  # missing data too
    cfg = reachable_range(cfg)  # a TPE study samples only ratios the method can reach
    tracking_uri = cfg.tracking_uri or default_tracking_uri()
    storage = make_storage(cfg.storage, tracking_uri)  # a bad storage URL fails before anything is written
    tracker = Tracker(tracking_uri, cfg.tracking)
    # Created once here, before any worker starts (workers racing on a fresh SQLite schema fail); the
    # lock keeps several machines starting together from creating two parent runs.
    study = optuna.create_study(study_name=cfg.study_name(), storage=storage, load_if_exists=True,
                                directions=["maximize", "maximize"], sampler=_make_sampler(cfg, 0))
    with study_lock(storage, cfg.study_name()):
        study.set_metric_names(list(OBJECTIVES))
        for key, value in {"method": cfg.template.method, "dataset": cfg.template.dataset,
                           "model": cfg.template.model, "mode": cfg.mode, "seeds": cfg.seeds, "target": cfg.target,
                           "method_params": dict(cfg.template.method_params),
                           "protocol": cfg.template.protocol.label,
                           "protocol_caption": cfg.template.protocol.caption()}.items():
            study.set_user_attr(key, value)
        parent = _parent_run(cfg, tracker, study)
        _save_note(cfg, study, parent)
    _log(cfg, f"study {cfg.study_name()} (storage {cfg.storage or 'results/optuna.db'}), MLflow parent run {parent}")
    status = "FAILED"
    bar = SweepProgress(cfg, study) if cfg.progress else None
    try:
        _prepare_baselines(cfg, tracker)
        for _ in range(cfg.max_retries + 2):
            optuna.storages.fail_stale_trials(study)
            if cfg.mode == "grid":  # workers enqueue each missing point as they claim it (``_claim_and_run``)
                counts = _state_counts(study)
                if not _missing_grid_points(cfg, study) and counts.get("WAITING", 0) + counts.get("RUNNING", 0) == 0:
                    break
            elif _state_counts(study).get("COMPLETE", 0) >= cfg.target:
                break
            _run_workers(cfg, tracking_uri, parent, study, bar)
            _wait_for_running(cfg, study, timeout=GRACE_SECONDS + 2 * HEARTBEAT_SECONDS)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if bar is not None:
            bar.close()
        summary = _summarise(cfg, study, parent)
        _log_pareto(cfg, tracker, parent, study)
        tracker.finish(parent, status)
    return summary


def study_note(cfg: SweepConfig, parent_run_id: str) -> str:
    """The study's note in optuna-dashboard (Markdown): what produced it, under which protocol, and where
    its runs are."""
    from bench.pipeline import RATIO_TOLERANCE

    t = cfg.template
    space = (", ".join(f"{r:g}" for r in cfg.ratios) if cfg.mode == "grid"
             else f"TPE over {cfg.ratio_range[0]:g}-{cfg.ratio_range[1]:g} (log), {cfg.trials} trials")
    pinned = ", ".join(f"{k}={v}" for k, v in t.method_params) or "the method's defaults"
    return "\n".join([
        f"## {t.method} on {t.dataset} / {t.model}",
        "",
        f"**Protocol.** {t.protocol.caption()}",
        "",
        f"**Points.** ratios {space}; learning-rate candidates {', '.join(f'{lr:g}' for lr in cfg.lrs)}; "
        f"{cfg.seeds} seed{'s' if cfg.seeds != 1 else ''} per point; method parameters: {pinned}.",
        "",
        "**Objectives.** mean validation accuracy (selection never sees test) and mean achieved compression "
        f"ratio; the constraint is the achieved ratio within ±{RATIO_TOLERANCE:.0%} of the requested one "
        "(unreachable points are infeasible).",
        "",
        f"**Runs.** MLflow parent run `{parent_run_id}` (experiment `{t.dataset}/{t.model}`); each trial's "
        "artifacts hold every seed's report and per-layer table.",
        "",
        f"**Command.** `{cfg.command or 'python -m bench bench ...'}`",
    ])


def _save_note(cfg: SweepConfig, study: Any, parent_run_id: str) -> None:
    from optuna_dashboard import save_note

    save_note(study, study_note(cfg, parent_run_id))


def _run_workers(cfg: SweepConfig, tracking_uri: str, parent: str, study: Any, bar: SweepProgress | None) -> None:
    if cfg.workers == 1:
        worker_loop(cfg, tracking_uri, parent, bar=bar)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spawned_worker, args=(cfg, tracking_uri, parent, i)) for i in range(cfg.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            while p.is_alive():
                p.join(timeout=2)
                if bar is not None:
                    bar.update(study)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise


def _summarise(cfg: SweepConfig, study: Any, parent: str) -> SweepSummary:
    counts = _state_counts(study)
    pareto = [{"trial": t.number, "ratio_requested": t.params.get("ratio"), "lr": t.params.get("lr"),
               "val_acc_top1": t.values[0],
               "compression_ratio": t.values[1], "acc_top1": t.user_attrs.get("acc_top1_mean"),
               "params": t.user_attrs.get("method_params", {})} for t in study.best_trials]
    return SweepSummary(cfg.study_name(), parent, counts.get("COMPLETE", 0), counts.get("FAIL", 0),
                        sorted(pareto, key=lambda p: p["compression_ratio"]))


def _log_pareto(cfg: SweepConfig, tracker: Any, parent: str, study: Any) -> None:
    """The study's Pareto front (CSV and plot) as artefacts of the parent run."""
    import tempfile
    from pathlib import Path

    from bench.figures import pareto_plot
    from bench.pipeline import csv_text

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not trials:
        return
    front = {t.number for t in study.best_trials}
    rows = [{"trial": t.number, "ratio_requested": t.params.get("ratio"), "compression_ratio": t.values[1],
             "val_acc_top1": t.values[0], "acc_top1": t.user_attrs.get("acc_top1_mean"),
             "acc_top1_std": t.user_attrs.get("acc_top1_std"), "pareto": t.number in front} for t in trials]
    tracker.log_text(parent, csv_text(rows), "pareto.csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pareto.png"
        pareto_plot(rows, f"{cfg.template.method} on {cfg.template.dataset}/{cfg.template.model} "
                          f"({cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}, {len(rows)} trials)", path)
        tracker.log_file(parent, str(path))
    for key, value in {"pareto_size": len(front), "trials_complete": len(trials)}.items():
        tracker.log_metrics(parent, {key: value})
