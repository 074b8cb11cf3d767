"""A tiny name -> constructor registry shared by methods, datasets and models (after timm's).

Each entry remembers where it came from (the module that defined it), so ``list`` and ``--help`` can show
which names a plugin added; a second registration of a taken name is refused, naming both origins.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

# Top-level packages of this repository: entries defined in them are the built-in ones.
BUILT_IN_PACKAGES = ("bench", "methods", "datasets")


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """A name registered twice with different objects; the message names both origins."""


def origin_of(obj: object) -> str:
    """"built-in" for objects defined in this repository's packages, else the defining module's name."""
    module = getattr(obj, "__module__", None) or "unknown"
    return "built-in" if module.split(".")[0] in BUILT_IN_PACKAGES else module


class Registry(Generic[T]):
    """Maps names to objects. Only explicitly registered names resolve (no attribute lookup)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} from {origin_of(obj)} is already registered by "
                    f"{origin_of(self._entries[name])}; register it under another name")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def origin(self, name: str) -> str:
        """Where the entry ``name`` was defined: "built-in" or a plugin's module."""
        return origin_of(self.get(name))

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries
