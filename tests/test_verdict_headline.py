"""The answer at each ratio (``bench.verdict.headline``) on planted run frames whose right answers are computed by
hand: the leader, its tie set and its margin over the best arm outside it, paired on seed."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from bench.verdict import headline, headline_lines, select_on_validation
from tests.test_verdict import control, frame, one_per_seed


def _planted() -> pd.DataFrame:
    rows = (one_per_seed("multihash", {0: 0.880, 1: 0.882, 2: 0.881}, ratio=32.0)
            # magnitude trails multihash by exactly 0.010, 0.012, 0.011 points: a clear "better" for the leader
            + one_per_seed("magnitude", {0: 0.870, 1: 0.870, 2: 0.870}, ratio=32.0)
            # lq's differences to the leader are +0.02, -0.02, +0.004: the interval covers 0, a tie
            + one_per_seed("lq", {0: 0.860, 1: 0.902, 2: 0.877}, ratio=32.0)
            + one_per_seed("magnitude", {0: 0.900, 1: 0.910}, ratio=2.0, arm="shuffled")
            + one_per_seed("magnitude", {0: 0.905}, ratio=2.0)
            + [control(s, 0.89) for s in range(3)])
    return select_on_validation(frame(rows))


def test_headline_leader_tie_set_and_margin_by_hand():
    table = headline(_planted()).set_index("requested_ratio")
    top = table.loc[32.0]
    assert top["leader"] == "multihash" and top["n"] == 3
    assert top["tie_set"] == ["multihash", "lq"]  # lq's mean 0.8797 is above magnitude's, but its interval covers 0
    assert top["next"] == "magnitude"
    d = [0.010, 0.012, 0.011]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert top["margin_mean"] == pytest.approx(mean)
    assert (top["margin_low"], top["margin_high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    # At 2x the shuffled control leads (0.905 mean) the method (0.905, one seed): one common seed, no interval,
    # so the two cannot be told apart and nothing is ahead with confidence.
    low = table.loc[2.0]
    assert set(low["tie_set"]) == {"magnitude", "magnitude [shuffled]"} and low["next"] == ""
    assert math.isnan(low["margin_mean"])


def test_headline_lines_say_the_answer_in_percent_and_points():
    lines = headline_lines(headline(_planted()))
    assert lines[0].startswith("- 2x: **magnitude") and "no arm is behind it with confidence" in lines[0]
    assert lines[1].startswith("- 32x: **multihash** (88.10 %, 3 seeds), tied with lq; ahead of magnitude "
                               "(87.00 %) by +1.10 [")
    # controls and the dense + fine-tune control never lead a ratio they were not compressed to
    assert not any("dense+finetune" in line for line in lines)


# ---------------------------------------------------------------- the edge rule and its printed command

def test_edge_rule_a_third_widens_every_side_chosen_and_prints_the_command():
    from bench.verdict.lr_grid import grid_brackets_optimum, widened_candidates
    from bench.verdict.write import widen_lines
    from tests.test_verdict import _grid_runs

    # magnitude: 1 of 3 tuned cells at an edge (exactly a third): brackets
    inside = frame(_grid_runs({0: 1e-3, 1: 1e-3, 2: 3e-3}))
    assert grid_brackets_optimum(select_on_validation(inside)) and not widened_candidates(inside, select_on_validation(inside))
    # 2 of 4 at the high edge (a half): fails, widened on the high side only, by the grid's own log step
    runs = frame(_grid_runs({0: 3e-3, 1: 3e-3, 2: 1e-3, 3: 1e-3}))
    chosen = select_on_validation(runs)
    assert not grid_brackets_optimum(chosen)
    (exp, lrs), = widened_candidates(runs, chosen).items()
    assert lrs == (3e-4, 1e-3, 3e-3, 9e-3)  # 3e-3 * (3e-3 / 1e-3)
    (line,) = widen_lines(runs, {exp: lrs})
    assert line.endswith("`make compare DATASET=fashion-mnist MODEL=lenet300 PROTOCOL=fair "
                         "FINETUNE_LR=0.0003,0.001,0.003,0.009`")
