"""Controls are a registry: a new control is one file that registers itself, and it runs, is tracked and is in
the verdict without touching the pipeline, the protocol or the verdict (run in a subprocess, so the toy control
does not stay registered in the test session)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import methods
from bench.controls import applicable_arms, get_control, line_styles, list_controls
from bench.paths import REPO
from bench.protocol import ProtocolError
from bench.protocol_registry import get_protocol

TOY = '''
import copy
from dataclasses import dataclass

from bench.controls import Control, register_control


@dataclass(frozen=True)
class Again(Control):
    """The method's own untuned result trained once more, like a one-shot method: a control that must tie."""
    name = "toy-again"
    trains = "finetune"
    applies_to = ("masked",)
    line_style = "-."

    def derive(self, compressed, dense, seed):
        return copy.deepcopy(compressed)


register_control(Again())
'''

SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[1])
import toy_control  # the one file

from bench import api
from bench.figures import tidy_runs
from bench.protocol import QUICK
from bench.recipes import TrainRecipe
from bench.tracking import Tracker
from bench.verdict import select_on_validation, verdict_table

protocol = QUICK.with_overrides(baseline=TrainRecipe(epochs=1), lr_candidates=(1e-3,))
result = api.experiment("magnitude", "mlp", "digits", ratio=4, protocol=protocol, arms=("method", "toy-again"))
(control,) = result.controls
print("ARM", control.arm, control.metrics["train_epochs_total"], result.metrics["train_epochs_total"])
runs = tidy_runs(Tracker())
print("TRACKED", sorted(runs.loc[runs["kind"] == "compressed", "arm"]))
table = verdict_table(select_on_validation(runs))
print("VERDICT", sorted(table["arm"]))
'''


def test_a_control_is_one_file_that_runs_is_tracked_and_is_in_the_verdict(tmp_path):
    (tmp_path / "toy_control.py").write_text(TOY)
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
           "COMPRESSION_BENCH_RESULTS": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    arm, control_epochs, method_epochs = lines["ARM"].split()
    assert arm == "toy-again" and control_epochs == method_epochs  # the same budget as the method
    assert lines["TRACKED"] == "['method', 'toy-again']"
    assert lines["VERDICT"] == "['method', 'toy-again']"


def test_the_built_in_controls_are_registered_with_their_rules():
    assert list_controls() == ["scratch", "shuffled"]
    assert (get_control("scratch").trains, get_control("shuffled").trains) == ("scratch", "finetune")
    assert line_styles() == {"method": "-", "scratch": "--", "shuffled": ":"}
    # which results each applies to comes from the method's declared result, not its name
    assert [methods.build(m).result for m in ("magnitude", "coreset", "lma", "multihash")] == \
        ["masked", "structured", "structured", "generated"]
    assert applicable_arms(methods.build("multihash"), ("scratch", "shuffled")) == ("method",)


def test_a_protocol_names_controls_by_registry_name():
    with pytest.raises(ProtocolError, match="unknown control.*'toy-missing'.*allowed: scratch, shuffled"):
        get_protocol("fair").with_overrides(controls=("toy-missing",))
