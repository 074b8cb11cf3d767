"""Section 2, compress-step cost: ``compress`` alone at 8x (no training inside), its growth with MLP width, and
train-time methods' own training epoch."""
from __future__ import annotations

import time
from typing import Callable

from torch import nn

from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, pair_ratios, threads


def noop_context(data, teacher: nn.Module):
    """A context whose fine-tune and fit return the model untouched: compress alone is timed (iterative
    methods still make all their rounds; train-time methods only build their untrained model)."""
    from methods.common.base import Context

    return Context(data=data, seed=0, finetune=lambda m: m,
                   fit=lambda m, recipe, teacher=None, kd_weight=0.0, temperature=1.0: m, teacher=teacher)


def time_compress(method, model: nn.Module, ratio: float, data, repeats: int) -> tuple[list[float], nn.Module]:
    from bench.export import clone

    times, out = [], None
    for _ in range(repeats):
        copy = clone(model)
        start = time.perf_counter()
        out = method.compress(copy, ratio, noop_context(data, model))
        times.append(time.perf_counter() - start)
    return times, out


def compress_cost(data, base: nn.Module, names: list[str], settings: Settings, rows: list[Row]) -> None:
    import methods
    from bench.metrics import params_total
    from bench.models import create_model

    with threads(1):
        for name in names:
            method = methods.build(name, {})
            times, _ = time_compress(method, base, 8.0, data, settings.compress_repeats)
            rows.append(Row("compress", name, "lenet300 trained, 8x, no-op fine-tune", "compress_ms",
                            [t * 1e3 for t in times], "ms"))
        for k in range(settings.widths_k):
            widths = (300 * 2**k, 100 * 2**k)
            model = create_model("mlp", data.input_shape, data.num_classes, seed=0, widths=widths)
            size = params_total(model)
            for name in names:
                times, _ = time_compress(methods.build(name, {}), model, 8.0, data, settings.compress_repeats)
                rows.append(Row("scaling", name, f"mlp {widths[0]}-{widths[1]} random init, 8x", f"compress_ms@{size}",
                                [t * 1e3 for t in times], "ms"))


def train_time_epochs(data, base: nn.Module, names: list[str], settings: Settings, rows: list[Row]) -> None:
    """Train-time methods' own training: one epoch of their model vs one epoch of the dense model."""
    import methods
    from bench.export import clone
    from bench.recipes import TrainRecipe
    from bench.training import fit

    recipe = TrainRecipe(epochs=1, lr=1e-3, batch_size=128)
    for name in names:
        method = methods.build(name, {})
        if method.family != "train-time":
            continue
        _, student = time_compress(method, base, 8.0, data, 1)

        def arm(make: Callable[[], nn.Module]) -> Callable[[], float]:
            def run() -> float:
                model = make()
                start = time.perf_counter()
                fit(model, recipe, data, 0, accelerator="cpu")
                return time.perf_counter() - start
            return run

        with threads(settings.threads):
            times = alternate({"method": arm(lambda: clone(student)), "dense": arm(lambda: clone(base))},
                              max(1, settings.overhead_repeats // 2))
        cond = f"1 training epoch at 8x vs dense lenet300, {settings.threads} threads"
        rows.append(Row("train-time", name, cond, "epoch_seconds", times["method"], "s"))
        rows.append(Row("train-time", name, cond, "dense_epoch_seconds", times["dense"], "s"))
        rows.append(Row("train-time", name, cond, "method/dense", pair_ratios(times["method"], times["dense"]), "x"))
