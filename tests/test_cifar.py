"""CIFAR-10/100 loaders on a tiny archive in the official on-disk format, the CIFAR models, their recipes,
and every registered method on tiny members of the new model families."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import datasets
import methods
from bench.export import clone, deployable
from bench.metrics import params_effective, params_total
from bench.metrics import params_total
from bench.models import BasicBlock, PadShortcut, create_model
from bench.recipes import BASELINE_RECIPE, FINETUNE_RECIPE, RECIPES, TrainRecipe, recipe_for
from bench.training import TensorBatches
from conftest import make_context
from datasets.cifar import CIFAR10, CropFlip, install_archive, md5
from datasets.core import TransformedBatches, fetch_command

N_TRAIN, N_TEST = 50, 20  # images per training batch file / in the test file


# ------------------------------------------------------------------------------------------------------
# A tiny archive in the official format


def _pickle_like_official(obj: dict) -> bytes:
    """Protocol-2 pickle naming numpy's _reconstruct as the official (numpy 1.x era) files do."""
    raw = pickle.dumps(obj, protocol=2)
    return raw.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """uint8 (n, 3072) rows, R then G then B planes, each channel with its own range so that a
    per-channel standardisation and a wrong channel layout are both visible."""
    lows, highs = (0, 60, 150), (100, 200, 256)
    planes = [rng.integers(lo, hi, size=(n, 1024)) for lo, hi in zip(lows, highs)]
    return np.concatenate(planes, axis=1).astype(np.uint8)


def _mark_classes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows 3y..3y+2 of the blue plane set to 255 (inside its range; the red plane's first pixels, which the
    tests identify images by, stay random): a signal a small CNN learns in a few epochs, so a baseline trained
    on the archive is better than chance (the suite refuses one that is not)."""
    x = x.copy()
    for i, label in enumerate(y):
        x[i, 2048 + 96 * label:2048 + 96 * (label + 1)] = 255
    return x


def _write(path: Path, obj: dict) -> None:
    path.write_bytes(_pickle_like_official(obj))


def make_cifar10(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        y = rng.integers(0, 10, N_TRAIN)
        x = _mark_classes(_images(rng, N_TRAIN), y)
        _write(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(), b"labels": y.tolist(),
                                            b"data": x, b"filenames": [b"img.png"] * N_TRAIN})
        train_x.append(x), train_y.append(y)
    ty = rng.integers(0, 10, N_TEST)
    tx = _mark_classes(_images(rng, N_TEST), ty)
    _write(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": ty.tolist(), b"data": tx,
                                   b"filenames": [b"img.png"] * N_TEST})
    _write(folder / "batches.meta", {b"label_names": [b"class"] * 10, b"num_cases_per_batch": N_TRAIN, b"num_vis": 3072})
    return {"x": np.concatenate(train_x), "y": np.concatenate(train_y), "tx": tx, "ty": ty}


def make_cifar100(folder: Path, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", 5 * N_TRAIN), ("test", N_TEST)):
        x, fine = _images(rng, n), rng.integers(0, 100, n)
        _write(folder / name, {b"filenames": [b"img.png"] * n, b"batch_label": name.encode(), b"fine_labels": fine.tolist(),
                               b"coarse_labels": (fine // 5).tolist(), b"data": x})
        out[name] = (x, fine)
    _write(folder / "meta", {b"fine_label_names": [b"c"] * 100, b"coarse_label_names": [b"s"] * 20})
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty data cache, so nothing outside tmp_path is read or written."""
    monkeypatch.setenv("COMPRESSION_BENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.delenv("CIFAR100_DIR", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def cifar10_raw(tmp_path, cache, monkeypatch) -> dict[str, np.ndarray]:
    raw = make_cifar10(tmp_path / "user" / "cifar-10-batches-py")
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "user"))  # the parent of the unpacked folder
    return raw


def _affine_per_channel(raw: np.ndarray, normalised: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares a, b with normalised[:, c] = a_c * raw[:, c] + b_c, and the worst residual."""
    raw = raw.reshape(len(raw), 3, -1).astype(np.float64)
    z = normalised.reshape(len(raw), 3, -1).double().numpy()
    a, b, worst = np.empty(3), np.empty(3), 0.0
    for c in range(3):
        a[c], b[c] = np.polyfit(raw[:, c].ravel(), z[:, c].ravel(), 1)
        worst = max(worst, float(np.abs(a[c] * raw[:, c] + b[c] - z[:, c]).max()))
    return a, b, worst


# ------------------------------------------------------------------------------------------------------
# Loading


def test_cifar10_loads_the_official_layout(cifar10_raw):
    d = datasets.get("cifar10")
    n = 5 * N_TRAIN
    assert d.sizes() == {"train": n - round(0.1 * n), "val": round(0.1 * n), "test": N_TEST}
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.train_x.shape[1:] == (3, 32, 32) and d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    # The test set keeps its order, and its pixels are an exact per-channel affine map of the R, G, B planes.
    assert torch.equal(d.test_y, torch.from_numpy(cifar10_raw["ty"]))
    a, b, worst = _affine_per_channel(cifar10_raw["tx"], d.test_x)
    assert worst < 1e-4 and (a > 0).all()
    # ...whose per-channel offsets differ (one shared mean would give one offset, see _images).
    assert np.ptp(b) > 1.0


def test_cifar10_standardises_each_channel_with_training_statistics(cifar10_raw):
    d = datasets.get("cifar10")
    per_channel = d.train_x.transpose(0, 1).reshape(3, -1).double()
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    # val went through the same map as train and test (statistics of train only, so val's mean is not 0 exactly)
    a_test, b_test, _ = _affine_per_channel(cifar10_raw["tx"], d.test_x)
    assert not torch.allclose(d.val_x.transpose(0, 1).reshape(3, -1).mean(1), torch.zeros(3), atol=1e-6)
    raw_val = (d.val_x.reshape(len(d.val_x), 3, -1).double().numpy() - b_test[:, None]) / a_test[:, None]
    assert np.abs(raw_val - np.round(raw_val)).max() < 1e-2 and raw_val.min() > -0.5 and raw_val.max() < 255.5


def test_cifar10_splits_are_disjoint_cover_the_training_files_and_repeat(cifar10_raw):
    d = datasets.get("cifar10")
    rows = lambda t: {tuple(r) for r in t.reshape(len(t), -1)[:, :64].tolist()}  # noqa: E731 (64 pixels identify an image)
    train, val = rows(d.train_x), rows(d.val_x)
    assert len(train) == len(d.train_x) and len(val) == len(d.val_x) and not train & val
    assert sorted(torch.cat([d.train_y, d.val_y]).tolist()) == sorted(cifar10_raw["y"].tolist())
    again = datasets.get("cifar10")
    assert torch.equal(again.val_x, d.val_x) and torch.equal(again.train_y, d.train_y)
    limited = datasets.get("cifar10", train_limit=30)
    assert limited.sizes() == {"train": 30, "val": d.sizes()["val"], "test": N_TEST}
    # val holds the same images whatever the train limit (only the standardisation statistics move)
    assert torch.equal(limited.val_y, d.val_y)
    assert torch.corrcoef(torch.stack([limited.val_x.flatten(), d.val_x.flatten()]))[0, 1] > 0.999


def test_cifar100_reads_fine_labels(tmp_path, cache, monkeypatch):
    raw = make_cifar100(tmp_path / "c100" / "cifar-100-python")
    monkeypatch.setenv("CIFAR100_DIR", str(tmp_path / "c100" / "cifar-100-python"))  # the folder itself
    d = datasets.get("cifar100")
    assert d.num_classes == 100 and d.input_shape == (3, 32, 32)
    assert torch.equal(d.test_y, torch.from_numpy(raw["test"][1]))
    assert sorted(torch.cat([d.train_y, d.val_y]).tolist()) == sorted(raw["train"][1].tolist())
    assert int(torch.cat([d.train_y, d.test_y]).max()) >= 20  # fine (0..99), not coarse (0..19) labels


def test_missing_files_name_the_fetch_command(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(datasets.DataError) as err:
        datasets.get("cifar10")
    assert fetch_command("cifar10") in str(err.value) and "CIFAR10_DIR" in str(err.value)
    with pytest.raises(datasets.DataError, match="cifar100"):
        datasets.get("cifar100")


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_batch_file_that_would_run_code_is_refused(cifar10_raw, tmp_path):
    (tmp_path / "user" / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": _Payload()}, protocol=2))
    with pytest.raises(datasets.DataError, match="refusing to load posix.getcwd|refusing to load os.getcwd"):
        datasets.get("cifar10")


def test_a_batch_with_the_wrong_layout_is_refused(cifar10_raw, tmp_path):
    _write(tmp_path / "user" / "cifar-10-batches-py" / "test_batch",
           {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(datasets.DataError, match=r"\(N, 3072\)"):
        datasets.get("cifar10")


# ------------------------------------------------------------------------------------------------------
# Fetching from an archive


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _archive_of(folder: Path, out: Path, prefix: str = "cifar-10-batches-py") -> Path:
    return _tar(out, {f"{prefix}/{f.name}": f.read_bytes() for f in sorted(folder.iterdir())})


def test_archive_is_verified_then_unpacked_into_the_cache(tmp_path, cache, monkeypatch):
    make_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    archive = _archive_of(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "user" / CIFAR10.archive)
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "user"))  # holds only the archive
    # fetch checks the official checksum, which a home-made archive does not have
    with pytest.raises(datasets.DataError, match=f"expected md5 {CIFAR10.md5}"):
        datasets.fetch("cifar10", log=lambda _: None)
    assert not (cache / "cifar10" / "cifar-10-batches-py" / "test_batch").exists()
    folder = install_archive(CIFAR10, archive, md5(archive))
    assert folder == cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "src" / "cifar-10-batches-py").iterdir())
    from_cache = datasets.get("cifar10")
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "src"))
    from_user = datasets.get("cifar10")
    assert torch.equal(from_cache.train_x, from_user.train_x) and torch.equal(from_cache.test_y, from_user.test_y)
    messages = []
    datasets.fetch("cifar10", log=messages.append)  # already there: nothing to do
    assert messages and "found" in messages[0]


@pytest.mark.parametrize("evil", ["../escaped", "cifar-10-batches-py/../../escaped", "/tmp/escaped-cifar-test"])
def test_archive_members_cannot_escape_the_cache(tmp_path, cache, evil):
    make_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    members = {f"cifar-10-batches-py/{f.name}": f.read_bytes() for f in (tmp_path / "src" / "cifar-10-batches-py").iterdir()}
    archive = _tar(tmp_path / "evil.tar.gz", {evil: b"x", **members})
    with pytest.raises(datasets.DataError, match="escape"):
        install_archive(CIFAR10, archive, None)
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*"))
    assert not Path("/tmp/escaped-cifar-test").exists()


def test_archive_without_the_batches_is_refused(tmp_path, cache):
    archive = _tar(tmp_path / "other.tar.gz", {"cifar-10-batches-py/data_batch_1": b"x"})
    with pytest.raises(datasets.DataError, match="lacks"):
        install_archive(CIFAR10, archive, None)


# ------------------------------------------------------------------------------------------------------
# Augmentation


def _is_crop_or_flip(out: torch.Tensor, image: torch.Tensor, padding: int) -> bool:
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[1:]
    crops = [padded[:, i:i + h, j:j + w] for i in range(2 * padding + 1) for j in range(2 * padding + 1)]
    return any(torch.equal(out, c) or torch.equal(out, c.flip(2)) for c in crops)


def test_crop_flip_keeps_shape_and_is_seeded():
    x = torch.randn(16, 3, 32, 32)
    aug = CropFlip()
    a = aug(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))
    assert all(_is_crop_or_flip(a[k], x[k], 4) for k in range(len(x)))
    assert not torch.equal(a, x)  # 16 images: the chance that none moved is 1/(81*2)^16
    assert torch.equal(CropFlip(padding=0, flip=False)(x, torch.Generator().manual_seed(0)), x)
    flipped = CropFlip(padding=0, flip=True)(x, torch.Generator().manual_seed(0))
    assert all(torch.equal(flipped[k], x[k]) or torch.equal(flipped[k], x[k].flip(2)) for k in range(len(x)))


def test_augmentation_applies_to_training_batches_only(cifar10_raw):
    d = datasets.get("cifar10")
    assert isinstance(d.train_transform, CropFlip)
    assert datasets.get("cifar10", augment=False).train_transform is None
    before = {k: getattr(d, k).clone() for k in ("train_x", "val_x", "test_x")}
    plain = TensorBatches(d.train_x, d.train_y, 64, shuffle=True, seed=3)
    augmented = d.augment(TensorBatches(d.train_x, d.train_y, 64, shuffle=True, seed=3), seed=3)
    assert isinstance(augmented, TransformedBatches) and len(augmented) == len(plain)
    changed = 0
    for (xa, ya), (xp, yp) in zip(augmented, plain):
        assert xa.shape == xp.shape and torch.equal(ya, yp)  # same order, labels untouched
        assert all(_is_crop_or_flip(xa[k], xp[k], 4) for k in range(0, len(xa), 7))
        changed += int(not torch.equal(xa, xp))
    assert changed == len(plain)
    again = d.augment(TensorBatches(d.train_x, d.train_y, 64, shuffle=True, seed=3), seed=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, d.augment(TensorBatches(d.train_x, d.train_y, 64, True, 3), 3)))
    for k, v in before.items():  # the transform never writes into the stored splits
        assert torch.equal(getattr(d, k), v), k
    # a dataset without augmentation hands its batches back untouched
    synthetic = datasets.get("synthetic", n=100)
    batches = TensorBatches(synthetic.train_x, synthetic.train_y, 32)
    assert synthetic.train_transform is None and synthetic.augment(batches, 0) is batches


# ------------------------------------------------------------------------------------------------------
# Models


def _resnet_count(depth: int, classes: int, shortcut: str = "A", widths=(16, 32, 64)) -> int:
    """He et al.'s CIFAR ResNet counted by hand: conv weights, 2 BN entries per channel, projections, FC."""
    n = (depth - 2) // 6
    total, c_in = 3 * widths[0] * 9 + 2 * widths[0], widths[0]
    for s, c in enumerate(widths):
        for b in range(n):
            total += c_in * c * 9 + c * c * 9 + 4 * c
            if shortcut == "B" and (c_in != c or (s > 0 and b == 0)):
                total += c_in * c + 2 * c
            c_in = c
    return total + c_in * classes + classes


@pytest.mark.parametrize("name, depth, expected", [("resnet20", 20, 269_722), ("resnet32", 32, 464_154),
                                                   ("resnet56", 56, 853_018)])
def test_resnet_parameter_counts(name, depth, expected):
    model = create_model(name, (3, 32, 32), 10, seed=0)
    assert params_total(model) == expected == _resnet_count(depth, 10)
    projected = create_model(name, (3, 32, 32), 10, seed=0, shortcut="B")
    assert params_total(projected) == _resnet_count(depth, 10, "B") == expected + 2_752
    assert params_total(create_model(name, (3, 32, 32), 100)) == _resnet_count(depth, 100)
    assert params_total(create_model(name, (3, 32, 32), 10, width=0.5)) == _resnet_count(depth, 10, widths=(8, 16, 32))


def test_vgg16_params_total():
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512)] + [(512, 512)] * 5
    expected = sum(9 * i * o + 2 * o for i, o in convs) + (512 * 512 + 512) * 2 + 512 * 10 + 10
    model = create_model("vgg16", (3, 32, 32), 10, seed=0)
    assert params_total(model) == expected == 15_249_354
    head = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(512, 512), (512, 512), (512, 10)]
    assert sum(m.weight.numel() + m.bias.numel() for m in head) == 530_442
    assert len([m for m in model if isinstance(m, torch.nn.Conv2d)]) == 13
    wide = create_model("vgg16", (3, 32, 32), 10, hidden=(4096, 4096))
    assert wide.classifier.in_features == 4096


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56", "vgg16"])
def test_cifar_models_forward_and_backward_on_32x32(name):
    model = create_model(name, (3, 32, 32), 10, seed=0, width=0.25)
    assert isinstance(model, torch.nn.Sequential) and model.classifier is list(model)[-1]
    assert model.spec.name == name and model.spec.kwargs == {"width": 0.25}
    again = create_model(name, (3, 32, 32), 10, seed=0, width=0.25)  # the seed fixes the initialisation
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet_structure_and_option_a_shortcut():
    model = create_model("resnet20", (3, 32, 32), 10)
    blocks = [m for m in model if isinstance(m, BasicBlock)]
    assert len(blocks) == 9 and isinstance(model[0], torch.nn.Conv2d)
    assert isinstance(model[-3], torch.nn.AdaptiveAvgPool2d) and isinstance(model[-1], torch.nn.Linear)
    assert [isinstance(b.shortcut, PadShortcut) for b in blocks] == [False] * 3 + [True, False, False] * 2
    # With its residual branch silenced (last BN gamma = beta = 0), a block is act(shortcut(x)):
    # stride-2 subsampling, and the input channels in the middle of zero-padded ones.
    block = blocks[3].eval()
    with torch.no_grad():
        block.bn2.weight.zero_(), block.bn2.bias.zero_()
        x = torch.randn(2, 16, 32, 32)
        y = block(x)
    assert y.shape == (2, 32, 16, 16)
    torch.testing.assert_close(y[:, 8:24], torch.relu(x[:, :, ::2, ::2]))
    assert torch.equal(y[:, :8], torch.zeros_like(y[:, :8])) and torch.equal(y[:, 24:], torch.zeros_like(y[:, 24:]))
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", (3, 32, 32), 10, shortcut="C")
    from bench.models import cifar_resnet
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet((3, 32, 32), 10, depth=21)


def test_vgg16_on_small_inputs_stops_pooling():
    model = create_model("vgg16", (3, 16, 16), 4, width=1 / 16, hidden=(16, 16))
    assert len([m for m in model if isinstance(m, torch.nn.MaxPool2d)]) == 4
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)


# ------------------------------------------------------------------------------------------------------
# Recipes


def test_cifar_recipes_follow_the_papers_common_setting():
    assert set(RECIPES) == {"cifar10-resnet", "cifar10-vgg", "cifar100-resnet", "cifar100-vgg"}
    for name, (baseline, finetune) in RECIPES.items():
        for r in (baseline, finetune):
            assert isinstance(r, TrainRecipe) and r.optimizer == "sgd" and r.momentum == 0.9 and r.schedule == "cosine"
            assert r.weight_decay in (1e-4, 5e-4) and r.batch_size == 128
        assert baseline.epochs == 200 and 0 < finetune.epochs < baseline.epochs and finetune.lr < baseline.lr
        assert finetune.weight_decay == baseline.weight_decay
    assert RECIPES["cifar10-resnet"][0].lr == 0.1 and RECIPES["cifar10-resnet"][0].weight_decay == 1e-4  # He et al.
    assert recipe_for("cifar10", "resnet56") == "cifar10-resnet" and recipe_for("cifar100", "vgg16") == "cifar100-vgg"
    assert recipe_for("fashion-mnist", "resnet20") is None and recipe_for("cifar10", "lenet300") is None
    # the defaults every other run uses are untouched
    assert (BASELINE_RECIPE.epochs, BASELINE_RECIPE.lr, BASELINE_RECIPE.optimizer) == (10, 1e-3, "adam")
    assert (FINETUNE_RECIPE.epochs, FINETUNE_RECIPE.lr) == (2, 1e-4)


# ------------------------------------------------------------------------------------------------------
# Every method on tiny members of the new families


TINY_CIFAR_MODELS = {
    "resnet20": {"width": 0.125},  # stages of 2, 4, 8 channels: 4,438 parameters
    "vgg16": {"width": 1 / 16, "hidden": (16, 16)},  # 4..32 channels
}


@pytest.fixture(scope="module")
def tiny_colour_data() -> datasets.DataSplits:
    return datasets.get("synthetic", n=300, input_shape=(3, 16, 16), num_classes=4)


@pytest.mark.parametrize("model_name", sorted(TINY_CIFAR_MODELS))
@pytest.mark.parametrize("name", methods.list_methods())
def test_every_method_compresses_cifar_families_or_says_why_not(name, model_name, tiny_colour_data):
    data = tiny_colour_data
    dense = create_model(model_name, data.input_shape, data.num_classes, seed=0, **TINY_CIFAR_MODELS[model_name])
    method = methods.build(name, methods.get(name).smoke_params)
    try:
        compressed = method.compress(clone(dense), 4, make_context(data, 0, teacher=dense))
    except methods.CompressionError as e:
        # A refusal is allowed only if it says which layers (or blocks) stand in the way.
        message = str(e).lower()
        assert any(w in message for w in ("layer", "block", "residual", "shortcut", "family", "larger teacher")), str(e)
        return
    achieved = params_total(dense) / params_effective(compressed)
    assert abs(achieved / 4 - 1) <= 0.03, f"{name} on {model_name} achieved {achieved:.3f}x"
    compressed.eval()
    x = data.test_x[:16]
    with torch.no_grad():
        torch.testing.assert_close(deployable(compressed)(x), compressed(x), rtol=1e-4, atol=1e-5)
