"""The statistics behind the "fair verdict" table: which compression method is better, at which ratio, and
how sure we are — computed from the tidy runs frame (one row per tracked run, see ``bench.figures.tidy_runs``).

The rules, and why:

* **Selection on validation only.** Every (experiment, variant, arm, requested ratio, seed) was trained once per
  learning-rate candidate; the candidate with the best *validation* accuracy is kept and its *test* accuracy is
  reported. Choosing on test accuracy would bias every method upward by the size of its tuning space.
* **Paired on seed.** A seed fixes data order and initialisation for every method, so the per-seed difference
  against the reference method removes that shared noise; the interval is a Student-t interval over seeds.
* **Controls as arms.** "scratch" (same architecture re-initialised) and "shuffled" (same per-layer densities at
  random positions) are ranked with the methods, so a method that does not beat its own controls shows it.
* **Unreachable points are rows.** A ratio a method cannot reach is reported with the reason, not dropped.
* **Grid and recipe checks.** If chosen learning rates pile up at the edge of the candidate set the optimum was
  not bracketed; and the winner must still win when it and the runner-up swap learning rates, otherwise the
  verdict is about the tuning, not the method.

Accuracies and differences are fractions in [0, 1] in the frames; ``to_markdown`` prints them in percent.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.drawing import markdown, pyplot, save

TUNED_KINDS = ("compressed", "control")
SELECT_KEYS = ["experiment", "variant", "arm", "requested_ratio", "seed"]
POINT_KEYS = ["experiment", "requested_ratio", "variant", "arm"]
MISSING = "—"  # how an absent number is printed

VERDICT_COLUMNS = [
    "experiment", "requested_ratio", "variant", "arm", "n", "acc_mean", "acc_std", "acc_points",
    "ratio_achieved", "theoretical_speedup", "measured_speedup", "lr_chosen", "train_epochs_total",
    "diff_mean", "diff_low", "diff_high", "vs_reference", "rank", "note",
]


# ---------------------------------------------------------------- selection

def select_on_validation(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """One row per (experiment, variant, arm, requested_ratio, seed): the lr candidate with the best validation
    accuracy (an exact tie goes to the smaller lr, then the smaller run_id, so the choice never depends on row
    order). Test accuracy is never looked at.

    Adds ``n_candidates`` (distinct lr values the group was trained with) and ``lr_edge`` ("low"/"high" when the
    chosen lr is the smallest/largest candidate, "" otherwise or with a single candidate).

    Candidates without a validation accuracy cannot be chosen and are not counted. "unreachable" rows are passed
    through (one per key, ``n_candidates`` NaN) so that ``verdict_table`` can report them; "baseline" rows are
    dropped (the untuned dense model takes no part in the verdict).
    """
    import pandas as pd

    runs = runs.copy()
    runs["arm"] = runs["arm"].fillna("method")  # a run without an arm tag is the method itself
    tuned = runs[runs["kind"].isin(TUNED_KINDS) & runs["val_acc_top1"].notna()]
    order = ["val_acc_top1", "lr"] + (["run_id"] if "run_id" in tuned else [])
    ranked = tuned.sort_values(order, ascending=[False, True, True][:len(order)], kind="mergesort",
                               na_position="last")
    groups = ranked.groupby(SELECT_KEYS, sort=True, dropna=False)
    chosen = groups.head(1).copy()
    lrs = groups["lr"].agg(n_candidates="nunique", lr_min="min", lr_max="max").reset_index()
    chosen = chosen.merge(lrs, on=SELECT_KEYS, how="left", validate="one_to_one")
    chosen["n_candidates"] = chosen["n_candidates"].clip(lower=1)  # an unrecorded lr is still one candidate
    chosen["lr_edge"] = [_edge(lr, lo, hi, n) for lr, lo, hi, n in
                         zip(chosen["lr"], chosen["lr_min"], chosen["lr_max"], chosen["n_candidates"])]
    chosen = chosen.drop(columns=["lr_min", "lr_max"])

    unreachable = runs[runs["kind"] == "unreachable"].drop_duplicates(SELECT_KEYS).copy()
    unreachable["n_candidates"] = np.nan
    unreachable["lr_edge"] = ""
    out = pd.concat([chosen, unreachable], ignore_index=True) if len(unreachable) else chosen
    return out.sort_values(SELECT_KEYS, kind="mergesort").reset_index(drop=True)


def _edge(lr: float, lo: float, hi: float, n: int) -> str:
    if n < 2 or _isna(lr):
        return ""
    if lr == lo:
        return "low"
    return "high" if lr == hi else ""


def _isna(v: Any) -> bool:
    """NaN, None or pandas.NA (scalars only)."""
    import pandas as pd

    return v is None or (not isinstance(v, (str, bytes)) and bool(pd.isna(v)))


# ---------------------------------------------------------------- paired interval

@dataclasses.dataclass(frozen=True)
class PairedDiff:
    """Mean per-seed paired difference with its Student-t interval and the verdict it supports."""

    mean: float
    low: float
    high: float
    n: int
    verdict: str


def paired_interval(diffs: Sequence[float], confidence: float = 0.95) -> PairedDiff:
    """Mean of per-seed differences ± t_{n-1,(1+confidence)/2} · sd / √n (sd with ddof=1).

    "better" if the whole interval is above 0, "worse" if below, "tie" if it covers 0. With one seed there is
    no spread to estimate, so no interval ("n/a (1 seed)"); with none, "n/a (no common seeds)". NaN differences
    (a seed without a result) are left out.
    """
    from scipy import stats

    d = np.asarray([x for x in diffs if not _isna(x)], dtype=float)
    n = len(d)
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, "n/a (no common seeds)")
    mean = float(d.mean())
    if n < 2:
        return PairedDiff(mean, math.nan, math.nan, n, "n/a (1 seed)")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = "better" if low > 0 else "worse" if high < 0 else "tie"
    return PairedDiff(mean, low, high, n, verdict)


# ---------------------------------------------------------------- verdict table

def _short_lr(lr: float) -> str:
    """3e-4, 1e-3, 2.5e-3: the lr in as few characters as stay exact to two digits."""
    if _isna(lr):
        return "?"
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _mean(group: "pandas.DataFrame", column: str) -> float:
    return float(group[column].mean()) if column in group else math.nan


def _per_seed(group: "pandas.DataFrame") -> "pandas.Series":
    """Test accuracy indexed by seed; the group must hold one row per seed (the output of the selection)."""
    if group["seed"].duplicated().any():
        raise ValueError("more than one run per seed: pass the output of select_on_validation")
    return group.set_index("seed")["acc_top1"].sort_index()


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
        "train_epochs_total": _mean(group, "train_epochs_total"),
        "note": "",
    }


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


def _add_reference(table: "pandas.DataFrame", comp: "pandas.DataFrame", reference: str) -> None:
    """diff_* and vs_reference: each measured row against the reference's method arm, paired on seed."""
    refs = {(e, r): _per_seed(g) for (e, r), g in
            comp[(comp["variant"] == reference) & (comp["arm"] == "method")].groupby(["experiment", "requested_ratio"])}
    points = {k: _per_seed(g) for k, g in comp.groupby(POINT_KEYS, sort=False)}
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
            own = points[key]
            common = own.index.intersection(ref.index)
            diff = paired_interval((own[common] - ref[common]).tolist())
            table.loc[i, ["diff_mean", "diff_low", "diff_high"]] = [diff.mean, diff.low, diff.high]
            table.at[i, "vs_reference"] = diff.verdict


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


# ---------------------------------------------------------------- lr grid and recipe checks

def lr_edge_report(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, variant, arm) of the tuned kinds: chosen points, how many had more than one lr
    candidate (``n_tuned``), how many chose the lowest / highest candidate, and ``frac_edge`` = edges / n_tuned
    (NaN when nothing was tuned — a single candidate says nothing about the grid)."""
    import pandas as pd

    tuned = chosen[chosen["kind"].isin(TUNED_KINDS)]
    rows = []
    for (exp, kind, variant, arm), g in tuned.groupby(["experiment", "kind", "variant", "arm"], sort=True):
        n_tuned = int((g["n_candidates"] > 1).sum())
        low, high = int((g["lr_edge"] == "low").sum()), int((g["lr_edge"] == "high").sum())
        rows.append({"experiment": exp, "kind": kind, "variant": variant, "arm": arm, "n_points": len(g),
                     "n_tuned": n_tuned, "n_low": low, "n_high": high,
                     "frac_edge": (low + high) / n_tuned if n_tuned else math.nan})
    return pd.DataFrame(rows, columns=["experiment", "kind", "variant", "arm", "n_points", "n_tuned", "n_low",
                                       "n_high", "frac_edge"])


def tuning_budgets(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Per (experiment, variant, arm) of the compressed runs: the learning-rate candidates it was run at and
    how many. Equal tuning budgets mean one row's candidates equal every other row's of the experiment."""
    comp = runs[(runs["kind"] == "compressed") & runs["lr"].notna()]
    rows = [{"experiment": e, "variant": v, "arm": a, "n_candidates": len(lrs),
             "candidates": ", ".join(_short_lr(lr) for lr in lrs)}
            for (e, v, a), g in comp.groupby(["experiment", "variant", "arm"], sort=True)
            for lrs in [sorted(g["lr"].unique())]]
    import pandas as pd

    return pd.DataFrame(rows, columns=["experiment", "variant", "arm", "n_candidates", "candidates"])


def unequal_tuning(runs: "pandas.DataFrame") -> list[str]:
    """One line per experiment whose methods were tuned over different candidate sets (empty when equal)."""
    budgets = tuning_budgets(runs)
    lines = []
    for exp, g in budgets.groupby("experiment", sort=True):
        if g["candidates"].nunique() > 1:
            sets = "; ".join(f"{v} [{a}]: {c}" for v, a, c in zip(g["variant"], g["arm"], g["candidates"]))
            lines.append(f"WARNING — {exp}: unequal tuning budgets (learning-rate candidates differ): {sets}")
    return lines


def grid_brackets_optimum(chosen: "pandas.DataFrame", threshold: float = 0.5) -> bool:
    """False when, for the compressed points of any (experiment, variant, arm), more than ``threshold`` of the
    tuned points chose an edge lr: the optimum may lie outside the grid, so widen the lr set (for every method,
    so the comparison stays fair)."""
    report = lr_edge_report(chosen)
    frac = report.loc[report["kind"] == "compressed", "frac_edge"].dropna()
    return not bool((frac > threshold).any())


def _lookup(runs: "pandas.DataFrame", experiment: str, ratio: float, variant: str, seed: Any,
            lr: float) -> float | None:
    """Test accuracy of the method-arm run at exactly this lr (best validation if it was run twice)."""
    if _isna(lr):
        return None
    hit = runs[(runs["kind"] == "compressed") & (runs["experiment"] == experiment) & (runs["variant"] == variant)
               & (runs["arm"].fillna("method") == "method") & np.isclose(runs["requested_ratio"], ratio)
               & (runs["seed"] == seed) & np.isclose(runs["lr"], lr) & runs["acc_top1"].notna()]
    if hit.empty:
        return None
    return float(hit.sort_values("val_acc_top1", ascending=False, kind="mergesort")["acc_top1"].iloc[0])


def cross_recipe_check(runs: "pandas.DataFrame", chosen: "pandas.DataFrame", experiment: str,
                       ratio: float) -> dict[str, Any]:
    """Does the winner still beat the runner-up when they swap learning rates?

    At (experiment, ratio), the winner and runner-up are the two method-arm compressed variants with the best
    mean chosen test accuracy (ties by name). Their recipe is the lr each chose per seed; for each seed, the
    winner's run at the runner-up's lr and the runner-up's run at the winner's lr are looked up in ``runs``
    (the unselected frame). Swapped means are over the seeds where both swapped runs exist; ``order_holds`` is
    winner swapped mean > runner-up swapped mean there, or None if no seed has both. ``missing`` lists seeds
    where a swapped run (or one side's chosen lr) is absent. Raises ValueError with fewer than two variants.
    """
    comp = chosen[(chosen["kind"] == "compressed") & (chosen["arm"] == "method") & chosen["acc_top1"].notna()
                  & (chosen["experiment"] == experiment) & np.isclose(chosen["requested_ratio"], ratio)]
    means = comp.groupby("variant")["acc_top1"].mean().reset_index()
    means = means.sort_values(["acc_top1", "variant"], ascending=[False, True], kind="mergesort")
    if len(means) < 2:
        raise ValueError(f"{experiment} at {ratio}x: fewer than two method variants to compare")
    winner, runner_up = means["variant"].iloc[0], means["variant"].iloc[1]
    recipe = {v: comp[comp["variant"] == v].set_index("seed")["lr"].to_dict() for v in (winner, runner_up)}
    seeds = sorted(set(recipe[winner]) | set(recipe[runner_up]))
    swapped: dict[str, dict[Any, float]] = {winner: {}, runner_up: {}}
    missing = []
    for seed in seeds:
        w = _lookup(runs, experiment, ratio, winner, seed, recipe[runner_up].get(seed, math.nan))
        r = _lookup(runs, experiment, ratio, runner_up, seed, recipe[winner].get(seed, math.nan))
        for variant, acc in ((winner, w), (runner_up, r)):
            if acc is not None:
                swapped[variant][seed] = acc
        if w is None or r is None:
            missing.append(seed)
    both = [s for s in seeds if s not in missing]
    w_mean = float(np.mean([swapped[winner][s] for s in both])) if both else math.nan
    r_mean = float(np.mean([swapped[runner_up][s] for s in both])) if both else math.nan
    return {
        "experiment": experiment, "ratio": ratio, "winner": winner, "runner_up": runner_up,
        "winner_mean": float(means["acc_top1"].iloc[0]), "runner_up_mean": float(means["acc_top1"].iloc[1]),
        "winner_lr": recipe[winner], "runner_up_lr": recipe[runner_up],
        "winner_swapped": swapped[winner], "runner_up_swapped": swapped[runner_up],
        "winner_swapped_mean": w_mean, "runner_up_swapped_mean": r_mean,
        "order_holds": bool(w_mean > r_mean) if both else None, "missing": missing,
    }


# ---------------------------------------------------------------- markdown

def _cell(column: str, v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if _isna(v):
        return MISSING
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if column.startswith("acc_"):
            return f"{v * 100:.2f}"
        if column.startswith("diff_"):
            return f"{v * 100:+.2f}"  # a signed difference reads as one
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: "pandas.DataFrame") -> str:
    """A GitHub markdown table: acc_*/diff_* floats in percent (2 decimals; differences signed), other floats
    to 4 significant digits, missing values as "—"."""
    return markdown(df, _cell)


# ---------------------------------------------------------------- figure

def accuracy_drops(chosen: "pandas.DataFrame") -> "pandas.DataFrame":
    """The chosen compressed runs with ``drop_points`` = (control acc − run acc) × 100, the control being the
    tuned dense + fine-tune run of the same experiment and seed; runs whose seed has no control are left out."""
    comp = chosen[(chosen["kind"] == "compressed") & chosen["acc_top1"].notna()]
    ctrl = chosen[(chosen["kind"] == "control") & chosen["acc_top1"].notna()]
    ctrl = ctrl.groupby(["experiment", "seed"])["acc_top1"].mean().rename("control_acc").reset_index()
    out = comp.merge(ctrl, on=["experiment", "seed"], how="inner")
    out["drop_points"] = (out["control_acc"] - out["acc_top1"]) * 100
    return out


def _figure_paths(path: Path, experiments: list[str]) -> dict[str, Path]:
    """Extension-less stems; names are appended to, never ``with_suffix``-ed, since an experiment such as
    "cifar10/resnet-0.5" has a dot that is not a suffix."""
    if path.suffix in (".png", ".pdf"):
        path = path.with_suffix("")
    if len(experiments) == 1:
        return {experiments[0]: path}
    return {e: path.with_name(f"{path.name}__{e.replace('/', '__')}") for e in experiments}


def _drop_plot(drops: "pandas.DataFrame", title: str, path: Path) -> list[Path]:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"method": "-", "scratch": "--", "shuffled": ":"}
    colors = {v: f"C{i % 10}" for i, v in enumerate(sorted(drops["variant"].unique()))}
    for (variant, arm), g in drops.groupby(["variant", "arm"], sort=True):
        stats = g.groupby("requested_ratio")["drop_points"].agg(["mean", "std", "count"]).reset_index()
        stats["std"] = stats["std"].where(stats["count"] > 1, 0.0)
        label = variant if arm == "method" else f"{variant} [{arm}]"
        ax.errorbar(stats["requested_ratio"], stats["mean"], yerr=stats["std"], color=colors[variant],
                    ls=styles.get(arm, "-."), marker="o", capsize=3, label=label)
        ax.scatter(g["requested_ratio"], g["drop_points"], color=colors[variant], alpha=0.4, s=10)
    ax.axhline(0.0, color="0.4", lw=1, ls=":", label="dense + fine-tune (same seed)")
    ax.set_xscale("log", base=2)
    ratios = sorted(drops["requested_ratio"].unique())
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])  # the requested ratios themselves, not 2^k labels
    ax.set_xlabel("requested compression ratio (log2 axis)")
    # Linear within ±2 points and logarithmic beyond: the methods near dense stay readable instead of being
    # squashed to a line by one that collapses by 80 points.
    ax.set_yscale("symlog", linthresh=2.0, linscale=1.5)
    ticks = [t for t in (-2, -1, 0, 1, 2, 5, 10, 20, 50, 100) if t >= min(-1, drops["drop_points"].min() - 1)]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.grid(axis="y", color="0.9", lw=0.8)
    ax.set_ylabel("accuracy drop vs dense + fine-tune (points; symlog: linear within ±2)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path)


def accuracy_drop_figure(chosen: "pandas.DataFrame", path: Path, caption: str) -> list[Path]:
    """Accuracy drop against the same seed's tuned dense + fine-tune control vs requested ratio, one line per
    (variant, arm) with mean ± std bars and every seed as a dot. One figure per experiment: with a single
    experiment it is written at ``path`` (.png and .pdf); with several, at ``<stem>__<experiment>`` next to it
    ("/" in the experiment becomes "__"). Experiments without any drop to draw (no control) are skipped."""
    drops = accuracy_drops(chosen)
    experiments = sorted(drops["experiment"].unique())
    written: list[Path] = []
    for exp, out in _figure_paths(path, experiments).items():
        g = drops[drops["experiment"] == exp]
        seeds = g["seed"].nunique()
        title = f"{caption}\n{exp} — accuracy drop vs dense + fine-tune, {seeds} seed{'s' if seeds != 1 else ''}"
        written += _drop_plot(g, title, out)
    return written


# ---------------------------------------------------------------- compact view

def _compact_cell(row: "pandas.Series", reference: str, brief: bool = False) -> str:
    if row["n"] == 0 or _isna(row["acc_mean"]):
        return "unreachable"
    cell = f"{row['acc_mean'] * 100:.2f} ± {row['acc_std'] * 100:.2f}"
    verdict = row["vs_reference"]
    if brief:
        return cell + (f" {verdict}" if verdict in ("better", "worse", "tie") else "")
    if verdict in ("better", "worse", "tie"):
        cell += f" ({row['diff_mean'] * 100:+.2f} [{row['diff_low'] * 100:+.2f}, {row['diff_high'] * 100:+.2f}] {verdict})"
    elif verdict.startswith("n/a") and not _isna(row["diff_mean"]):
        cell += f" ({row['diff_mean'] * 100:+.2f}, 1 seed)"
    return cell


def compact_table(table: "pandas.DataFrame", reference: str = "magnitude", brief: bool = False) -> "pandas.DataFrame":
    """One experiment's verdict as rows (variant, with the arm when it is a control) by requested ratio: each
    cell "mean ± std (difference against the reference [95% interval] verdict)", in percent and points
    (``brief``: "mean ± std verdict")."""
    import pandas as pd

    if table["experiment"].nunique() > 1:
        raise ValueError("compact_table takes one experiment's verdict table")
    label = [v if a == "method" else f"{v} [{a}]" for v, a in zip(table["variant"], table["arm"])]
    cells = table.assign(row=label, cell=[_compact_cell(r, reference, brief) for _, r in table.iterrows()])
    wide = cells.pivot_table(index="row", columns="requested_ratio", values="cell", aggfunc="first")
    # Methods in the order of their mean rank over ratios, each method's controls right after it.
    order = cells.assign(rank=pd.to_numeric(cells["rank"], errors="coerce")).groupby("row")["rank"].mean()
    method_of = dict(zip(label, table["variant"]))
    method_rank = {m: order[[r for r in order.index if method_of[r] == m]].min() for m in set(method_of.values())}
    rows = sorted(wide.index, key=lambda r: (method_rank[method_of[r]], method_of[r], r != method_of[r], r))
    wide = wide.loc[rows].fillna("")
    wide.columns = [f"{c:g}x" for c in wide.columns]
    return wide.reset_index().rename(columns={"row": "method [control arm]"})


# ---------------------------------------------------------------- glue

def _protocol_line(runs: "pandas.DataFrame") -> str:
    if "protocol" not in runs:
        return "protocol not recorded"
    cols = ["protocol"] + (["protocol_hash"] if "protocol_hash" in runs else [])
    pairs = runs[cols].dropna(subset=["protocol"]).drop_duplicates().itertuples(index=False, name=None)
    named = sorted(f"`{p[0]}`" + (f" (hash `{p[1]}`)" if len(p) > 1 and not _isna(p[1]) else "") for p in pairs)
    if not named:
        return "protocol not recorded"
    line = "protocol " + ", ".join(named)
    return line if len(named) == 1 else f"{line} — WARNING: runs from {len(named)} protocols are mixed"


def _recipe_lines(runs: "pandas.DataFrame", chosen: "pandas.DataFrame", table: "pandas.DataFrame") -> list[str]:
    lines = []
    method = table[(table["arm"] == "method") & table["acc_mean"].notna()]
    for (exp, ratio), g in method.groupby(["experiment", "requested_ratio"], sort=True):
        if g["variant"].nunique() < 2:
            continue
        c = cross_recipe_check(runs, chosen, exp, ratio)
        holds = {True: "holds", False: "FLIPS", None: "not checked (no swapped runs)"}[c["order_holds"]]
        miss = f"; missing seeds {c['missing']}" if c["missing"] else ""
        lines.append(f"- {exp} @ {ratio:g}x: {c['winner']} ({c['winner_mean'] * 100:.2f}) > {c['runner_up']} "
                     f"({c['runner_up_mean'] * 100:.2f}); swapped lrs: {c['winner_swapped_mean'] * 100:.2f} vs "
                     f"{c['runner_up_swapped_mean'] * 100:.2f} — order {holds}{miss}")
    return lines


def write_verdict(runs: "pandas.DataFrame", out_dir: Path, caption: str,
                  reference: str = "magnitude") -> list[Path]:
    """Select on validation, build the verdict table and its checks, and write ``verdict.md``, ``verdict.csv``
    and the accuracy-drop figure (``accuracy_drop*.png/.pdf``) under ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = select_on_validation(runs)
    table = verdict_table(chosen, reference)
    controls = control_reference(chosen).set_index("experiment")
    edges = lr_edge_report(chosen)
    brackets = grid_brackets_optimum(chosen)

    md = [f"# Verdict — {caption}", "",
          f"{_protocol_line(runs)}; each point is the lr candidate with the best validation accuracy, its test "
          f"accuracy reported. acc_* in percent, diff_* in points against `{reference}` (method arm), paired on "
          f"seed, 95% Student-t interval over seeds.", ""]
    for exp, g in table.groupby("experiment", sort=True):
        md += [f"## {exp}", ""]
        if exp in controls.index:
            c = controls.loc[exp]
            md += [f"Dense + fine-tune control (tuned): {c['acc_mean'] * 100:.2f} ± {c['acc_std'] * 100:.2f} "
                   f"(n={int(c['n'])})", ""]
        else:
            md += ["Dense + fine-tune control: none tracked", ""]
        md += [f"### Test accuracy (%) by requested ratio — mean ± std over seeds (difference against "
               f"`{reference}` in points [95% interval] and the verdict)", "",
               to_markdown(compact_table(g, reference)), "", "### Every point", "",
               to_markdown(g.drop(columns="experiment")), ""]
    tuned = (edges["kind"] == "compressed") & (edges["n_tuned"] > 0)
    grid_note = ("Not checked: no compressed point had more than one lr candidate." if not tuned.any() else
                 "The lr grid brackets the optimum." if brackets else
                 "**The lr grid does not bracket the optimum**: more than half the tuned points of some method "
                 "chose an edge lr; widen the lr set for every method and rerun.")
    own = against_own_controls(chosen)
    if len(own):
        md += ["## Each method against its own controls (method − control, points, paired on seed, 95% interval)",
               "", to_markdown(own), ""]
    unequal = unequal_tuning(runs)
    md += ["## Learning-rate grid", "", to_markdown(edges), "", grid_note, ""]
    md += unequal + ([""] if unequal else ["Every method and control was tuned over the same learning-rate "
                                           "candidates (equal tuning budgets).", ""])
    recipe = _recipe_lines(runs, chosen, table)
    if recipe:
        md += ["## Cross-recipe check (winner and runner-up swap lrs)", "", *recipe, ""]

    brief = [f"Test accuracy (%), mean ± std over seeds, and the paired verdict against `{reference}` — {caption}", ""]
    for exp, g in table.groupby("experiment", sort=True):
        brief += [f"**{exp}**", "", to_markdown(compact_table(g, reference, brief=True)), ""]
    written = [out_dir / "verdict.md", out_dir / "verdict.csv", out_dir / "verdict_brief.md"]
    written[0].write_text("\n".join(md))
    written[2].write_text("\n".join(brief))
    table.to_csv(written[1], index=False)
    return written + accuracy_drop_figure(chosen, out_dir / "accuracy_drop", caption)
