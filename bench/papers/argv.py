"""The ``python -m bench`` argument lists of a paper's reproduction: grid studies of a variant, the data and
model every study shares, and lottery-ticket magnitude with as many rounds as SuRP's iterative schedule."""
from __future__ import annotations

from typing import Any, Sequence

from bench.papers.variants import Variant


def ratios_arg(ratios: Sequence[float]) -> list[str]:
    """``--ratios 2,4,8``."""
    return ["--ratios", ",".join(f"{r:g}" for r in ratios)]


def study_argv(dataset: str, variant: Variant, ratios: Sequence[float], model: str) -> list[str]:
    """The ``python -m bench`` arguments of one grid study of ``variant`` (seeds and budgets: the paper
    protocol's, added by ``bench.papers.experiments``)."""
    return ["bench", "--method", variant.method, "--dataset", dataset, "--model", model, *ratios_arg(ratios),
            *variant.param_args()]


def common_args(dataset: str, model: str) -> list[str]:
    """The arguments every study of one figure shares (data and model)."""
    return ["--dataset", dataset, "--model", model]


def stand_in(dataset: str, model: str, cifar_model: str | None = None) -> tuple[str, str]:
    """The paper's data where it is here: CIFAR-10 with ``cifar_model`` when ``$CIFAR10_DIR`` is set (and the
    paper used CIFAR-10), else the offline stand-in ``dataset``/``model``."""
    import os

    if cifar_model is not None and os.environ.get("CIFAR10_DIR"):
        return "cifar10", cifar_model
    return dataset, model


LT_FRACTION = 0.2  # lottery-ticket pruning rate per round (SAP's "lt" baseline, P = 0.2)


def lt_rounds(model: str, ratio: float, fraction: float = LT_FRACTION, input_shape: tuple[int, ...] = (1, 28, 28),
              num_classes: int = 10, **model_kwargs: Any) -> int:
    """Rounds of "remove ``fraction`` of the surviving prunable weights" needed to reach ``ratio``.

    Counts the schedule keep_k = round(N·(1 − fraction)^k) while it stays above the budget, plus the final
    (trimmed) round: the count of SuRP's iterative mode (s_k = 1 − 0.8^k), so iterative magnitude run with
    this many geometric rounds gets as many fine-tunes and removes ≈``fraction`` per round. The default
    input is a 28x28 greyscale, 10-class dataset (Fashion-MNIST, the SAP and SuRP figures' data).
    """
    from bench.models import create_model
    from methods.common.pruning import keep_count, prunable_count, prunable_tensors

    net = create_model(model, input_shape, num_classes, **model_kwargs)
    tensors = prunable_tensors(net)
    total = prunable_count(tensors)
    final = keep_count(net, ratio, tensors)
    k = 1
    while round(total * (1 - fraction) ** k) > final:
        k += 1
    return k


def iterative_magnitude(model: str, ratios: tuple[float, ...], common: list[str],
                        input_shape: tuple[int, ...] = (1, 28, 28)) -> list[list[str]]:
    """One ``bench`` call per ratio: ``rounds`` differs by ratio so each round removes ≈20 % of survivors."""
    return [["bench", "--method", "magnitude", "--param", "schedule=iterative", "--param",
             f"rounds={lt_rounds(model, r, input_shape=input_shape)}", *ratios_arg((r,)), *common] for r in ratios]
