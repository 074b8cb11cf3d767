"""Command line: ``python -m bench {list,fetch,run,bench,figures,compare,reproduce,links}``.

Arguments are validated before anything is trained or written; bad input ends with one line on
stderr and exit status 2. Lightning and MLflow are imported only once a run really starts.

The package, one file a job: ``parser`` (the subcommands' flags and the help epilog of registered names),
``values`` (numbers, ratios, model options and name checks; ``UsageError``), ``configs`` (parsed arguments
to ``bench.api``'s configurations, sweep and tracking options), ``commands`` (the subcommands' bodies) and
``dispatch`` (``main``: plugins, parser, subcommand, the one-line error).
"""
from bench.cli.commands import runs_view_url
from bench.cli.configs import _progress, configs_from_args, protocol_from_args, sweep_from_args, tracking_options
from bench.cli.dispatch import main
from bench.cli.parser import build_parser
from bench.cli.values import UsageError, parse_model_options, parse_ratio, parse_ratios

__all__ = ["UsageError", "build_parser", "configs_from_args", "main", "parse_model_options", "parse_ratio",
           "parse_ratios", "protocol_from_args", "runs_view_url", "sweep_from_args", "tracking_options"]
