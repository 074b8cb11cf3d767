"""A new method against a comparison's runs as data (``compare --methods X --against runs.csv``): only X trains,
the others come from the reference, paired on seed where the dense baselines are the same and by Welch's
unpaired interval, labelled, where they are not; a reference of another protocol is refused before any work."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.paths import REPO
from bench.reference_runs import read_runs

NEW = ["--methods", "taylor", "--plugin", "examples.taylor_score"]  # the worked example: a method as a plugin
PLAN = ["--dataset", "digits", "--model", "lenet300", "--protocol", "fair", "--finetune-lr", "1e-2,3e-2",
        "--workers", "1"]


def _bench(results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["COMPRESSION_BENCH_RESULTS"] = str(results)
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """magnitude's comparison at 4x, 2 seeds, exported as runs.csv."""
    store = tmp_path_factory.mktemp("reference")
    done = _bench(store, "compare", *PLAN, "--methods", "magnitude", "--seeds", "2", "--ratios", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    (runs,) = store.glob("figures/digits__lenet300/fair-*/runs.csv")
    return runs


def _verdict(results: Path) -> pd.DataFrame:
    (path,) = results.glob("figures/digits__lenet300/fair-*/verdict.csv")
    return pd.read_csv(path)


def test_only_the_new_method_trains_and_the_reference_rows_are_its_own(tmp_path, reference):
    done = _bench(tmp_path, "compare", *PLAN, *NEW, "--against", str(reference))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "differences are paired on seed" in done.stdout  # the same dense baselines, seed by seed
    local = read_runs(next(tmp_path.glob("figures/digits__lenet300/fair-*/runs.csv")))
    assert set(local.loc[local["source"] == "local", "method"]) >= {"taylor"}
    trained = subprocess.run([sys.executable, "-c", "from bench.figures import tidy_runs; from bench.tracking import "
                              "Tracker; t = Tracker(); r = tidy_runs(t); print(sorted(set(r.loc[r.kind == 'compressed', "
                              "'method']))); f = t.runs_frame(None, \"tags.kind = 'reference'\"); "
                              "print(sorted(f['tags.reference_run_id'])); print(int((f['tags.chosen'] == 'yes').sum()))"], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "COMPRESSION_BENCH_RESULTS": str(tmp_path)}).stdout.splitlines()
    assert trained[0] == "['taylor']"  # the reference's methods are never trained again
    theirs_runs = read_runs(reference)
    # ... but are in the local store, as runs of kind reference: each compressed run of the reference's methods
    assert trained[1] == str(sorted(theirs_runs.loc[theirs_runs["kind"] == "compressed", "run_id"]))
    ours, theirs = _verdict(tmp_path), pd.read_csv(reference.parent / "verdict.csv")
    keys = ["requested_ratio", "variant", "arm"]
    mag = ours[ours["variant"].str.startswith("magnitude")].set_index(keys).sort_index()
    ref = theirs.set_index(keys).sort_index()
    assert list(mag.index) == list(ref.index)
    pd.testing.assert_frame_equal(mag[["n", "acc_mean", "acc_std", "acc_points", "lr_chosen", "settings_chosen"]],
                                  ref[["n", "acc_mean", "acc_std", "acc_points", "lr_chosen", "settings_chosen"]])
    assert set(ours["variant"]) >= {"taylor", "magnitude"}
    # the UI's comparison view (tag chosen = yes) shows every point the verdict reports from the reference
    assert int(trained[2]) == int(ours.loc[ours["variant"].str.startswith("magnitude"), "n"].sum())


def test_other_baselines_switch_to_an_unpaired_interval_and_say_so(tmp_path, reference):
    tampered = read_runs(reference)
    dense = tampered["kind"] == "baseline"
    tampered.loc[dense, "acc_top1"] = tampered.loc[dense, "acc_top1"] - 0.01  # another machine's baseline
    from bench.reference_runs import export_runs

    path = export_runs(tampered, tmp_path / "elsewhere" / "runs.csv")
    done = _bench(tmp_path / "local", "compare", *PLAN, *NEW, "--against", str(path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Welch's unpaired interval" in done.stdout
    verdict = _verdict(tmp_path / "local")
    taylor = verdict[(verdict["variant"] == "taylor") & (verdict["arm"] == "method")]
    assert len(taylor) == 1 and taylor["vs_reference"].str.endswith("(unpaired: Welch)").all()


def test_a_reference_of_another_protocol_is_refused_with_nothing_written(tmp_path, reference):
    done = _bench(tmp_path / "local", "compare", *PLAN, "--methods", "sap", "--tuning", "every-seed",
                  "--against", str(reference))
    assert done.returncode == 2 and done.stderr.startswith("error: the reference was run under protocol fair-")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "local").exists()
    without = _bench(tmp_path / "local", "compare", *PLAN, "--against", str(reference))
    assert without.returncode == 2 and "--against needs --methods" in without.stderr
