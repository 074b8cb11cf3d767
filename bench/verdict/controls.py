"""Controls as arms: each method against its own controls, and the tuned dense + fine-tune reference."""
from __future__ import annotations

from bench.verdict.paired import _per_seed, paired_interval


def against_own_controls(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """Each method against its own control arms (scratch, shuffled) at the same (experiment, ratio), paired on
    seed: ``diff_*`` is method − control, so "better" means the method beats its control (its weights beat a
    fresh initialisation of its architecture; its criterion beats its own per-layer densities)."""
    import pandas as pd

    comp = chosen[(chosen["kind"] == "compressed") & chosen["acc_top1"].notna()]
    rows = []
    for (exp, ratio, variant), g in comp.groupby(["experiment", "requested_ratio", "variant"], sort=True):
        method = g[g["arm"] == "method"]
        if method.empty:
            continue
        own = _per_seed(method)
        for arm, control in g[g["arm"] != "method"].groupby("arm", sort=True):
            other = _per_seed(control)
            common = own.index.intersection(other.index)
            diff = paired_interval((own[common] - other[common]).tolist())
            rows.append({"experiment": exp, "requested_ratio": ratio, "variant": variant, "control": arm,
                         "n": diff.n, "diff_mean": diff.mean, "diff_low": diff.low, "diff_high": diff.high,
                         "method_vs_control": diff.verdict})
    return pd.DataFrame(rows, columns=["experiment", "requested_ratio", "variant", "control", "n", "diff_mean",
                                       "diff_low", "diff_high", "method_vs_control"])


def control_reference(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per experiment: mean, std (ddof=1; 0 for one seed) and seed count of the tuned dense + fine-tune
    control's test accuracy — the accuracy a compressed model should be measured against."""
    import pandas as pd

    ctrl = chosen[(chosen["kind"] == "control") & chosen["acc_top1"].notna()]
    rows = []
    for exp, group in ctrl.groupby("experiment", sort=True):
        acc = group.groupby("seed")["acc_top1"].mean()  # one value per seed, whatever the control variant label
        rows.append({"experiment": exp, "acc_mean": float(acc.mean()),
                     "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, "n": len(acc)})
    return pd.DataFrame(rows, columns=["experiment", "acc_mean", "acc_std", "n"])
