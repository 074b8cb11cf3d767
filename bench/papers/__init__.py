"""One module per seed paper: the experiments that reproduce its headline figure (``EXPERIMENTS``, run by
``make reproduce PAPER=name``) and the figure drawn from tracked runs (registered with ``@register``).
Adding a paper is adding one file here."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from bench.registry import Registry

PaperFigure = Callable[["pandas.DataFrame", Path], list[Path]]
_FIGURES: Registry[PaperFigure] = Registry("paper figure")
_EXPERIMENTS: dict[str, list[list[str]]] = {}


def register(name: str, experiments: list[list[str]]):
    """Register a paper figure and the `python -m bench bench ...` argument lists that produce its runs."""
    def decorator(fn: PaperFigure) -> PaperFigure:
        _EXPERIMENTS[name] = experiments
        return _FIGURES.register(name)(fn)

    return decorator


def paper_figures() -> dict[str, PaperFigure]:
    _load()
    return {name: _FIGURES.get(name) for name in _FIGURES.names()}


# The reproductions run the budgets their modules state (the suite's pre-protocol recipe scaled per paper),
# i.e. the ``quick`` protocol with their own --epochs/--finetune-epochs; each paper's own recipe as a
# protocol of its own is future work, and until then their runs say "quick" in every caption.
REPRODUCTION_PROTOCOL = "quick"


def experiments(name: str) -> list[list[str]]:
    """The ``python -m bench`` argument lists of one paper's reproduction (under ``REPRODUCTION_PROTOCOL``)."""
    _load()
    _FIGURES.get(name)  # unknown name -> the registry's clear error
    return [argv if "--protocol" in argv else [*argv, "--protocol", REPRODUCTION_PROTOCOL]
            for argv in _EXPERIMENTS[name]]


def list_papers() -> list[str]:
    _load()
    return _FIGURES.names()


def _load() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
