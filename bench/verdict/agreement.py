"""Cheap vs exhaustive tuning, on the same runs: does choosing on seed 0 alone (``seed0``, fair's) answer as
choosing on every seed (``every-seed``) does?

A study tuned exhaustively (``--tuning every-seed``: every configuration on every seed) holds every run the cheap
rule would have made: runs are deterministic given their seed, so seed 0's configurations and the other seeds'
run at seed 0's choice are among them, bit for bit. Selecting those runs both ways therefore shows what the
shortcut changes without training anything twice: the leader at each ratio, and each cell whose chosen
configuration differs on some seed, with the paired interval of (cheap − exhaustive) test accuracy.
"""
from __future__ import annotations

from bench.verdict.headline import headline
from bench.verdict.paired import paired_interval
from bench.verdict.selection import TUNED_KINDS, select_on_validation


def _exhaustive(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    if "tuning" not in runs:
        return runs.iloc[0:0]
    ex = runs[(runs["tuning"] == "every-seed") & runs["kind"].isin(TUNED_KINDS)]
    configs = ex.assign(configuration=ex["lr"].astype(str) + " | " + ex["settings"].astype(str))
    enough = configs.groupby("experiment")["configuration"].transform("nunique").gt(1) & \
        configs.groupby("experiment")["seed"].transform("nunique").gt(1)
    return ex[enough]


def tuning_agreement(runs: "pandas.DataFrame") -> tuple["pandas.DataFrame", "pandas.DataFrame"]:
    """(leaders, cells) for the experiments tuned exhaustively over more than one configuration and seed.

    ``leaders``: per (experiment, requested ratio) the leader and tie set of each rule, and ``agree``: True when
    each rule's leader is in the other's tie set. ``cells``: per (experiment, variant, arm, requested ratio)
    whose chosen configuration differs on some seed, both rules' mean test accuracy and the paired interval of
    cheap − exhaustive over the seeds both have."""
    import pandas as pd

    ex = _exhaustive(runs)
    leader_cols = ["experiment", "requested_ratio", "exhaustive", "exhaustive_ties", "cheap", "cheap_ties", "agree"]
    cell_cols = ["experiment", "variant", "arm", "requested_ratio", "seeds_differing", "acc_exhaustive",
                 "acc_cheap", "diff_mean", "diff_low", "diff_high"]
    if ex.empty:
        return pd.DataFrame(columns=leader_cols), pd.DataFrame(columns=cell_cols)
    chosen = {"exhaustive": select_on_validation(ex), "cheap": select_on_validation(ex.assign(tuning="seed0"))}
    heads = {rule: headline(c).set_index(["experiment", "requested_ratio"]) for rule, c in chosen.items()}
    leaders = []
    for key in heads["exhaustive"].index:
        e, c = heads["exhaustive"].loc[key], heads["cheap"].loc[key] if key in heads["cheap"].index else None
        leaders.append({"experiment": key[0], "requested_ratio": key[1], "exhaustive": e["leader"],
                        "exhaustive_ties": ", ".join(e["tie_set"]),
                        "cheap": "" if c is None else c["leader"], "cheap_ties": "" if c is None else ", ".join(c["tie_set"]),
                        "agree": c is not None and c["leader"] in e["tie_set"] and e["leader"] in c["tie_set"]})
    keys = ["experiment", "variant", "arm", "requested_ratio"]
    both = chosen["exhaustive"].merge(chosen["cheap"], on=keys + ["seed"], suffixes=("_ex", "_cheap"))
    both = both[both["kind_ex"] == "compressed"]
    cells = []
    for key, g in both.groupby(keys, sort=True):
        differing = g[(g["lr_ex"] != g["lr_cheap"]) | (g["settings_ex"] != g["settings_cheap"])]
        if differing.empty:
            continue
        diff = paired_interval((g["acc_top1_cheap"] - g["acc_top1_ex"]).tolist())
        cells.append(dict(zip(keys, key)) | {
            "seeds_differing": ", ".join(str(int(s)) for s in differing["seed"]),
            "acc_exhaustive": float(g["acc_top1_ex"].mean()),
            "acc_cheap": float(g["acc_top1_cheap"].mean()), "diff_mean": diff.mean, "diff_low": diff.low,
            "diff_high": diff.high})
    return pd.DataFrame(leaders, columns=leader_cols), pd.DataFrame(cells, columns=cell_cols)


def agreement_lines(runs: "pandas.DataFrame") -> list[str]:
    """The verdict's section on cheap vs exhaustive tuning (empty unless some experiment was tuned exhaustively)."""
    from bench.verdict.markdown import to_markdown

    leaders, cells = tuning_agreement(runs)
    if leaders.empty:
        return []
    agree = int(leaders["agree"].sum())
    return ["## Cheap vs exhaustive tuning (the same runs selected both ways)", "",
            "Exhaustive: every configuration on every seed, each seed choosing its own. Cheap (fair's `seed0`): "
            "seed 0 chooses, the other seeds run its choice. The leader agrees when each rule's leader is in the "
            f"other's tie set: {agree} of {len(leaders)} ratios.", "", to_markdown(leaders), "",
            *(["Cells whose chosen configuration differs on some seed (accuracy in %, cheap − exhaustive in points, "
               "paired 95 % interval):", "", to_markdown(cells), ""] if len(cells) else
              ["No cell chose a different configuration on any seed.", ""])]
