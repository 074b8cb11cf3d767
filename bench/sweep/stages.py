"""What one grid point trains, by stage (``bench.sweep.plan.GridPoint``): every seed with every arm (``all``),
the method alone on seed 0 (``tune``), or the configuration seed 0 chose run on every seed with the controls
(``confirm``), each control's lr chosen on seed 0 over the same candidates. Each returns one method result per
seed, its controls attached; runs already tracked are found again, never trained twice.
"""
from __future__ import annotations

from typing import Any, Callable

from bench.config import ExperimentConfig
from bench.records import RunResult

# (seed, lr) -> the point's configuration on that seed at that lr candidate
ConfigAt = Callable[[int, float], ExperimentConfig]


class StageRunner:
    """Runs a point's work through ``run_experiment``, reusing tracked runs; ``tags`` go on every new run."""

    def __init__(self, tracker: Any, parent_run_id: str, tags: dict[str, Any], progress: bool,
                 started: Callable[[str], None]) -> None:
        self.tracker, self.parent_run_id, self.tags = tracker, parent_run_id, tags
        self.progress, self.started = progress, started
        self.reused = 0

    def arms_of(self, config: ExperimentConfig, arms: tuple[str, ...]) -> RunResult:
        """The method and ``arms[1:]`` of ``config``: tracked, or trained now (a method tracked already keeps
        its run, and only the missing controls are trained beside it)."""
        from bench.pipeline import run_experiment
        from bench.records import tracked_arms

        have = tracked_arms(self.tracker, config)
        if "method" in have:  # measured before (a study with fewer seeds, a rerun, a tune trial): not trained again
            self.reused += 1
            main = have["method"]
            main.controls = list(self.controls_of(config, arms[1:], have).values()) if len(arms) > 1 else []
            return main
        return run_experiment(config, self.tracker, self.parent_run_id, progress=self.progress,
                              on_run_start=self.started, extra_tags=self.tags, arms=arms)

    def controls_of(self, config: ExperimentConfig, controls: tuple[str, ...],
                    have: dict[str, RunResult] | None = None) -> dict[str, RunResult]:
        """Control arms of ``config`` (derived from its method's compressed model, compressed again when the
        method arm itself is not needed at this lr): tracked, or trained now. ``have``: the arms of ``config``
        the caller found tracked already (searched here when not given)."""
        from bench.pipeline import run_experiment
        from bench.records import tracked_arms

        have = dict(tracked_arms(self.tracker, config) if have is None else have)
        need = tuple(arm for arm in controls if arm not in have)
        self.reused += len(controls) - len(need)
        if need:
            method = have.get("method", RunResult("", {}, config))
            shell = RunResult(method.run_id, method.metrics, config)  # run_experiment appends the new controls here
            out = run_experiment(config, self.tracker, self.parent_run_id, progress=self.progress,
                                 on_run_start=self.started, extra_tags=self.tags, arms=need, method_run=shell)
            have.update({c.arm: c for c in out.controls})
        return {arm: have[arm] for arm in controls}


def every_seed(runner: StageRunner, at: ConfigAt, lr: float, seeds: int, arms: tuple[str, ...]) -> list[RunResult]:
    """``all``: this configuration on every seed, every arm."""
    return [runner.arms_of(at(seed, lr), arms) for seed in range(seeds)]


def tune(runner: StageRunner, at: ConfigAt, lr: float) -> list[RunResult]:
    """``tune``: the method alone on seed 0 (its controls wait for the ratio's choice)."""
    return [runner.arms_of(at(0, lr), ("method",))]


def confirm(runner: StageRunner, at: ConfigAt, lr: float, lrs: tuple[float, ...], seeds: int,
            arms: tuple[str, ...]) -> tuple[list[RunResult], dict[str, float]]:
    """``confirm``: the chosen configuration (``lr``, the settings in ``at``) on every seed; each control's lr
    chosen on seed 0's validation accuracy among ``lrs`` (the method at that lr, tuned already, is compressed
    again to derive it), then run at that lr on the other seeds, beside the method when the lrs agree (one
    compression for both). Seeds after 0 never take part in a choice. Returns the per-seed method results (the
    chosen controls attached) and each control's chosen lr."""
    from bench.records import tracked_arms

    controls = arms[1:]
    results = [runner.arms_of(at(0, lr), ("method",))]
    on_seed0: dict[float, dict[str, RunResult]] = {}
    for candidate in lrs if controls else ():
        config = at(0, candidate)
        have = tracked_arms(runner.tracker, config)
        if candidate != lr and "method" not in have:
            continue  # the method never completed here (given up after its retries): no control to derive
        on_seed0[candidate] = runner.controls_of(config, controls, have)
    chosen = {arm: min(on_seed0, key=lambda c: (-on_seed0[c][arm].metrics["val_acc_top1"], c)) for arm in controls}
    results[0].controls = [on_seed0[chosen[arm]][arm] for arm in controls]
    for seed in range(1, seeds):
        beside = tuple(arm for arm in controls if chosen[arm] == lr)
        main = runner.arms_of(at(seed, lr), ("method", *beside))
        found = {c.arm: c for c in main.controls}
        found.update({arm: runner.controls_of(at(seed, chosen[arm]), (arm,))[arm]
                      for arm in controls if arm not in beside})
        main.controls = [found[arm] for arm in controls]
        results.append(main)
    return results, chosen
