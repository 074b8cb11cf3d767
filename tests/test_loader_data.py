"""Data that is not tensors in memory: DataModules and DataLoader triples (datasets.loaders), and file: .npz
datasets (datasets.files), trained and measured by the same pipeline as tensors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import datasets
from bench.metrics import accuracy, split_accuracy
from datasets.core import SPLIT_SEED, TensorBatches, hold_out
from papers_support import scratch_store, tiny_config

TIMING = ("seconds", "latency", "speedup_b", "measured_speedup", "system/")  # clocks and the machine's own state


class Pairs(Dataset):
    """A map-style dataset that is not a TensorDataset: the runner must batch it through a DataLoader."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def _toy(n: int = 200, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 1, 4, 4, generator=g), torch.randint(0, classes, (n,), generator=g)


def _metrics(tracker, run_id: str) -> dict[str, float]:
    run = tracker.client.get_run(run_id)
    return {k: v for k, v in run.data.metrics.items() if not any(t in k for t in TIMING)}


def test_a_datamodule_gives_the_same_trained_metrics_as_the_same_data_as_tensors(tmp_path):
    import examples.residual_plugin  # noqa: F401  (registers digits-datamodule)
    from bench.pipeline import run_experiment

    results = {}
    with scratch_store(tmp_path) as tracker:
        for name in ("digits", "digits-datamodule"):
            config = tiny_config(name, "mlp", "magnitude", 2, 0, {}, model_options={"widths": (32, 16)})
            result = run_experiment(config, tracker)
            results[name] = (_metrics(tracker, result.run_id), tracker.client.get_run(result.run_id).inputs)
    (tensors, tensor_inputs), (module, module_inputs) = results["digits"], results["digits-datamodule"]
    assert "acc_top1" in tensors and "val_acc_top1_before_finetune" in tensors
    assert module == tensors  # every trained and measured value, bit for bit
    # The same samples: the same dataset digest, however they are served.
    assert module_inputs.dataset_inputs[0].dataset.digest == tensor_inputs.dataset_inputs[0].dataset.digest


def test_a_loader_triple_without_val_carves_val_as_carve_does_whatever_the_loaders_settings():
    x, y = _toy()
    val_idx, train_idx = hold_out(np.random.default_rng(SPLIT_SEED), len(y), 0.1)

    def load(batch_size: int, seed: int) -> datasets.LoaderSplits:
        torch.manual_seed(seed)  # neither the global seed nor the user's batching reaches the splits
        test = DataLoader(Pairs(x[:50], y[:50]), batch_size=batch_size)
        return datasets.from_loaders("toy", DataLoader(Pairs(x, y), batch_size=batch_size, shuffle=True), None, test)

    a, b = load(7, 0), load(64, 1)
    assert a.sizes() == b.sizes() == {"train": 180, "val": 20, "test": 50}
    assert a.input_shape == (1, 4, 4) and a.num_classes == int(y.max()) + 1
    val_x, val_y = (torch.cat(t) for t in zip(*a.eval_batches("val")))
    assert torch.equal(val_x, x[val_idx]) and torch.equal(val_y, y[val_idx])
    assert a.sha256 == b.sha256
    # Training batches are the protocol's: its batch size and the seeded order TensorBatches draws for tensors.
    ours = [torch.cat(t) for t in zip(*a.train_batches(16, seed=5))]
    reference = [torch.cat(t) for t in zip(*TensorBatches(x[train_idx], y[train_idx], 16, shuffle=True, seed=5))]
    assert all(torch.equal(p, q) for p, q in zip(ours, reference))
    assert [len(yb) for _, yb in a.train_batches(16, seed=5)][:2] == [16, 16]


def test_a_loader_is_served_and_digested_alike_from_a_tensordataset_and_from_any_map_style_dataset():
    x, y = _toy()
    generic = datasets.from_loaders("toy", DataLoader(Pairs(x[:150], y[:150])), DataLoader(Pairs(x[150:170], y[150:170])),
                                    DataLoader(Pairs(x[170:], y[170:])))
    tensors = datasets.from_loaders("toy", DataLoader(TensorDataset(x[:150], y[:150])),
                                    DataLoader(TensorDataset(x[150:170], y[150:170])),
                                    DataLoader(TensorDataset(x[170:], y[170:])))
    splits = datasets.DataSplits("toy", x[:150], y[:150], x[150:170], y[150:170], x[170:], y[170:], (1, 4, 4), 5)
    assert generic.sha256 == tensors.sha256 == splits.sha256
    for a, b in zip(generic.train_batches(32, seed=2), splits.train_batches(32, seed=2)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    assert split_accuracy(model, generic, "test", topk=(1, 3)) == split_accuracy(model, splits, "test", topk=(1, 3))
    assert accuracy(model, DataLoader(Pairs(x[170:], y[170:]), batch_size=8)) == accuracy(model, x[170:], y[170:])


def test_an_iterable_dataset_is_refused_with_a_clear_error():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([])

    x, y = _toy()
    with pytest.raises(datasets.DataError, match="toy train: .*iterable-style.*map-style"):
        datasets.from_loaders("toy", DataLoader(Stream()), None, DataLoader(Pairs(x, y)))


def test_the_digest_differs_when_one_label_changes():
    x, y = _toy()
    changed = y.clone()
    changed[17] = (changed[17] + 1) % 5
    splits = datasets.DataSplits("toy", x[:150], y[:150], x[150:170], y[150:170], x[170:], y[170:], (1, 4, 4), 5)
    assert dataclasses.replace(splits, train_y=changed[:150]).sha256 != splits.sha256

    def streamed(labels: torch.Tensor) -> str:
        return datasets.from_loaders("toy", DataLoader(Pairs(x, labels)), None, DataLoader(Pairs(x[:20], y[:20]))).sha256

    assert streamed(changed) != streamed(y)


def _digits_npz(path, with_val: bool = False, **replace) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.images.astype(np.uint8), d.target.astype(np.int64)  # (1797, 8, 8): 2-D images
    arrays = {"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:]}
    if with_val:
        arrays.update(x_train=x[:1200], y_train=y[:1200], x_val=x[1200:1400], y_val=y[1200:1400])
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_a_file_dataset_round_trips_with_exact_sizes_and_shapes(tmp_path):
    path = tmp_path / "digits.npz"
    _digits_npz(path)
    assert datasets.is_known(f"file:{path}") and datasets.is_known("digits") and not datasets.is_known("file:")
    d = datasets.get(f"file:{path}")
    assert d.sizes() == {"train": 1260, "val": 140, "test": 397}  # round(0.1 * 1400) carved off as val
    assert d.input_shape == (1, 8, 8) and d.train_x.shape == (1260, 1, 8, 8) and d.test_x.shape == (397, 1, 8, 8)
    assert d.num_classes == 10 and d.train_y.dtype == torch.int64
    assert abs(float(d.train_x.mean())) < 1e-4 and abs(float(d.train_x.std()) - 1) < 1e-2  # training statistics
    assert d.sha256 == datasets.get(f"file:{path}").sha256
    assert datasets.get(f"file:{path}", train_limit=100).sizes()["train"] == 100


def test_a_file_dataset_uses_its_validation_arrays_as_given(tmp_path):
    path = tmp_path / "digits-val.npz"
    arrays = _digits_npz(path, with_val=True)
    d = datasets.get(f"file:{path}")
    assert d.sizes() == {"train": 1200, "val": 200, "test": 397}
    train = arrays["x_train"].astype(np.float32)
    mean, std = float(train.mean()), float(train.std())
    expected = torch.from_numpy((arrays["x_val"].astype(np.float32) - mean) / std).reshape(200, 1, 8, 8)
    assert torch.equal(d.val_y, torch.from_numpy(arrays["y_val"])) and torch.allclose(d.val_x, expected, atol=1e-5)


@pytest.mark.parametrize("replace,message", [
    ({"y_test": None}, "missing array\\(s\\) y_test"),
    ({"y_train": np.zeros(10, dtype=np.int64)}, "x_train has 1400 samples but y_train has 10"),
    ({"y_train": np.full(1400, 0.5)}, "y_train holds the label 0.5 at sample 0, not a whole number; labels must be "
                                      "integers"),
    ({"y_train": np.zeros((1400, 2), dtype=np.int64)}, "y_train has shape \\(1400, 2\\) and dtype int64; labels must "
                                                       "be one integer"),
    ({"x_val": np.zeros((5, 8, 8))}, "x_val and y_val must be given together"),
    ({"x_test": np.zeros((397, 4, 4))}, "x_test samples are shaped \\(4, 4\\) but x_train samples \\(8, 8\\)"),
    ({"y_test": -np.ones(397, dtype=np.int64)}, "y_test has the negative label -1"),
])
def test_a_bad_file_gives_one_line_naming_the_file_what_is_wrong_and_what_is_allowed(tmp_path, replace, message):
    path = tmp_path / "bad.npz"
    _digits_npz(path, **replace)
    with pytest.raises(datasets.DataError, match=message) as e:
        datasets.get(f"file:{path}")
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(path)) and "x_train, y_train, x_test, y_test" in text


def test_a_missing_or_unreadable_file_says_so(tmp_path):
    with pytest.raises(datasets.DataError, match="missing.npz: no such file; a file: dataset is an .npz with arrays"):
        datasets.get(f"file:{tmp_path / 'missing.npz'}")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(datasets.DataError, match="text.npz: not a readable .npz"):
        datasets.get(f"file:{tmp_path / 'text.npz'}")


def test_fit_trains_identically_through_any_map_style_dataset_and_through_tensors():
    from bench.models import create_model
    from bench.recipes import TrainRecipe
    from bench.training import fit

    x, y = _toy(300)
    splits = datasets.DataSplits("toy", x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], (1, 4, 4), 5)
    loaders = datasets.from_loaders("toy", DataLoader(Pairs(x[:200], y[:200]), batch_size=3, shuffle=True),
                                    DataLoader(Pairs(x[200:250], y[200:250])), DataLoader(Pairs(x[250:], y[250:])))
    recipe = TrainRecipe(epochs=2, lr=1e-2, batch_size=32)
    a, b = (fit(create_model("mlp", (1, 4, 4), 5, seed=0, widths=(8,)), recipe, data, seed=4, accelerator="cpu")
            for data in (splits, loaders))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
