"""One trial: the operating point a trial suggests (ratio, lr, the method's search space less what the user pinned),
run on every seed, and the TPE sampler with its achieved-ratio constraint.
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from bench.config import _frozen, settings_label
from bench.sweep.plan import SweepConfig
from bench.sweep.stages import StageRunner, confirm, every_seed, tune

# What every seed's method run logs (``bench.records``) and every trial holds, one per seed.
TRIAL_ARTIFACTS = ("report.json", "per_layer.csv")


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
        self.on_claimed: Any = None  # called once the trial names its worker: a grid worker's claim is complete
        self.on_owned: Any = None  # called then too: a Ctrl-C deferred while claiming may now fail the trial

    def __call__(self, trial: Any) -> tuple[float, float]:
        import optuna

        import methods
        from bench.controls import applicable_arms
        from bench.pipeline import record_unreachable

        # Who runs it: after a Ctrl-C the main process fails the trials its own dead workers left RUNNING.
        trial.set_user_attr("worker", worker_id())
        if self.on_claimed is not None:
            self.on_claimed()
        if self.on_owned is not None:
            self.on_owned()
        cfg = self.cfg
        settings, stage = 0, "all"
        if cfg.mode == "grid":
            # Numbers on a log scale, not categories: optuna-dashboard's plots then order and space the ratios
            # and learning rates as the numbers they are (2, 4, ..., 128), not in the order first seen.
            # Every grid trial is enqueued with fixed values, which the range holds.
            ratio = trial.suggest_float("ratio", min(cfg.ratios), max(cfg.ratios), log=True)
            lr = trial.suggest_float("lr", min(cfg.lrs), max(cfg.lrs), log=True)
            if len(cfg.settings_candidates) > 1:
                settings = trial.suggest_int("settings", 0, len(cfg.settings_candidates) - 1)
            stage = trial.user_attrs.get("stage", "all")
            tuned: dict[str, Any] = {}
        else:
            ratio = trial.suggest_float("ratio", *cfg.ratio_range, log=True)
            tuned = self.method_cls.search_space(_PinnedTrial(trial, dict(cfg.template.method_params)))
            lr = float(trial.suggest_categorical("lr", list(cfg.lrs)))  # TPE picks among the candidates only
        if self.on_point is not None:
            self.on_point(trial.number, ratio, lr)
        params = {**tuned, **dict(cfg.template.method_params)}  # what the user pinned is never overridden
        chosen_settings = _frozen(cfg.settings_candidates[settings])
        trial.set_user_attr("settings_label", settings_label(chosen_settings))
        arms = applicable_arms(methods.build(cfg.template.method, {**dict(chosen_settings), **params}),
                               cfg.template.protocol.controls)
        trial.set_user_attr("arms", list(arms))
        run_ids: list[str] = []

        def started(run_id: str) -> None:
            run_ids.append(run_id)
            trial.set_user_attr("mlflow_run_ids", list(run_ids))

        def at(seed: int, candidate: float) -> Any:
            return dataclasses.replace(cfg.template, ratio=ratio, seed=seed, method_params=_frozen(params),
                                       settings=chosen_settings, settings_rank=settings,
                                       finetune=dataclasses.replace(cfg.template.finetune, lr=candidate))

        runner = StageRunner(self.tracker, self.parent_run_id, {"study": cfg.study_name(), "trial": trial.number},
                             cfg.progress, started)
        try:
            if stage == "tune":
                results = tune(runner, at, lr)
            elif stage == "confirm":
                results, control_lrs = confirm(runner, at, lr, cfg.lrs, cfg.seeds, arms)
                trial.set_user_attr("control_lrs", control_lrs)
            else:
                results = every_seed(runner, at, lr, cfg.seeds, arms)
        except methods.CompressionError as e:
            # Out of reach for this method and model (the same for every seed): recorded once, and the
            # trial is PRUNED so a resumed sweep does not retry it.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            record_unreachable(self.tracker, at(0, lr), e, self.parent_run_id, runner.tags)
            raise optuna.TrialPruned(str(e)) from None
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            raise
        if runner.reused:
            trial.set_user_attr("reused_runs", runner.reused)
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
        trial.set_user_attr("method_params", {k: str(v) for k, v in {**dict(chosen_settings), **params}.items()})
        trial.set_user_attr("ratio_error_max", max(abs(m["compression_ratio"] / ratio - 1) for m in metrics))
        try:
            self._upload(trial, results)
        except Exception as e:
            # Artifacts are part of a trial: without them it is not COMPLETE, and its retry stores them.
            trial.set_user_attr("error", f"trial artifacts not stored in {self.cfg.artifact_path()} "
                                         f"({type(e).__name__}: {e})"[:2000])
            raise
        # optuna-dashboard shows a trial's values bare ("0.87, 7.93"): say which objective each is.
        trial.set_user_attr("objectives", f"val_acc_top1 (mean over seeds) {mean('val_acc_top1'):.4f}, "
                                          f"compression_ratio (achieved) {mean('compression_ratio'):.2f}x")
        return mean("val_acc_top1"), mean("compression_ratio")

    def _upload(self, trial: Any, results: list[Any]) -> None:
        """Each seed's report and per-layer table as the trial's artifacts (optuna-dashboard's Artifacts tab).

        A seed trained in this trial has them in memory; a seed whose runs were found already tracked (a retry of a
        trial whose artifacts failed, a point measured by another study) has them in its MLflow run, from where they
        are copied, so every COMPLETE trial holds every seed's artifacts. Any failure raises: the trial is FAIL.
        """
        import tempfile

        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        if self.artifacts is None:
            Path(self.cfg.artifact_path()).mkdir(parents=True, exist_ok=True)
            self.artifacts = FileSystemArtifactStore(self.cfg.artifact_path())
        with tempfile.TemporaryDirectory() as tmp:
            for result in results:
                for name, path in self._artifact_files(result, Path(tmp)):
                    stem, _, ext = name.rpartition(".")
                    named = path.with_name(f"{stem}-seed{result.config.seed}.{ext}")
                    path.rename(named)
                    upload_artifact(artifact_store=self.artifacts, file_path=str(named), study_or_trial=trial)

    def _artifact_files(self, result: Any, tmp: Path) -> list[tuple[str, Path]]:
        """(artifact name, a local copy) of each of ``result``'s artifacts: from memory, or from its MLflow run."""
        folder = tmp / f"seed{result.config.seed}"
        folder.mkdir()
        if result.artifacts:
            out = []
            for name, text in result.artifacts.items():
                (folder / name).write_text(text)
                out.append((name, folder / name))
            return out
        logged = {a.path for a in self.tracker.client.list_artifacts(result.run_id)}
        names = [n for n in TRIAL_ARTIFACTS if n in logged]
        if not names:
            raise FileNotFoundError(f"run {result.run_id} has none of {', '.join(TRIAL_ARTIFACTS)} to copy")
        return [(n, Path(self.tracker.client.download_artifacts(result.run_id, n, str(folder)))) for n in names]


def worker_id() -> str:
    """This process on this machine, as ``host:pid``."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _make_sampler(cfg: SweepConfig, worker: int) -> Any:
    """TPE with the ratio constraint. In grid mode every trial is enqueued with fixed parameters, so TPE never
    samples there; it only records each trial's constraint (what the dashboard shows as feasibility)."""
    import optuna

    seed = 1000 * cfg.template.seed + worker
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, cfg.target // 3)),
                                      constraints_func=ratio_constraint)
