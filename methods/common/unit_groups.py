"""Coupled unit groups of any ``nn.Module``, read off Torch-Pruning's dependency graph: find them, remove
units from them, resize them, and count the parameters a model would have at other group widths.

A *unit group* is a set of channels (Conv2d outputs) or features (Linear outputs) that must be removed
together for the network to stay well formed: in a flat chain one layer's outputs and the next layer's
matching inputs; in a residual stage every layer that writes into the summed stream (convs, their
BatchNorms, projection shortcuts) and every layer that reads from it. Torch-Pruning's ``DependencyGraph``
finds these couplings by tracing autograd, including Conv2d -> Flatten -> Linear column blocks, which it
expands to the H*W columns each channel owns. The classifier is never pruned: a group that would change
its outputs is not offered.

Option A shortcuts (``bench.models.PadShortcut``: subsample and zero-pad, no parameters) are opaque to
Torch-Pruning, which would take the padding for an element-wise op and couple 16 with 32 channels; a
customised pruner (``PadShortcutPruner``) keeps their function exact by re-routing the surviving channels.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from bench.models import PadShortcut, classifier_of
from methods.common.width_budget import ACTIVATION_TYPES, NORM_TYPES, WEIGHT_TYPES, WidthCount

# Activations written as functions (``torch.relu(x)``) are seen only by their autograd node; these are the
# ones whose module equivalent is known, so a bound on φ can still be taken.
FUNCTIONAL_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "ReluBackward0": nn.ReLU, "SigmoidBackward0": nn.Sigmoid, "TanhBackward0": nn.Tanh,
    "HardtanhBackward0": nn.Hardtanh, "LeakyReluBackward0": nn.LeakyReLU, "SoftplusBackward0": nn.Softplus,
    "EluBackward0": nn.ELU, "GeluBackward0": nn.GELU, "SiluBackward0": nn.SiLU, "MishBackward0": nn.Mish,
}
# Autograd nodes that act on every channel separately without being an activation (pools, reshapes, the
# residual sum, the transposed weight of a Linear): they do not change what a unit's value can be bounded by.
NEUTRAL_OPS = frozenset({
    "AddBackward0", "MeanBackward0", "MeanBackward1", "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0",
    "TBackward0", "MaxPool2DWithIndicesBackward0", "AvgPool2DBackward0", "AdaptiveAvgPool2DBackward0",
    "AdaptiveMaxPool2DBackward0", "CloneBackward0", "SliceBackward0", "IndexBackward0",
    # Torch-Pruning's own nodes for ops that move values without changing them
    "_SliceOp", "_ReshapeOp", "_ConcatOp", "_SplitOp", "_ExpandOp", "_UnbindOp",
})


class PadShortcutPruner(tp.pruner.function.BasePruningFunc):
    """Torch-Pruning's handler for ``PadShortcut``: input and output channels are pruned independently (they
    belong to two different stages), and ``positions`` keeps mapping each surviving input channel to the
    position its output channel now has, so the shortcut still adds exactly what it added before."""

    TARGET_MODULES = PadShortcut

    def prune_out_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        keep = [i for i in range(layer.out_channels) if i not in set(idxs)]
        new_position = torch.full((layer.out_channels,), -1, dtype=torch.long)
        new_position[keep] = torch.arange(len(keep))
        old = layer.positions
        layer.positions = torch.where(old >= 0, new_position.to(old.device)[old.clamp(min=0)], old)
        layer.out_channels = len(keep)
        return layer

    def prune_in_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        drop = set(idxs)
        keep = [i for i in range(layer.in_channels) if i not in drop]
        layer.positions = layer.positions[keep]
        layer.in_channels = len(keep)
        return layer

    def get_out_channels(self, layer: PadShortcut) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: PadShortcut) -> int:
        return layer.in_channels


CUSTOMIZED_PRUNERS = {PadShortcut: PadShortcutPruner()}


@dataclass(frozen=True)
class Producer:
    """A Linear/Conv2d whose outputs are the group's units: ``rows[i]`` is unit i's output row (filter),
    ``norm`` the BatchNorm that reads this layer's output directly (folded into its pre-activation)."""

    layer: nn.Module
    rows: torch.Tensor
    norm: nn.Module | None


@dataclass(frozen=True)
class Consumer:
    """A Linear/Conv2d reading the group: ``columns[i]`` are the input columns (Linear; H*W of them after a
    Conv2d -> Flatten) or input channels (Conv2d) that carry unit i, shape (width, columns per unit)."""

    layer: nn.Module
    columns: torch.Tensor


@dataclass(frozen=True)
class UnitGroup:
    """One coupled group, ``index`` its position in forward order of its first producer.

    norms: every BatchNorm over the units (also one after the activation); activations: the activation
    modules applied to the units (functional ones instantiated from their autograd node); other_ops: the
    names of autograd nodes on the units that are neither neutral nor known activations; pads_in /
    pads_out: option A shortcuts whose inputs / outputs are the group's units (parameter-free paths).
    """

    index: int
    width: int
    root: nn.Module
    producers: tuple[Producer, ...]
    consumers: tuple[Consumer, ...]
    norms: tuple[nn.Module, ...]
    activations: tuple[nn.Module, ...]
    other_ops: tuple[str, ...]
    pads_in: tuple[PadShortcut, ...]
    pads_out: tuple[PadShortcut, ...]


def input_shape_of(model: nn.Module) -> tuple[int, ...]:
    """The (C, H, W) / (features,) input the model was built for: tracing needs an example input. Read from
    ``model.spec`` (models built by ``create_model``) or a plain ``model.input_shape`` attribute."""
    spec = getattr(model, "spec", None)
    shape = getattr(spec, "input_shape", None) or getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{type(model).__name__} does not say its input shape, which the dependency graph needs "
                         "to trace it: build it with bench.models.create_model, or set model.input_shape = (C, H, W)")
    return tuple(shape)


def _by_root(idxs: Sequence[int], roots: Sequence[int], width: int) -> list[list[int]]:
    per_unit: list[list[int]] = [[] for _ in range(width)]
    for idx, root in zip(idxs, roots):
        per_unit[root].append(idx)
    return [sorted(v) for v in per_unit]


def _check_layer(layer: nn.Module, name: str) -> None:
    if any(n.endswith("_orig") for n, _ in layer.named_parameters(recurse=False)):
        raise ValueError(f"{name} carries a prune mask; bake it (bench.export.bake) before structural surgery")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError(f"{name} is a grouped convolution (groups={layer.groups}); only groups=1 is supported")


class _Trace:
    """Torch-Pruning's dependency graph plus what our own hooks saw during its trace: the call order of
    Linear/Conv2d layers and which activation module produced which autograd node."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        modes = {m: m.training for m in model.modules()}  # the trace runs in eval mode; restore afterwards
        self.order: dict[nn.Module, int] = {}
        self.activation_of: dict[object, nn.Module] = {}

        def seen_layer(module: nn.Module, _inputs: object, _output: object) -> None:
            self.order.setdefault(module, len(self.order))

        def seen_activation(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.activation_of[output.grad_fn] = module

        hooks = [m.register_forward_hook(seen_layer) for m in model.modules() if isinstance(m, WEIGHT_TYPES)]
        hooks += [m.register_forward_hook(seen_activation) for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            with torch.enable_grad():  # tracing follows autograd, also when a caller runs under no_grad
                self.graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=torch.zeros(1, *input_shape, device=device),
                    customized_pruners=dict(CUSTOMIZED_PRUNERS), verbose=False)
        finally:
            for h in hooks:
                h.remove()
            for m, mode in modes.items():
                m.train(mode)
        self.names = {m: n or type(model).__name__ for n, m in model.named_modules()}
        self.model = model


def _groups(trace: _Trace) -> list[UnitGroup]:
    model, graph = trace.model, trace.graph
    classifier = classifier_of(model)
    ignored = [classifier] if classifier is not None else []
    found = []
    for tp_group in graph.get_all_groups(ignored_layers=ignored, root_module_types=WEIGHT_TYPES):
        group = _describe(trace, tp_group)
        if group is not None:
            found.append(group)
    found.sort(key=lambda g: min(trace.order.get(p.layer, math.inf) for p in g.producers))
    return [dataclasses.replace(g, index=i) for i, g in enumerate(found)]


def _describe(trace: _Trace, tp_group: tp.dependency.Group) -> UnitGroup | None:
    graph = trace.graph
    root = tp_group[0].dep.target.module
    width = len(tp_group[0].idxs)
    producers, consumers, norms, activations, other, pads_in, pads_out = [], [], [], [], [], [], []
    nodes = set()
    for item in tp_group.items:
        node, handler = item.dep.target, item.dep.handler
        module, idxs, roots = node.module, list(item.idxs), list(item.root_idxs)
        nodes.add(node)
        if node.type == tp.ops.OPTYPE.OUTPUT:
            return None  # it would change the model's output (no classifier to absorb it)
        name = trace.names.get(module, type(module).__name__)
        if isinstance(module, WEIGHT_TYPES):
            _check_layer(module, name)
            per_unit = _by_root(idxs, roots, width)
            if graph.is_out_channel_pruning_fn(handler):
                if any(len(v) != 1 for v in per_unit):
                    raise ValueError(f"{name}: its outputs do not map one to one onto the group's {width} units")
                producers.append((module, torch.tensor([v[0] for v in per_unit])))
            else:
                if len({len(v) for v in per_unit}) != 1:
                    raise ValueError(f"{name}: its inputs do not split evenly over the group's {width} units")
                consumers.append(Consumer(module, torch.tensor(per_unit)))
        elif isinstance(module, NORM_TYPES):
            norms.append(module)
        elif isinstance(module, PadShortcut):
            (pads_out if graph.is_out_channel_pruning_fn(handler) else pads_in).append(module)
        elif isinstance(module, nn.Parameter) or list(module.parameters(recurse=False)):
            raise ValueError(f"cannot remove units across {type(module).__name__} ({name}): only Linear, Conv2d "
                             "and BatchNorm parameters are supported")
        elif node.grad_fn in trace.activation_of:
            activations.append(trace.activation_of[node.grad_fn])
        else:
            op = getattr(module, "_grad_fn", type(module).__name__)
            if op in FUNCTIONAL_ACTIVATIONS:
                activations.append(FUNCTIONAL_ACTIVATIONS[op]())
            elif op not in NEUTRAL_OPS:
                other.append(op)
    norm_of = {}
    for norm in norms:
        inputs = graph.module2node[norm].inputs
        if len(inputs) == 1 and isinstance(inputs[0].module, WEIGHT_TYPES):
            norm_of[inputs[0].module] = norm
    return UnitGroup(-1, width, root, tuple(Producer(m, rows, norm_of.get(m)) for m, rows in producers),
                     tuple(consumers), tuple(norms), tuple(activations), tuple(other), tuple(pads_in),
                     tuple(pads_out))


def unit_groups(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[UnitGroup]:
    """Every prunable coupled group of ``model`` in forward order of its first producing layer.

    Raises ValueError where a group holds what units cannot be removed from cleanly (grouped convs, prune
    masks, parameters of other module types such as LayerNorm).
    """
    return _groups(_Trace(model, input_shape_of(model) if input_shape is None else input_shape))


def group_widths(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[int]:
    """Current width of every group, in ``unit_groups`` order."""
    return [g.width for g in unit_groups(model, input_shape)]


@torch.no_grad()
def keep_units(model: nn.Module, index: int, keep: torch.Tensor | Sequence[int], scale: torch.Tensor | None = None,
               input_shape: Sequence[int] | None = None) -> None:
    """Keep only units ``keep`` (sorted; in place) of group ``index``, through Torch-Pruning's ``Group.prune``.

    With ``scale`` the consumers' input columns of the j-th kept unit are first multiplied by ``scale[j]``
    (coreset's reweighting), so the estimator sees the surviving weights. Parameter-free paths (identity
    and option A shortcuts) carry the kept units unscaled: they have no weight to scale.
    """
    trace = _Trace(model, input_shape_of(model) if input_shape is None else input_shape)
    group = _groups(trace)[index]
    keep = torch.as_tensor(keep, dtype=torch.long)
    n = group.width
    if keep.ndim != 1 or len(keep) == 0 or len(torch.unique(keep)) != len(keep) or keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep must list 1..{n} distinct unit indices below {n}, got {keep.tolist()}")
    if (keep.diff() <= 0).any():
        raise ValueError("keep must be sorted: pruning preserves the original order of the units")
    if scale is not None:
        if tuple(scale.shape) != (len(keep),):
            raise ValueError(f"scale must have one entry per kept unit ({len(keep)}), got shape {tuple(scale.shape)}")
        for consumer in group.consumers:
            weight = consumer.layer.weight
            cols = consumer.columns[keep]  # (kept, per unit)
            factor = scale.to(weight).repeat_interleave(cols.shape[1])
            shape = (1, -1) + (1,) * (weight.ndim - 2)
            flat = cols.flatten().to(weight.device)
            weight[:, flat] = weight[:, flat] * factor.view(shape)
    drop = sorted(set(range(n)) - set(keep.tolist()))
    if drop:
        pruner = trace.graph.get_pruner_of_module(group.root)
        trace.graph.get_pruning_group(group.root, pruner.prune_out_channels, drop).prune()


def resize_groups(model: nn.Module, kept_widths: Sequence[int], input_shape: Sequence[int] | None = None) -> None:
    """Keep the first ``kept_widths[i]`` units of every group (a reference architecture: to count its
    parameters, or to train the same small network from scratch)."""
    full = group_widths(model, input_shape)
    if len(kept_widths) != len(full):
        raise ValueError(f"need {len(full)} widths (one per unit group), got {len(kept_widths)}")
    for i, (w, n) in enumerate(zip(kept_widths, full)):
        if w < n:
            keep_units(model, i, torch.arange(int(w)), input_shape=input_shape)


def group_param_counter(model: nn.Module, input_shape: Sequence[int] | None = None) -> WidthCount:
    """Parameters the model would have with its groups at given widths (``unit_groups`` order).

    The count is bilinear in the widths: each Linear/Conv2d weight scales with the width of the group its
    outputs belong to and of the group its inputs come from (times the columns each unit owns), a bias and
    an affine BatchNorm with their group, and everything else is constant. The terms are listed in module
    order, as ``param_counter`` of the tests' chain surgery lists a chain's, so both give the same floats on a chain.
    """
    groups = unit_groups(model, input_shape)
    out_of = {p.layer: g.index for g in groups for p in g.producers}
    in_of: dict[nn.Module, list[tuple[int, int]]] = defaultdict(list)
    for g in groups:
        for c in g.consumers:
            in_of[c.layer].append((g.index, c.columns.shape[1]))
    norm_of = {n: g.index for g in groups for n in g.norms}
    terms: list[tuple[float, int | None, int | None]] = []
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, WEIGHT_TYPES):
            out_w, in_w = module.weight.shape[0], module.weight.shape[1]
            per_pair = module.weight[0, 0].numel()
            out_group = out_of.get(module)
            out_const = 1 if out_group is not None else out_w
            owned = 0
            for in_group, per_unit in in_of.get(module, []):
                terms.append((per_pair * per_unit * out_const, out_group, in_group))
                owned += per_unit * groups[in_group].width
            if in_w > owned:
                terms.append((per_pair * (in_w - owned) * out_const, out_group, None))
            if module.bias is not None:
                terms.append((out_const, out_group, None))
        elif module in norm_of:
            terms.append((2.0 if module.affine else 0.0, norm_of[module], None))
        elif own:
            terms.append((float(sum(p.numel() for p in own)), None, None))
    return WidthCount(tuple(g.width for g in groups), tuple(terms))
