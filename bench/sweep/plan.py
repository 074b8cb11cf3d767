"""What a sweep is asked to do (``SweepConfig``: the template experiment, the mode, the points, workers, storage) and
what it answers (``SweepSummary``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bench.config import ExperimentConfig, content_hash, results_dir
from bench.content import content_of
from bench.protocol import QUICK_RATIOS
from bench.tracking import TrackingOptions


DEFAULT_RATIOS = QUICK_RATIOS


@dataclass(frozen=True)
class GridPoint:
    """One unit of a grid study. ``stage`` ``all``: the configuration (lr, settings) on every seed with every
    arm (``every-seed`` tuning); ``tune``: the method alone on seed 0; ``confirm``: the ratio's configuration
    chosen on seed 0, run on the other seeds, with each control's lr chosen on seed 0 (``seed0`` tuning). A
    confirm point's lr and settings are only known once its ratio is tuned (``bench.sweep.grid``)."""

    ratio: float
    lr: float = 0.0
    settings: int = 0
    stage: str = "all"

    @property
    def key(self) -> tuple:
        """What makes two trials the same point (a confirm point is one per ratio, whatever it chose)."""
        return (self.ratio, self.stage) if self.stage == "confirm" else (self.ratio, self.lr, self.settings, self.stage)


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
    def settings_candidates(self) -> list[dict[str, Any]]:
        """The method settings tuned beside the lr: the first ``Protocol.settings`` of the method's
        ``tuning_candidates`` (its defaults first), less what the user pinned (pinned values are never tuned; a
        candidate that only differed by a pinned value is dropped). TPE studies tune the search space instead."""
        import methods

        if self.mode != "grid":
            return [{}]
        pinned = dict(self.template.method_params)
        out: list[dict[str, Any]] = []
        for candidate in methods.get(self.template.method).tuning_candidates[:self.template.protocol.settings]:
            free = {k: v for k, v in candidate.items() if k not in pinned}
            if free not in out:
                out.append(free)
        return out or [{}]

    @property
    def tuned_on_seed0(self) -> bool:
        return self.mode == "grid" and self.template.protocol.tuning == "seed0"

    @property
    def points(self) -> list[GridPoint]:
        """Grid mode's units of work, ratio by ratio: every (lr, settings) configuration, then (tuned on seed 0)
        the ratio's confirm point."""
        settings = range(len(self.settings_candidates))
        if not self.tuned_on_seed0:
            return [GridPoint(r, lr, s) for r in self.ratios for lr in self.lrs for s in settings]
        return [p for r in self.ratios
                for p in [*(GridPoint(r, lr, s, "tune") for lr in self.lrs for s in settings), GridPoint(r, stage="confirm")]]

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
                    "space": self.ratios if self.mode == "grid" else self.ratio_range,
                    **({"settings": self.settings_candidates} if len(self.settings_candidates) > 1 else {}),
                    # grid parameters became log-scale floats (were categories): Optuna refuses to mix the two
                    # kinds in one study, so the grid studies made before that get a new name
                    **({"params": "log-float"} if self.mode == "grid" else {})}
        return f"{t.method}/{t.dataset}/{t.model}/{t.protocol.label}/{self.mode}-{content_hash(settings)[:8]}"


@dataclass
class SweepSummary:
    """What a sweep did. ``failed`` counts FAIL trials, retried ones included; ``unfinished`` the grid points with no
    COMPLETE or PRUNED (unreachable) trial after their retries (TPE: the completed trials still missing), which
    the CLI's exit status reports (a re-run retries them)."""

    study_name: str
    parent_run_id: str
    complete: int
    failed: int
    pareto: list[dict[str, Any]] = field(default_factory=list)
    unfinished: int = 0
