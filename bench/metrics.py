"""Every metric of docs/design.md, defined once and used by runs, tables and figures.

The metrics that read a baked or deployable form take a model or its ``bench.export.Forms``: pass one
``Forms`` to share a single bake among them all (the pipeline does, once per measured model); a plain module
is baked by each metric that needs it."""
from __future__ import annotations

import math

import statistics
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.export import Forms, forms_of, serialized_size
from bench.models import classifier_of
from datasets import Data
from datasets.core import EVAL_BATCH, Batch, TensorBatches

MEASURED_TYPES = (nn.Linear, nn.Conv2d)


def params_total(model: nn.Module) -> int:
    """All parameters: weights, biases, norm layers and the classifier."""
    return sum(p.numel() for p in model.parameters())


def params_effective(model: nn.Module) -> int:
    """Stored parameters: unmasked entries of masked tensors plus every entry of unmasked ones.

    Counting the mask rather than nonzero values keeps a dense model at exactly 1x even where a
    parameter happens to be zero (a BatchNorm shift at initialisation). A model that stores its
    weights another way (generated weights) reports its count via ``stored_parameter_count``.
    """
    if hasattr(model, "stored_parameter_count"):
        return int(model.stored_parameter_count())
    count = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            mask = getattr(module, name[: -len("_orig")] + "_mask", None) if name.endswith("_orig") else None
            count += int(mask.sum()) if mask is not None else p.numel()
    return count


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of each Linear/Conv2d layer on one input, via torch's flop counter."""
    named = {f"{type(model).__name__}.{n}": n for n, m in model.named_modules() if isinstance(m, MEASURED_TYPES)}
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    counts = counter.get_flop_counts()
    # The counter reports FLOPs = 2 x MACs for matmul and convolution.
    return {short: int(sum(counts.get(full, {}).values())) // 2 for full, short in named.items()}


def per_layer(model: nn.Module | Forms, input_shape: tuple[int, ...]) -> list[dict[str, object]]:
    """One row per Linear/Conv2d layer of the baked model: sizes, density, MACs, PQ index."""
    baked = forms_of(model).baked
    macs = layer_macs(baked, input_shape)
    rows = []
    for name, module in baked.named_modules():
        if isinstance(module, MEASURED_TYPES):
            w = module.weight.detach()
            nonzero = int((w != 0).sum())
            rows.append({
                "layer": name, "type": type(module).__name__, "shape": "x".join(map(str, w.shape)),
                "weights": w.numel(), "nonzero": nonzero, "density": nonzero / w.numel(),
                "macs_dense": macs[name], "macs_effective": macs[name] * nonzero / w.numel(),
                "pq_index": pq_index(w[w != 0]),
            })
    return rows


def flops(model: nn.Module | Forms, input_shape: tuple[int, ...]) -> tuple[int, float]:
    """(MACs of the model as built, MACs x per-layer weight density): ShrinkBench's flops and flops_nz."""
    rows = per_layer(model, input_shape)
    return sum(r["macs_dense"] for r in rows), sum(r["macs_effective"] for r in rows)


def pq_index(w: torch.Tensor, p: float = 0.5, q: float = 1.0) -> float:
    """PQ index I_{p,q}(w) = 1 − d^{1/q−1/p}·‖w‖_p/‖w‖_q (Diao et al., ICLR 2023, Def. 1).

    0 for a vector of equal magnitudes, 1 − d^{1/q−1/p} for a one-hot vector; defined as 0 for an
    all-zero or empty vector (the SAP code's convention).
    """
    if not 0 < p < q:
        raise ValueError(f"the PQ index needs 0 < p < q, got p={p}, q={q}")
    w = w.detach().double().flatten().abs()
    d = w.numel()
    if d == 0 or not bool((w > 0).any()):
        return 0.0
    # Divide by the max first so the p-norm of a large vector does not overflow.
    w = w / w.max()
    norm_p = w.pow(p).sum().pow(1 / p)
    norm_q = w.pow(q).sum().pow(1 / q)
    value = 1 - d ** (1 / q - 1 / p) * float(norm_p / norm_q)
    return max(0.0, value)


def model_pq_index(model: nn.Module | Forms) -> float:
    """PQ index of the surviving prunable weights (every Linear/Conv2d weight but the classifier's)."""
    baked = forms_of(model).baked
    classifier = classifier_of(baked)
    weights = [m.weight.flatten() for m in baked.modules() if isinstance(m, MEASURED_TYPES) and m is not classifier]
    # SAP's convention: the index of the surviving weights (zeros would make it mostly measure sparsity).
    w = torch.cat(weights) if weights else torch.zeros(0)
    return pq_index(w[w != 0])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor | Iterable[Batch], y: torch.Tensor | None = None,
             batch_size: int = EVAL_BATCH, topk: tuple[int, ...] = (1,)) -> dict[int, float]:
    """Top-k accuracy weighted by sample count (no per-batch averaging).

    Over tensors ``x, y`` (cut into ``batch_size`` slices), or, with ``y`` None, over any iterable of
    (inputs, labels) batches: a DataLoader, or a split of the runner's data (``split_accuracy``).
    """
    batches = TensorBatches(x, y, batch_size) if y is not None else x
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    correct = {k: 0 for k in topk}
    seen = 0
    for xb, yb in batches:
        logits = model(xb.to(device))
        top = logits.topk(max(topk), dim=1).indices.cpu()
        hit = top == yb.unsqueeze(1)
        for k in topk:
            correct[k] += int(hit[:, :k].any(1).sum())
        seen += len(yb)
    model.train(was_training)
    return {k: c / seen for k, c in correct.items()}


def split_accuracy(model: nn.Module, data: Data, split: str, topk: tuple[int, ...] = (1,)) -> dict[int, float]:
    """Top-k accuracy on the ``"val"`` or ``"test"`` split, for data served from tensors and loaders alike."""
    return accuracy(model, data.eval_batches(split), topk=topk)


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def latencies_ms(models: dict[str, nn.Module], input_shape: tuple[int, ...], batch: int,
                 repeats: int = 30, warmup: int = 5, threads: int = 1) -> dict[str, float]:
    """Median wall time per forward (ms) of each model, interleaved so drift hits all alike."""
    x = torch.randn(batch, *input_shape)
    times: dict[str, list[float]] = {k: [] for k in models}
    with pinned_threads(threads):
        for _ in range(warmup):
            for m in models.values():
                m(x)
        for _ in range(repeats):
            for k, m in models.items():
                start = time.perf_counter()
                m(x)
                times[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def size_metrics(dense: nn.Module | Forms, model: nn.Module | Forms, input_shape: tuple[int, ...]) -> dict[str, float]:
    dense_model, plain = forms_of(dense).model, forms_of(model).model
    total, effective = params_total(dense_model), params_effective(plain)
    flops_dense, _ = flops(dense, input_shape)
    _, flops_effective = flops(model, input_shape)
    size_bytes, size_gzip = serialized_size(forms_of(model).deployed)
    # A generated-weight model ships its generator: size what is stored, and the materialised form beside it.
    stored_bytes, stored_gzip = (serialized_size(plain.cpu()) if hasattr(plain, "stored_parameter_count")
                                 else (size_bytes, size_gzip))
    ratio = total / max(effective, 1)
    return {
        "params_total": total, "params_effective": effective,
        "compression_ratio": ratio, "fraction_removed": 1 - 1 / ratio,
        # The ratio on a log axis (1 = 2x ... 7 = 128x): MLflow's scatter charts have no log scale of their own.
        "log2_compression_ratio": math.log2(ratio),
        "flops_dense": flops_dense, "flops_effective": flops_effective,
        "theoretical_speedup": flops_dense / max(flops_effective, 1e-9),
        "size_bytes": stored_bytes, "size_bytes_gzip": stored_gzip,
        "deployed_size_bytes": size_bytes, "deployed_size_bytes_gzip": size_gzip,
        "pq_index": model_pq_index(model),
    }


def latency_metrics(dense: nn.Module | Forms, model: nn.Module | Forms, input_shape: tuple[int, ...],
                    repeats: int = 30, threads: int = 1) -> dict[str, float]:
    """Latency of the deployable forms of dense and compressed models, measured side by side."""
    # The lean form (traced, frozen, optimised for inference) is what a deployment would run; eager
    # per-call overhead otherwise hides most of a small model's FLOP savings.
    forms = {"dense": forms_of(dense).lean(input_shape), "compressed": forms_of(model).lean(input_shape)}
    out: dict[str, float] = {}
    for batch in (1, 256):
        ms = latencies_ms(forms, input_shape, batch, repeats=repeats, threads=threads)
        out[f"latency_ms_b{batch}"] = ms["compressed"]
        out[f"dense_latency_ms_b{batch}"] = ms["dense"]
        out[f"measured_speedup_b{batch}"] = ms["dense"] / ms["compressed"]
    out["measured_speedup"] = out["measured_speedup_b256"]
    return out
