"""One module per seed paper: the experiments that reproduce its headline figure under the paper's own recipe
(the ``paper-<name>`` protocol of ``bench.paper_protocols``, at the ``cpu`` or ``paper`` scale; run by
``make reproduce PAPER=name [SCALE=paper]``) and the figure drawn from tracked runs (registered with
``@register``). Adding a paper is adding one file here and its protocol there."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from bench.registry import Registry

PaperFigure = Callable[["pandas.DataFrame", Path], list[Path]]
Experiments = Callable[[str], list[list[str]]]  # scale -> ``python -m bench`` argument lists
_FIGURES: Registry[PaperFigure] = Registry("paper figure")
_EXPERIMENTS: dict[str, Experiments] = {}


def paper_protocol(name: str) -> str:
    """The protocol a paper's reproduction runs under."""
    return f"paper-{name}"


def register(name: str, experiments: Experiments):
    """Register a paper figure and the function giving, per scale, the `python -m bench bench ...` argument
    lists that produce its runs."""
    def decorator(fn: PaperFigure) -> PaperFigure:
        _EXPERIMENTS[name] = experiments
        return _FIGURES.register(name)(fn)

    return decorator


def paper_figures() -> dict[str, PaperFigure]:
    _load()
    return {name: _FIGURES.get(name) for name in _FIGURES.names()}


def experiments(name: str, scale: str = "cpu") -> list[list[str]]:
    """The ``python -m bench`` argument lists of one paper's reproduction under ``paper-<name>`` at ``scale``."""
    _load()
    _FIGURES.get(name)  # unknown name -> the registry's clear error
    return [[*argv, "--protocol", paper_protocol(name), "--scale", scale, "--threads", "1", "--quiet"]
            for argv in _EXPERIMENTS[name](scale)]


def list_papers() -> list[str]:
    _load()
    return _FIGURES.names()


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
