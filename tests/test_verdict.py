"""The fair-verdict statistics on planted run frames whose right answers are computed by hand."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from bench.verdict import (
    PairedDiff,
    accuracy_drop_figure,
    control_reference,
    cross_recipe_check,
    grid_brackets_optimum,
    lr_edge_report,
    paired_interval,
    select_on_validation,
    to_markdown,
    verdict_table,
    write_verdict,
)

EXP = "fashion-mnist/lenet300"
LRS = (3e-4, 1e-3, 3e-3)


def run(variant: str = "magnitude", ratio: float = 4.0, seed: int = 0, lr: float = 1e-3, val: float = 0.8,
        test: float = 0.8, kind: str = "compressed", arm: str = "method", experiment: str = EXP,
        **extra) -> dict:
    """One tidy-runs row with the schema's columns."""
    return {"experiment": experiment, "dataset": experiment.split("/")[0], "model": experiment.split("/")[1],
            "kind": kind, "method": variant.split(" ")[0], "variant": variant, "arm": arm, "protocol": "fair",
            "protocol_hash": "abc123", "requested_ratio": ratio, "seed": seed, "lr": lr, "val_acc_top1": val,
            "acc_top1": test, "compression_ratio": ratio * 0.98, "theoretical_speedup": ratio / 2,
            "measured_speedup": ratio / 3, "train_epochs_total": 12.0, "run_id": f"{variant}-{arm}-{ratio}-{seed}-{lr}",
            "error": None} | extra


def control(seed: int, test: float, experiment: str = EXP, lr: float = 1e-3, val: float | None = None) -> dict:
    return run("dense+finetune", 1.0, seed, lr, test if val is None else val, test, kind="control",
               experiment=experiment)


def unreachable(variant: str, ratio: float, seed: int, error: str) -> dict:
    return run(variant, ratio, seed, math.nan, math.nan, math.nan, kind="unreachable", error=error,
               compression_ratio=math.nan, theoretical_speedup=math.nan, measured_speedup=math.nan)


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def one_per_seed(variant: str, accs: dict[int, float], ratio: float = 4.0, arm: str = "method",
                 lr: float = 1e-3) -> list[dict]:
    return [run(variant, ratio, s, lr, a, a, arm=arm) for s, a in accs.items()]


# ---------------------------------------------------------------- selection

def _selection_runs() -> pd.DataFrame:
    return frame([
        # seed 0: best test (0.90 at 3e-4) is not best validation (0.85 at 1e-3): the middle lr wins.
        run(seed=0, lr=3e-4, val=0.80, test=0.90),
        run(seed=0, lr=1e-3, val=0.85, test=0.82),
        run(seed=0, lr=3e-3, val=0.83, test=0.88),
        # seed 1: exact validation tie between 3e-4 and 3e-3 -> the smaller lr, at the low edge.
        run(seed=1, lr=3e-3, val=0.86, test=0.91),
        run(seed=1, lr=1e-3, val=0.70, test=0.95),
        run(seed=1, lr=3e-4, val=0.86, test=0.80),
        # seed 2: largest lr is best on validation -> high edge.
        run(seed=2, lr=3e-4, val=0.70, test=0.99),
        run(seed=2, lr=3e-3, val=0.90, test=0.85),
        # a single candidate: no edge information.
        run("coreset", seed=0, lr=1e-3, val=0.5, test=0.5),
        # the untuned dense model takes no part; the control is tuned like a method.
        run("dense", 1.0, 0, 1e-3, 0.99, 0.99, kind="baseline"),
        control(0, 0.89, lr=3e-4, val=0.88), control(0, 0.95, lr=1e-3, val=0.87),
        unreachable("lma", 128.0, 0, "rank 0 needed"),
    ])


def _chosen_row(chosen: pd.DataFrame, variant: str, seed: int, kind: str = "compressed") -> pd.Series:
    hit = chosen[(chosen["variant"] == variant) & (chosen["seed"] == seed) & (chosen["kind"] == kind)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_selection_uses_validation_never_test_and_breaks_ties_to_the_smaller_lr():
    chosen = select_on_validation(_selection_runs())
    s0, s1, s2 = (_chosen_row(chosen, "magnitude", s) for s in (0, 1, 2))
    assert (s0["lr"], s0["acc_top1"], s0["n_candidates"], s0["lr_edge"]) == (1e-3, 0.82, 3, "")
    assert (s1["lr"], s1["acc_top1"], s1["n_candidates"], s1["lr_edge"]) == (3e-4, 0.80, 3, "low")
    assert (s2["lr"], s2["acc_top1"], s2["n_candidates"], s2["lr_edge"]) == (3e-3, 0.85, 2, "high")
    single = _chosen_row(chosen, "coreset", 0)
    assert (single["n_candidates"], single["lr_edge"]) == (1, "")
    ctrl = _chosen_row(chosen, "dense+finetune", 0, kind="control")
    assert (ctrl["lr"], ctrl["acc_top1"], ctrl["lr_edge"]) == (3e-4, 0.89, "low")
    assert "baseline" not in set(chosen["kind"])
    assert len(chosen[chosen["kind"] == "unreachable"]) == 1  # passed through for the verdict table


def test_selection_does_not_depend_on_row_order():
    runs = _selection_runs()
    forward = select_on_validation(runs)
    backward = select_on_validation(runs.iloc[::-1].reset_index(drop=True))
    assert forward["run_id"].tolist() == backward["run_id"].tolist()


# ---------------------------------------------------------------- paired interval

T_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student t, 2 dof, closed form: (2p-1)/sqrt(2p(1-p))
T_1 = math.tan(math.pi * (0.975 - 0.5))  # Student t, 1 dof (Cauchy)


def test_t_quantiles_by_closed_form_match_the_quoted_table_value():
    assert T_2 == pytest.approx(4.302652729911275, rel=1e-9)
    assert T_1 == pytest.approx(12.706204736174707, rel=1e-9)


def test_paired_interval_by_hand_covering_zero_is_a_tie():
    # mean 0.02, sd 0.01, half-width 4.3027 * 0.01 / sqrt(3) = 0.0248414 > 0.02: the interval covers 0.
    d = paired_interval([0.01, 0.03, 0.02])
    half = T_2 * 0.01 / math.sqrt(3)
    assert half == pytest.approx(0.02484138, abs=1e-8)
    assert (d.mean, d.n) == (pytest.approx(0.02), 3)
    assert (d.low, d.high) == (pytest.approx(0.02 - half, rel=1e-9), pytest.approx(0.02 + half, rel=1e-9))
    assert d.verdict == "tie"


def test_paired_interval_better_and_worse_by_hand():
    half = T_2 * 0.005 / math.sqrt(3)  # diffs 0.02, 0.025, 0.03: sd 0.005
    better = paired_interval([0.02, 0.025, 0.03])
    assert better.low == pytest.approx(0.025 - half, rel=1e-9) and better.low > 0
    assert better.verdict == "better"
    worse = paired_interval([-0.02, -0.025, -0.03])
    assert worse.high == pytest.approx(-0.025 + half, rel=1e-9) and worse.high < 0
    assert worse.verdict == "worse"


def test_paired_interval_one_seed_has_no_interval():
    d = paired_interval([0.05])
    assert d.mean == pytest.approx(0.05) and d.n == 1
    assert math.isnan(d.low) and math.isnan(d.high)
    assert d.verdict == "n/a (1 seed)"
    assert isinstance(d, PairedDiff)
    with pytest.raises(Exception):
        d.mean = 0.0  # frozen


def test_paired_interval_confidence_changes_the_width():
    wide, narrow = paired_interval([0.01, 0.03, 0.02], 0.99), paired_interval([0.01, 0.03, 0.02], 0.5)
    assert wide.high - wide.low > narrow.high - narrow.low
    assert narrow.verdict == "better"  # t_{2,0.75} = 0.8165: half-width 0.0047 < 0.02


# ---------------------------------------------------------------- verdict table

def _verdict_runs() -> pd.DataFrame:
    return frame(
        one_per_seed("magnitude", {0: 0.80, 1: 0.82, 2: 0.84})
        # missing seed 2: paired on seeds 0, 1 only -> diffs 0.03, 0.04
        + one_per_seed("coreset", {0: 0.83, 1: 0.86})
        + one_per_seed("magnitude", {0: 0.70, 1: 0.72, 2: 0.74}, arm="scratch")
        # same mean as magnitude (0.82): rank tie broken by variant name
        + one_per_seed("lma", {0: 0.81, 1: 0.82, 2: 0.83})
        + one_per_seed("coreset", {0: 0.60, 1: 0.61}, ratio=8.0)
        + [unreachable("lma", 8.0, s, "lma cannot reach 8x: rank would be 0") for s in (0, 1, 2)]
        + [control(s, a) for s, a in {0: 0.90, 1: 0.91, 2: 0.92}.items()]
    )


def _row(table: pd.DataFrame, variant: str, ratio: float = 4.0, arm: str = "method") -> pd.Series:
    hit = table[(table["variant"] == variant) & (table["requested_ratio"] == ratio) & (table["arm"] == arm)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_verdict_pairs_on_common_seeds_only():
    table = verdict_table(select_on_validation(_verdict_runs()))
    coreset = _row(table, "coreset")
    half = T_1 * (0.01 / math.sqrt(2)) / math.sqrt(2)  # diffs 0.03, 0.04: sd 0.01/sqrt(2)
    assert coreset["n"] == 2
    assert coreset["diff_mean"] == pytest.approx(0.035)  # not 0.845 - 0.82 = 0.025 (unpaired means)
    assert coreset["diff_low"] == pytest.approx(0.035 - half, rel=1e-9)
    assert coreset["diff_high"] == pytest.approx(0.035 + half, rel=1e-9)
    assert coreset["vs_reference"] == "tie"
    scratch = _row(table, "magnitude", arm="scratch")  # every seed 0.10 below: zero spread -> "worse"
    assert scratch["diff_mean"] == pytest.approx(-0.10)
    assert scratch["vs_reference"] == "worse"


def test_verdict_summaries_rank_and_reference_row():
    table = verdict_table(select_on_validation(_verdict_runs()))
    mag = _row(table, "magnitude")
    assert mag["vs_reference"] == "reference" and math.isnan(mag["diff_mean"])
    assert (mag["n"], mag["acc_mean"], mag["acc_std"]) == (3, pytest.approx(0.82), pytest.approx(0.02))
    assert mag["acc_points"] == "80.00, 82.00, 84.00"
    assert mag["lr_chosen"] == "1e-3, 1e-3, 1e-3"
    assert mag["ratio_achieved"] == pytest.approx(4 * 0.98)
    at4 = table[table["requested_ratio"] == 4.0].sort_values("rank")
    assert at4[["variant", "arm"]].values.tolist() == [
        ["coreset", "method"], ["lma", "method"], ["magnitude", "method"], ["magnitude", "scratch"]]
    assert at4["rank"].tolist() == [1, 2, 3, 4]
    assert _row(table, "coreset", 8.0)["acc_std"] == pytest.approx(np.std([0.60, 0.61], ddof=1))


def test_verdict_reports_unreachable_and_missing_reference():
    table = verdict_table(select_on_validation(_verdict_runs()))
    lma8 = table[(table["variant"] == "lma") & (table["requested_ratio"] == 8.0)]
    assert len(lma8) == 1  # three seeds reported it: one row
    lma8 = lma8.iloc[0]
    assert lma8["note"] == "lma cannot reach 8x: rank would be 0"
    assert lma8["n"] == 0 and math.isnan(lma8["acc_mean"]) and pd.isna(lma8["rank"])
    coreset8 = _row(table, "coreset", 8.0)
    assert coreset8["vs_reference"] == "n/a (no reference)" and coreset8["rank"] == 1
    assert _row(table, "coreset")["note"] == ""


def test_verdict_one_common_seed_and_different_reference():
    runs = frame(one_per_seed("magnitude", {0: 0.80, 1: 0.82}) + one_per_seed("coreset", {1: 0.85, 2: 0.9}))
    table = verdict_table(select_on_validation(runs), reference="coreset")
    mag = _row(table, "magnitude")
    assert mag["diff_mean"] == pytest.approx(-0.03) and mag["vs_reference"] == "n/a (1 seed)"
    assert _row(table, "coreset")["vs_reference"] == "reference"


def test_verdict_table_rejects_unselected_runs():
    runs = frame([run(seed=0, lr=lr) for lr in LRS])
    with pytest.raises(ValueError, match="select_on_validation"):
        verdict_table(runs)


def test_control_reference():
    ref = control_reference(select_on_validation(_verdict_runs()))
    assert ref.to_dict("records") == [{"experiment": EXP, "acc_mean": pytest.approx(0.91),
                                       "acc_std": pytest.approx(0.01), "n": 3}]


# ---------------------------------------------------------------- lr grid

def _grid_runs(best_lr_per_seed: dict[int, float], variant: str = "magnitude") -> list[dict]:
    """Three lr candidates per seed; the named lr has the best validation accuracy."""
    return [run(variant, 4.0, s, lr, 0.9 if lr == best else 0.8, 0.8) for s, best in best_lr_per_seed.items()
            for lr in LRS]


def test_grid_brackets_optimum_on_planted_edges():
    inside = frame(_grid_runs({0: 1e-3, 1: 1e-3, 2: 3e-3}) + _grid_runs({0: 1e-3}, "coreset"))
    chosen = select_on_validation(inside)
    assert grid_brackets_optimum(chosen)  # 1 of 3 at an edge
    report = lr_edge_report(chosen).set_index("variant")
    assert report.loc["magnitude", ["n_points", "n_tuned", "n_low", "n_high"]].tolist() == [3, 3, 0, 1]
    assert report.loc["magnitude", "frac_edge"] == pytest.approx(1 / 3)

    edge = frame(_grid_runs({0: 3e-4, 1: 3e-3, 2: 1e-3}) + _grid_runs({0: 1e-3}, "coreset"))
    chosen = select_on_validation(edge)
    assert not grid_brackets_optimum(chosen)  # 2 of 3 at an edge, for one variant, is enough
    assert grid_brackets_optimum(chosen, threshold=0.7)


def test_grid_ignores_untuned_points_and_controls():
    runs = frame([run(seed=s, lr=1e-3) for s in range(3)]  # one candidate each: says nothing about the grid
                 + [control(0, 0.9, lr=3e-4, val=0.9), control(0, 0.8, lr=1e-3, val=0.8)])
    chosen = select_on_validation(runs)
    report = lr_edge_report(chosen).set_index("kind")
    assert math.isnan(report.loc["compressed", "frac_edge"])
    assert report.loc["control", "frac_edge"] == 1.0
    assert grid_brackets_optimum(chosen)


# ---------------------------------------------------------------- cross-recipe check

def _recipe_runs(a_at_b_lr: float, b_at_a_lr: float) -> pd.DataFrame:
    """A chooses 1e-3 (test 0.90), B chooses 3e-3 (test 0.85) on every seed; the swapped test accuracies are
    planted. Validation makes the choice: the swapped runs have lower validation accuracy."""
    rows = []
    for s in (0, 1):
        rows += [run("A", 4.0, s, 1e-3, 0.90, 0.90), run("A", 4.0, s, 3e-3, 0.70, a_at_b_lr),
                 run("B", 4.0, s, 3e-3, 0.85, 0.85), run("B", 4.0, s, 1e-3, 0.70, b_at_a_lr),
                 run("A", 4.0, s, 1e-3, 0.99, 0.99, arm="scratch")]  # not a method arm: never the winner
    return frame(rows)


def test_cross_recipe_order_flips_when_the_winner_only_won_on_its_lr():
    runs = _recipe_runs(a_at_b_lr=0.80, b_at_a_lr=0.88)
    out = cross_recipe_check(runs, select_on_validation(runs), EXP, 4.0)
    assert (out["winner"], out["runner_up"]) == ("A", "B")
    assert (out["winner_mean"], out["runner_up_mean"]) == (pytest.approx(0.90), pytest.approx(0.85))
    assert out["winner_swapped"] == {0: 0.80, 1: 0.80} and out["runner_up_swapped"] == {0: 0.88, 1: 0.88}
    assert (out["winner_swapped_mean"], out["runner_up_swapped_mean"]) == (pytest.approx(0.80), pytest.approx(0.88))
    assert out["order_holds"] is False and out["missing"] == []


def test_cross_recipe_order_holds_and_missing_swaps():
    runs = _recipe_runs(a_at_b_lr=0.89, b_at_a_lr=0.84)
    out = cross_recipe_check(runs, select_on_validation(runs), EXP, 4.0)
    assert out["order_holds"] is True

    runs = runs[~((runs["variant"] == "B") & (runs["lr"] == 1e-3) & (runs["seed"] == 1))]
    out = cross_recipe_check(runs, select_on_validation(runs), EXP, 4.0)
    assert out["missing"] == [1] and set(out["runner_up_swapped"]) == {0}
    assert out["order_holds"] is True  # decided on seed 0 alone

    runs = runs[~((runs["variant"] == "B") & (runs["lr"] == 1e-3))]
    out = cross_recipe_check(runs, select_on_validation(runs), EXP, 4.0)
    assert out["missing"] == [0, 1] and out["order_holds"] is None


def test_cross_recipe_needs_two_variants():
    runs = frame(one_per_seed("magnitude", {0: 0.8}))
    with pytest.raises(ValueError):
        cross_recipe_check(runs, select_on_validation(runs), EXP, 4.0)


# ---------------------------------------------------------------- markdown, figure, glue

def test_to_markdown_formats():
    df = pd.DataFrame({"variant": ["a|b", "c"], "acc_mean": [0.87912, math.nan], "diff_mean": [0.0123, -0.004],
                       "ratio_achieved": [3.14159, 128.0], "n": [3, 0], "rank": pd.array([1, None], dtype="Int64")})
    lines = to_markdown(df).splitlines()
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]  # padding is tabulate's
    assert cells[0] == ["variant", "acc_mean", "diff_mean", "ratio_achieved", "n", "rank"]
    assert all(set(c) == {"-"} for c in cells[1])
    assert cells[2] == ["a\\|b", "87.91", "+1.23", "3.142", "3", "1"]
    assert cells[3] == ["c", "—", "-0.40", "128", "0", "—"]
    assert len({len(line) for line in lines}) == 1  # columns aligned


def _figure_runs() -> pd.DataFrame:
    other = "cifar10/cnn"
    rows = []
    for exp in (EXP, other):
        for s in (0, 1):
            rows.append(control(s, 0.9, experiment=exp))
            for ratio in (2.0, 8.0, 128.0):
                rows.append(run("magnitude", ratio, s, 1e-3, 0.8, 0.85 - 0.01 * s, experiment=exp))
                rows.append(run("magnitude", ratio, s, 1e-3, 0.8, 0.75, arm="scratch", experiment=exp))
    return frame(rows)


def test_accuracy_drop_figure_one_file_pair_per_experiment(tmp_path):
    chosen = select_on_validation(_figure_runs())
    paths = accuracy_drop_figure(chosen, tmp_path / "drop", "fair protocol")
    assert sorted(p.name for p in paths) == ["drop__cifar10__cnn.pdf", "drop__cifar10__cnn.png",
                                             "drop__fashion-mnist__lenet300.pdf", "drop__fashion-mnist__lenet300.png"]
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)
    single = accuracy_drop_figure(chosen[chosen["experiment"] == EXP], tmp_path / "one", "fair")
    assert sorted(p.name for p in single) == ["one.pdf", "one.png"]


def test_write_verdict_writes_everything(tmp_path):
    paths = write_verdict(_verdict_runs(), tmp_path / "out", "planted")
    names = {p.name for p in paths}
    assert {"verdict.md", "verdict.csv", "accuracy_drop.png", "accuracy_drop.pdf"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    md = (tmp_path / "out" / "verdict.md").read_text()
    assert "`fair`" in md and "`abc123`" in md
    assert "lma cannot reach 8x" in md and "reference" in md
    assert "91.00 ± 1.00 (n=3)" in md  # the control line
    assert "Not checked: no compressed point had more than one lr candidate" in md  # one lr per point here
    assert "Cross-recipe check" in md
    csv = pd.read_csv(tmp_path / "out" / "verdict.csv")
    assert len(csv) == 6


# ---------------------------------------------------------------- compact view (README tables)

def test_compact_table_puts_each_control_after_its_method_with_the_paired_verdict():
    import pandas as pd

    from bench.verdict import compact_table

    rows = []
    for seed, (mag, core, scratch) in enumerate([(0.80, 0.70, 0.75), (0.82, 0.71, 0.74), (0.84, 0.72, 0.76)]):
        for variant, arm, acc in (("magnitude", "method", mag), ("coreset", "method", core),
                                  ("coreset", "scratch", scratch)):
            rows.append({"experiment": "d/m", "kind": "compressed", "variant": variant, "arm": arm,
                         "requested_ratio": 4.0, "seed": seed, "lr": 1e-3, "val_acc_top1": acc, "acc_top1": acc,
                         "compression_ratio": 4.0, "run_id": f"{variant}{arm}{seed}"})
    rows.append({"experiment": "d/m", "kind": "unreachable", "variant": "coreset", "arm": "method",
                 "requested_ratio": 128.0, "seed": 0, "error": "too small"})
    table = verdict_table(select_on_validation(pd.DataFrame(rows)))
    compact = compact_table(table)
    assert list(compact["method [control arm]"]) == ["magnitude", "coreset", "coreset [scratch]"]
    assert list(compact.columns) == ["method [control arm]", "4x", "128x"]
    mag = compact.set_index("method [control arm]").loc["magnitude"]
    assert mag["4x"] == "82.00 ± 2.00" and mag["128x"] == ""
    core = compact.set_index("method [control arm]").loc["coreset"]
    # coreset − magnitude per seed: −0.10, −0.11, −0.12 → mean −11 points, sd 1, t(2) = 4.3027 → ±2.48
    assert core["4x"] == "71.00 ± 1.00 (-11.00 [-13.48, -8.52] worse)" and core["128x"] == "unreachable"


def test_unequal_tuning_budgets_are_reported():
    import pandas as pd

    from bench.verdict import tuning_budgets, unequal_tuning

    rows = [{"experiment": "d/m", "kind": "compressed", "variant": v, "arm": "method", "lr": lr}
            for v, lrs in (("magnitude", (1e-3, 3e-3)), ("lma", (1e-3, 3e-3))) for lr in lrs]
    assert unequal_tuning(pd.DataFrame(rows)) == []
    rows.append({"experiment": "d/m", "kind": "compressed", "variant": "lma", "arm": "method", "lr": 1e-2})
    budgets = tuning_budgets(pd.DataFrame(rows)).set_index("variant")
    assert budgets.loc["lma", "n_candidates"] == 3 and budgets.loc["magnitude", "candidates"] == "1e-3, 3e-3"
    (line,) = unequal_tuning(pd.DataFrame(rows))
    assert "unequal tuning budgets" in line and "lma [method]: 1e-3, 3e-3, 1e-2" in line


def test_each_method_is_compared_with_its_own_controls_on_common_seeds():
    import pandas as pd

    from bench.verdict import against_own_controls

    rows = []
    for seed, (method, scratch) in enumerate([(0.70, 0.80), (0.72, 0.81), (0.74, 0.85)]):
        for arm, acc in (("method", method), ("scratch", scratch)):
            rows.append({"experiment": "d/m", "kind": "compressed", "variant": "coreset", "arm": arm,
                         "requested_ratio": 8.0, "seed": seed, "lr": 1e-3, "val_acc_top1": acc, "acc_top1": acc,
                         "run_id": f"{arm}{seed}"})
    rows = [r for r in rows if not (r["arm"] == "method" and r["seed"] == 2)]  # seed 2: control only
    (row,) = against_own_controls(select_on_validation(pd.DataFrame(rows))).itertuples(index=False)
    # method − scratch on seeds 0 and 1: −0.10, −0.09 → mean −0.095, sd 0.00707, t(1) = 12.706 → ±0.0635
    assert (row.control, row.n, row.method_vs_control) == ("scratch", 2, "worse")
    assert row.diff_mean == pytest.approx(-0.095) and row.diff_high == pytest.approx(-0.095 + 12.7062047 * 0.0070711 / 2 ** 0.5, abs=1e-5)
