"""The error-vs-fraction-removed figure family (``coreset``, ``magnitude``): rows = datasets, columns = before
/ after fine-tuning, per variant mean ± std with every seed's point, the dense lines and published marks; and
its tables (operating points, the paper's row beside ours)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench.papers.budgets import Budget, select_runs
from bench.papers.summaries import dense_errors, summarise
from bench.papers.text import epochs_text, error_pct, pm, seed_list
from bench.papers.variants import Variant

PUBLISHED_STAR = {"marker": "*", "ms": 12, "color": "gold", "mec": "k"}  # a published operating point


def removed_ticks(ax: Any, ratios: Sequence[float]) -> None:
    """x = log2(ratio), labelled as % removed with the ratio beside it."""
    ax.set_xticks([np.log2(r) for r in ratios])
    ax.set_xticklabels([f"{100 * (1 - 1 / r):.0f}%\n({r:g}x)" for r in ratios], fontsize=7)


def draw_panel(ax: Any, comp: "pandas.DataFrame", points: "pandas.DataFrame", variant_list: Sequence[Variant],
               column: str, dense: dict[str, tuple[float, float, int]], log_y: bool = True) -> None:
    """One error panel: per variant mean ± std (error bars) and every seed's point, dense lines."""
    present = [v for v in variant_list if v.label in set(points["label"])]
    offsets = np.linspace(-0.12, 0.12, max(len(present), 1))
    raw = "acc_top1" if column == "err_after" else "acc_top1_before_finetune"
    for off, v in zip(offsets, present):
        grp = points[points["label"] == v.label].sort_values("ratio")
        style = {"color": v.style.get("color"), "marker": v.style.get("marker", "o"), "ls": v.style.get("ls", "-"),
                 "mfc": v.style.get("mfc", v.style.get("color"))}
        ax.errorbar(np.log2(grp["ratio"]) + off, grp[f"{column}_mean"], yerr=grp[f"{column}_std"], capsize=2,
                    ms=4, lw=1.2, label=v.label, **style)
        seeds = comp[comp["label"] == v.label]
        ax.scatter(np.log2(seeds["compression_ratio"]) + off, error_pct(seeds[raw]), color=style["color"],
                   alpha=0.35, s=9, zorder=3)
    lines = {"baseline": ("k", "--", "dense"), "control": ("0.45", ":", "dense + fine-tune")}
    for kind, (mean, std, n) in dense.items():
        color, ls, name = lines[kind]
        ax.axhline(mean, color=color, ls=ls, lw=1, label=f"{name} ({pm(mean, std)} %, n={n})")
    if log_y:
        from matplotlib.ticker import FormatStrFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=6)
    ax.grid(alpha=0.3, which="both")


def runcaption(comp: "pandas.DataFrame", dense: "pandas.DataFrame") -> str:
    return f"seeds {seed_list(comp)}, {len(comp)} compressed + {len(dense)} dense/control runs"


@dataclass
class Section:
    """One dataset's runs for a paper figure: its budget, variants, runs and their summaries."""

    dataset: str
    budget: Budget
    variants: list[Variant]
    comp: "pandas.DataFrame"
    dense: "pandas.DataFrame"
    points: "pandas.DataFrame"
    dense_err: dict[str, tuple[float, float, int]]


def collect(runs: "pandas.DataFrame", budgets: dict[str, Budget], model: str, vlist: list[Variant],
            ratios: Sequence[float] | None = None) -> list[Section]:
    """A Section per dataset with at least one of the figure's compressed runs (at ``ratios``, if given)."""
    sections: list[Section] = []
    if runs.empty:
        return sections
    for dataset, budget in budgets.items():
        comp, dense = select_runs(runs, dataset, model, budget, vlist)
        if ratios is not None:
            comp = comp[np.isclose(comp["requested"].to_numpy()[:, None], np.asarray(ratios, float)[None]).any(axis=1)]
        if not comp.empty:
            sections.append(Section(dataset, budget, vlist, comp, dense, summarise(comp, [v.label for v in vlist]),
                                    dense_errors(dense)))
    return sections


Mark = tuple[float, float, str, dict]  # (compression ratio, test error %, label, matplotlib style)


def error_figure(sections: list[Section], model_name: str, suptitle: str, path: Path,
                 marks: dict[str, list[Mark]] | None = None, hlines: dict[str, list[tuple[float, str]]] | None = None,
                 ) -> list[Path]:
    """Rows = datasets, columns = before / after fine-tuning; published marks go on the after panel of the
    datasets whose name starts with the dict key."""
    from bench.drawing import pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(len(sections), 2, figsize=(12, 4.2 * len(sections)), squeeze=False, sharey="row")
    for row, sec in enumerate(sections):
        for col, (column, when) in enumerate((("err_before", "before fine-tuning"), ("err_after", "after fine-tuning"))):
            ax = axes[row][col]
            draw_panel(ax, sec.comp, sec.points, sec.variants, column, sec.dense_err)
            removed_ticks(ax, sorted(sec.points["requested"].unique()))
            ax.set_title(f"{sec.dataset} / {model_name} — {when}\n{runcaption(sec.comp, sec.dense)}\n"
                         f"{sec.budget.epochs} baseline epochs, fine-tune at most {epochs_text(sec.budget.finetune_epochs)}",
                         fontsize=8)
            ax.set_xlabel("parameters removed (whole network; compression ratio)", fontsize=8)
        ax = axes[row][1]
        for prefix, items in (marks or {}).items():
            if sec.dataset.startswith(prefix):
                for ratio, err, label, style in items:
                    ax.plot([np.log2(ratio)], [err], ls="none", label=label, **style)
        for prefix, items in (hlines or {}).items():
            if sec.dataset.startswith(prefix):
                for err, label in items:
                    ax.axhline(err, color="gold", lw=0.9, ls="-.", label=label)
        axes[row][0].set_ylabel("test error (%, log scale)")
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


POINT_COLUMNS = ["dataset", "model", "label", "requested", "ratio", "removed_pct", "params_after", "n_seeds",
                 "err_before_mean", "err_before_std", "err_after_mean", "err_after_std", "baseline_epochs",
                 "finetune_epochs"]


def points_table(sections: list[Section], model: str, extra: dict[str, Any] | None = None) -> "pandas.DataFrame":
    """Every operating point of every section; ``extra`` maps a column name to f(section, label, ratio)."""
    import pandas as pd

    frames = []
    for sec in sections:
        df = sec.points.assign(dataset=sec.dataset, model=model, baseline_epochs=sec.budget.epochs,
                               finetune_epochs=sec.budget.finetune_epochs)
        for name, fn in (extra or {}).items():
            df[name] = [fn(sec, label, r) for label, r in zip(df["label"], df["requested"])]
        frames.append(df)
    cols = POINT_COLUMNS[:7] + list(extra or {}) + POINT_COLUMNS[7:]
    return pd.concat(frames, ignore_index=True)[cols]


def published_beside_ours(published: dict[str, str], sections: list[Section], ratio: float, model_name: str,
                          extra: Callable[[Section, Any], dict[str, str]]) -> "pandas.DataFrame":
    """The paper's row, then ours at ``ratio``: one row per variant and dataset (errors in %, mean ± std over
    seeds). ``extra(section, point)`` gives the paper-specific cells; columns follow ``published``'s keys."""
    import pandas as pd

    rows = [published]
    for sec in sections:
        base = sec.dense_err.get("baseline")
        for r in sec.points[np.isclose(sec.points["requested"], ratio)].itertuples():
            rows.append({
                "dataset": f"{sec.dataset} (ours)", "model": model_name, "variant": r.label,
                "baseline_error_pct": pm(base[0], base[1]) if base else "",
                "error_before_ft_pct": pm(r.err_before_mean, r.err_before_std),
                "error_after_ft_pct": pm(r.err_after_mean, r.err_after_std),
                "params": f"{r.params_before / 1e3:.0f}K → {r.params_after / 1e3:.1f}K",
                **extra(sec, r), "seeds": str(r.n_seeds)})
    return pd.DataFrame(rows)


def write_table_with_notes(df: "pandas.DataFrame", path: Path, title: str, notes: str) -> list[Path]:
    """The table as CSV + Markdown, ``notes`` appended to the Markdown."""
    from bench.drawing import write_table

    written = write_table(df, path, title)
    md = path.with_suffix(".md")
    md.write_text(md.read_text() + notes)
    return written


def write_error_paper(name: str, label: str, sections: list[Section], out_dir: Path, model: str, model_name: str,
                      suptitle: str, protocol: str, published: tuple[dict[str, list], dict[str, list]],
                      table: tuple["pandas.DataFrame", str, str], notes: str,
                      point_columns: dict[str, Any] | None = None) -> list[Path]:
    """The coreset and magnitude papers' outputs: the error figure (``<name>``), every operating point
    (``<name>_points``) and the paper's table beside ours (``table``: frame, file suffix, title), each naming
    the protocol. ``published`` holds the figure's (marks, hlines) per dataset."""
    from bench.drawing import write_table

    marks, hlines = published
    written = error_figure(sections, model_name, suptitle + (f"\n{protocol}" if protocol else ""), out_dir / name,
                           marks=marks, hlines=hlines)
    written += write_table(points_table(sections, model, point_columns), out_dir / f"{name}_points",
                           f"{label} paper figure: every operating point (test error %, mean / std over seeds)")
    frame, suffix, title = table
    written += write_table_with_notes(frame, out_dir / f"{name}_{suffix}",
                                      title + (f"; ours under {protocol}" if protocol else ""), notes)
    return written
