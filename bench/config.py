"""One experiment's configuration: a frozen dataclass whose content hash names cached artefacts."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.content import content_of, later
from bench.paths import REPO
from bench.protocol import QUICK, Protocol
from bench.recipes import BASELINE_RECIPE, FINETUNE_RECIPE, TrainRecipe


def results_dir() -> Path:
    """``$COMPRESSION_BENCH_RESULTS`` or ``results/`` in the repository: stores, caches and figures."""
    env = os.environ.get("COMPRESSION_BENCH_RESULTS")
    return Path(env) if env else REPO / "results"


def _frozen(d: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (d or {}).items()))


def settings_label(settings: Any) -> str:
    """Method settings (pairs or a dict) in one value, ``defaults`` for none: a tag, a column of the verdict."""
    items = settings.items() if isinstance(settings, dict) else settings
    return ", ".join(f"{k}={v}" for k, v in items) or "defaults"


def content_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ExperimentConfig:
    """One (method, ratio, seed) under a protocol. ``finetune`` carries the learning-rate candidate of this
    run; ``baseline``/``finetune`` are the protocol's recipes (``for_protocol``), kept as fields so a
    test or a paper reproduction can set small budgets directly."""

    dataset: str = "fashion-mnist"
    model: str = "lenet300"
    method: str = "magnitude"
    ratio: float = 8.0
    seed: int = 0
    method_params: tuple[tuple[str, Any], ...] = ()
    dataset_options: tuple[tuple[str, Any], ...] = ()
    model_options: tuple[tuple[str, Any], ...] = ()
    baseline: TrainRecipe = BASELINE_RECIPE
    finetune: TrainRecipe = FINETUNE_RECIPE
    accelerator: str = "auto"
    latency_repeats: int = 30
    protocol: Protocol = QUICK
    # Plugin modules that register the model, dataset or method (``bench.plugins``); every process that
    # runs this configuration loads them first. Part of the identity only when set.
    plugins: tuple[str, ...] = later(())
    # The method settings a comparison tunes (one of the method's ``tuning_candidates``) and that candidate's
    # place in its list (0: the defaults). Kept apart from ``method_params`` (what the user pinned, which names
    # the variant), so a tuned setting never splits a method into several figure lines.
    settings: tuple[tuple[str, Any], ...] = later(())
    settings_rank: int = later(0)

    @classmethod
    def create(cls, method_params: dict | None = None, dataset_options: dict | None = None,
               model_options: dict | None = None, **kwargs: Any) -> "ExperimentConfig":
        return cls(method_params=_frozen(method_params), dataset_options=_frozen(dataset_options),
                   model_options=_frozen(model_options), **kwargs)

    def __post_init__(self) -> None:
        if not isinstance(self.ratio, (int, float)) or math.isnan(self.ratio) or not self.ratio > 1:
            raise ValueError(f"compression ratio must be a number > 1 (e.g. 2, 4, 8, 16, 32), got {self.ratio}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @classmethod
    def for_protocol(cls, protocol: Protocol, lr: float | None = None, **kwargs: Any) -> "ExperimentConfig":
        """A configuration whose recipes come from ``protocol`` at learning-rate candidate ``lr``
        (default: the first candidate)."""
        lr = protocol.lr_candidates[0] if lr is None else lr
        recipes = {"baseline": protocol.baseline, "finetune": protocol.finetune_recipe(lr)}
        # A paper protocol's method settings (e.g. SuRP's iterative schedule) are pinned, the user's on top.
        method = kwargs.get("method", cls.method)
        kwargs["method_params"] = {**protocol.method_defaults(method), **dict(kwargs.get("method_params") or {})}
        return cls.create(protocol=protocol, **{**recipes, **kwargs})

    def with_(self, **changes: Any) -> "ExperimentConfig":
        return replace(self, **changes)

    @property
    def lr(self) -> float:
        """The learning-rate candidate of this run (the fine-tune's, and a from-scratch arm's)."""
        return self.finetune.lr

    def scratch_recipe(self) -> TrainRecipe:
        """Training from random initialisation: the baseline's epochs plus the fine-tune's under an equal
        budget (with the fine-tune's optimiser, schedule and learning rate), else the baseline's recipe."""
        if not self.protocol.equal_budget:
            return self.baseline
        return replace(self.finetune, epochs=self.baseline.epochs + self.finetune.epochs)

    def variant(self) -> str:
        """The method and the parameters the user pinned: how figures group runs. Recorded as a tag when the
        run is made, so a later change of a method's default cannot relabel old runs."""
        pinned = ", ".join(f"{k}={v}" for k, v in self.method_params)
        return f"{self.method} ({pinned})" if pinned else self.method

    def method_kwargs(self) -> dict[str, Any]:
        """What the method is built with: the tuned settings, then what the user pinned on top."""
        return {**dict(self.settings), **dict(self.method_params)}

    def settings_label(self) -> str:
        """The tuned settings in one value (``defaults`` for none)."""
        return settings_label(self.settings)

    def baseline_key(self) -> str:
        """Names the dense baseline: everything that determines its weights, nothing else."""
        return content_hash({"dataset": self.dataset, "dataset_options": self.dataset_options, "model": self.model,
                             "model_options": self.model_options, "seed": self.seed, "recipe": content_of(self.baseline)})

    def control_key(self) -> str:
        """Names the dense + fine-tune control: the baseline, the fine-tune budget and the protocol."""
        return content_hash({"baseline": self.baseline_key(), "finetune": content_of(self.finetune),
                             "protocol": self.protocol.hash})

    def key(self) -> str:
        content = content_of(self)
        content["protocol"] = self.protocol.content()  # its prose summary is not part of what it is
        return content_hash(content)

    def params(self) -> dict[str, Any]:
        """Flat parameters for tracking."""
        out: dict[str, Any] = {"dataset": self.dataset, "model": self.model, "method": self.method,
                               "requested_ratio": self.ratio, "seed": self.seed, "accelerator": self.accelerator}
        out.update({f"dataset.{k}": v for k, v in self.dataset_options})
        out.update({f"model.{k}": v for k, v in self.model_options})
        if self.plugins:
            out["plugins"] = ",".join(self.plugins)
        out.update(self.baseline.as_params("baseline"))
        out.update(self.finetune.as_params("finetune"))
        out.update(self.protocol.params())
        out["settings"] = self.settings_label()
        out["config_key"] = self.key()
        return out
