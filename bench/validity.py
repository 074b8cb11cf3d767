"""What is known to be wrong about a result, so that it is never recorded as a normal one.

Some failures can only be seen once training has run: a loss that went non-finite (NaN or inf), or a dense
baseline no better than always answering the commonest class. Such a run is not a data point: it ends FAILED,
tagged ``invalid=<reason>`` with the error beside it (``bench.tracking.Tracker.run``,
``bench.records.record_failure``), a baseline like that is never cached, and the figures and the verdict skip
runs so tagged and say how many (``bench.figures.tidy_runs``, ``bench.verdict.select_on_validation``).

Chance is the share of the commonest class in the split measured (``majority_share``): a constant-class model
scores at most that, whatever the class balance, so a baseline at or below it on validation or test has learnt
nothing usable.
"""
from __future__ import annotations

from typing import Iterable

import torch

# The MLflow tag that marks a run as known to be wrong; its value is one of the reasons below.
INVALID_TAG = "invalid"
NONFINITE_LOSS = "nonfinite-loss"
BASELINE_AT_CHANCE = "baseline-at-chance"


class InvalidResultError(RuntimeError):
    """A result known to be wrong; ``reason`` is the value of the run's ``invalid`` tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NonFiniteLossError(InvalidResultError):
    """The training loss became NaN or inf during a fit."""

    def __init__(self, message: str) -> None:
        super().__init__(NONFINITE_LOSS, message)


def majority_share(labels: Iterable[torch.Tensor]) -> float:
    """The share of the commonest label over batches of labels (0.0 for none): what a constant-class model
    scores at best on them."""
    counts: torch.Tensor | None = None
    for y in labels:
        c = torch.bincount(y.detach().cpu().long().flatten())
        if counts is None:
            counts = c
        else:
            size = max(len(counts), len(c))
            counts = torch.nn.functional.pad(counts, (0, size - len(counts))) + torch.nn.functional.pad(
                c, (0, size - len(c)))
    if counts is None or int(counts.sum()) == 0:
        return 0.0
    return float(counts.max()) / float(counts.sum())


def check_above_chance(what: str, accuracy: dict[str, float], chance: dict[str, float]) -> None:
    """Raise ``InvalidResultError`` (reason ``baseline-at-chance``) when ``accuracy`` is at or below ``chance``
    on any split; both map a split name ("val", "test") to a fraction."""
    low = [s for s in accuracy if accuracy[s] <= chance[s]]
    if low:
        detail = ", ".join(f"{s} accuracy {accuracy[s]:.4f} <= {chance[s]:.4f}" for s in low)
        raise InvalidResultError(
            BASELINE_AT_CHANCE,
            f"{what} is no better than chance ({detail}; chance is the share of the commonest class in that "
            f"split): it was not cached and no run was recorded as a result; train it longer (--epochs), check "
            f"the labels match the inputs, or try another learning rate")


def skipped_text(skipped: dict[str, int]) -> str:
    """"" or a sentence saying how many runs were left out as known wrong, by reason (``{reason: runs}``)."""
    if not skipped:
        return ""
    total = sum(skipped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    return f"{total} run{'s' if total != 1 else ''} skipped as known wrong ({reasons}; tagged invalid, FAILED)"
