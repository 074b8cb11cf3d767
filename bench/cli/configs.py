"""From parsed arguments to what ``bench.api`` runs: the protocol with its budget flags, the experiment
configurations of ``run``, the sweep of ``bench`` and the tracking options; every value is checked here,
before anything is trained or written."""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from typing import Any

import methods
from bench.cli.values import (UsageError, _int, _positive_float, parse_model_options,
                              parse_ratio, parse_ratios)
from bench.config import ExperimentConfig
from bench.protocol import Protocol
from bench.protocol_registry import get_protocol
from methods.common.params import parse_assignments


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    """The named protocol with the budget flags applied (a changed protocol has its own hash)."""
    protocol = get_protocol(args.protocol, args.scale).for_data(args.dataset, args.model)
    changes: dict[str, Any] = {}
    if args.epochs is not None:
        changes["baseline"] = replace(protocol.baseline, epochs=_int(args.epochs, "--epochs", 0))
    if args.finetune_epochs is not None:
        epochs = _int(args.finetune_epochs, "--finetune-epochs", 0)
        changes["finetune"] = replace(protocol.finetune, epochs=epochs)
        changes["extra_epochs"] = epochs
    if args.finetune_lr is not None:
        parts = [p for p in args.finetune_lr.split(",") if p.strip()]
        if not parts:
            raise UsageError("--finetune-lr needs at least one positive number, e.g. 1e-3 or 1e-3,3e-3")
        changes["lr_candidates"] = tuple(_positive_float(p, "--finetune-lr") for p in parts)
    if getattr(args, "tuning", None) is not None:
        changes["tuning"] = args.tuning
    if getattr(args, "settings", None) is not None:
        changes["settings"] = _int(args.settings, "--settings", 1)
    if getattr(args, "ratios", None) is not None:
        changes["ratios"] = parse_ratios(args.ratios)
    if getattr(args, "seeds", None) is not None:
        changes["seeds"] = _int(args.seeds, "--seeds", 1)
    return protocol.with_overrides(**changes)


def configs_from_args(args: argparse.Namespace) -> list[ExperimentConfig]:
    """Validate every argument and build the experiment configurations through ``bench.api.configure``."""
    from bench import api

    api.check_method(args.method)  # the names first, with the lists to choose from (api.configure checks again)
    api.data_name(args.dataset)
    api.model_name(args.model)
    params = parse_assignments(args.param)
    methods.build(args.method, params)  # parameter schema check before the protocol's
    protocol = protocol_from_args(args)
    model_options = parse_model_options(args.model_option)
    dataset_options: dict[str, Any] = {}
    if args.train_limit is not None:
        dataset_options["train_limit"] = _int(args.train_limit, "--train-limit", 1)
    if args.command == "run":
        ratios, seeds = (parse_ratio(args.ratio),), (_int(args.seed, "--seed", 0),)
        lrs = (_positive_float(args.lr, "--lr"),) if args.lr is not None else protocol.lr_candidates
    else:
        ratios, seeds, lrs = protocol.ratios, (0,), protocol.lr_candidates[:1]
    return [api.configure(args.method, args.model, args.dataset, ratio, protocol, seed=seed, lr=lr, params=params,
                          model_options=model_options, dataset_options=dataset_options, plugins=args.plugin,
                          accelerator=args.accelerator)
            for seed in seeds for ratio in ratios for lr in lrs]


def sweep_from_args(args: argparse.Namespace):
    """The SweepConfig of a ``bench`` command (validated), through ``bench.api.sweep_config``."""
    from bench import api

    template = configs_from_args(args)[0]
    mode = args.mode or ("tpe" if args.trials is not None else "grid")
    if mode not in ("grid", "tpe"):
        raise UsageError(f"--mode must be grid or tpe, got {mode!r}")
    trials = _int(args.trials, "--trials", 1) if args.trials is not None else None
    if mode == "tpe" and trials is None:
        raise UsageError("--mode tpe needs --trials N (the number of completed trials wanted)")
    low_high = args.ratio_range.split(",")
    if len(low_high) != 2:
        raise UsageError(f"--ratio-range must be low,high (e.g. 1.5,64), got {args.ratio_range!r}")
    low, high = (parse_ratio(x) for x in low_high)
    if not low < high:
        raise UsageError(f"--ratio-range low must be below high, got {args.ratio_range!r}")
    return api.sweep_config(template.method, template.model, template.dataset, template.protocol,
                            trials=trials, ratio_range=(low, high), params=dict(template.method_params),
                            model_options=dict(template.model_options),
                            dataset_options=dict(template.dataset_options), plugins=template.plugins,
                            workers=_int(args.workers, "--workers", 1), storage=args.storage,
                            tracking=tracking_options(args), quiet=args.quiet, progress=_progress(args),
                            artifact_dir=args.artifact_dir, accelerator=args.accelerator,
                            command="python -m bench " + shlex.join(getattr(args, "argv", None) or sys.argv[1:]))


def _progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress, else on when stderr is a terminal (off in CI logs and pipes)."""
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def tracking_options(args: argparse.Namespace):
    from bench.tracking import TrackingOptions

    return TrackingOptions(log_models=args.log_models, system_metrics=args.system_metrics)
