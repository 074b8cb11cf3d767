"""Control arms as a registry, like methods: each control is one file here that registers itself.

A control is derived from a method's compressed model (before its final fine-tune) and trained under the same
budget as the method, so the verdict can ask what the method's result is worth against something simpler made
from it. A ``Control`` declares:

- ``derive(compressed, dense, seed)``: the model it trains (from the method's untuned result and the dense
  baseline);
- ``trains``: the budget it gets — ``"finetune"`` (the dense baseline's steps counted from initialisation, then
  the protocol's fine-tune, like a one-shot post-training method) or ``"scratch"`` (baseline + E epochs from a
  fresh initialisation, like a train-time method);
- ``applies_to``: which results it makes sense for, by ``Method.result`` (``masked``, ``structured`` or
  ``generated``), and ``applies(method)`` for a finer rule (random pruning gets no shuffled control: its
  shuffle is itself);
- ``line_style``: how figures draw it beside its method (matplotlib's line styles).

A protocol names its controls by registry name (``Protocol.controls``); the dense + fine-tune control is not an
arm of a method (it is run once per seed and lr), so it is not in this registry. The built-ins:
``scratch`` (Liu et al., ICLR 2019) and ``shuffled`` (Frankle et al., ICLR 2021). Adding one: a file here
that subclasses ``Control`` and calls ``register_control``, imported below (or from a plugin module), plus a
line in docs/design.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from torch import nn

from bench.registry import Registry

_CONTROLS: Registry["Control"] = Registry("control")


@dataclass(frozen=True)
class Control:
    """A control arm; subclasses set the class fields and implement ``derive``."""

    name: ClassVar[str] = ""
    trains: ClassVar[Literal["finetune", "scratch"]] = "finetune"
    applies_to: ClassVar[tuple[str, ...]] = ()
    line_style: ClassVar[str] = "--"
    summary: ClassVar[str] = ""

    def derive(self, compressed: nn.Module, dense: nn.Module, seed: int) -> nn.Module:
        """The model this control trains, made from the method's untuned result and the dense baseline."""
        raise NotImplementedError

    def applies(self, method: object) -> bool:
        """Whether this control makes sense beside ``method`` (by default: its result kind is one it takes)."""
        return getattr(method, "result", None) in self.applies_to


def register_control(control: Control) -> Control:
    """Register ``control`` under its ``name``; a taken name is refused, naming both origins."""
    if not control.name:
        raise ValueError(f"{type(control).__name__} has no name")
    _CONTROLS.register(control.name)(control)
    return control


def get_control(name: str) -> Control:
    return _CONTROLS.get(name)


def list_controls() -> list[str]:
    return _CONTROLS.names()


def applicable_arms(method: object, controls: tuple[str, ...]) -> tuple[str, ...]:
    """``("method", ...)`` plus the protocol's controls that apply to this method, in the protocol's order."""
    return ("method", *(name for name in controls if get_control(name).applies(method)))


def line_styles() -> dict[str, str]:
    """Arm -> matplotlib line style: the method solid, each control its own."""
    return {"method": "-", **{name: get_control(name).line_style for name in list_controls()}}


def seed_for(seed: int, salt: int) -> int:
    """A control's own random stream, derived from the run seed and the control's salt (never the stream that
    initialised the model)."""
    return int(np.random.SeedSequence([seed, salt]).generate_state(1)[0])


from bench.controls import scratch, shuffled  # noqa: E402  the built-ins register themselves

__all__ = ["Control", "applicable_arms", "get_control", "line_styles", "list_controls", "register_control",
           "scratch", "seed_for", "shuffled"]
