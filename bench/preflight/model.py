"""The model, checked before any training (filled in by issue 25)."""
from __future__ import annotations

from typing import Any


def check_model(config: Any, data: Any) -> None:
    """The model can be built on the data."""
    from bench.baseline import build_model
    from bench.preflight.environment import PreflightError

    try:
        build_model(config, data)
    except (TypeError, ValueError) as e:
        options = " ".join(f"{k}={v}" for k, v in config.model_options) or "no --model-option"
        raise PreflightError(f"model {config.model!r} cannot be built on {config.dataset} with {options}: {e}") from None
