"""The accuracy-drop figure: each chosen run against the same seed's tuned dense + fine-tune control."""
from __future__ import annotations

from pathlib import Path

from bench.drawing import pyplot, save


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
    from bench.controls import line_styles  # each control's own line, as it registered it

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = line_styles()
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
