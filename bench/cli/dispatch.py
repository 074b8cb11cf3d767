"""The entry point, ``main``: the ``--plugin`` modules first (so ``--help`` lists what they register), then
the parser, then the subcommand; bad input of any kind ends with one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import datasets
import methods
from bench.api import BudgetError
from bench.cli.commands import _compare, _fetch, _figures, _links, _reproduce, _run
from bench.cli.parser import _epilog, build_parser
from bench.cli.values import UsageError
from bench.plugins import PluginError, load_plugins
from bench.protocol import ProtocolError
from bench.registry import UnknownNameError
from bench.validity import InvalidResultError
from methods.common.params import ParamError


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
            return _fetch(args)
        if args.command == "figures":
            return _figures(args)
        if args.command == "reproduce":
            return _reproduce(args, main)
        if args.command == "compare":
            return _compare(args, main)
        return _run(args)  # run, bench
    except InvalidResultError as e:  # trained, but known wrong: its run is FAILED with the reason, never a result
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (UsageError, UnknownNameError, ParamError, ProtocolError, PluginError, BudgetError, datasets.DataError,
            methods.CompressionError, *_late_errors()) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # One line, whatever the number of workers: every worker has ended its trial (FAIL) and runs (KILLED).
        print("interrupted: the runs in progress are marked KILLED and a sweep's running trials FAIL; re-run the "
              "same command to resume", file=sys.stderr)
        return 130


def _late_errors() -> tuple[type[Exception], ...]:
    """Error types of modules imported only when a run starts (StorageError, NoRunsError, TrackingError)."""
    found: list[type[Exception]] = []
    for module, name in (("bench.studies", "StorageError"), ("bench.figures", "NoRunsError"),
                         ("bench.tracking", "TrackingError"), ("bench.preflight", "PreflightError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)
