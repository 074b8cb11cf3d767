"""The accuracy-vs-compression-ratio figure family (``lma``, ``multihash``): per variant mean ± std accuracy
against the achieved ratio on a log2 axis, every seed's point, the dense lines, then the paper's own table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.papers.budgets import Selected


def draw_variant_accuracy(ax: Any, table: "pandas.DataFrame", comp: "pandas.DataFrame",
                          styles: dict[str, tuple[str, str, float]]) -> None:
    """Per variant of ``styles`` (colour, marker, x shift factor): mean ± std accuracy (%) vs achieved ratio
    from ``variant_accuracy_table`` and every seed's point from ``comp``."""
    for variant, (color, marker, shift) in styles.items():
        t = table[table["variant"] == variant].sort_values("achieved_ratio")
        if t.empty:
            continue
        # Variants sit at the same ratios: a small horizontal shift keeps them apart (ratio is log-scaled).
        ax.errorbar(t["achieved_ratio"] * shift, t["acc_mean_pct"], yerr=t["acc_std_pct"], color=color,
                    marker=marker, capsize=3, label=f"{variant} (mean ± std)")
        pts = comp[comp["paper_variant"] == variant]
        ax.scatter(pts["compression_ratio"] * shift, 100 * pts["acc_top1"], color=color, marker=marker, s=12,
                   alpha=0.35)


def draw_dense_accuracy(ax: Any, dense: dict[str, tuple[float, float, int]], baseline_label: str = "dense") -> None:
    """The dense baseline and dense + fine-tune control (``dense_reference``) as lines, accuracy in %."""
    styles = {"baseline": ("k", "--", baseline_label), "control": ("0.4", ":", "dense + fine-tune")}
    for kind, (mean, std, n) in dense.items():
        color, ls, label = styles[kind]
        ax.axhline(100 * mean, color=color, ls=ls, lw=1, label=f"{label} ({100 * mean:.2f} ± {100 * std:.2f}, n={n})")


def log2_ratio_axis(ax: Any, ticks: Any, right: float, labels: list[str] | None = None) -> None:
    """A log2 compression-ratio axis from 1.6 to ``right``, ticks at the sizes drawn, so our panels and the
    paper's line up by ratio."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(1.6, right)
    ax.set_xticks(list(ticks))
    ax.set_xticklabels(labels or [f"{t:.3g}x" for t in ticks], fontsize=7)
    ax.minorticks_off()


def draw_selected(selected: Selected, draw: Callable[..., list[Path]], out_dir: Path,
                  published: Callable[[], "pandas.DataFrame"], published_name: str, published_title: str) -> list[Path]:
    """``draw(experiment, comp, dense, budget, out_dir)`` for every experiment ``select_per_experiment`` kept,
    then, when anything was drawn, the ``published()`` table as ``out_dir/published_name`` (CSV + Markdown)."""
    from bench.drawing import write_table

    written: list[Path] = []
    for experiment, (comp, dense, budget) in selected.items():
        written += draw(experiment, comp, dense, budget, out_dir)
    if written:
        written += write_table(published(), out_dir / published_name, published_title)
    return written
