"""Deployable forms: masks baked in, generated weights materialised, CSR where it is smaller and faster.

Latency and bytes are measured on what ``deployable`` returns, so no pruning hook or generator
slows inference (peers' "pruned, but not smaller or faster" complaint). ``lean`` is the optional
compiled forward of a deployable form (TorchScript trace, frozen), for latency only.
"""
from __future__ import annotations

import copy
import functools
import gzip
import io
import warnings

import torch
from torch import nn
from torch.nn.utils import prune


class CSRLinear(nn.Module):
    """A Linear layer whose weight is stored in CSR with int32 indices."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            csr = linear.weight.detach().to_sparse_csr()
        self.register_buffer("crow_indices", csr.crow_indices().to(torch.int32))
        self.register_buffer("col_indices", csr.col_indices().to(torch.int32))
        self.register_buffer("values", csr.values().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def weight_csr(self) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values,
                                       (self.out_features, self.in_features), check_invariants=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sparse.mm(self.weight_csr(), x.reshape(-1, self.in_features).T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


# CSR replaces a dense Linear only at or below this weight density. Measured (``python -m bench.benchmark``,
# LeNet-300-100's 784->300 layer, 1 thread, torch 2.13 CPU): at batch 256 CSR is slower than dense above
# density 1/4 and about 1.3-2x faster from 1/8 down; at batch 1 it only breaks even near 1/32. CSR is
# already smaller than dense below density ~1/2 (``csr_bytes``), so the bytes rule alone chose a slower form
# for 2x-8x masks; 1/8 is where CSR wins at the batch size the suite reports as its speedup (256).
CSR_MAX_DENSITY = 0.125


def csr_bytes(weight: torch.Tensor) -> int:
    nnz = int((weight != 0).sum())
    return nnz * (weight.element_size() + 4) + (weight.shape[0] + 1) * 4


def clone(model: nn.Module) -> nn.Module:
    """A deep copy that also works for pruned models.

    A prune hook leaves ``weight`` as a non-leaf tensor, which ``deepcopy`` refuses; detaching it is
    safe because the hook recomputes it from ``weight_orig`` and the mask at every forward.
    """
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                setattr(module, hook._tensor_name, getattr(module, hook._tensor_name).detach())
    return copy.deepcopy(model)


def bake(model: nn.Module) -> nn.Module:
    """A plain dense copy: prune masks made permanent, generated weights materialised, eval mode."""
    if hasattr(model, "export"):
        out = model.export()  # methods with their own storage (e.g. generated weights) know best
    else:
        out = clone(model)
    for module in out.modules():
        for name in [h._tensor_name for h in module._forward_pre_hooks.values()
                     if isinstance(h, prune.BasePruningMethod)]:
            prune.remove(module, name)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def use_csr(weight: torch.Tensor) -> bool:
    """CSR where it is both smaller (bytes) and faster (density <= CSR_MAX_DENSITY, measured)."""
    density = float((weight != 0).sum()) / max(weight.numel(), 1)
    return density <= CSR_MAX_DENSITY and csr_bytes(weight) < weight.numel() * weight.element_size()


def deployable(model: nn.Module) -> nn.Module:
    """``bake`` plus CSR storage for each Linear layer where CSR is smaller and faster (``use_csr``)."""
    return with_csr(bake(model), copy=False)


def with_csr(baked: nn.Module, copy: bool = True) -> nn.Module:
    """A baked model with each Linear layer stored in CSR where ``use_csr``. Where no layer qualifies (a dense
    or structurally pruned model) it is ``baked`` itself, not a copy; with ``copy=False`` it swaps in place."""
    if not any(isinstance(m, nn.Linear) and use_csr(m.weight) for m in baked.modules()):
        return baked
    out = clone(baked) if copy else baked
    for parent in list(out.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and use_csr(child.weight):
                setattr(parent, child_name, CSRLinear(child))
    return out


class Forms:
    """A model's measured forms, each made at most once: ``baked``, ``deployed`` (``deployable``) and ``lean``.

    Size, FLOPs, PQ index, per-layer table and latency all read a baked copy; made per metric, that was about
    seven deep copies of one model per run. One ``Forms`` is shared by them instead (``bench.metrics`` takes it
    wherever it takes a model). The forms are read, never changed; the model must not change while in use.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._lean: dict[tuple[int, ...], nn.Module] = {}

    @functools.cached_property
    def baked(self) -> nn.Module:
        return bake(self.model)

    @functools.cached_property
    def deployed(self) -> nn.Module:
        """``deployable(model)``, sharing the baked copy where no layer is stored in CSR."""
        return with_csr(self.baked)

    def lean(self, input_shape: tuple[int, ...]) -> nn.Module:
        """``lean`` of the deployed form, on the CPU, for inputs of ``input_shape``."""
        shape = tuple(input_shape)
        if shape not in self._lean:
            self._lean[shape] = lean(self.deployed.cpu(), shape)
        return self._lean[shape]


def forms_of(model: nn.Module | Forms) -> Forms:
    """``model``'s forms: itself when it is a ``Forms`` (shared), else made for this one use."""
    return model if isinstance(model, Forms) else Forms(model)


def lean(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A compiled forward of a deployable form: TorchScript trace, frozen (weights folded in as constants)
    and ``optimize_for_inference`` (fuses Linear/Conv with their activation where the CPU backend can).

    For latency only: the frozen module has no state_dict to size. Falls back to ``model`` itself where
    tracing fails or changes the outputs (e.g. sparse CSR layers, data-dependent control flow).
    """
    model = model.eval()
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            if torch.allclose(traced(x), model(x), rtol=1e-4, atol=1e-5):
                return traced
    except Exception:  # noqa: BLE001 - any tracing failure means "no compiled form", not an error
        pass
    return model


def serialized_size(model: nn.Module) -> tuple[int, int]:
    """(bytes, gzip'd bytes) of the model's state_dict as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    raw = buffer.getvalue()
    return len(raw), len(gzip.compress(raw, mtime=0))
