"""The argument parser: every subcommand's flags, and the help epilog that lists the registered methods,
datasets, models and protocols (a plugin's with its origin). Building it imports no Lightning or MLflow."""
from __future__ import annotations

import argparse

import datasets
import methods
from bench.models import list_models, model_origin
from bench.preflight.resources import MAX_SEEDS
from bench.protocol import DEFAULT_PROTOCOL, PROTOCOLS, SCALES, TUNINGS
from bench.protocol_registry import get_protocol, protocol_names
from methods.common.params import describe


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


def _allow_large_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-large", action="store_true",
                   help=f"go past the resource bounds: more than {MAX_SEEDS} seeds, or more workers than CPU cores (refused "
                        "without it, before any work; make: ALLOW_LARGE=1)")


def _experiment_args(p: argparse.ArgumentParser, ratio_flag: bool) -> None:
    _plugin_arg(p)
    _allow_large_arg(p)
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
    p.add_argument("--tuning", default=None, choices=TUNINGS,
                   help="override how the protocol tunes configurations: seed0 (every configuration on seed 0, the "
                        "choice run on the other seeds: fair's) or every-seed (every configuration on every seed, "
                        "each choosing its own: the exhaustive check of the cheap rule)")
    p.add_argument("--settings", default=None,
                   help="override how many of each method's own settings candidates are tuned (1: the defaults "
                        "only; with --tuning every-seed, the protocol before settings were tuned)")
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
    figures.add_argument("--runs", action="append", default=[], metavar="FILE",
                         help="draw the comparison figures and verdict from a reference export (a comparison's "
                              "runs.csv, repeatable) instead of the store")
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
    compare.add_argument("--tuning", default=None, choices=TUNINGS,
                         help="override how configurations are tuned (seed0, fair's; every-seed: the exhaustive check)")
    compare.add_argument("--settings", default=None,
                         help="override how many of each method's settings candidates are tuned (1: defaults only)")
    compare.add_argument("--methods", default=None, help="a comma-separated subset of the methods")
    compare.add_argument("--against", default=None, metavar="RUNS_CSV|reference",
                         help="run only --methods and compare them with a comparison's runs as data (a runs.csv, or "
                              "'reference': the one shipped for this dataset, model and protocol)")
    compare.add_argument("--storage", default=None, help="Optuna storage URL")
    compare.add_argument("--out", default=None, help="where the verdict goes (default results/figures)")
    compare.add_argument("--log-models", action=argparse.BooleanOptionalAction, default=True,
                         help="log every compressed model as an MLflow model (--no-log-models: a smaller store)")
    compare.add_argument("--dry-run", action="store_true", help="print the commands only")
    _allow_large_arg(compare)
    reproduce = sub.add_parser("reproduce", help="run the experiments behind a seed paper's figure")
    papers = [n.removeprefix("paper-") for n in protocol_names() if n.startswith("paper-")]
    reproduce.add_argument("paper", help=f"the seed paper: one of {', '.join(papers)} (its protocol is paper-<name>)")
    reproduce.add_argument("--scale", default="cpu", choices=SCALES,
                           help="cpu (default: the paper's recipe shrunk to run offline on 2 cores) or paper")
    reproduce.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser
