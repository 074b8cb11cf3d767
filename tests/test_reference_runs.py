"""Reference runs as data: a comparison exported to runs.csv redraws, on its own, every figure and table the live
store drew, byte for byte; the export keeps every field; a file of another format is refused in one line."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.figures import comparison_figures, tidy_runs
from bench.paths import REPO
from bench.protocol import FAIR
from bench.recipes import TrainRecipe
from bench.reference_runs import ReferenceFormatError, read_runs
from bench.sweep import SweepConfig, run_sweep
from bench.tracking import Tracker

TINY = dataclasses.replace(FAIR, name="tiny-fair", baseline=TrainRecipe(epochs=2, batch_size=64),
                           finetune=TrainRecipe(epochs=1, lr=1e-2, batch_size=64, schedule="cosine"),
                           extra_epochs=1, lr_candidates=(1e-2, 3e-2), ratios=(4.0, 8.0))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for method in ("magnitude", "coreset"):
        template = ExperimentConfig.for_protocol(TINY, method=method, dataset="digits", model="lenet300",
                                                 accelerator="cpu", latency_repeats=1,
                                                 method_params={"finetune_each_layer": False} if method == "coreset" else {})
        run_sweep(SweepConfig(template=template, ratios=TINY.ratios, seeds=2, quiet=True))
    return tmp_path


def test_an_export_redraws_the_comparison_byte_for_byte_and_keeps_every_field(store):
    runs = tidy_runs(Tracker())
    live = store / "live"
    written = comparison_figures(runs, live)
    (export,) = [p for p in written if p.name == "runs.csv"]
    again = read_runs(export)
    redrawn = store / "redrawn"
    comparison_figures(again, redrawn)
    files = sorted(p.relative_to(live) for p in live.rglob("*") if p.suffix in (".md", ".csv"))
    assert {"verdict.md", "verdict.csv", "summary.csv", "runs.csv"} <= {p.name for p in files}
    for name in files:
        assert (redrawn / name).read_bytes() == (live / name).read_bytes(), name
    # every field of every run of the comparison, and the baselines they started from
    ours = runs[runs["kind"] != "baseline"]
    assert set(again["run_id"]) >= set(ours["run_id"])
    assert set(again.loc[again["kind"] == "baseline", "baseline_key"]) == set(ours["baseline_key"].dropna())
    mine = again.set_index("run_id").loc[ours["run_id"]].reset_index()

    def text(column: pd.Series) -> list[str]:
        return [str(sorted(v.items())) if isinstance(v, dict) else str(v)
                for v in column.astype(object).where(column.notna(), "")]

    for column in ours.columns.drop("start_time"):
        assert text(ours[column].reset_index(drop=True)) == text(mine[column]), column

def test_a_file_of_another_format_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text("format,run_id\n99,abc\n")
    with pytest.raises(ReferenceFormatError, match="reference format"):
        read_runs(bad)
    done = subprocess.run([sys.executable, "-m", "bench", "figures", "--runs", str(bad), "--out", str(tmp_path / "o")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"COMPRESSION_BENCH_RESULTS": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_a_reference_imported_into_the_store_is_kind_reference_never_a_local_result_and_only_once(tmp_path):
    from bench.reference_import import import_reference
    from bench.reference_runs import reference_arms

    ref = read_runs(REPO / "results" / "reference" / "fair-07ebf9f85d" / "mnist-5k__lenet300" / "runs.csv")
    arms = reference_arms(ref, {"sap"})
    assert not (arms["method"] == "sap").any() and set(arms["kind"]) <= {"compressed", "unreachable"}
    rows = arms.groupby("kind").head(12)  # both kinds, few enough to log quickly
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert import_reference(tracker, rows, "results/reference/x/runs.csv") == len(rows)
    assert import_reference(tracker, ref[ref["run_id"].isin(rows["run_id"])], "again") == 0  # nothing twice
    logged = tracker.runs_frame(["mnist-5k/lenet300"])
    assert len(logged) == len(rows) and set(logged["tags.kind"]) == {"reference"}
    assert set(logged["status"]) == {"FINISHED"}
    assert logged["tags.run_name" if "tags.run_name" in logged else "tags.mlflow.runName"].str.startswith(
        "reference · ").all()
    by_original = logged.set_index("tags.reference_run_id")
    for row in rows.itertuples():
        copy = by_original.loc[row.run_id]
        assert copy["tags.reference_kind"] == row.kind and copy["tags.method"] == row.method
        assert copy["tags.protocol_hash"] == row.protocol_hash and int(copy["tags.seed"]) == row.seed
        if pd.notna(row.acc_top1):
            assert copy["metrics.acc_top1"] == row.acc_top1
    assert tidy_runs(tracker).empty  # another store's runs: never in a local verdict, export or chosen tag


def test_the_reference_plan_groups_ratios_by_their_seeds_and_lr_candidates():
    from bench.reference_runs import reference_plan

    rows = []
    for ratio, seeds, lrs in ((2.0, 3, (1e-3, 3e-3, 1e-2, 3e-2)), (32.0, 5, (1e-3, 3e-3, 1e-2, 3e-2, 9e-2)),
                              (128.0, 5, (1e-3, 3e-3, 1e-2, 3e-2)), (8.0, 3, (1e-3, 3e-3, 1e-2, 3e-2))):
        rows += [{"kind": "compressed", "requested_ratio": ratio, "seed": 0, "lr": lr} for lr in lrs]  # tuned on 0
        rows += [{"kind": "compressed", "requested_ratio": ratio, "seed": s, "lr": lrs[1]} for s in range(1, seeds)]
    rows.append({"kind": "control", "requested_ratio": 1.0, "seed": 0, "lr": 0.5})  # not a ratio of the plan
    assert reference_plan(pd.DataFrame(rows)) == [("3", "2,8", "0.001,0.003,0.01,0.03"),
                                                  ("5", "32", "0.001,0.003,0.01,0.03,0.09"),
                                                  ("5", "128", "0.001,0.003,0.01,0.03")]


def test_compare_against_the_shipped_reference_runs_its_plan(capsys):
    from bench.cli import main

    assert main(["compare", "--dataset", "mnist-5k", "--model", "lenet300", "--methods", "taylor", "--against",
                 "reference", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "--method taylor" in lines[0]  # the plugin conftest registers; nothing else
    assert "--seeds 3 --ratios 2,4,8,16,32,64,128 --finetune-lr 0.001,0.003,0.01,0.03" in lines[0]
