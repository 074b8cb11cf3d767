"""Model registry: every model is a flat ``nn.Sequential`` whose last Linear is the classifier.

A flat chain keeps structural surgery simple and shared: the layer after a layer is the next
Linear/Conv2d in the chain, and a method never has to understand a custom ``forward``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from bench.registry import Registry

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}

_MODELS: Registry[Callable[..., "SequentialNet"]] = Registry("model")
register_model = _MODELS.register


@dataclass(frozen=True)
class ModelSpec:
    """What built a model: enough to build another of the same family with other widths."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)


class SequentialNet(nn.Sequential):
    """A flat chain of layers; ``classifier`` is the final Linear, which methods never prune."""

    spec: ModelSpec

    @property
    def classifier(self) -> nn.Linear:
        return [m for m in self if isinstance(m, nn.Linear)][-1]


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def list_models(pattern: str = "*") -> list[str]:
    return _MODELS.names(pattern)


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None, **kwargs: Any
) -> SequentialNet:
    """Build a registered model; ``seed`` fixes its initialisation without touching global RNG state."""
    builder = _MODELS.get(name)
    if seed is None:
        model = builder(tuple(input_shape), num_classes, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(tuple(input_shape), num_classes, **kwargs)
    model.spec = ModelSpec(name, tuple(input_shape), num_classes, dict(kwargs))
    return model


def _mlp_layers(in_features: int, widths: tuple[int, ...], num_classes: int, activation: str) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layers += [nn.Linear(in_features, width), _activation(activation)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return layers


@register_model("mlp")
def mlp(
    input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (128, 256), activation: str = "relu"
) -> SequentialNet:
    """Fully connected net; the default 784-128-256-10 is the SAP paper's MLP."""
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"mlp widths must be positive integers, got {widths}")
    return SequentialNet(*_mlp_layers(math.prod(input_shape), widths, num_classes, activation))


@register_model("lenet300")
def lenet300(input_shape: tuple[int, ...], num_classes: int, activation: str = "relu") -> SequentialNet:
    """LeNet-300-100 (LeCun et al. 1998): 266,610 parameters on 28x28 inputs with 10 classes."""
    return mlp(input_shape, num_classes, widths=(300, 100), activation=activation)


@register_model("lenet5")
def lenet5(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, int] = (20, 50), hidden: int = 500,
           activation: str = "relu") -> SequentialNet:
    """Caffe's LeNet-5 as pruned by Han et al. 2015 (431,080 parameters on 28x28 inputs)."""
    c_in, h, w = input_shape
    c1, c2 = (int(c) for c in channels)
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c1, 5), _activation(activation), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), _activation(activation), nn.MaxPool2d(2), nn.Flatten(),
    ]
    h, w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
    if h < 1 or w < 1:
        raise ValueError(f"lenet5 needs inputs of at least 16x16, got {input_shape}")
    layers += [nn.Linear(c2 * h * w, hidden), _activation(activation), nn.Linear(hidden, num_classes)]
    return SequentialNet(*layers)


@register_model("cnn")
def cnn(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...] = (64, 128, 256, 512),
        activation: str = "relu") -> SequentialNet:
    """The SAP paper's CNN: blocks of conv3x3 + BatchNorm + activation + maxpool, global average pool, FC."""
    c_in, h, w = input_shape
    layers: list[nn.Module] = []
    for c_out in (int(c) for c in channels):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), _activation(activation)]
        if min(h, w) >= 2:  # small inputs stop pooling instead of collapsing to 0x0
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return SequentialNet(*layers)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
