"""Command line: ``python -m bench {list,fetch,run,bench,figures,compare,reproduce,links}``.

Arguments are validated before anything is trained or written; bad input ends with one line on
stderr and exit status 2. Lightning and MLflow are imported only once a run really starts.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from dataclasses import replace
from typing import Any, Sequence

import datasets
import methods
from bench.config import ExperimentConfig
from bench.models import list_models, model_origin
from bench.api import BudgetError
from bench.plugins import PluginError, load_plugins
from bench.protocol import DEFAULT_PROTOCOL, PROTOCOLS, SCALES, Protocol, ProtocolError
from bench.protocols import get_protocol, protocol_names
from bench.registry import UnknownNameError
from methods.common.params import ParamError, describe, parse_assignments


class UsageError(ValueError):
    """Bad command-line input; the message names the value and what is allowed."""


def parse_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"compression ratio must be a number > 1 (e.g. 2, 4, 8, 16, 32), got {text!r}") from None
    if math.isnan(value) or math.isinf(value) or value <= 1:
        raise UsageError(f"compression ratio must be a finite number > 1 (e.g. 2, 4, 8, 16, 32), got {text!r}")
    return value


def parse_ratios(text: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if not parts:
        raise UsageError("--ratios needs at least one ratio, e.g. 2,4,8,16,32")
    return tuple(parse_ratio(p) for p in parts)


def _int(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value}")
    return value


def _check_dataset(name: str) -> None:
    if not name.startswith("file:"):  # a file's own errors come when it is read, before any run
        _check_name("dataset", name, datasets.list_datasets())


def _check_name(kind: str, name: str, valid: list[str]) -> None:
    if name not in valid:
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}")


def _named(name: str, origin: str) -> str:
    return name if origin == "built-in" else f"{name} [plugin {origin}]"


def _epilog() -> str:
    lines = ["methods:"]
    for name in methods.list_methods():
        cls = methods.get(name)
        lines.append(f"  {name:16s} {cls.family}, {'structured' if cls.structured else 'masked'}; params: "
                     + ("; ".join(describe(cls)) or "none")
                     + ("" if methods.origin(name) == "built-in" else f" [plugin {methods.origin(name)}]"))
    lines.append("datasets: " + ", ".join(_named(n, datasets.dataset_origin(n)) for n in datasets.list_datasets())
                 + ", file:PATH.npz")
    lines.append("models:   " + ", ".join(_named(n, model_origin(n)) for n in list_models()))
    lines.append("protocols:")
    for name in protocol_names():
        protocol = get_protocol(name)
        lines.append(f"  {name:16s} {protocol.summary if protocol.scale else protocol.caption()}")
    return "\n".join(lines)


def _plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE (or a .py file) first: it registers methods, models or datasets (repeatable; "
                        "installed packages' compression_bench.plugins entry points load by themselves)")


def parse_model_options(items: list[str]) -> dict[str, Any]:
    """``--model-option channels=8 widths=(64,32) classifier=head`` -> builder keyword arguments: Python
    literals where the value is one (numbers, tuples, booleans), else the text."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-option {item!r} must look like key=value (e.g. width=0.5), key a Python name")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _experiment_args(p: argparse.ArgumentParser, ratio_flag: bool) -> None:
    _plugin_arg(p)
    p.add_argument("--method", default="magnitude", help="a registered method (see below)")
    if ratio_flag:
        p.add_argument("--ratio", required=True, help="target compression ratio, params_total / params_effective (> 1)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="lenet300")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of the model's builder (repeatable), e.g. width=0.5; classifier=NAME "
                        "names the classifier layer where the rule (last Linear with one output per class) misses")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter (repeatable)")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL,
                   help=f"comparison protocol: {', '.join(PROTOCOLS)}, or a paper's own recipe "
                        f"(paper-<name>) (default {DEFAULT_PROTOCOL}; see below)")
    p.add_argument("--scale", default=None, choices=SCALES,
                   help="a paper protocol's scale: cpu (default; shrunk to run offline on 2 cores) or paper (as "
                        "published)")
    p.add_argument("--epochs", default=None, help="override the protocol's dense baseline epochs")
    p.add_argument("--finetune-epochs", default=None,
                   help="override the protocol's fine-tune epochs (under an equal budget: the extra budget E)")
    p.add_argument("--finetune-lr", default=None,
                   help="override the protocol's learning-rate candidates with one or more (comma-separated)")
    p.add_argument("--train-limit", default=None, help="use only the first N training images (quick runs)")
    p.add_argument("--threads", default=None, help="torch threads for this process")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto (GPU where present), cpu, gpu")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars: the sweep's (trials done, current point, ETA) and Lightning's for any "
                        "training longer than a few seconds (default: on when stderr is a terminal)")
    p.add_argument("--log-models", action=argparse.BooleanOptionalAction, default=True,
                   help="log every compressed model and baseline as an MLflow model (about 1 MB per LeNet run; "
                        "--no-log-models keeps huge sweeps small)")
    p.add_argument("--system-metrics", action=argparse.BooleanOptionalAction, default=True,
                   help="MLflow system metrics (CPU, memory, GPU where present) every second of every run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="compression-bench: compress, fine-tune, "
                                     "measure and track neural-network compression methods.",
                                     epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _plugin_arg(sub.add_parser("list", help="list methods, datasets and models (with each plugin's origin)"))
    fetch = sub.add_parser("fetch", help="bring a dataset onto this machine (offline-first)")
    fetch.add_argument("dataset")
    _plugin_arg(fetch)
    run = sub.add_parser("run", help="one experiment at one ratio", epilog=_epilog(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _experiment_args(run, ratio_flag=True)
    run.add_argument("--seed", default="0")
    run.add_argument("--lr", default=None, help="run only this learning-rate candidate (default: every candidate of "
                                                "the protocol; the one with the best validation accuracy is marked)")
    bench = sub.add_parser("bench", help="a method at several ratios and seeds", epilog=_epilog(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _experiment_args(bench, ratio_flag=False)
    bench.add_argument("--ratios", default=None, help="grid mode's ratios (default: the protocol's operating points)")
    bench.add_argument("--seeds", default=None, help="number of seeds (0, 1, ... n-1), each with its own baseline "
                                                     "(default: the protocol's)")
    bench.add_argument("--mode", default=None,
                       help="grid (the ratios above; the default) or tpe (Optuna suggests ratio and method "
                            "hyperparameters; the default when --trials is given)")
    bench.add_argument("--trials", default=None, help="tpe mode: number of completed trials wanted")
    bench.add_argument("--ratio-range", default="1.5,64", help="tpe mode: low,high compression ratio (log scale)")
    bench.add_argument("--workers", default="1", help="parallel worker processes on this machine (1 torch thread each)")
    bench.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///results/optuna.db; "
                                                       "postgresql://... for several machines; journal:PATH)")
    bench.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    bench.add_argument("--artifact-dir", default=None, help="Optuna artifact store for trial artifacts "
                                                            "(default results/optuna-artifacts)")
    links = sub.add_parser("links", help="print, per experiment, the MLflow UI link that opens its runs table")
    links.add_argument("--url", default="http://127.0.0.1:5000", help="where the MLflow UI is served")
    figures = sub.add_parser("figures", help="regenerate every figure and table from the tracked runs")
    figures.add_argument("--out", default=None, help="output folder (default results/figures)")
    compare = sub.add_parser("compare", help="every method and control under one protocol, then the verdict")
    _plugin_arg(compare)
    compare.add_argument("--dataset", default="fashion-mnist")
    compare.add_argument("--model", default="lenet300")
    compare.add_argument("--protocol", default=DEFAULT_PROTOCOL)
    compare.add_argument("--seeds", default=None, help="number of seeds (default: the protocol's)")
    compare.add_argument("--ratios", default=None, help="operating points (default: the protocol's)")
    compare.add_argument("--workers", default="1", help="parallel worker processes per study")
    compare.add_argument("--finetune-lr", default=None,
                         help="learning-rate candidates (comma-separated) for every method, e.g. to widen the grid")
    compare.add_argument("--methods", default=None, help="a comma-separated subset of the methods")
    compare.add_argument("--storage", default=None, help="Optuna storage URL")
    compare.add_argument("--out", default=None, help="where the verdict goes (default results/figures)")
    compare.add_argument("--log-models", action=argparse.BooleanOptionalAction, default=True,
                         help="log every compressed model as an MLflow model (--no-log-models: a smaller store)")
    compare.add_argument("--dry-run", action="store_true", help="print the commands only")
    reproduce = sub.add_parser("reproduce", help="run the experiments behind a seed paper's figure")
    reproduce.add_argument("paper")
    reproduce.add_argument("--scale", default="cpu", choices=SCALES,
                           help="cpu (default: the paper's recipe shrunk to run offline on 2 cores) or paper")
    reproduce.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a positive number, got {text!r}") from None
    if not value > 0 or math.isnan(value) or math.isinf(value):
        raise UsageError(f"{what} must be a positive number, got {text!r}")
    return value


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
    if getattr(args, "ratios", None) is not None:
        changes["ratios"] = parse_ratios(args.ratios)
    if getattr(args, "seeds", None) is not None:
        changes["seeds"] = _int(args.seeds, "--seeds", 1)
    return protocol.with_overrides(**changes)


def configs_from_args(args: argparse.Namespace) -> list[ExperimentConfig]:
    """Validate every argument and build the experiment configurations through ``bench.api.configure``."""
    from bench import api

    _check_name("method", args.method, methods.list_methods())
    _check_dataset(args.dataset)
    _check_name("model", args.model, list_models())
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


def _summary_line(result, chosen: bool = False) -> str:
    m = result.metrics
    mark = "  <- chosen on validation" if chosen else ""
    return (f"{result.config.method:>16s} {result.config.ratio:>6g}x (achieved {m['compression_ratio']:.2f}x) "
            f"seed {result.config.seed} lr {result.config.lr:g}: val acc {m['val_acc_top1']:.4f}, test acc "
            f"{m['acc_top1']:.4f} (dense {m['baseline_acc_top1']:.4f}, dense+ft {m['control_acc_top1']:.4f}), "
            f"{m['train_epochs_total']:g} epochs from init, theoretical speedup {m['theoretical_speedup']:.2f}x, "
            f"measured {m['measured_speedup']:.2f}x  run {result.run_id}{mark}")


def _load_plugins(argv: Sequence[str] | None) -> None:
    """Import the ``--plugin`` modules before the parser is built, so ``--help`` lists what they register."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    load_plugins(known.plugin)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        _load_plugins(argv)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        if args.command == "list":
            print(_epilog())
            return 0
        if args.command == "links":
            return _links(args)
        if args.command == "fetch":
            _check_dataset(args.dataset)
            datasets.fetch(args.dataset)
            return 0
        if args.command == "figures":
            return _figures(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "compare":
            return _compare(args)
        sweep = sweep_from_args(args) if args.command == "bench" else None
        configs = [sweep.template] if sweep is not None else configs_from_args(args)
        if args.threads is not None:
            import torch

            torch.set_num_threads(_int(args.threads, "--threads", 1))
        _check_model(configs[0])  # missing data and a model that cannot be built fail here, before any run
        _preflight()
        if sweep is not None:
            return _bench(sweep)
        from bench import api

        print(f"{configs[0].protocol.caption()}", flush=True)
        results = api.run_configs(configs, tracking_options(args), progress=_progress(args))
        # Several candidates of one (ratio, seed): the protocol's rule picks on validation accuracy, never test.
        best = {id(r) for r in api.best_on_validation(results)}
        for r in results:
            print(_summary_line(r, chosen=len(results) > len(best) and id(r) in best), flush=True)
        return 0
    except (UsageError, UnknownNameError, ParamError, ProtocolError, PluginError, BudgetError, datasets.DataError,
            methods.CompressionError, *_late_errors()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the current run is marked KILLED", file=sys.stderr)
        return 130


def _check_model(config: ExperimentConfig) -> None:
    from bench.baseline import build_model
    from bench.pipeline import load_data

    data = load_data(config)
    try:
        build_model(config, data)
    except (TypeError, ValueError) as e:
        options = " ".join(f"{k}={v}" for k, v in config.model_options) or "no --model-option"
        raise UsageError(f"model {config.model!r} cannot be built on {config.dataset} with {options}: {e}") from None


def _preflight() -> None:
    from bench import preflight
    from bench.config import results_dir

    preflight.check_results_dir(results_dir())
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        preflight.check_tracking(uri)


def _late_errors() -> tuple[type[Exception], ...]:
    """Error types of modules imported only when a run starts (StorageError, NoRunsError, TrackingError)."""
    found: list[type[Exception]] = []
    for module, name in (("bench.studies", "StorageError"), ("bench.figures", "NoRunsError"),
                         ("bench.tracking", "TrackingError"), ("bench.preflight", "PreflightError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _bench(sweep) -> int:
    from bench.sweep import run_sweep

    summary = run_sweep(sweep)
    print(f"study {summary.study_name}: {summary.complete} complete, {summary.failed} failed trials; "
          f"MLflow parent run {summary.parent_run_id}")
    for p in summary.pareto:
        print(f"  Pareto: ratio {p['compression_ratio']:.2f}x  val {p['val_acc_top1']:.4f}  test {p['acc_top1']:.4f}  "
              f"(trial {p['trial']})")
    return 0 if summary.complete else 1


def runs_view_url(base: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs table. ``workflowType=machine_learning`` makes MLflow 3 open
    the "Model training" view instead of its GenAI overview (traces), which is empty for this suite."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _links(args: argparse.Namespace) -> int:
    from bench.tracking import Tracker

    experiments = [e for e in Tracker().client.search_experiments() if e.name != "Default"]
    if not experiments:
        print(f"MLflow UI: {args.url.rstrip('/')}/#/experiments  (no runs yet: try make bench METHOD=magnitude)")
    for e in sorted(experiments, key=lambda e: e.name):
        print(f"{e.name:32s} {runs_view_url(args.url, e.experiment_id)}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.config import results_dir
    from bench.figures import make_figures
    from bench.tracking import Tracker

    out = Path(args.out) if args.out else results_dir() / "figures"
    written = make_figures(out, Tracker())
    print(f"wrote {len(written)} files under {out}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    import shlex

    from bench.papers import experiments

    for argv in experiments(args.paper, args.scale):
        print("python -m bench " + shlex.join(argv), flush=True)
        if not args.dry_run:
            code = main(argv)
            if code != 0:
                return code
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Run every study of the comparison (each validated like a ``bench`` command), then write its verdict."""
    import shlex
    import time
    from pathlib import Path

    from bench.compare import VARIANTS, study_argvs

    _check_dataset(args.dataset)
    _check_name("model", args.model, list_models())
    get_protocol(args.protocol)
    only = {m.strip() for m in args.methods.split(",") if m.strip()} if args.methods else None
    known = {m for m, _ in VARIANTS}
    if only and not only <= known:
        raise UsageError(f"--methods: unknown {', '.join(sorted(only - known))}; choose from: {', '.join(sorted(known))}")
    extra = ["--workers", args.workers, "--quiet"] + (["--seeds", args.seeds] if args.seeds else []) \
        + (["--ratios", args.ratios] if args.ratios else []) + (["--storage", args.storage] if args.storage else []) \
        + (["--finetune-lr", args.finetune_lr] if args.finetune_lr else []) \
        + ([] if args.log_models else ["--no-log-models"]) + [a for p in args.plugin for a in ("--plugin", p)]
    argvs = study_argvs(args.dataset, args.model, args.protocol, extra, only)
    for argv in argvs:  # every study validated before the first one trains
        sweep_from_args(build_parser().parse_args(argv))
    start = time.perf_counter()
    for argv in argvs:
        print("python -m bench " + shlex.join(argv), flush=True)
        if not args.dry_run:
            code = main(argv)
            if code not in (0, 1):  # 1: a study whose every point is out of reach; the verdict says so
                return code
    if args.dry_run:
        return 0
    print(f"comparison took {time.perf_counter() - start:.0f} s", flush=True)
    from bench.config import results_dir
    from bench.figures import comparison_figures, tidy_runs
    from bench.tracking import Tracker

    runs = tidy_runs(Tracker())
    runs = runs[runs["experiment"] == f"{args.dataset}/{args.model}"]
    out = Path(args.out) if args.out else results_dir() / "figures"
    written = comparison_figures(runs, out)
    for path in written:
        if path.name == "verdict.md":
            print(f"verdict: {path}")
    return 0
