"""Same configuration and seed -> identical results, across processes; other seeds -> other samples."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import methods
from bench.export import bake, clone
from conftest import make_context, tiny_model

from bench.paths import REPO
TIMING = ("seconds", "latency", "speedup_b", "measured_speedup", "system/")  # clocks and the machine's own state


def _run(results: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["COMPRESSION_BENCH_RESULTS"] = str(results)
    cmd = [sys.executable, "-m", "bench", "run", "--dataset", "digits", "--model", "mlp", "--method", "coreset",
           "--ratio", "4", "--epochs", "2", "--finetune-epochs", "1", "--param", "finetune_each_layer=false"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    from bench.tracking import Tracker

    runs = Tracker(f"sqlite:///{results / 'mlflow.db'}").runs_frame()
    row = runs[runs["tags.kind"] == "compressed"].iloc[0]
    return {c: row[c] for c in runs.columns if c.startswith("metrics.") and not any(t in c for t in TIMING)}


def test_two_processes_with_the_same_seed_give_identical_metrics(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert a.keys() == b.keys() and "metrics.acc_top1" in a
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("name,params", [("coreset", {"finetune_each_layer": False}), ("magnitude", {"random": True}),
                                         ("rate-distortion", {})])
def test_other_seeds_sample_differently(name, params, tiny_data):
    dense = tiny_model("lenet300", num_classes=tiny_data.num_classes)
    method = methods.build(name, params)
    a = bake(method.compress(clone(dense), 8, make_context(tiny_data, seed=0)))
    b = bake(method.compress(clone(dense), 8, make_context(tiny_data, seed=1)))
    differs = [not torch.equal(x, y) if x.shape == y.shape else True
               for x, y in zip(a.state_dict().values(), b.state_dict().values())]
    assert any(differs)
