"""The verdict table: one row per (experiment, requested ratio, variant, arm) of the chosen compressed runs,
paired on seed against the reference method and ranked."""
from __future__ import annotations

import math
from typing import Any

from bench.verdict.paired import _per_seed, arm_difference, pairable
from bench.verdict.unreachable import _unreachable_rows
from bench.verdict.values import _short_lr

POINT_KEYS = ["experiment", "requested_ratio", "variant", "arm"]

VERDICT_COLUMNS = [
    "experiment", "requested_ratio", "variant", "arm", "n", "acc_mean", "acc_std", "acc_points",
    "ratio_achieved", "theoretical_speedup", "measured_speedup", "lr_chosen", "settings_chosen", "train_epochs_total",
    "diff_mean", "diff_low", "diff_high", "vs_reference", "rank", "note",
]


def _mean(group: "pandas.DataFrame", column: str) -> float:
    return float(group[column].mean()) if column in group else math.nan


def _point_row(key: tuple, group: "pandas.DataFrame") -> dict[str, Any]:
    group = group.sort_values("seed")
    acc = group["acc_top1"]
    return dict(zip(POINT_KEYS, key)) | {
        "n": int(acc.notna().sum()), "acc_mean": float(acc.mean()),
        "acc_std": float(acc.std(ddof=1)) if acc.notna().sum() > 1 else 0.0,
        "acc_points": ", ".join(f"{a * 100:.2f}" for a in acc.dropna()),
        "ratio_achieved": _mean(group, "compression_ratio"),
        "theoretical_speedup": _mean(group, "theoretical_speedup"),
        "measured_speedup": _mean(group, "measured_speedup"),
        "lr_chosen": ", ".join(_short_lr(lr) for lr in group["lr"]),
        "settings_chosen": ", ".join(dict.fromkeys(group["settings"].astype(str))) if "settings" in group else "",
        "train_epochs_total": _mean(group, "train_epochs_total"),
        "note": "",
    }


def _add_reference(table: "pandas.DataFrame", comp: "pandas.DataFrame", reference: str) -> None:
    """diff_* and vs_reference: each measured row against the reference's method arm, paired on seed (Welch's
    unpaired interval, said so, between local and reference runs whose dense baselines differ)."""
    ref_rows = {(e, r): g for (e, r), g in
                comp[(comp["variant"] == reference) & (comp["arm"] == "method")].groupby(["experiment", "requested_ratio"])}
    refs = {k: _per_seed(g) for k, g in ref_rows.items()}
    groups = dict(iter(comp.groupby(POINT_KEYS, sort=False)))
    points = {k: _per_seed(g) for k, g in groups.items()}
    for i, row in table.iterrows():
        key = tuple(row[k] for k in POINT_KEYS)
        if key not in points:
            continue  # unreachable: nothing to compare
        ref = refs.get((row["experiment"], row["requested_ratio"]))
        if row["variant"] == reference and row["arm"] == "method":
            table.at[i, "vs_reference"] = "reference"
        elif ref is None:
            table.at[i, "vs_reference"] = "n/a (no reference)"
        else:
            paired = pairable(comp, groups[key], ref_rows[(row["experiment"], row["requested_ratio"])])
            diff = arm_difference(points[key], ref, paired)
            table.loc[i, ["diff_mean", "diff_low", "diff_high"]] = [diff.mean, diff.low, diff.high]
            table.at[i, "vs_reference"] = diff.verdict + ("" if paired else " (unpaired: Welch)")


def _add_rank(table: "pandas.DataFrame") -> "pandas.DataFrame":
    """1 = best mean test accuracy within (experiment, ratio), over all arms; ties by variant, then arm."""
    import pandas as pd

    # Means equal up to float summation order (0.80+0.82+0.84 vs 0.81+0.82+0.83) are a tie, not a ranking.
    table = table.assign(_acc=table["acc_mean"].round(10))
    table = table.sort_values(["experiment", "requested_ratio", "_acc", "variant", "arm"],
                              ascending=[True, True, False, True, True], na_position="last", kind="mergesort")
    measured = table["acc_mean"].notna()
    rank = table[measured].groupby(["experiment", "requested_ratio"]).cumcount() + 1
    table["rank"] = pd.Series(rank, index=table.index).astype("Int64")
    return table.drop(columns="_acc").reset_index(drop=True)


def verdict_table(chosen: "pandas.DataFrame", reference: str = "magnitude") -> "pandas.DataFrame":
    """One row per (experiment, requested_ratio, variant, arm) of the compressed runs chosen on validation:
    seeds, test accuracy mean/std/points, achieved ratio, speedups, chosen lrs, training epochs, the paired
    difference against ``reference``'s method arm at the same (experiment, ratio), and the rank.

    Unreachable points get a row with the reason in ``note`` (n = 0, numbers NaN, no rank). Sorted by
    experiment, ratio and rank. ``chosen`` is the output of ``select_on_validation``.
    """
    import pandas as pd

    comp = chosen[(chosen["kind"] == "compressed") & chosen["acc_top1"].notna()]
    rows = [_point_row(key, g) for key, g in comp.groupby(POINT_KEYS, sort=True)]
    unreachable, notes = _unreachable_rows(chosen, {tuple(r[k] for k in POINT_KEYS) for r in rows})
    for r in rows:
        r["note"] = notes.get(tuple(r[k] for k in POINT_KEYS), "")
    table = pd.DataFrame(rows + unreachable, columns=VERDICT_COLUMNS)
    for col in ("diff_mean", "diff_low", "diff_high"):
        table[col] = table[col].astype(float)
    table["vs_reference"] = table["vs_reference"].astype(object).fillna("")
    _add_reference(table, comp, reference)
    return _add_rank(table)[VERDICT_COLUMNS]
