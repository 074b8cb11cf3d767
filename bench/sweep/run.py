"""``run_sweep``: create or resume the study, prepare the baselines, run the workers until the study has enough,
and record it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from bench.chosen_tags import mark_chosen
from bench.studies import OBJECTIVES, make_storage, study_lock
from bench.sweep.plan import SweepConfig, SweepSummary
from bench.sweep.grid import _missing_grid_points
from bench.sweep.objective import _make_sampler, worker_id
from bench.sweep.progress import SweepProgress, _log, _state_counts
from bench.sweep.reach import reachable_range
from bench.sweep.study_record import _log_pareto, _parent_run, _save_note, _summarise
from bench.sweep.workers import _run_workers, _wait_for_running, end_interrupted


def _prepare_baselines(cfg: SweepConfig, tracker: Any) -> None:
    """Train/cache each seed's baseline and log its baseline and control runs once, before workers race."""
    from bench.baseline import ensure_baseline
    from bench.pipeline import ensure_baseline_run, ensure_control, load_data

    data = load_data(cfg.template)
    lrs = cfg.lrs
    for seed in range(cfg.seeds):
        config = dataclasses.replace(cfg.template, seed=seed)
        baseline, trained = ensure_baseline(config, data, progress=cfg.progress)
        _log(cfg, f"baseline seed {seed}: {'trained' if trained else 'cached'}, test acc {baseline.test_acc:.4f}")
        ensure_baseline_run(tracker, config, baseline, data)
        # The dense + fine-tune control is tuned over the same candidates as every method: on every seed, or on
        # seed 0 only, the other seeds then running the lr seed 0 chose (on validation).
        val = {lr: ensure_control(tracker, dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, lr=lr)),
                                  baseline, data, progress=cfg.progress)["val_acc_top1"] for lr in lrs}
        if cfg.tuned_on_seed0 and seed == 0:
            lrs = (min(val, key=lambda lr: (-val[lr], lr)),)


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
        # the UI's comparison view shows the runs the verdict keeps (``bench.chosen_tags``); a view tag that
        # cannot be written is said, never a reason to fail a study whose every result is tracked
        try:
            mark_chosen(tracker, f"{cfg.template.dataset}/{cfg.template.model}", cfg.template.protocol.hash)
        except Exception as e:  # noqa: BLE001 - any store error: the runs are safe, only the UI view is behind
            _log(cfg, f"warning: the chosen tags of the comparison view were not updated ({type(e).__name__}: {e})")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        if cfg.workers == 1:  # this process ran the trials (several workers end theirs in ``_stop_workers``)
            end_interrupted(cfg, study, tracking_uri, {worker_id()})
        raise
    finally:
        if bar is not None:
            bar.close()
        summary = _summarise(cfg, study, parent)
        _log_pareto(cfg, tracker, parent, study)
        tracker.finish(parent, status)
    return summary
