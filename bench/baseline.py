"""The dense baseline: trained once per (dataset, model, seed, recipe), cached under results/, logged once.

The cache keeps the weights the baseline started from too (``<key>.init.pt``): protocols that rewind the
surviving weights to their random initialisation (SAP, the lottery ticket) read them from there.

Every method and every trial starts from a copy of the same cached weights, so methods differ only
in the method. The cache is written to a temporary file and renamed, so a crash never leaves a
half-written file under the final name; a corrupt file is detected, reported and retrained.

A baseline no better than chance on validation or test (``bench.validity``) is never cached nor used: the
run that asked for it ends FAILED, tagged ``invalid=baseline-at-chance``.
"""
from __future__ import annotations

import functools
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock

from bench.config import ExperimentConfig, results_dir
from bench.export import Forms
from bench.metrics import split_accuracy
from bench.models import SequentialNet, create_model
from bench.validity import check_above_chance, majority_share
from datasets import Data


@dataclass
class Baseline:
    model: SequentialNet
    val_acc: float
    test_acc: float
    train_seconds: float
    key: str
    init_state: dict[str, torch.Tensor] | None = None  # the weights before training (random init)

    @functools.cached_property
    def forms(self) -> Forms:
        """The dense model's measured forms, made once and shared by every measurement of a run against it."""
        return Forms(self.model)


def cache_dir() -> Path:
    return results_dir() / "baselines"


def _lock(path: Path) -> FileLock:
    """An exclusive cross-process lock, so parallel workers train a missing baseline once, not n times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


def build_model(config: ExperimentConfig, data: Data) -> SequentialNet:
    return create_model(config.model, data.input_shape, data.num_classes, seed=config.seed, **dict(config.model_options))


def _save_init(model: torch.nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The untrained ``model``'s weights, written to ``path`` (atomically) and returned."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _atomic_write(path, lambda p: torch.save(state, p))
    return state


def _init_state(config: ExperimentConfig, data: Data, path: Path) -> dict[str, torch.Tensor]:
    """The random initialisation the baseline trained from: cached beside it; a cache from before this file
    existed gets it rebuilt (the initialisation is a function of the seed) and written."""
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            warnings.warn(f"cached initialisation {path} is corrupt ({type(e).__name__}: {e}); rebuilding it",
                          stacklevel=2)
    return _save_init(build_model(config, data), path)


def _load(config: ExperimentConfig, data: Data, weights: Path, meta: Path, with_init: bool) -> Baseline | None:
    if not (weights.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        # The key names the dataset, not its content: a file: dataset or a plugin's data can change under
        # the same name, and a baseline trained on other data must not be reused.
        if info.get("data_sha256", data.sha256) != data.sha256:
            warnings.warn(f"cached baseline {weights} was trained on other data under the name {config.dataset!r} "
                          "(its digest differs); retraining it", stacklevel=2)
            return None
        model = build_model(config, data)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        init = _init_state(config, data, _init_path(weights)) if with_init else None
        val_acc, test_acc, seconds = float(info["val_acc"]), float(info["test_acc"]), float(info["train_seconds"])
    except Exception as e:  # any unreadable or mismatched cache is retrained, never trusted
        warnings.warn(f"cached baseline {weights} is corrupt ({type(e).__name__}: {e}); retraining it", stacklevel=2)
        return None
    if "chance" not in info:  # cached before chance was recorded: measured once now, and written beside it
        info["chance"] = chance_of(data)
        _atomic_write(meta, lambda p: p.write_text(json.dumps(info, default=str)))
    _check(config, {"val": val_acc, "test": test_acc}, info["chance"])
    return Baseline(model, val_acc, test_acc, seconds, config.baseline_key(), init)


def chance_of(data: Data) -> dict[str, float]:
    """Chance on val and test: the share of each split's commonest class (``bench.validity``)."""
    return {split: majority_share(y for _, y in data.eval_batches(split)) for split in ("val", "test")}


def _check(config: ExperimentConfig, accuracy: dict[str, float], chance: dict[str, float]) -> None:
    check_above_chance(f"the dense baseline of {config.model} on {config.dataset} (seed {config.seed}, "
                       f"{config.baseline.epochs} epochs)", accuracy, chance)


def _init_path(weights: Path) -> Path:
    return weights.with_suffix(".init.pt")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(tmp)
    os.replace(tmp, path)


def ensure_baseline(config: ExperimentConfig, data: Data, progress: bool = False) -> tuple[Baseline, bool]:
    """(the baseline, whether it was trained now). Loads from the cache or trains and caches it. The random
    initialisation is read back only for a protocol that rewinds to it (each trial loads the baseline)."""
    from bench.training import fit

    key = config.baseline_key()
    weights, meta = cache_dir() / f"{key}.pt", cache_dir() / f"{key}.json"
    with _lock(cache_dir() / f"{key}.lock"):
        cached = _load(config, data, weights, meta, with_init=config.protocol.rewind == "init")
        if cached is not None:
            return cached, False
        model = build_model(config, data)
        init = _save_init(model, _init_path(weights))
        start = time.perf_counter()
        fit(model, config.baseline, data, config.seed, progress=progress, accelerator=config.accelerator)
        seconds = time.perf_counter() - start
        val_acc = split_accuracy(model, data, "val")[1]
        test_acc = split_accuracy(model, data, "test")[1]
        chance = chance_of(data)
        _check(config, {"val": val_acc, "test": test_acc}, chance)  # before the cache: never cached when wrong
        _atomic_write(weights, lambda p: torch.save(model.state_dict(), p))
        _atomic_write(meta, lambda p: p.write_text(json.dumps(
            {"val_acc": val_acc, "test_acc": test_acc, "train_seconds": seconds, "config": config.params(),
             "data_sha256": data.sha256, "chance": chance}, default=str)))
        return Baseline(model, val_acc, test_acc, seconds, key, init), True
