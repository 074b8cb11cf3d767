"""The coreset paper figure (bench/papers/coreset.py) against a small real store: digits, tiny budgets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.papers import budgets
from bench.papers import coreset as C
from papers_support import (assert_files_written, error_reference, parsed_experiments, run_labelled_grid, scratch_store,
                            tiny_config)

BUDGET = budgets.Budget(1, 1)
RATIOS = (2.0, 10.0)
SEEDS = (0, 1)
LABELS = ("coreset (paper)", "top-k (percentile)", "scratch, same widths", "global magnitude (unstructured)")


def _config(label: str, ratio: float, seed: int) -> ExperimentConfig:
    variant = {v.label: v for v in C.variants()}[label]
    return tiny_config("digits", "lenet300", variant.method, ratio, seed, dict(variant.overrides),
                       epochs=BUDGET.epochs, finetune_epochs=BUDGET.finetune_epochs, accelerator="cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(tidy runs, {run_id: label}, output folder): each run's label known from how it was made."""
    from bench.figures import tidy_runs
    from bench.pipeline import run_experiment

    root = tmp_path_factory.mktemp("coreset_paper")
    with scratch_store(root) as tracker:
        made = run_labelled_grid(tracker, LABELS, RATIOS, SEEDS, _config)
        # A repeated experiment must count once (the newest run), not as an extra seed.
        repeat = run_experiment(_config(LABELS[0], RATIOS[0], 0), tracker)
        made[repeat.run_id] = LABELS[0]
        runs = tidy_runs(tracker)
    return runs, made, repeat.run_id, root / "figures"


def test_figure_and_tables_match_the_runs(store):
    runs, made, newest, out = store
    written = C.figure(runs, out, budgets={"digits": BUDGET}, ratios=RATIOS)
    assert_files_written(written, {"coreset.png", "coreset.pdf", "coreset_points.csv", "coreset_points.md",
                                   "coreset_table2.csv", "coreset_table2.md"})

    # The first coreset run at (2x, seed 0) was repeated: only the newest counts.
    first = next(rid for rid, label in made.items() if label == LABELS[0])
    points = pd.read_csv(out / "coreset_points.csv")
    ref = error_reference(runs, made, exclude={first})
    assert len(points) == len(LABELS) * len(RATIOS) == len(ref)
    merged = points.merge(ref, left_on=["label", "requested"], right_on=["label", "requested_ratio"])
    assert len(merged) == len(ref)
    assert (merged["n_seeds"] == len(SEEDS)).all() and (merged["n"] == len(SEEDS)).all()
    for ours, theirs in (("err_after_mean", "after_mean"), ("err_after_std", "after_std"),
                         ("err_before_mean", "before_mean"), ("err_before_std", "before_std")):
        np.testing.assert_allclose(merged[ours], merged[theirs], rtol=1e-9, atol=1e-9)
    # % removed from the tracked parameter counts, e.g. 90 % at 10x within the contract's ±3 %.
    at10 = merged[merged["requested"] == 10.0]
    assert ((at10["removed_pct"] > 89.6) & (at10["removed_pct"] < 90.4)).all()


def test_table2_puts_ours_beside_the_published_row(store):
    runs, made, _, out = store
    C.figure(runs, out, budgets={"digits": BUDGET}, ratios=RATIOS)
    table = pd.read_csv(out / "coreset_table2.csv", dtype=str, keep_default_na=False)
    published = table.iloc[0]
    assert published["error_after_ft_pct"] == "2.03" and published["baseline_error_pct"] == "2.16"
    assert published["params"] == "267K → 26K" and "published" in published["variant"]
    ours = table.iloc[1:]
    assert list(ours["variant"]) == list(LABELS) and set(ours["dataset"]) == {"digits (ours)"}
    first = next(rid for rid, label in made.items() if label == LABELS[0])
    comp = runs[runs["run_id"].isin(set(made) - {first}) & (runs["requested_ratio"] == 10.0)]
    comp = comp.assign(label=comp["run_id"].map(made), err=100 * (1 - comp["acc_top1"]))
    for row in ours.itertuples():
        err = comp[comp["label"] == row.variant]["err"]
        assert row.error_after_ft_pct == f"{err.mean():.2f} ± {err.std():.2f}"
    dense = runs[runs["kind"] == "baseline"].drop_duplicates("seed")
    dense_err = 100 * (1 - dense["acc_top1"])
    assert set(ours["baseline_error_pct"]) == {f"{dense_err.mean():.2f} ± {dense_err.std():.2f}"}
    assert "5,000-image" in (out / "coreset_table2.md").read_text()


def test_selection_labels_each_run_once(store):
    runs, made, newest, _ = store
    comp, dense = budgets.select_runs(runs, "digits", "lenet300", BUDGET, C.variants())
    first = next(rid for rid, label in made.items() if label == LABELS[0])
    assert len(comp) == len(LABELS) * len(RATIOS) * len(SEEDS)
    assert newest in set(comp["run_id"]) and first not in set(comp["run_id"])  # the newest of a repeat
    assert dict(zip(comp["run_id"], comp["label"])) == {rid: made[rid] for rid in comp["run_id"]}
    assert sorted(dense["kind"]) == ["baseline"] * len(SEEDS) + ["control"] * len(SEEDS)


def test_no_runs_for_the_figure_gives_nothing(store, tmp_path):
    runs, _, _, _ = store
    assert C.figure(runs.iloc[0:0], tmp_path) == []
    assert C.figure(runs, tmp_path, model="mlp") == []  # another model: none of these runs
    assert C.figure(runs, tmp_path, budgets={"digits": budgets.Budget(7, 1)}) == []  # another baseline budget
    assert list(tmp_path.iterdir()) == []


def test_variants_tell_samplers_apart():
    by_label = {v.label: v for v in C.variants()}
    paper = by_label["coreset (paper)"]
    params = paper.expected()
    assert params["finetune_each_layer"] == "True"  # the paper's schedule: fine-tune after every layer
    assert paper.matches("coreset", params)
    assert not paper.matches("coreset", {**params, "finetune_each_layer": "False"})
    assert not paper.matches("coreset", {**params, "sampling": "uniform"})
    assert not paper.matches("magnitude", params)
    scratch = by_label["scratch, same widths"].expected()
    assert (scratch["student_activation"], scratch["kd_weight"]) == ("relu", "0.0")


def test_experiments_run_the_papers_recipe_on_the_mnist_sample():
    seen = set()
    for args, sweep in parsed_experiments("coreset"):
        t = sweep.template
        assert (t.dataset, t.model, args.ratios, sweep.seeds) == ("mnist-5k", "lenet300", "2,4,10,20", 3)
        assert t.finetune.patience == 2 and t.protocol.scale == "cpu"  # "until convergence", scaled
        params = dict(t.method_params)
        if t.method == "coreset":
            assert params["finetune_each_layer"] is True  # set by the protocol, not by the variant
        seen.add((t.method, params.get("sampling")))
    assert seen == {("coreset", None), ("coreset", "uniform"), ("coreset", "topk"), ("lma", None), ("magnitude", None)}
