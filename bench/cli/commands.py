"""The subcommands' bodies, once their arguments are parsed: ``fetch``, ``run`` and ``bench`` (checked
through, then the data and the model, then the results folder and the tracking store, before the first
run trains), ``links``, ``figures``, and ``reproduce`` and ``compare``, which run further commands
through the entry point that they are handed. Lightning, MLflow and Optuna are imported here only once a
command really starts."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Callable, Sequence

import datasets
from bench import api
from bench.cli.configs import _progress, configs_from_args, sweep_from_args, tracking_options
from bench.cli.parser import build_parser
from bench.cli.reference import load_against, merge_against
from bench.cli.values import UsageError, _int
from bench.protocol_registry import get_protocol

Main = Callable[[Sequence[str]], int]  # the command line's entry point, ``bench.cli.main``
UI_URL = "http://127.0.0.1:5000"  # where ``make ui`` serves the MLflow UI (its UI_PORT default)


def _fetch(args: argparse.Namespace) -> int:
    api.data_name(args.dataset)
    datasets.fetch(args.dataset)
    return 0


def _run(args: argparse.Namespace) -> int:
    """``run`` (one configuration per seed, ratio and learning-rate candidate) or ``bench`` (a sweep)."""
    sweep = sweep_from_args(args) if args.command == "bench" else None
    configs = [sweep.template] if sweep is not None else configs_from_args(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(_int(args.threads, "--threads", 1))
    from bench.preflight import check_before_work

    check_before_work(configs, sweep, allow_large=getattr(args, "allow_large", False))  # before any work
    if sweep is not None:
        return _bench(sweep)
    print(f"{configs[0].protocol.caption()}", flush=True)
    results = api.run_configs(configs, tracking_options(args), progress=_progress(args))
    # Several candidates of one (ratio, seed): the protocol's rule picks on validation accuracy, never test.
    best = {id(r) for r in api.best_on_validation(results)}
    for r in results:
        print(_summary_line(r, chosen=len(results) > len(best) and id(r) in best), flush=True)
    return 0


def _summary_line(result, chosen: bool = False) -> str:
    m = result.metrics
    mark = "  <- chosen on validation" if chosen else ""
    return (f"{result.config.method:>16s} {result.config.ratio:>6g}x (achieved {m['compression_ratio']:.2f}x) "
            f"seed {result.config.seed} lr {result.config.lr:g}: val acc {m['val_acc_top1']:.4f}, test acc "
            f"{m['acc_top1']:.4f} (dense {m['baseline_acc_top1']:.4f}, dense+ft {m['control_acc_top1']:.4f}), "
            f"{m['train_epochs_total']:g} epochs from init, theoretical speedup {m['theoretical_speedup']:.2f}x, "
            f"measured {m['measured_speedup']:.2f}x  run {result.run_id}{mark}")


def _bench(sweep) -> int:
    from bench.sweep import run_sweep

    summary = run_sweep(sweep)
    print(f"study {summary.study_name}: {summary.complete} complete, {summary.failed} failed trials; "
          f"MLflow parent run {summary.parent_run_id}")
    for p in summary.pareto:
        print(f"  Pareto: ratio {p['compression_ratio']:.2f}x  val {p['val_acc_top1']:.4f}  test {p['acc_top1']:.4f}  "
              f"(trial {p['trial']})")
    if not sweep.quiet:  # ``compare`` runs its studies quietly and prints the answer once, at its end
        _print_answer(f"{sweep.template.dataset}/{sweep.template.model}", sweep.template.protocol)
    # 1 when no point completed, or some point is left without a result after its retries (a FAIL that
    # stayed FAIL, e.g. its artifacts could not be stored): a sweep that exits 0 has every point it asked for.
    return 0 if summary.complete and not summary.unfinished else 1


def _print_answer(experiment: str, protocol, verdict: Path | None = None, runs: Any = None) -> None:
    """What a user reads off at the end of ``bench`` and ``compare``: at each ratio the best arm tracked under
    this protocol (or its tie set; ``runs``: these instead of the store's) and its margin, where the results
    are, and the link that opens them."""
    from bench.config import results_dir
    from bench.figures import tidy_runs
    from bench.tracking import Tracker, default_tracking_uri
    from bench.verdict import headline_text, select_on_validation

    tracker = Tracker()
    runs = tidy_runs(tracker) if runs is None else runs
    if not runs.empty:
        runs = runs[(runs["experiment"] == experiment) & (runs["protocol"] == protocol.name)
                    & (runs["protocol_hash"] == protocol.hash)]
    chosen_how = ("configuration (lr x settings) seed 0 chose on validation" if protocol.tuning == "seed0" else
                  "lr chosen on validation")
    print(f"\nThe answer so far on {experiment} under {protocol.label} (test accuracy of the {chosen_how}, every "
          f"method and control tracked there; paired 95 % intervals over seeds):")
    chosen = select_on_validation(runs) if not runs.empty else None
    print(headline_text(chosen) if chosen is not None else "- nothing to rank: no run was tracked")
    if chosen is not None:
        from bench.verdict.lr_grid import widened_candidates
        from bench.verdict.write import widen_lines

        for line in widen_lines(runs, widened_candidates(runs, chosen)):  # the edge rule's printed command
            print(line.replace("**", ""))
    print(f"MLflow store: {default_tracking_uri()}; Optuna storage and artifacts: under {results_dir()}")
    if verdict is not None:
        print(f"verdict: {verdict}")
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is not None:
        from bench.ui_view import save_comparison_view, view_url

        key = save_comparison_view(tracker.client, exp.experiment_id, protocol.label, protocol.hash)
        print(f"open it: `make ui`, then {view_url(UI_URL, exp.experiment_id, key)}")


def runs_view_url(base: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs table. ``workflowType=machine_learning`` makes MLflow 3 open
    the "Model training" view instead of its GenAI overview (traces), which is empty for this suite."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _links(args: argparse.Namespace) -> int:
    """Per experiment, its runs table; and per protocol compared there, the saved view that opens the comparison
    (written now, so it reflects what ``bench.ui_view`` shows today)."""
    from bench.tracking import Tracker

    tracker = Tracker()
    experiments = [e for e in tracker.client.search_experiments() if e.name != "Default"]
    if not experiments:
        print(f"MLflow UI: {args.url.rstrip('/')}/#/experiments  (no runs yet: try make bench METHOD=magnitude)")
    for e in sorted(experiments, key=lambda e: e.name):
        print(f"{e.name:32s} {runs_view_url(args.url, e.experiment_id)}")
        for label, url in _comparison_views(tracker, e.experiment_id, args.url):
            print(f"{'  comparison ' + label:32s} {url}")
    return 0


def _comparison_views(tracker, experiment_id: str, base: str) -> list[tuple[str, str]]:
    """Save the comparison view of every protocol with compressed runs in the experiment; (label, link) each."""
    from bench.ui_view import save_comparison_view, view_url

    runs = tracker.client.search_runs([experiment_id], "tags.kind = 'compressed'", max_results=50_000)
    protocols = sorted({(r.data.tags["protocol"], r.data.tags["protocol_hash"]) for r in runs
                        if "protocol" in r.data.tags and "protocol_hash" in r.data.tags})
    out = []
    for name, digest in protocols:
        key = save_comparison_view(tracker.client, experiment_id, f"{name}-{digest}", digest)
        out.append((f"{name}-{digest}", view_url(base, experiment_id, key)))
    return out


def _figures(args: argparse.Namespace) -> int:
    from bench.config import results_dir
    from bench.figures import make_figures
    from bench.tracking import Tracker

    out = Path(args.out) if args.out else results_dir() / "figures"
    if args.runs:  # reference exports instead of the store, each into out/<experiment>/<protocol>/
        from bench.figures import comparison_figures
        from bench.reference_runs import ReferenceFormatError, read_runs

        written = []
        for name in args.runs:
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"--runs {name}: no such file; give a runs.csv a comparison wrote (e.g. "
                                 f"results/reference/fair-<hash>/<dataset>__<model>/runs.csv)")
            try:
                runs = read_runs(path)
            except ReferenceFormatError as e:
                raise UsageError(str(e)) from None
            written += comparison_figures(runs, out)
    else:
        written = make_figures(out, Tracker())
    print(f"wrote {len(written)} files under {out}")
    return 0


def _reproduce(args: argparse.Namespace, main: Main) -> int:
    from bench.papers import experiments

    for argv in experiments(args.paper, args.scale):
        print("python -m bench " + shlex.join(argv), flush=True)
        if not args.dry_run:
            code = main(argv)
            if code != 0:
                return code
    return 0


def _compare(args: argparse.Namespace, main: Main) -> int:
    """Run every study of the comparison (each validated like a ``bench`` command), then write its verdict."""
    import time

    from bench.comparison_studies import comparison_variants, study_argvs

    api.data_name(args.dataset)
    api.model_name(args.model)
    protocol = get_protocol(args.protocol).for_data(args.dataset, args.model)
    protocol = protocol.with_overrides(**({"tuning": args.tuning} if args.tuning else {}),
                                       **({"settings": _int(args.settings, "--settings", 1)} if args.settings else {}))
    only = {m.strip() for m in args.methods.split(",") if m.strip()} if args.methods else None
    known = {m for m, _ in comparison_variants()}
    if only and not only <= known:
        raise UsageError(f"--methods: unknown {', '.join(sorted(only - known))}; choose from: {', '.join(sorted(known))}")
    args.plan = None
    ref = load_against(args, protocol, only) if args.against else None
    extra = ["--workers", args.workers, "--quiet"] + (["--storage", args.storage] if args.storage else []) \
        + (["--tuning", args.tuning] if args.tuning else []) + (["--settings", args.settings] if args.settings else []) \
        + ([] if args.log_models else ["--no-log-models"]) + [a for p in args.plugin for a in ("--plugin", p)] \
        + (["--allow-large"] if getattr(args, "allow_large", False) else [])
    argvs = []
    for seeds, ratios, lrs in args.plan or [(args.seeds, args.ratios, args.finetune_lr)]:
        plan = (["--seeds", seeds] if seeds else []) + (["--ratios", ratios] if ratios else []) \
            + (["--finetune-lr", lrs] if lrs else [])
        argvs += study_argvs(args.dataset, args.model, args.protocol, plan + extra, only)
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
    if ref is not None:  # the new method's runs beside the reference's
        runs = merge_against(runs, ref, only, ref.attrs["source"])
    out = Path(args.out) if args.out else results_dir() / "figures"
    written = comparison_figures(runs, out)
    verdict = out / f"{args.dataset}__{args.model}" / protocol.label / "verdict.md"
    print(f"wrote {len(written)} files under {out}")
    _print_answer(f"{args.dataset}/{args.model}", protocol, verdict if verdict in written else None,
                  runs if ref is not None else None)
    return 0
