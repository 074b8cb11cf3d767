"""Model registry and the one rule for finding a model's classifier.

The built-in models are flat ``nn.Sequential`` chains (``SequentialNet``) whose last Linear is the
classifier: the layer after a layer is the next Linear/Conv2d in the chain. A registered builder may
return any ``nn.Module`` instead (a plugin's residual network, say); methods then see it through its
modules, the classifier rule below, and (structured methods) Torch-Pruning's dependency graph.
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


# Where a model that is not a SequentialNet names its classifier (a submodule name, e.g. "head.fc").
CLASSIFIER_NAME = "classifier_name"


def classifier_of(model: nn.Module, num_classes: int | None = None) -> nn.Module | None:
    """The model's classifier, which no method prunes, found by one documented rule, first match wins:

    1. the submodule named by the model's ``classifier_name`` attribute (``--model-option classifier=NAME``
       sets it when the model is built, overriding the rest of the rule);
    2. a ``classifier`` attribute that is a module (``SequentialNet``'s property, or a user's own field);
    3. the last ``nn.Linear`` in registration order whose output size is ``num_classes`` (any last Linear
       when the number of classes is not given).

    None for a model without a Linear layer (then every layer is prunable).
    """
    name = getattr(model, CLASSIFIER_NAME, None)
    if isinstance(name, str):
        try:
            return model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"classifier {name!r} is not a submodule of {type(model).__name__}; "
                             f"choose one of its Linear layers: {', '.join(_linear_names(model))}") from None
    own = getattr(model, "classifier", None)
    if isinstance(own, nn.Module):
        return own
    linears = [m for _, m in _linears(model) if num_classes is None or m.out_features == num_classes]
    return linears[-1] if linears else None


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, _ in _linears(model)] or ["(none)"]


def mark_classifier(model: nn.Module, num_classes: int, name: str | None = None) -> nn.Module:
    """Record which submodule is the classifier (``name``, or the rule's choice for ``num_classes``) on the
    model as ``classifier_name``, so later calls that no longer know the number of classes agree.

    A model with its own ``classifier`` module keeps it unless ``name`` overrides. Raises ValueError for
    a ``name`` that is not a Linear of the model, or a model with no Linear of ``num_classes`` outputs.
    """
    if name is not None:
        module = dict(model.named_modules()).get(name)
        if not isinstance(module, nn.Linear):
            raise ValueError(f"classifier={name!r} is not a Linear layer of {type(model).__name__}; "
                             f"choose one of: {', '.join(_linear_names(model))}")
        object.__setattr__(model, CLASSIFIER_NAME, name)
        return model
    if isinstance(getattr(model, "classifier", None), nn.Module):
        return model
    found = [n for n, m in _linears(model) if m.out_features == num_classes]
    if not found:
        raise ValueError(f"{type(model).__name__} has no Linear layer with {num_classes} outputs (one per class) to "
                         f"serve as its classifier (its Linear layers: {', '.join(_linear_names(model))}); give its "
                         f"output layer the num_classes outputs its builder is called with ({num_classes} here), or "
                         f"set a `classifier` attribute to the module that produces its outputs")
    object.__setattr__(model, CLASSIFIER_NAME, found[-1])
    return model


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def list_models(pattern: str = "*") -> list[str]:
    return _MODELS.names(pattern)


def model_origin(name: str) -> str:
    """Where model ``name`` was defined: "built-in" or the plugin module that registered it."""
    return _MODELS.origin(name)


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None,
    classifier: str | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model; ``seed`` fixes its initialisation without touching global RNG state.

    ``classifier`` names the classifier submodule where the rule of ``classifier_of`` would pick another;
    the rest of ``kwargs`` go to the builder. The model carries its ``spec`` (what built it).
    """
    classifier = None if classifier is None else str(classifier)
    model = build_unmarked(name, input_shape, num_classes, seed, classifier, **kwargs)
    return mark_classifier(model, num_classes, classifier)


def build_unmarked(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None,
                   classifier: str | None = None, **kwargs: Any) -> nn.Module:
    """``create_model`` before its classifier is marked: what the builder returned, with its ``spec``. The
    preflight runs it once before the classifier rule applies, so a builder that ignores ``num_classes`` is
    told so rather than asked to name a classifier."""
    builder = _MODELS.get(name)
    if seed is None:
        model = builder(tuple(input_shape), num_classes, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(tuple(input_shape), num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model builder {name!r} returned {type(model).__name__}, not an nn.Module")
    spec_kwargs = {**kwargs, **({"classifier": classifier} if classifier is not None else {})}
    # object.__setattr__: a plain attribute even on modules that override __setattr__.
    object.__setattr__(model, "spec", ModelSpec(name, tuple(input_shape), num_classes, spec_kwargs))
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


# ----------------------------------------------------------------------------------------------------
# CIFAR networks of the seed papers (coreset: VGG-16; multihash: ResNet-32; SuRP: ResNet-20, VGG-16).


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


# VGG-16's 13 convolutions ("D" of Simonyan & Zisserman 2015); "M" is a 2x2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                       512, 512, 512, "M")


@register_model("vgg16")
def vgg16(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, hidden: tuple[int, ...] = (512, 512),
          activation: str = "relu") -> SequentialNet:
    """VGG-16 for CIFAR with BatchNorm: 13 conv3x3 (no bias) + BN + activation, five max-pools, then a dense head.

    The dense head is Linear(512·h·w, 512), act, Linear(512, 512), act, Linear(512, classes) (h = w = 1 on
    32x32 inputs): the usual CIFAR VGG-16 head, 530,442 parameters of 15,249,354 for CIFAR-10. The coreset
    paper (Mussay et al. 2020, Table 2) prunes "the dense layers only" of a CIFAR-10 VGG-16 and counts them
    as 1.4M, which neither this head nor its text's 4096/4096/1000 head gives (docs/methods/coreset.md marks
    the head unverified); ``hidden`` sets other hidden widths, e.g. (4096, 4096). No dropout: the chain stays
    deterministic in training and every method sees the same layers. ``width`` scales every conv's channels
    (students of other sizes); pools stop once the map is 1 pixel, so 16x16 inputs work too.
    """
    c_in, h, w = input_shape
    layers: list[nn.Module] = []
    for item in VGG16_CONFIG:
        if item == "M":
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            continue
        c_out = _scaled(int(item), width)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), _activation(activation)]
        c_in = c_out
    layers.append(nn.Flatten())
    layers += _mlp_layers(c_in * h * w, tuple(int(u) for u in hidden), num_classes, activation)[1:]
    return SequentialNet(*layers)


class PadShortcut(nn.Module):
    """He et al. 2016's option A shortcut: subsample by the stride, zero-pad the new channels; no parameters.

    The extra channels are padded evenly on both sides (the odd one at the end), as in the CIFAR reference
    implementations; where the pad goes does not matter for training, only that it is fixed.

    ``positions[c]`` is the output channel that input channel c lands in (−1: dropped). It starts as the
    even padding above and changes only when structural pruning removes input or output channels
    (``methods.common.unit_groups`` prunes it through Torch-Pruning), so a pruned shortcut still routes every
    surviving channel exactly where it went before. The buffer is not persistent: it is a function of the
    architecture, and the state_dict keys (cached baselines) stay what they were.
    """

    positions: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A shortcut cannot shrink {in_channels} to {out_channels} channels")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        extra = out_channels - in_channels
        self.register_buffer("positions", torch.arange(in_channels) + extra // 2, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        kept = self.positions >= 0
        out = x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))
        # index_copy writes the same values the zero padding did (bit-identical before any pruning).
        return out.index_copy(1, self.positions[kept], x[:, kept])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv3x3 - BN - act - conv3x3 - BN, plus the shortcut, then act (He et al. 2016, Sec. 4.2).

    The shortcut is the identity where shapes match, else ``PadShortcut`` (option A) or a 1x1 conv + BN
    (option B). Its own module, so the model stays a flat chain of blocks; methods that remove units must
    treat a block as one step (its output width is tied to the shortcut), unstructured ones see its layers
    through ``named_modules``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = _activation(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = _activation(activation)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


def cifar_resnet(input_shape: tuple[int, ...], num_classes: int, depth: int, width: float = 1.0,
                 shortcut: str = "A", activation: str = "relu") -> SequentialNet:
    """He et al. 2016 (Sec. 4.2) CIFAR ResNet of depth 6n+2: conv3x3(16), three stages of n basic blocks at
    16, 32, 64 channels (stride 2 entering stages 2 and 3), global average pool, Linear.

    ``width`` scales the three stage widths; ``shortcut`` "A" (default, the paper's CIFAR choice: parameter
    free, so ResNet-20/32/56 have 269,722 / 464,154 / 853,018 parameters for 10 classes, "0.27M / 0.46M /
    0.85M" in the paper's Table 6) or "B" (1x1 conv + BN projections where the shape changes: 2,752 more,
    e.g. 272,474 for ResNet-20).
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' (zero-padding identity) or 'B' (1x1 projection), got {shortcut!r}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    n = (depth - 2) // 6
    stages = [_scaled(c, width) for c in (16, 32, 64)]
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], stages[0], 3, padding=1, bias=False),
                               nn.BatchNorm2d(stages[0]), _activation(activation)]
    c_in = stages[0]
    for s, c_out in enumerate(stages):
        for b in range(n):
            stride = 2 if s > 0 and b == 0 else 1
            layers.append(BasicBlock(c_in, c_out, stride, shortcut, activation))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return SequentialNet(*layers)


def _register_resnet(depth: int) -> None:
    def build(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, shortcut: str = "A",
              activation: str = "relu") -> SequentialNet:
        return cifar_resnet(input_shape, num_classes, depth, width, shortcut, activation)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, Sec. 4.2); see ``cifar_resnet``."
    register_model(f"resnet{depth}")(build)


for _depth in (20, 32, 56):
    _register_resnet(_depth)
