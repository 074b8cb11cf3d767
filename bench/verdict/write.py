"""The written verdict: ``verdict.md``, ``verdict.csv``, ``verdict_brief.md`` and the accuracy-drop figure."""
from __future__ import annotations

from pathlib import Path

from bench.verdict.agreement import agreement_lines
from bench.verdict.compact import compact_table
from bench.verdict.controls import against_own_controls, control_reference
from bench.verdict.cross_recipe import cross_recipe_check
from bench.verdict.figure import accuracy_drop_figure
from bench.verdict.headline import headline_text
from bench.verdict.lr_grid import EDGE_THRESHOLD, lr_edge_report, unequal_tuning, widened_candidates
from bench.verdict.markdown import to_markdown
from bench.verdict.selection import select_on_validation
from bench.verdict.settings import settings_lines
from bench.verdict.table import verdict_table
from bench.verdict.values import _isna


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


def _selection_line(runs: "pandas.DataFrame") -> str:
    if "tuning" in runs and (runs["tuning"] == "seed0").any():
        return ("each point is the configuration (lr x the method's own settings) with the best validation accuracy "
                "on seed 0, run on every seed (controls: their lr chosen on seed 0 the same way)")
    return "each point is the lr candidate with the best validation accuracy"


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


def widen_lines(runs: "pandas.DataFrame", widened: dict[str, tuple[float, ...]]) -> list[str]:
    """The edge rule's verdict and the command that widens the grid for every method (tracked points are reused,
    so it trains only the new candidates)."""
    protocol = runs["protocol"].dropna().iloc[0] if "protocol" in runs and runs["protocol"].notna().any() else "fair"
    lines = []
    for exp, lrs in sorted(widened.items()):
        dataset, model = exp.split("/", 1)
        lines.append(f"**The lr grid does not bracket the optimum on {exp}**: some method chose an edge lr on more "
                     f"than {EDGE_THRESHOLD:.0%} of its tuned points (the edge rule). Not widened automatically; "
                     f"widen it for every method and rerun (only the new candidates train): "
                     f"`make compare DATASET={dataset} MODEL={model} PROTOCOL={protocol} "
                     f"FINETUNE_LR={','.join(f'{lr:g}' for lr in lrs)}`")
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
    widened = widened_candidates(runs, chosen)

    md = [f"# Verdict — {caption}", "",
          f"{_protocol_line(runs)}; {_selection_line(runs)}, its test accuracy reported. acc_* in percent, diff_* in points against `{reference}` (method arm), paired on "
          f"seed, 95% Student-t interval over seeds.", "",
          "## The answer at each ratio", "",
          "The best arm (highest mean test accuracy), the arms it cannot be told apart from (paired 95 % interval "
          "covering 0, or fewer than two common seeds) and its margin over the best arm outside that set.", "",
          headline_text(chosen), ""]
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
                 "The lr grid brackets the optimum: no method chose one edge lr on more than a third of its tuned "
                 "points." if not widened else "\n".join(widen_lines(runs, widened)))
    own = against_own_controls(chosen)
    if len(own):
        md += ["## Each method against its own controls (method − control, points, paired on seed, 95% interval)",
               "", to_markdown(own), ""]
    md += settings_lines(runs) + agreement_lines(runs)
    unequal = unequal_tuning(runs)
    md += ["## Learning-rate grid", "", to_markdown(edges), "", grid_note, ""]
    md += unequal + ([""] if unequal else ["Every method and control was tuned over the same learning-rate "
                                           "candidates (equal tuning budgets).", ""])
    recipe = _recipe_lines(runs, chosen, table)
    if recipe:
        md += ["## Cross-recipe check (winner and runner-up swap lrs)", "", *recipe, ""]

    brief = [f"Test accuracy (%), mean ± std over seeds, and the paired verdict against `{reference}` — {caption}", "",
             headline_text(chosen), ""]
    for exp, g in table.groupby("experiment", sort=True):
        brief += [f"**{exp}**", "", to_markdown(compact_table(g, reference, brief=True)), ""]
    written = [out_dir / "verdict.md", out_dir / "verdict.csv", out_dir / "verdict_brief.md"]
    written[0].write_text("\n".join(md))
    written[2].write_text("\n".join(brief))
    table.to_csv(written[1], index=False)
    return written + accuracy_drop_figure(chosen, out_dir / "accuracy_drop", caption)
