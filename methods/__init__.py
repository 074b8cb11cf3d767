"""The method registry. Every module in this package registers itself with ``@register``;
adding a method is adding one file here (helpers shared by methods live in ``methods.common``)."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from bench.registry import Registry
from methods.common.base import CompressionError, Context, Method
from methods.common.params import ParamError, build_params

_METHODS: Registry[type[Method]] = Registry("method")


def register(name: str):
    """Class decorator: register a ``Method`` subclass under ``name`` (plugins use it too)."""
    def decorator(cls: type[Method]) -> type[Method]:
        _METHODS.register(name)(cls)  # refuses a taken name before the class is touched
        cls.name = name
        return cls

    return decorator


def origin(name: str) -> str:
    """Where method ``name`` was defined: "built-in" or the plugin module that registered it."""
    return _METHODS.origin(name)


def list_methods(pattern: str = "*") -> list[str]:
    return _METHODS.names(pattern)


def get(name: str) -> type[Method]:
    return _METHODS.get(name)


def build(name: str, params: dict[str, Any] | None = None) -> Method:
    """The method ``name`` configured by ``params`` (validated against its dataclass schema)."""
    return build_params(get(name), dict(params or {}))


for _info in pkgutil.iter_modules(__path__):
    if not _info.ispkg:
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["CompressionError", "Context", "Method", "ParamError", "build", "get", "list_methods", "origin", "register"]
