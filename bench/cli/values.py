"""The command line's values: numbers, ratios, ``--model-option`` pairs and registered names, each checked
before anything is trained or written; bad input raises ``UsageError``, whose message names the value and
what is allowed."""
from __future__ import annotations

import math
from typing import Any



class UsageError(ValueError):
    """Bad command-line input; the message names the value and what is allowed."""


def parse_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"compression ratio must be a number > 1 (e.g. 2, 4, 8, 16, 32), got {text!r}") from None
    if math.isnan(value) or math.isinf(value) or value <= 1:
        raise UsageError(f"compression ratio must be a finite number > 1 (e.g. 2, 4, 8, 16, 32), got {text!r}")
    return value


def parse_ratios(text: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if not parts:
        raise UsageError("--ratios needs at least one ratio, e.g. 2,4,8,16,32")
    return tuple(parse_ratio(p) for p in parts)


def _int(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value}")
    return value


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a positive number, got {text!r}") from None
    if not value > 0 or math.isnan(value) or math.isinf(value):
        raise UsageError(f"{what} must be a positive number, got {text!r}")
    return value


def parse_model_options(items: list[str]) -> dict[str, Any]:
    """``--model-option channels=8 widths=(64,32) classifier=head`` -> builder keyword arguments: Python
    literals where the value is one (numbers, tuples, booleans), else the text."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-option {item!r} must look like key=value (e.g. width=0.5), key a Python name")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out
