"""Reference runs as data: a comparison's tracked runs exported as one CSV file (``runs.csv``), committed beside
its published verdict, from which ``python -m bench figures --runs FILE`` redraws that verdict exactly as from
the live store, on a machine that never trained them.

Format (``format`` column, version ``FORMAT``): one row per run of the comparison's experiment under one
protocol (the method and control arms of every configuration tried, the dense + fine-tune control, unreachable
points) and the dense baselines they started from; the columns are those of ``bench.figures.tidy_runs`` —
identity (run_id, experiment, dataset, model, kind, method, variant, arm, settings, settings_rank, tuning,
protocol, protocol_hash, baseline_key, seed, lr, requested_ratio), every logged metric (validation and test
accuracy, achieved ratio, speedups, train_epochs_total, ...), the recipes' epochs and the method parameters
(``method_params``, JSON). Runs known to be wrong are not in a tidy frame, so never in an export.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.paths import REPO

FORMAT = 1
_JSON_COLUMNS = ("method_params",)


def comparison_rows(runs: "pandas.DataFrame", all_runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """One comparison's runs (``all_runs``: one experiment and protocol of ``runs``) and the baselines they
    started from (baselines carry no protocol; matched by their cache key)."""
    import pandas as pd

    keys = set(all_runs["baseline_key"].dropna())
    dense = runs[(runs["kind"] == "baseline") & runs["baseline_key"].isin(keys)
                 & (runs["experiment"] == all_runs["experiment"].iloc[0])]
    return pd.concat([all_runs[all_runs["kind"] != "baseline"], dense], ignore_index=True)


def export_runs(frame: "pandas.DataFrame", path: Path) -> Path:
    """Write ``frame`` (tidy runs) as a reference export; returns the path."""
    out = frame.copy()
    for column in _JSON_COLUMNS:
        if column in out:
            out[column] = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else "{}" for v in out[column]]
    out.insert(0, "format", FORMAT)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.sort_values(["kind", "run_id"], kind="mergesort").to_csv(path, index=False)
    return path


class ReferenceFormatError(ValueError):
    """A file that is not a reference export this version reads."""


def read_runs(path: Path) -> "pandas.DataFrame":
    """A reference export back as tidy runs (what ``comparison_figures`` takes)."""
    import pandas as pd

    # recipe parameters (``finetune.epochs``, ``dataset.train_limit``...) are strings in a live frame, as MLflow
    # params are: read them as written, so a redrawn figure groups them the same way
    text = {c: str for c in pd.read_csv(path, nrows=0).columns
            if c in ("run_id", "baseline_key", "settings", "tuning", "chosen", "error")
            or c.startswith(("finetune.", "baseline.", "dataset."))}
    frame = pd.read_csv(path, dtype=text)
    if "format" not in frame or set(frame["format"].unique()) != {FORMAT}:
        found = sorted(frame["format"].unique()) if "format" in frame else "none"
        raise ReferenceFormatError(f"{path}: reference format {found}, this version reads {FORMAT}; export it "
                                   f"again with `python -m bench figures` from its store")
    frame = frame.drop(columns="format")
    if "start_time" in frame:
        frame["start_time"] = pd.to_datetime(frame["start_time"])
    for column in _JSON_COLUMNS:
        if column in frame:
            frame[column] = [json.loads(v) if isinstance(v, str) else {} for v in frame[column]]
    frame.attrs["skipped_invalid"] = {}
    return frame


# ---------------------------------------------------------------- a new method against the reference

class ReferenceMismatch(ValueError):
    """A reference that is not of this comparison (another dataset/model or protocol)."""


def reference_file(protocol_label: str, dataset: str, model: str) -> Path:
    """Where the shipped reference export of one comparison lives (``AGAINST=reference``)."""
    return REPO / "results" / "reference" / protocol_label / f"{dataset}__{model}" / "runs.csv"


def check_reference(ref: "pandas.DataFrame", experiment: str, protocol_label: str) -> None:
    """Refuse a reference of another experiment or protocol (a verdict across protocols compares budgets, not
    methods), naming both."""
    found = sorted(set(ref["experiment"].dropna()))
    if found != [experiment]:
        raise ReferenceMismatch(f"the reference holds {', '.join(found) or 'no runs'}, not {experiment}; use the "
                                f"reference of {experiment} or run the comparison there")
    runs = ref[ref["kind"] != "baseline"]
    labels = sorted({f"{p}-{h}" for p, h in zip(runs["protocol"], runs["protocol_hash"])})
    if labels != [protocol_label]:
        raise ReferenceMismatch(f"the reference was run under protocol {', '.join(labels)}, this comparison is "
                                f"{protocol_label}: pick the same --protocol and budget flags, or a reference of "
                                f"{protocol_label}")


def reference_plan(ref: "pandas.DataFrame") -> list[tuple[str, str, str]]:
    """What the reference's compressed runs were run over, as groups of ratios sharing their seeds and lr
    candidates (a grid widened at some ratios only, like the Fashion-MNIST 32x column, makes two groups):
    ``(seeds, ratios, lrs)`` as ``compare`` flags take them, so a new method is tuned over exactly the
    reference's configurations at every ratio (equal tuning budgets) and runs its seeds."""
    comp = ref[ref["kind"] == "compressed"]
    per_ratio = {float(r): (int(g["seed"].nunique()), tuple(sorted(g["lr"].dropna().unique())))
                 for r, g in comp.groupby("requested_ratio")}
    groups: dict[tuple[int, tuple[float, ...]], list[float]] = {}
    for ratio in sorted(per_ratio):
        groups.setdefault(per_ratio[ratio], []).append(ratio)
    return [(str(seeds), ",".join(f"{r:g}" for r in ratios), ",".join(f"{lr:g}" for lr in lrs))
            for (seeds, lrs), ratios in groups.items()]


def baseline_mismatches(local: "pandas.DataFrame", ref: "pandas.DataFrame") -> list[str]:
    """Seeds whose local dense baseline is not the reference's (by cache key and test accuracy), or that one
    side lacks: where this list is not empty, local and reference arms cannot be paired on seed."""
    def baselines(frame: "pandas.DataFrame") -> dict[int, tuple[str, float]]:
        dense = frame[frame["kind"] == "baseline"]
        return {int(s): (str(k), float(a)) for s, k, a in zip(dense["seed"], dense["baseline_key"], dense["acc_top1"])}

    mine, theirs = baselines(local), baselines(ref)
    out = []
    for seed in sorted(set(mine) | set(theirs)):
        a, b = mine.get(seed), theirs.get(seed)
        if a != b:
            out.append(f"seed {seed}: local {a[0] + f' {a[1]:.4f}' if a else 'none'}, "
                       f"reference {b[0] + f' {b[1]:.4f}' if b else 'none'}")
    return out


def reference_arms(ref: "pandas.DataFrame", mine: set[str]) -> "pandas.DataFrame":
    """The reference's runs a comparison of ``mine`` against it takes as they are: every method arm and control
    arm of the other methods, and their unreachable points (the dense baselines and dense + fine-tune control
    are the local ones; a study's parent run holds no result)."""
    return ref[ref["kind"].isin(["compressed", "unreachable"]) & ~ref["method"].isin(mine)]


def with_reference(local: "pandas.DataFrame", ref: "pandas.DataFrame", mine: set[str]) -> "pandas.DataFrame":
    """One comparison's runs: the local runs of the methods ``mine`` ran (every variant of them), the local dense
    baselines and dense + fine-tune control, and the reference's runs of every other variant (column ``source``:
    ``local`` or ``reference``). ``attrs["unpaired_sources"]`` is set when the dense baselines differ, so the
    verdict compares local with reference arms by Welch's unpaired interval, and says so."""
    import pandas as pd

    own = local[local["method"].isin(mine) | local["kind"].isin(["baseline", "control"])]
    others = reference_arms(ref, mine)
    merged = pd.concat([own.assign(source="local"), others.assign(source="reference")], ignore_index=True)
    merged.attrs["skipped_invalid"] = local.attrs.get("skipped_invalid", {})
    merged.attrs["unpaired_sources"] = bool(baseline_mismatches(local, ref))
    return merged
