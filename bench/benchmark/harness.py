"""Section 1, harness overhead: one training epoch through ``bench.training.fit`` vs a plain PyTorch loop."""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.benchmark.rows import Row
from bench.benchmark.settings import Settings
from bench.benchmark.timing import alternate, pair_ratios


def plain_epoch(model: nn.Module, data, recipe, seed: int) -> nn.Module:
    """The reference: one epoch of a hand-written loop over the same in-memory batches, then the same
    validation pass ``fit`` makes once per epoch (the suite selects on it, so it is part of the work)."""
    from bench.training import TensorBatches

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model.train()
    for x, y in TensorBatches(data.train_x, data.train_y, recipe.batch_size, shuffle=True, seed=seed):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = torch.zeros((), dtype=torch.long)
        for x, y in TensorBatches(data.val_x, data.val_y, 1024):
            correct += (model(x).argmax(1) == y).sum()
    model.train()
    return model


def overhead(data, settings: Settings, rows: list[Row], notes: list[str]) -> None:
    from bench.models import create_model
    from bench.recipes import TrainRecipe
    from bench.training import fit

    recipe = TrainRecipe(epochs=1, lr=1e-3, batch_size=128)
    for name in settings.overhead_models:
        made: dict[str, nn.Module] = {}

        def arm(kind: str) -> Callable[[], float]:
            def run() -> float:
                model = create_model(name, data.input_shape, data.num_classes, seed=0)
                start = time.perf_counter()
                if kind == "suite":
                    fit(model, recipe, data, 0, accelerator="cpu")
                else:
                    plain_epoch(model, data, recipe, 0)
                made[kind] = model
                return time.perf_counter() - start
            return run

        times = alternate({"suite": arm("suite"), "plain": arm("plain")}, settings.overhead_repeats)
        same = all(torch.equal(a, b) for a, b in zip(made["suite"].state_dict().values(),
                                                      made["plain"].state_dict().values()))
        notes.append(f"{name}: the suite's and the plain loop's weights after the epoch are "
                     f"{'bit-identical' if same else 'NOT identical'} (same model, optimiser, seed and batches).")
        cond = f"1 epoch, batch 128, {settings.threads} threads"
        rows.append(Row("overhead", name, cond, "suite_seconds", times["suite"], "s"))
        rows.append(Row("overhead", name, cond, "plain_seconds", times["plain"], "s"))
        rows.append(Row("overhead", name, cond, "suite/plain", pair_ratios(times["suite"], times["plain"]), "x"))
