"""Each method's own settings: what tuning chose at every ratio and how far that moved the method from its
defaults, and whether every method was tuned over the same number of configurations."""
from __future__ import annotations

from bench.verdict.selection import _ranked


def _seed0_methods(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    if "tuning" not in runs or runs.empty:
        return runs.iloc[0:0]
    keep = (runs["tuning"] == "seed0") & (runs["kind"] == "compressed") & (runs["arm"].fillna("method") == "method")
    return runs[keep & (runs["seed"] == 0) & runs["val_acc_top1"].notna()]


def settings_report(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, variant, requested ratio) tuned on seed 0 over more than one settings candidate: the
    chosen settings and lr, and seed 0's test accuracy there against the method's defaults at their own best lr
    (both chosen on seed 0's validation accuracy); ``moved`` is the difference in accuracy (a fraction). A cell
    where ``moved`` is large is one where the defaults were costing the method its result. Seed 0 only: the
    defaults are not run on the other seeds, so this is one seed's difference, not an interval."""
    import pandas as pd

    columns = ["experiment", "variant", "requested_ratio", "settings_chosen", "lr_chosen", "acc_chosen",
               "lr_defaults", "acc_defaults", "moved"]
    rows = []
    for (exp, variant, ratio), g in _seed0_methods(runs).groupby(["experiment", "variant", "requested_ratio"], sort=True):
        if g["settings"].nunique() < 2:
            continue
        best = _ranked(g).iloc[0]
        defaults = g[g["settings_rank"] == 0]
        if defaults.empty:
            continue
        default = _ranked(defaults).iloc[0]
        rows.append({"experiment": exp, "variant": variant, "requested_ratio": ratio,
                     "settings_chosen": best["settings"], "lr_chosen": best["lr"], "acc_chosen": best["acc_top1"],
                     "lr_defaults": default["lr"], "acc_defaults": default["acc_top1"],
                     "moved": best["acc_top1"] - default["acc_top1"]})
    return pd.DataFrame(rows, columns=columns)


def configuration_counts(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, requested ratio, variant): how many configurations (lr x settings) seed 0 tuned. Equal
    tuning budgets mean one count per (experiment, ratio) for every variant; the count may differ between
    ratios (a grid the edge rule widened at some ratios only, for every method)."""
    m = _seed0_methods(runs)
    if m.empty:
        import pandas as pd

        return pd.DataFrame(columns=["experiment", "requested_ratio", "variant", "configurations"])
    return (m.assign(configuration=m["lr"].astype(str) + " | " + m["settings"].astype(str))
            .groupby(["experiment", "requested_ratio", "variant"])["configuration"].nunique()
            .rename("configurations").reset_index())


def budget_line(runs: "pandas.DataFrame") -> str:
    """Whether every method was tuned over the same number of configurations at each ratio: the counts, or a
    WARNING naming the ratios where methods differ and their counts."""
    counts = configuration_counts(runs)
    if counts.empty:
        return ""
    cells = counts.groupby(["experiment", "requested_ratio"])["configurations"]
    unequal = counts[cells.transform("nunique") > 1]
    if not unequal.empty:
        return ("WARNING — unequal tuning budgets (methods tuned over different numbers of configurations at the "
                "same ratio): " + "; ".join(
                    f"{e} {r:g}x: " + ", ".join(f"{v} {n}" for v, n in zip(g["variant"], g["configurations"]))
                    for (e, r), g in unequal.groupby(["experiment", "requested_ratio"])))
    per_count: dict[tuple[str, int], list[float]] = {}
    for (e, r), n in cells.first().items():
        per_count.setdefault((e, int(n)), []).append(float(r))
    return ("Every method was tuned over the same number of configurations at each ratio: " + "; ".join(
        f"{e}: {n} at {', '.join(f'{r:g}x' for r in sorted(rs))}" for (e, n), rs in sorted(per_count.items())) + ".")


def settings_lines(runs: "pandas.DataFrame") -> list[str]:
    """The verdict's section on method settings (empty when nothing was tuned beyond the lr)."""
    from bench.verdict.markdown import to_markdown

    report = settings_report(runs)
    if report.empty:
        return []
    shown = report.rename(columns={"moved": "diff_moved"})  # to_markdown prints acc_* and diff_* in percent
    budget = budget_line(runs)
    return ["## Each method's own settings: tuned vs defaults (seed 0)", "",
            "The settings seed 0's validation accuracy chose at each ratio, and seed 0's test accuracy (%) there "
            "against the method's defaults at their own best lr; `moved` in points. One seed: the defaults are not "
            "run on the others.", "", to_markdown(shown), "", budget, ""]
