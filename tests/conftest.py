"""Shared fixtures: tiny data, tiny models and a real (Lightning-backed) method context."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
torch.set_num_threads(1)  # tests run in parallel with nothing else; keep them cheap on 2 cores

import datasets  # noqa: E402
import examples.residual_plugin  # noqa: E402,F401  (registers residual-cnn and digits-datamodule)
import examples.taylor_score  # noqa: E402,F401  (registers taylor: a plugin method held to every method's contract)
from bench.models import create_model  # noqa: E402
from bench.recipes import TrainRecipe  # noqa: E402
from bench.training import fit  # noqa: E402
from methods.common.base import Context  # noqa: E402

TINY_FINETUNE = TrainRecipe(epochs=1, lr=1e-3, batch_size=64)


@pytest.fixture(scope="session")
def tiny_data() -> datasets.DataSplits:
    return datasets.get("synthetic", n=600, input_shape=(1, 8, 8), num_classes=4)


@pytest.fixture(scope="session")
def tiny_image_data() -> datasets.DataSplits:
    return datasets.get("synthetic", n=400, input_shape=(1, 16, 16), num_classes=4)


def make_context(data: datasets.DataSplits, seed: int = 0, teacher=None) -> Context:
    return Context(
        data=data,
        seed=seed,
        finetune=lambda m: fit(m, TINY_FINETUNE, data, seed),
        fit=lambda m, recipe, teacher=None, kd_weight=0.0, temperature=1.0: fit(
            m, recipe, data, seed, teacher=teacher, kd_weight=kd_weight, temperature=temperature),
        teacher=teacher,
    )


def digits_template(**kw):
    """A sweep template small enough for tests: digits, a 32-16 MLP, 2 baseline epochs, 1 fine-tune epoch."""
    from bench.config import ExperimentConfig

    base = dict(dataset="digits", model="mlp", model_options={"widths": (32, 16)}, method="magnitude",
                baseline=TrainRecipe(epochs=2, batch_size=64), finetune=TrainRecipe(epochs=1, batch_size=64),
                latency_repeats=2)
    base.update(kw)
    return ExperimentConfig.create(**base)


# Tiny members of every model family, for contract tests parametrised over the model registry.
TINY_MODELS = {
    "lenet300": ("lenet300", (1, 8, 8), {}),
    "mlp": ("mlp", (1, 8, 8), {"widths": (48, 32)}),
    "lenet5": ("lenet5", (1, 16, 16), {"channels": (6, 12), "hidden": 48}),
    "cnn": ("cnn", (1, 16, 16), {"channels": (8, 16, 16)}),
    # Residual networks: a registered ResNet (option-A shortcuts) and the example plugin's ResidualCNN (an
    # nn.Module with its own forward, 1x1-conv shortcuts and a classifier called ``fc``).
    "resnet20": ("resnet20", (1, 16, 16), {"width": 0.5}),
    "residual-cnn": ("residual-cnn", (1, 8, 8), {"channels": 8}),
}

# The flat chains among them (the chain surgery of ``tests/chain_surgery.py`` applies to these only).
CHAIN_MODELS = ("cnn", "lenet300", "lenet5", "mlp")

# What a method refuses on a model, with the words its CompressionError must use to name the unsupported part.
EXPECTED_REFUSALS = {
    ("lma", "residual-cnn"): "not every activation is an nn.ReLU module",
}


def tiny_model(key: str, num_classes: int = 4, seed: int = 0):
    name, shape, kwargs = TINY_MODELS[key]
    return create_model(name, shape, num_classes, seed=seed, **kwargs)
