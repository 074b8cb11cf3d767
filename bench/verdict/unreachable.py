"""Unreachable points are rows: a ratio a method cannot reach is reported with its reason, not dropped."""
from __future__ import annotations


def _unreachable_rows(chosen: "pandas.DataFrame", measured: set[tuple]) -> tuple[list[dict], dict[tuple, str]]:
    """One row per unreachable (experiment, ratio, variant); the note of a point that is also measured (some
    seeds reached it) goes onto the measured row instead (second return value, keyed like ``POINT_KEYS``)."""
    rows, notes = [], {}
    bad = chosen[chosen["kind"] == "unreachable"]
    for (exp, ratio, variant), group in bad.groupby(["experiment", "requested_ratio", "variant"], sort=True):
        errors = "; ".join(sorted(set(group["error"].fillna("unreachable").astype(str)))) if "error" in group \
            else "unreachable"
        arm = group["arm"].iloc[0]
        if (exp, ratio, variant, arm) in measured:
            seeds = ", ".join(str(s) for s in sorted(group["seed"].dropna().unique()))
            notes[(exp, ratio, variant, arm)] = f"unreachable for seed(s) {seeds}: {errors}"
            continue
        rows.append({"experiment": exp, "requested_ratio": ratio, "variant": variant, "arm": arm, "n": 0,
                     "acc_points": "", "lr_chosen": "", "vs_reference": "", "note": errors})
    return rows, notes
