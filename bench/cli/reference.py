"""``compare --against``: a new method against a comparison's shipped runs (``results/reference/…/runs.csv``),
trained only for the method named, the others read from the reference (``bench.reference_runs``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.values import UsageError


def load_against(args: argparse.Namespace, protocol: Any, only: set[str] | None) -> "pandas.DataFrame":
    """The reference ``--against`` names (a runs.csv, or ``reference``: the shipped one of this dataset, model
    and protocol), checked against this comparison. Without ``--seeds``, ``--ratios`` and ``--finetune-lr`` the
    new method runs exactly the reference's plan (``args.plan``: its ratios grouped by seeds and lr candidates,
    ``reference_plan``); otherwise the unset ones come from the reference. Every refusal is one line, before
    anything is written."""
    from bench.paths import REPO
    from bench.reference_runs import (ReferenceFormatError, ReferenceMismatch, check_reference, read_runs,
                                      reference_file, reference_plan)

    if not only:
        raise UsageError("--against needs --methods: the method(s) to run against the reference "
                         "(e.g. --methods mymethod --plugin mypackage)")
    path = reference_file(protocol.label, args.dataset, args.model) if args.against == "reference" else Path(args.against)
    if not path.is_file():
        raise UsageError(f"--against {args.against}: no reference at {path}; give a runs.csv a comparison wrote, or "
                         f"run the full `make compare` once to make one")
    try:
        ref = read_runs(path)
        check_reference(ref, f"{args.dataset}/{args.model}", protocol.label)
    except (ReferenceFormatError, ReferenceMismatch) as e:
        raise UsageError(str(e)) from None
    where = path.resolve()
    ref.attrs["source"] = str(where.relative_to(REPO) if where.is_relative_to(REPO) else where)
    if args.seeds is None and args.ratios is None and args.finetune_lr is None:
        args.plan = reference_plan(ref)  # one group of studies per (seeds, lr candidates) of the reference
        return ref
    comp = ref[ref["kind"] == "compressed"]
    if args.seeds is None:
        args.seeds = str(int(comp["seed"].nunique()))
    if args.ratios is None:
        args.ratios = ",".join(f"{r:g}" for r in sorted(comp["requested_ratio"].unique()))
    return ref


def merge_against(runs: "pandas.DataFrame", ref: "pandas.DataFrame", only: set[str], source: str) -> "pandas.DataFrame":
    """The local runs of the methods just run beside the reference's runs of the others, which are also logged
    into the local MLflow store as runs of kind ``reference`` (the UI then shows the whole comparison); says
    whether seeds can be paired (the same dense baselines) or why not."""
    from bench.reference_import import KIND, import_reference
    from bench.reference_runs import baseline_mismatches, reference_arms, with_reference
    from bench.tracking import Tracker, default_tracking_uri

    merged = with_reference(runs, ref, only)
    arms = reference_arms(ref, only)
    logged = import_reference(Tracker(), arms, source)
    print(f"the reference's {len(arms)} runs of the other methods are in the MLflow store ({default_tracking_uri()}) "
          f"as runs of kind '{KIND}' ({logged} logged now, {len(arms) - logged} there before)", flush=True)
    mismatched = baseline_mismatches(runs, ref)
    if mismatched:
        print("the local dense baselines differ from the reference's (" + "; ".join(mismatched) + "): local and "
              "reference arms are compared by Welch's unpaired interval, labelled in the verdict", flush=True)
    else:
        print("the local dense baselines are the reference's, seed by seed: differences are paired on seed", flush=True)
    return merged
