"""Figures and tables from tracked runs only (``mlflow.search_runs`` -> pandas): the cross-method
comparison per dataset/model, and each seed paper's figure (``bench/papers``).

Every figure states dataset, model, seeds and how many runs it came from; the dense baseline and the
dense + fine-tune control are drawn on every accuracy plot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.drawing import caption as runs_caption, dense_lines, dense_reference, pyplot, save, write_table
from bench.validity import skipped_text

DELTAS = (0.0, 0.5, 1.0, 2.0)  # accuracy points below dense for the commensurate table


class NoRunsError(RuntimeError):
    """The store holds nothing to draw."""


def pareto_mask(acc: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Points not dominated in (accuracy up, ratio up)."""
    keep = np.ones(len(acc), dtype=bool)
    for i in range(len(acc)):
        dominated = (acc >= acc[i]) & (ratio >= ratio[i]) & ((acc > acc[i]) | (ratio > ratio[i]))
        keep[i] = not dominated.any()
    return keep


def pareto_plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """One study's trials: validation accuracy vs achieved ratio, the front highlighted."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["compression_ratio"] for r in rows]
    y = [r["val_acc_top1"] for r in rows]
    front = sorted((r["compression_ratio"], r["val_acc_top1"]) for r in rows if r["pareto"])
    ax.scatter(x, y, color="0.6", label="trials")
    if front:
        ax.plot(*zip(*front), "o-", color="C3", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (params_total / params_effective)")
    ax.set_ylabel("validation accuracy (top-1)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------- tidy runs

def tidy_runs(tracker: Any | None = None, experiments: list[str] | None = None) -> "pandas.DataFrame":
    """All FINISHED runs of the store as one tidy DataFrame (one row per run).

    ``experiments`` ("dataset/model" names) limits it to those experiments.

    Runs are told apart by what was recorded when they ran — the ``protocol``/``protocol_hash``, ``arm``,
    ``variant`` and ``lr`` tags — never by comparing their parameters with today's method defaults, so a
    changed default cannot relabel old runs. Runs from before protocols existed have protocol ``legacy``.

    Runs of kind ``reference`` (a reference's runs logged here by ``compare --against``) are not this store's
    results and are left out. Runs tagged ``invalid`` (known to be wrong, ``bench.validity``: FAILED with the reason) are left out whatever
    their status, and counted: ``attrs["skipped_invalid"]`` maps each experiment to {reason: runs skipped}.
    """
    import pandas as pd

    from bench.tracking import Tracker

    tracker = tracker or Tracker()
    df = tracker.runs_frame(experiments)
    if df.empty:
        return df
    skipped = skipped_invalid(df)
    if "tags.invalid" in df:
        df = df[df["tags.invalid"].isna()]
    df = df[df["status"] == "FINISHED"].copy()
    if "tags.kind" in df:  # copies of another store's runs (``bench.reference_import``): never local results
        df = df[df["tags.kind"] != "reference"]
    df.attrs["skipped_invalid"] = skipped
    if df.empty:
        return df

    def tag(name: str, default: Any = None) -> "pandas.Series":
        column = f"tags.{name}"
        return df[column] if column in df else pd.Series(default, index=df.index, dtype=object)

    out = pd.DataFrame({
        "run_id": df["run_id"], "experiment": df["tags.dataset"] + "/" + df["tags.model"],
        "dataset": df["tags.dataset"], "model": df["tags.model"], "kind": df["tags.kind"],
        "method": df["tags.method"], "seed": pd.to_numeric(df["tags.seed"], errors="coerce"),
        "study": tag("study"), "start_time": df["start_time"],
        "protocol": tag("protocol").fillna("legacy"), "protocol_hash": tag("protocol_hash").fillna("legacy"),
        "arm": tag("arm").fillna("method"), "lr": pd.to_numeric(tag("lr"), errors="coerce"),
        "settings": tag("settings").fillna("defaults"),
        "settings_rank": pd.to_numeric(tag("settings_rank"), errors="coerce").fillna(0).astype(int),
        "tuning": tag("tuning").fillna("every-seed"), "chosen": tag("chosen"),
        "error": tag("error"), "baseline_key": tag("baseline_key"),
    })
    for col in [c for c in df.columns if c.startswith("metrics.")]:
        out[col[len("metrics."):]] = df[col]
    if "requested_ratio" not in out:
        out["requested_ratio"] = np.nan
    out["requested_ratio"] = out["requested_ratio"].fillna(pd.to_numeric(tag("requested_ratio"), errors="coerce"))
    out.loc[out["kind"] == "control", "requested_ratio"] = 1.0
    params = [c for c in df.columns if c.startswith("params.method.") and c not in ("params.method.family", "params.method.structured")]
    out["method_params"] = [
        {c[len("params.method."):]: row[c] for c in params if isinstance(row[c], str)} for _, row in df.iterrows()]
    for col in [c for c in df.columns if c.startswith("params.dataset.")]:
        out[col[len("params."):]] = df[col]  # e.g. train_limit: a quick check is never mixed with a full run
    for col in ("params.finetune.epochs", "params.baseline.epochs"):
        out[col[len("params."):]] = df[col] if col in df else None
    tuned = out["study"].fillna("").str.contains("/tpe-")
    recorded = tag("variant")
    out["variant"] = [
        (f"{m} (tuned)" if t else v if isinstance(v, str) else f"{m} (untagged)") if k in ("compressed", "unreachable")
        else m for m, v, t, k in zip(out["method"], recorded, tuned, out["kind"])]
    out = out.reset_index(drop=True)
    out.attrs["tracking_uri"] = tracker.uri  # paper figures read step metrics from the same store
    out.attrs["skipped_invalid"] = skipped
    return out


def skipped_invalid(frame: "pandas.DataFrame") -> dict[str, dict[str, int]]:
    """Per experiment ("dataset/model"), how many runs of ``Tracker.runs_frame`` are tagged ``invalid``, by reason."""
    if "tags.invalid" not in frame:
        return {}
    bad = frame[frame["tags.invalid"].notna()]
    counts: dict[str, dict[str, int]] = {}
    for (dataset, model, reason), n in bad.groupby(["tags.dataset", "tags.model", "tags.invalid"]).size().items():
        counts.setdefault(f"{dataset}/{model}", {})[str(reason)] = int(n)
    return counts


# ---------------------------------------------------------------- aggregation

def operating_points(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Mean ± std over seeds per (variant, requested ratio), with the seed count."""
    comp = runs[runs["kind"] == "compressed"].copy()
    if comp.empty:
        return comp
    comp["requested"] = comp["requested_ratio"].round(3)
    # The same configuration and seed run again (a 3-seed study after a 1-seed one) is one observation,
    # not two: keep the newest, so means and stds count each seed once.
    same = ["variant", "requested", "seed"] + [c for c in comp.columns if c.startswith(("dataset.", "finetune.", "baseline."))]
    comp = comp.sort_values("start_time").drop_duplicates(same, keep="last")
    agg = comp.groupby(["variant", "requested"]).agg(
        n=("acc_top1", "size"), acc_mean=("acc_top1", "mean"), acc_std=("acc_top1", "std"),
        val_mean=("val_acc_top1", "mean"), ratio_mean=("compression_ratio", "mean"),
        ratio_min=("compression_ratio", "min"), ratio_max=("compression_ratio", "max"),
        acc_before_ft=("acc_top1_before_finetune", "mean"),
        theoretical_speedup=("theoretical_speedup", "mean"), measured_speedup=("measured_speedup", "mean"),
        flops=("flops_effective", "mean"), size_bytes=("size_bytes", "mean"), latency_ms_b1=("latency_ms_b1", "mean"),
        latency_ms_b256=("latency_ms_b256", "mean"),
    ).reset_index()
    agg["acc_std"] = agg["acc_std"].fillna(0.0)
    if "finetune_epochs_total" in comp:  # iterative methods fine-tune between rounds: show the real budget
        budget = comp.groupby(["variant", "requested"])["finetune_epochs_total"].mean().rename("finetune_epochs")
        agg = agg.merge(budget.reset_index(), on=["variant", "requested"], how="left")
    return agg


def commensurate_table(points: "pandas.DataFrame", dense_acc: float) -> "pandas.DataFrame":
    """For each δ, each variant's most compressed operating point whose mean accuracy is within δ points of dense."""
    import pandas as pd

    rows = []
    for delta in DELTAS:
        for variant, group in points.groupby("variant"):
            ok = group[group["acc_mean"] >= dense_acc - delta / 100]
            if ok.empty:
                rows.append({"delta_points": delta, "variant": variant, "ratio": None})
                continue
            best = ok.loc[ok["ratio_mean"].idxmax()]
            rows.append({"delta_points": delta, "variant": variant, "ratio": best["ratio_mean"],
                         "acc": best["acc_mean"], "flops": best["flops"], "size_bytes": best["size_bytes"],
                         "latency_ms_b256": best["latency_ms_b256"], "n_seeds": best["n"]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- drawing

def pd_concat(*frames: "pandas.DataFrame") -> "pandas.DataFrame":
    import pandas as pd

    return pd.concat([f for f in frames if len(f)], ignore_index=True)


def accuracy_vs_ratio(runs: "pandas.DataFrame", experiment: str, path: Path) -> list[Path]:
    plt = pyplot()
    points, dense = operating_points(runs), dense_reference(runs)
    comp = runs[runs["kind"] == "compressed"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (variant, group) in enumerate(points.groupby("variant")):
        group = group.sort_values("ratio_mean")
        color = f"C{i % 10}"
        ax.errorbar(group["ratio_mean"], group["acc_mean"], yerr=group["acc_std"], color=color, marker="o",
                    capsize=3, label=variant)
        pts = comp[comp["variant"] == variant]
        ax.scatter(pts["compression_ratio"], pts["acc_top1"], color=color, alpha=0.35, s=12)
    front = pareto_mask(comp["acc_top1"].to_numpy(), comp["compression_ratio"].to_numpy()) if len(comp) else []
    if len(comp):
        f = comp[front].sort_values("compression_ratio")
        ax.plot(f["compression_ratio"], f["acc_top1"], color="k", alpha=0.3, lw=3, label="Pareto front (single runs)")
    dense_lines(ax, dense)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("compression ratio (achieved; log scale)")
    ax.set_ylabel("test accuracy (top-1)")
    ax.set_title(f"Accuracy vs compression — {runs_caption(runs, experiment)}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return save(fig, path)


def accuracy_vs_speedup(runs: "pandas.DataFrame", experiment: str, path: Path) -> list[Path]:
    plt = pyplot()
    points, dense = operating_points(runs), dense_reference(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, column, label in ((axes[0], "theoretical_speedup", "theoretical speedup (FLOPs)"),
                              (axes[1], "measured_speedup", "measured CPU speedup (batch 256)")):
        for i, (variant, group) in enumerate(points.groupby("variant")):
            group = group.sort_values(column)
            ax.errorbar(group[column], group["acc_mean"], yerr=group["acc_std"], marker="o", capsize=3,
                        color=f"C{i % 10}", label=variant)
        dense_lines(ax, dense)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
    axes[0].set_ylabel("test accuracy (top-1)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Accuracy vs speedup — {runs_caption(runs, experiment)}", fontsize=9)
    return save(fig, path)


def summary_table(points: "pandas.DataFrame") -> "pandas.DataFrame":
    columns = ["variant", "requested", "ratio_mean", "ratio_min", "ratio_max", "n", "acc_mean", "acc_std",
               "acc_before_ft", "theoretical_speedup", "measured_speedup"]
    out = points[columns + [c for c in ("finetune_epochs",) if c in points]].copy()
    out["acc (mean ± std)"] = [f"{m * 100:.2f} ± {s * 100:.2f}" for m, s in zip(out["acc_mean"], out["acc_std"])]
    return out.rename(columns={"requested": "requested_ratio", "ratio_mean": "achieved_ratio"})


def protocol_caption(group: "pandas.DataFrame") -> str:
    """The protocol of one (experiment, protocol) group of runs, for titles: the built-in's caption when its
    hash matches, else its name and hash (a protocol changed by command-line flags)."""
    from bench.protocol_registry import all_protocols

    name, digest = group["protocol"].iloc[0], group["protocol_hash"].iloc[0]
    first = group.iloc[0]
    candidates = [q for p in all_protocols() for q in (p, p.for_data(str(first["dataset"]), str(first["model"])))]
    known = next((q for q in candidates if q.name == name and q.hash == digest), None)
    if known is not None:
        # the plan's lr candidates are not part of the hash: say which ones these runs were tuned over
        run = sorted(group.loc[group["kind"] == "compressed", "lr"].dropna().unique()) if "lr" in group else []
        widened = run and tuple(float(lr) for lr in run) != tuple(known.lr_candidates)
        return known.caption() + (f"; lr candidates run: {'/'.join(f'{lr:g}' for lr in run)}" if widened else "")
    if name == "legacy":
        return "pre-protocol runs (fixed 2-epoch fine-tune; budgets differ by method family)"
    return f"protocol {name}-{digest} (a variant of {name}; its settings are the runs' protocol.* params)"


def _arm_labels(runs: "pandas.DataFrame") -> "pandas.DataFrame":
    """Variant names that carry the arm (``coreset [scratch]``), for figures that draw one line per variant."""
    out = runs.copy()
    control = out["arm"].fillna("method") != "method"
    out.loc[control, "variant"] = out.loc[control, "variant"] + " [" + out.loc[control, "arm"] + "]"
    return out


def _baselines_for(runs: "pandas.DataFrame", experiment: str, group: "pandas.DataFrame") -> "pandas.DataFrame":
    """The dense baselines behind a protocol's runs: baselines carry no protocol (one serves every protocol
    with the same dense recipe), so they are matched on experiment and baseline epochs."""
    dense = runs[(runs["experiment"] == experiment) & (runs["kind"] == "baseline")]
    epochs = group.loc[group["kind"] == "compressed", "baseline.epochs"].dropna().astype(str).unique()
    return dense[dense["baseline.epochs"].astype(str).isin(epochs)] if len(epochs) else dense


def comparison_figures(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The cross-method figures and tables for every dataset/model and protocol in ``runs``.

    Each point is chosen on validation among its learning-rate candidates (``bench.verdict``) before any
    mean is taken; figures and tables go to ``<experiment>/<protocol>-<hash>/``, with the verdict beside them.
    """
    from bench.reference_runs import comparison_rows, export_runs
    from bench.verdict import select_on_validation, write_verdict

    written: list[Path] = []
    for (experiment, protocol, digest), all_runs in runs.groupby(["experiment", "protocol", "protocol_hash"]):
        if not (all_runs["kind"] == "compressed").any():
            continue
        caption = protocol_caption(all_runs)
        skipped = skipped_text(runs.attrs.get("skipped_invalid", {}).get(experiment, {}))
        caption = f"{caption}; {skipped}" if skipped else caption  # the verdict and every caption say so
        folder = out_dir / experiment.replace("/", "__") / f"{protocol}-{digest}"
        written += write_verdict(all_runs, folder, f"{experiment}, {caption}")
        # the runs behind it as data: commit it beside the verdict, and `figures --runs` redraws from it
        written.append(export_runs(comparison_rows(runs, all_runs), folder / "runs.csv"))
        chosen = select_on_validation(all_runs)
        group = _arm_labels(pd_concat(chosen[chosen["kind"].isin(["compressed", "control"])],
                                      _baselines_for(runs, experiment, all_runs)))
        group.attrs["protocol_caption"] = caption
        written += accuracy_vs_ratio(group, experiment, folder / "accuracy_vs_ratio")
        written += accuracy_vs_speedup(group, experiment, folder / "accuracy_vs_speedup")
        points = operating_points(group)
        written += write_table(summary_table(points), folder / "summary", f"Per-method summary — {runs_caption(group, experiment)}")
        dense = dense_reference(group)
        if "baseline" in dense:
            written += write_table(commensurate_table(points, dense["baseline"][0]), folder / "commensurate",
                                    f"Smallest model within δ points of dense ({dense['baseline'][0]:.4f}) — "
                                    f"{runs_caption(group, experiment)}")
        comp = group[group["kind"] == "compressed"]
        front = comp[pareto_mask(comp["acc_top1"].to_numpy(), comp["compression_ratio"].to_numpy())]
        written += write_table(front[["variant", "seed", "requested_ratio", "compression_ratio", "acc_top1", "run_id"]]
                                .sort_values("compression_ratio"), folder / "pareto", f"Pareto front (single runs chosen on validation) — {runs_caption(group, experiment)}")
    return written


def make_figures(out_dir: Path, tracker: Any | None = None, log: Any = print) -> list[Path]:
    """Every figure and table; raises NoRunsError on an empty store."""
    import pandas as pd

    from bench.papers import paper_figures, paper_protocol

    runs = tidy_runs(tracker)
    if runs.empty or not (runs["kind"] == "compressed").any():
        uri = tracker.uri if tracker is not None else "the default store"
        raise NoRunsError(f"no finished compressed runs in {uri}; run `make bench METHOD=magnitude` first")
    for experiment, skipped in sorted(runs.attrs.get("skipped_invalid", {}).items()):
        log(f"{experiment}: {skipped_text(skipped)}")
    papers = paper_figures()
    paper_run = runs["protocol"].isin([paper_protocol(name) for name in papers])
    written = comparison_figures(runs[~paper_run], out_dir)
    # A paper figure draws only the runs of its own recipe (``paper-<name>``), one folder per scale: never a
    # comparison under another protocol that happens to share a dataset and model.
    for name, figure in papers.items():
        mine = runs[runs["protocol"] == paper_protocol(name)]
        produced: list[Path] = []
        for digest, group in mine.groupby("protocol_hash"):
            # baselines carry no protocol: the ones these runs started from (by their cache key) come along
            dense = runs[(runs["kind"] == "baseline") & runs["baseline_key"].isin(group["baseline_key"].dropna())]
            group = pd.concat([group, dense]).copy()
            group.attrs.update(runs.attrs)
            group.attrs["protocol_caption"] = protocol_caption(group)
            produced += figure(group, out_dir / "papers" / name / f"{paper_protocol(name)}-{digest}")
        if produced:
            written += produced
        else:
            log(f"paper figure {name!r}: no runs for it yet; `make reproduce PAPER={name}` produces them")
    return written
