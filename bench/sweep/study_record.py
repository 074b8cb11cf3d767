"""What a study leaves behind: the MLflow parent run, the study's note in optuna-dashboard, the summary, and the
Pareto front (CSV and plot) on the parent run.
"""
from __future__ import annotations

from typing import Any

from bench.config import settings_label
from bench.sweep.plan import SweepConfig, SweepSummary
from bench.sweep.front import measured_trials, pareto_front
from bench.sweep.progress import _state_counts


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
        *(["", f"**Tuned settings.** {' | '.join(settings_label(c) for c in cfg.settings_candidates)} (each with "
               f"every lr: {len(cfg.lrs) * len(cfg.settings_candidates)} configurations per ratio)."]
          if len(cfg.settings_candidates) > 1 else []),
        *(["", "**Tuned on seed 0.** `stage: tune` trials run the method on seed 0 at every configuration; one "
               "`stage: confirm` trial per ratio runs the configuration seed 0 chose on every seed, with the "
               "controls (their lr chosen on seed 0 too). Its values are the means over seeds."]
          if cfg.tuned_on_seed0 else []),
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


def _summarise(cfg: SweepConfig, study: Any, parent: str) -> SweepSummary:
    counts = _state_counts(study)
    pareto = [{"trial": t.number, "ratio_requested": t.params.get("ratio"), "lr": t.params.get("lr"),
               "val_acc_top1": t.values[0],
               "compression_ratio": t.values[1], "acc_top1": t.user_attrs.get("acc_top1_mean"),
               "params": t.user_attrs.get("method_params", {})} for t in pareto_front(study)]
    return SweepSummary(cfg.study_name(), parent, counts.get("COMPLETE", 0), counts.get("FAIL", 0),
                        sorted(pareto, key=lambda p: p["compression_ratio"]), _unfinished(cfg, study))


def _unfinished(cfg: SweepConfig, study: Any) -> int:
    """Grid points without a COMPLETE or PRUNED trial (a confirm point counts once its ratio has a completed tune
    trial); in TPE mode, the COMPLETE trials still short of the target."""
    trials = study.get_trials(deepcopy=False)
    if cfg.mode != "grid":
        return max(0, cfg.target - sum(t.state.name == "COMPLETE" for t in trials))
    from bench.sweep.grid import trial_point

    finished = [(t.state.name, trial_point(t)) for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    done = {p.key for _, p in finished if p is not None}
    # A ratio whose every tune point is out of reach has nothing to confirm: unreachable, not unfinished.
    tuned = {p.ratio for state, p in finished if p is not None and p.stage == "tune" and state == "COMPLETE"}
    return sum(p.key not in done and (p.stage != "confirm" or p.ratio in tuned) for p in cfg.points)


def _log_pareto(cfg: SweepConfig, tracker: Any, parent: str, study: Any) -> None:
    """The study's Pareto front (CSV and plot) as artefacts of the parent run."""
    import tempfile
    from pathlib import Path

    from bench.figures import pareto_plot
    from bench.pipeline import csv_text

    trials = measured_trials(study)
    if not trials:
        return
    front = {t.number for t in pareto_front(study)}
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
