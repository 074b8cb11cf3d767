"""Issue 25: the data, the model and the method's reach are checked before any work (exit status 2, one line,
nothing written), and what training shows to be wrong (a non-finite loss, a baseline at chance) ends as a FAILED
run tagged with the reason, never as a result; the figures and the verdict skip such runs and say so."""
from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from test_cli import one_line_refusal, run_cli

SMALL = ["--protocol", "quick", "--epochs", "1", "--finetune-epochs", "1", "--lr", "1e-3", "--no-log-models",
         "--no-system-metrics", "--threads", "1"]
STORES = ("mlflow.db", "baselines", "optuna.db")  # what nothing refused may leave under the results folder


def refused(result, results: Path, pattern: str) -> str:
    """Exit status 2, exactly one stderr line ``error: ...`` matching ``pattern``, no traceback, no store."""
    line = one_line_refusal(result, pattern)
    assert not [name for name in STORES if (results / name).exists()]
    return line


def _results_at(root: Path, monkeypatch) -> Path:
    """The API's results folder and MLflow store under ``root`` (no store is opened: nothing may be written)."""
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


# ---------------------------------------------------------------- the data

def _arrays() -> dict[str, np.ndarray]:
    """A small learnable ``file:`` dataset: 3 classes, 1x4x4 inputs, 120 / 30 / 30 samples."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 120), ("val", 30), ("test", 30)):
        y = np.arange(n) % 3
        arrays[f"x_{split}"] = (rng.normal(size=(n, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32)
        arrays[f"y_{split}"] = y
    return arrays


def npz(path: Path, **changes: np.ndarray) -> str:
    """``_arrays`` with ``changes`` applied, saved to ``path``; its ``file:`` dataset name."""
    np.savez(path, **{**_arrays(), **changes})
    return f"file:{path}"


def _with(array: np.ndarray, index, value) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


def _base(name: str) -> np.ndarray:
    return _arrays()[name]


DATA_CASES = {
    "nan-in-x": (lambda: {"x_train": _with(_base("x_train"), (5, 0, 1, 1), np.nan)},
                 r"x_train has NaN or inf in 1 of 120 samples, the first at sample 5; every input must be a finite"),
    "inf-in-x-test": (lambda: {"x_test": _with(_base("x_test"), (3, 0, 0, 0), np.inf)},
                      r"x_test has NaN or inf in 1 of 30 samples, the first at sample 3"),
    "empty-val": (lambda: {"x_val": np.zeros((0, 1, 4, 4), np.float32), "y_val": np.zeros(0, np.int64)},
                  r"the val split is empty; every split needs samples .*leave both out to carve val from train"),
    "empty-test": (lambda: {"x_test": np.zeros((0, 1, 4, 4), np.float32), "y_test": np.zeros(0, np.int64)},
                   r"the test split is empty; .*give x_test and y_test samples"),
    "fractional-labels": (lambda: {"y_train": _with(_base("y_train").astype(np.float32), 7, 1.5)},
                          r"y_train holds the label 1\.5 at sample 7, not a whole number; labels must be integers"),
    "negative-labels": (lambda: {"y_val": _with(_base("y_val"), 2, -1)}, r"y_val has the negative label -1"),
    "one-class-in-training": (lambda: {"y_train": np.ones(120, np.int64)},
                              r"the train split holds one class only \(label 1\); a classifier needs at least two"),
    "x-y-length-mismatch": (lambda: {"y_train": _base("y_train")[:-1]}, r"x_train has 120 samples but y_train has 119"),
    "shapes-differ-between-splits": (lambda: {"x_test": np.zeros((30, 1, 5, 5), np.float32)},
                                     r"x_test samples are shaped \(1, 5, 5\) but x_train samples \(1, 4, 4\)"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_before_any_work(case, tmp_path):
    changes, pattern = DATA_CASES[case]
    dataset = npz(tmp_path / "data.npz", **changes())
    results = tmp_path / "results"
    result = run_cli("run", "--dataset", dataset, "--model", "mlp", "--ratio", "2", *SMALL, results=results)
    line = refused(result, results, pattern)
    assert str(tmp_path / "data.npz") in line  # names the file


PLUGIN_DATA = """
    import torch
    from datasets import DataSplits, register_dataset

    def splits(name, test_y, train_x=None, num_classes=3):
        g = torch.Generator().manual_seed(0)
        x = lambda n: torch.randn(n, 1, 4, 4, generator=g)
        y = lambda n: torch.arange(n) % 3
        return DataSplits(name, x(60) if train_x is None else train_x, y(60), x(12), y(12), x(12), test_y,
                          (1, 4, 4), num_classes)

    @register_dataset("labels-beyond-classes")
    def beyond():
        return splits("labels-beyond-classes", torch.tensor([0, 1, 2, 5] * 3))

    @register_dataset("inf-in-memory")
    def inf_in_memory():
        train_x = torch.randn(60, 1, 4, 4)
        train_x[9, 0, 2, 2] = float("-inf")
        return splits("inf-in-memory", torch.arange(12) % 3, train_x)
    """


@pytest.mark.parametrize("dataset,pattern", [
    ("labels-beyond-classes", r"dataset labels-beyond-classes: the test split has the label 5, outside 0\.\.2 \(the "
                              r"dataset has num_classes=3\)"),
    ("inf-in-memory", r"dataset inf-in-memory: the train split has NaN or inf in 1 of 60 inputs, the first at sample 9"),
])
def test_a_plugin_dataset_in_memory_is_checked_whole(dataset, pattern, tmp_path):
    plugin = _write(tmp_path / "bad_data_plugin.py", PLUGIN_DATA)
    results = tmp_path / "results"
    result = run_cli("run", "--plugin", str(plugin), "--dataset", dataset, "--model", "mlp", "--ratio", "2", *SMALL,
                     results=results)
    refused(result, results, pattern)


def test_whole_number_float_labels_are_labels(tmp_path):
    from datasets.files import load_npz

    data = load_npz(npz(tmp_path / "d.npz", y_train=_base("y_train").astype(np.float64)))
    assert data.train_y.dtype == torch.int64 and data.num_classes == 3


def test_loader_data_is_checked_on_its_sizes_and_first_batches(tmp_path, monkeypatch):
    """Data behind DataLoaders (not a TensorDataset): an empty split and a non-finite first batch are refused."""
    from torch.utils.data import DataLoader, Dataset

    from bench import api
    from bench.preflight import PreflightError

    class Samples(Dataset):
        def __init__(self, n: int, poison: bool = False):
            self.n, self.poison = n, poison

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int):
            x = torch.full((1, 4, 4), float(i % 3))
            if self.poison and i == 2:
                x[0, 0, 0] = float("nan")
            return x, i % 3

    root = _results_at(tmp_path / "results", monkeypatch)
    with pytest.raises(PreflightError, match=r"the test split is empty"):
        api.experiment("magnitude", "mlp", (DataLoader(Samples(60)), None, DataLoader(Samples(0))), 2, "quick",
                       lr=1e-3)
    with pytest.raises(PreflightError, match=r"the val split has NaN or inf in 1 of 12 inputs \(in its first 12 "
                                             r"samples\), the first at sample 2"):
        api.experiment("magnitude", "mlp", (DataLoader(Samples(60)), DataLoader(Samples(12, poison=True)),
                                            DataLoader(Samples(12))), 2, "quick", lr=1e-3)
    assert not [name for name in STORES if (root / name).exists()]


# ---------------------------------------------------------------- the model

def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# Plugin models for digits (1x8x8 inputs, 10 classes); each is wrong in one way, except ``fixed-net``.
PLUGIN_MODELS = """
    import torch
    from torch import nn
    from bench.models import register_model

    class Flat(nn.Module):
        def __init__(self, inputs, classes, hidden=16):
            super().__init__()
            self.hidden = nn.Linear(inputs, hidden)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x):
            return self.fc(torch.relu(self.hidden(x.flatten(1))))

    class NoFlatten(Flat):
        def forward(self, x):
            return self.fc(torch.relu(self.hidden(x)))  # (N, 1, 8, 8) into a Linear(64, ...)

    class TupleNet(Flat):
        def forward(self, x):
            h = torch.relu(self.hidden(x.flatten(1)))
            return self.fc(h), h

    class WideNet(Flat):
        def forward(self, x):
            out = super().forward(x)
            return torch.cat([out, out[:, :2]], 1)  # two more outputs than classes

    @register_model("no-flatten-net")
    def no_flatten(input_shape, num_classes):
        return NoFlatten(64, num_classes)

    @register_model("tuple-net")
    def tuple_net(input_shape, num_classes):
        return TupleNet(64, num_classes)

    @register_model("wide-net")
    def wide_net(input_shape, num_classes):
        return WideNet(64, num_classes)

    @register_model("named-head-net")
    def named_head(input_shape, num_classes):
        return Flat(64, num_classes, hidden=32)

    @register_model("ignores-classes-net")
    def ignores_classes(input_shape, num_classes):
        return Flat(64, 3)  # always 3 outputs, whatever the data

    @register_model("fixed-net")
    def fixed(input_shape, num_classes):
        return Flat(64, num_classes)  # the fix the refusal asks for
    """

MODEL_CASES = [
    ("no-flatten-net", [], r"model 'no-flatten-net' \(NoFlatten in \S*bad_models\.py\) fails on a batch of inputs "
                           r"shaped \(8, 1, 8, 8\): RuntimeError: .*; its forward must take inputs shaped \(batch, "
                           r"\*input_shape\) with input_shape=\(1, 8, 8\)"),
    ("tuple-net", [], r"model 'tuple-net' \(TupleNet in \S*bad_models\.py\) returns a tuple of 2 from forward; it must "
                      r"return one tensor of logits shaped \(batch, 10\)"),
    ("wide-net", [], r"model 'wide-net' \(WideNet in \S*bad_models\.py\) returns outputs shaped \(8, 12\) for a batch "
                     r"of 8 inputs; it must return logits shaped \(8, 10\)"),
    ("named-head-net", ["--model-option", "classifier=hidden"],
     r"its classifier 'hidden' \(named with --model-option classifier=hidden\) has 32 outputs, but digits has 10 "
     r"classes; .*name one of fc instead"),
    ("ignores-classes-net", [], r"returns outputs shaped \(8, 3\) .*give its output layer the num_classes its builder "
                                r"is called with \(10 here\)"),
    # The suggestion the refusal used to make (name a classifier) is refused too, before training, not after.
    ("ignores-classes-net", ["--model-option", "classifier=fc"], r"returns outputs shaped \(8, 3\)"),
]


@pytest.fixture
def bad_models(tmp_path) -> Path:
    return _write(tmp_path / "bad_models.py", PLUGIN_MODELS)


@pytest.mark.parametrize("model,options,pattern", MODEL_CASES, ids=[f"{m}{''.join(o)}" for m, o, _ in MODEL_CASES])
def test_a_model_is_run_once_before_training(model, options, pattern, bad_models, tmp_path):
    results = tmp_path / "results"
    result = run_cli("run", "--plugin", str(bad_models), "--model", model, *options, "--dataset", "digits",
                     "--ratio", "2", *SMALL, results=results)
    refused(result, results, pattern)


def test_the_refusals_fix_for_a_model_that_ignores_num_classes_works(bad_models, tmp_path):
    """The line for ``ignores-classes-net`` asks to give the output layer ``num_classes`` outputs; the builder that
    does (``fixed-net``, the same class) runs to the end."""
    results = tmp_path / "results"
    result = run_cli("run", "--plugin", str(bad_models), "--model", "fixed-net", "--dataset", "digits", "--ratio", "2",
                     *SMALL, results=results, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "achieved 2.0" in result.stdout


class _Tuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)), x


class _NoFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.fc = nn.Linear(64, 20), nn.Linear(20, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.hidden(x.flatten(1))))


@pytest.mark.parametrize("model,options,pattern", [
    (_Tuple(), None, r"\(_Tuple in \S*test_preflight_inputs\.py\) returns a tuple of 2 from forward"),
    (_NoFlatten(), None, r"\(_NoFlatten in \S*test_preflight_inputs\.py\) fails on a batch of inputs shaped \(8, 1, 8, 8\)"),
    (nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), None, r"returns outputs shaped \(8, 4\) .*\(10 here\)"),
    (_Head(), {"classifier": "hidden"}, r"its classifier 'hidden' .* has 20 outputs, but digits has 10 classes"),
], ids=["tuple", "forward-fails", "wrong-width", "named-classifier-wrong-width"])
def test_the_api_runs_the_same_model_checks_before_writing(model, options, pattern, tmp_path, monkeypatch):
    from bench import api
    from bench.preflight import PreflightError

    root = _results_at(tmp_path / "results", monkeypatch)
    with pytest.raises(PreflightError, match=pattern):
        api.experiment("magnitude", model, "digits", 2, "quick", lr=1e-3, model_options=options)
    assert not [name for name in STORES if (root / name).exists()]


# ---------------------------------------------------------------- the method's reach

def test_run_refuses_a_ratio_out_of_reach_before_the_baseline_with_the_largest_ratio(tmp_path):
    from bench.models import create_model
    from methods import build
    from methods.common.base import reach_floor

    reach = reach_floor(build("magnitude", {}).max_ratio(create_model("mlp", (1, 8, 8), 10)))
    results = tmp_path / "results"
    result = run_cli("run", "--dataset", "digits", "--model", "mlp", "--ratio", "5000", *SMALL, results=results)
    line = refused(result, results, rf"ratio 5000x is out of reach: the largest ratio magnitude reaches on mlp is "
                                    rf"{reach:g}x; ask for --ratio {reach:g} or less")
    assert "this one" not in line


def test_a_grid_wholly_out_of_reach_is_refused_before_the_study(tmp_path):
    results = tmp_path / "results"
    result = run_cli("bench", "--dataset", "digits", "--model", "mlp", "--method", "coreset", "--ratios", "5000,9000",
                     "--protocol", "quick", "--epochs", "1", "--finetune-epochs", "1", results=results)
    refused(result, results, r"every ratio of the grid \(5000x, 9000x\) is out of reach: the largest ratio coreset "
                             r"reaches on mlp is [0-9.]+x")


def test_the_solver_names_the_largest_ratio_not_a_multiple_of_this_one():
    from methods import CompressionError, build
    from methods.common.base import Context
    from bench.models import create_model

    model = create_model("mlp", (1, 8, 8), 10, widths=(16,))
    with pytest.raises(CompressionError, match=r"the largest ratio reachable on this model is [0-9.]+x") as caught:
        build("coreset", {"finetune_each_layer": False}).compress(model, 10000, Context(seed=0))
    assert "this one" not in str(caught.value)


# ---------------------------------------------------------------- never record what is known to be wrong

# ``poison=1`` makes the training loss NaN (the forward in training mode adds NaN; eval mode is clean, so the
# preflight passes); ``constant-net`` answers one class whatever the input: a baseline at chance.
PLUGIN_WRONG = """
    import torch
    from torch import nn
    from bench.models import register_model

    class Poisoned(nn.Module):
        def __init__(self, classes, poison):
            super().__init__()
            self.hidden, self.fc = nn.Linear(64, 16), nn.Linear(16, classes)
            self.poison = poison

        def forward(self, x):
            out = self.fc(torch.relu(self.hidden(x.flatten(1))))
            return out + float("nan") if self.training and self.poison else out

    class Constant(Poisoned):
        def forward(self, x):
            return self.fc(torch.relu(self.hidden(x.flatten(1)))) * 0.0

    @register_model("poison-net")
    def poison_net(input_shape, num_classes, poison=0):
        return Poisoned(num_classes, bool(int(poison)))

    @register_model("constant-net")
    def constant_net(input_shape, num_classes):
        return Constant(num_classes, False)
    """


def _runs(store: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(kind tag, status, invalid tag, error tag) of every run in an MLflow SQLite store."""
    with sqlite3.connect(store) as db:
        def tag(key: str) -> str:
            return f"(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = '{key}')"
        return db.execute(f"SELECT {tag('kind')}, r.status, {tag('invalid')}, {tag('error')} FROM runs r").fetchall()


def _weights(results: Path) -> list[Path]:
    return [p for p in (results / "baselines").glob("*.pt") if not p.name.endswith(".init.pt")]


def test_a_loss_that_goes_non_finite_ends_failed_and_is_skipped_by_the_verdict_and_figures(tmp_path):
    plugin = _write(tmp_path / "wrong_models.py", PLUGIN_WRONG)
    results = tmp_path / "results"
    common = ["--plugin", str(plugin), "--model", "poison-net", "--dataset", "digits", "--ratio", "2", *SMALL]
    good = run_cli("run", *common, "--model-option", "poison=0", results=results, timeout=300)
    assert good.returncode == 0, good.stderr
    bad = run_cli("run", *common, "--model-option", "poison=1", results=results, timeout=300)
    assert bad.returncode == 1, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the training loss became NaN or inf"), bad.stderr
    assert "Traceback" not in bad.stderr
    failed = [r for r in _runs(results / "mlflow.db") if r[1] == "FAILED"]
    assert len(failed) == 1 and failed[0][2] == "nonfinite-loss" and "NaN or inf" in failed[0][3]
    assert len(_weights(results)) == 1  # the good baseline only: the poisoned one was never cached

    from bench.figures import tidy_runs
    from bench.tracking import Tracker
    from bench.verdict import select_on_validation
    from papers_support import scratch_store

    with scratch_store(results):
        runs = tidy_runs(Tracker())
    assert runs.attrs["skipped_invalid"] == {"digits/poison-net": {"nonfinite-loss": 1}}
    assert select_on_validation(runs).attrs["skipped_invalid"] == {"nonfinite-loss": 1}
    drawn = run_cli("figures", results=results, timeout=300)
    assert drawn.returncode == 0, drawn.stderr
    assert "digits/poison-net: 1 run skipped as known wrong (1 nonfinite-loss" in drawn.stdout
    (verdict,) = (results / "figures").glob("digits__poison-net/*/verdict.md")
    assert "1 run skipped as known wrong (1 nonfinite-loss; tagged invalid, FAILED)" in verdict.read_text()


def test_a_baseline_at_chance_is_not_cached_and_its_run_fails_with_the_reason(tmp_path):
    plugin = _write(tmp_path / "wrong_models.py", PLUGIN_WRONG)
    results = tmp_path / "results"
    result = run_cli("run", "--plugin", str(plugin), "--model", "constant-net", "--dataset", "digits", "--ratio", "2",
                     *SMALL, results=results, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"error: the dense baseline of constant-net on digits \(seed 0, 1 epochs\) is no better than "
                     r"chance \(val accuracy 0\.\d+ <= 0\.\d+.*chance is the share of the commonest class", lines[0])
    assert not _weights(results)
    (run,) = _runs(results / "mlflow.db")
    assert run[1] == "FAILED" and run[2] == "baseline-at-chance" and "no better than chance" in run[3]


def test_the_verdict_never_chooses_a_run_tagged_invalid():
    """A planted frame: the invalid candidate has the best validation accuracy, yet the other one is chosen."""
    import pandas as pd

    from bench.verdict import select_on_validation
    from bench.verdict.selection import skipped_note

    rows = [dict(experiment="d/m", variant="magnitude", arm="method", requested_ratio=4.0, seed=0, kind="compressed",
                 lr=lr, val_acc_top1=val, acc_top1=0.5, run_id=f"r{i}", invalid=invalid)
            for i, (lr, val, invalid) in enumerate([(1e-3, 0.6, None), (1e-2, 0.9, "nonfinite-loss")])]
    runs = pd.DataFrame(rows)
    runs.attrs["skipped_invalid"] = {"d/m": {"baseline-at-chance": 2}, "other/x": {"nonfinite-loss": 5}}
    chosen = select_on_validation(runs)
    assert list(chosen["run_id"]) == ["r0"] and chosen["n_candidates"].iloc[0] == 1
    assert chosen.attrs["skipped_invalid"] == {"baseline-at-chance": 2, "nonfinite-loss": 1}
    assert skipped_note(chosen) == ("3 runs skipped as known wrong (2 baseline-at-chance, 1 nonfinite-loss; tagged "
                                    "invalid, FAILED)")
