"""Turning user-given method parameters (dicts or ``key=value`` strings) into a method's dataclass."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal


class ParamError(ValueError):
    """A method parameter that is unknown, of the wrong type or out of range."""


def _convert(method: str, key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ParamError(f"{method}: {key}={value!r} is not allowed; choose one of: {', '.join(map(str, choices))}")
        return value
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _convert(method, key, value, args[0])
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        inner = typing.get_args(annotation)[0]
        return tuple(_convert(method, key, v, inner) for v in value)
    try:
        if annotation is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        raise ParamError(f"{method}: {key}={value!r} must be of type {annotation.__name__}") from None
    return value


def build_params(cls: type, raw: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from ``raw``; unknown keys, wrong types and bad ranges raise ParamError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields)) or "(none)"
        raise ParamError(f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
    values = {k: _convert(cls.name, k, v, hints[k]) for k, v in raw.items()}
    try:
        return cls(**values)
    except ParamError:
        raise
    except (TypeError, ValueError) as e:
        raise ParamError(f"{cls.name}: {e}") from None


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["scope=layer", "rounds=3"]`` -> ``{"scope": "layer", "rounds": "3"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"method parameter {item!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def describe(cls: type) -> list[str]:
    """One line per parameter: name, type and default, for --help."""
    hints = typing.get_type_hints(cls)

    def kind(annotation: Any) -> str:
        if typing.get_origin(annotation) is Literal:
            return "|".join(map(str, typing.get_args(annotation)))
        return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))

    return [f"{f.name}={f.default!r} ({kind(hints[f.name])})" for f in dataclasses.fields(cls) if f.init]
