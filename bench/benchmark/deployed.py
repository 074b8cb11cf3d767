"""Section 3, deployed speed: theoretical (FLOPs) vs measured latency speedup of ``deployable`` forms, and where
CSR storage beats a dense Linear layer."""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from bench.benchmark.compress_cost import noop_context
from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, pair_ratios, progress, threads


def forward_times(models: dict[str, nn.Module], x: torch.Tensor, repeats: int, calls: int) -> dict[str, list[float]]:
    """Seconds per forward of each model: ``calls`` forwards per sample, models interleaved per sample."""
    for m in models.values():
        for _ in range(3):
            m(x)

    def arm(m: nn.Module) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                m(x)
            return (time.perf_counter() - start) / calls
        return run

    return alternate({k: arm(m) for k, m in models.items()}, repeats, warmup=0)


def _calls(batch: int) -> int:
    return 50 if batch == 1 else 5


# Extra configurations measured for deployed speed: LMA's student with ReLU isolates the cost of the LMA
# activation (elementwise work that FLOP counts of Linear/Conv layers do not include).
DEPLOY_VARIANTS = {"lma": [("lma[relu]", {"student_activation": "relu"})]}


def deploy_subjects(names: list[str]) -> list[tuple[str, str, dict]]:
    out = []
    for name in names:
        out.append((name, name, {}))
        out += [(label, name, params) for label, params in DEPLOY_VARIANTS.get(name, [])]
    return out


def deployed_speed(data, base: nn.Module, names: list[str], settings: Settings, rows: list[Row]) -> None:
    """Per method and ratio: FLOPs speedup, and measured speedups of the eager deployable form (vs eager
    dense) and of its ``lean`` compiled form (vs the dense model compiled the same way)."""
    import methods
    from bench.export import clone, deployable, lean
    from bench.metrics import flops

    shape = data.input_shape
    dense = deployable(base)
    dense_lean = lean(deployable(base), shape)
    dense_flops, _ = flops(base, shape)
    with threads(1):
        for label, name, params in deploy_subjects(names):
            method = methods.build(name, params)
            for ratio in settings.ratios:
                try:
                    compressed = method.compress(clone(base), ratio, noop_context(data, base))
                except methods.CompressionError as e:
                    progress(f"{label} at {ratio:g}x: {e}")
                    continue
                _, nz = flops(compressed, shape)
                cond = f"{ratio:g}x"
                rows.append(Row("deployed", label, cond, "theoretical_speedup", [dense_flops / max(nz, 1e-9)], "x"))
                form = deployable(compressed)
                arms = {"dense": dense, "eager": form, "dense_lean": dense_lean, "lean": lean(form, shape)}
                for batch in (1, 256):
                    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
                    t = forward_times(arms, x, settings.latency_repeats, _calls(batch))
                    where = f"{cond} b{batch}"
                    rows.append(Row("deployed", label, where, "dense_ms", [v * 1e3 for v in t["dense"]], "ms"))
                    rows.append(Row("deployed", label, where, "dense_lean_ms", [v * 1e3 for v in t["dense_lean"]], "ms"))
                    for variant, ref in (("eager", "dense"), ("lean", "dense_lean")):
                        rows.append(Row("deployed", label, where, f"{variant}_ms", [v * 1e3 for v in t[variant]], "ms"))
                        rows.append(Row("deployed", label, where, f"{variant}_speedup", pair_ratios(t[ref], t[variant]), "x"))


def csr_crossover(settings: Settings, rows: list[Row]) -> None:
    """CSRLinear vs dense Linear on LeNet-300-100's first layer (300x784) at falling density."""
    from bench.export import CSRLinear

    g = torch.Generator().manual_seed(0)
    with threads(1):
        for density in (0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625):
            layer = nn.Linear(784, 300)
            with torch.no_grad():
                layer.weight.mul_((torch.rand(layer.weight.shape, generator=g) < density).float())
            arms = {"dense": layer.eval().requires_grad_(False), "csr": CSRLinear(layer)}
            for batch in (1, 256):
                x = torch.randn(batch, 784, generator=g)
                t = forward_times(arms, x, settings.latency_repeats, _calls(batch))
                rows.append(Row("csr", "linear 784->300", f"density {density:g} b{batch}", "dense/csr",
                                pair_ratios(t["dense"], t["csr"]), "x"))
