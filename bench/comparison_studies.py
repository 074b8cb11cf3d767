"""A whole comparison in one command: every registered method (and the random-pruning control) under one
protocol on one dataset/model, then its verdict (``python -m bench compare``, ``make compare``).

Each entry is one Optuna study (``python -m bench bench ...``); the protocol adds its controls inside every
trial (dense + fine-tune, scratch for structured methods, shuffled masks for masked ones), and the verdict
(``bench.verdict``) is written from the tracked runs only, so an interrupted comparison resumes where it
stopped and the verdict can be redrawn at any time with ``make figures``.
"""
from __future__ import annotations

import methods

REFERENCE = "magnitude"  # the verdict's reference method: its studies run first, so a partial comparison has it


def comparison_variants() -> list[tuple[str, dict[str, str]]]:
    """(method, pinned parameters) for every registered method, plugins' included: each method's declared
    ``comparison_variants`` (its defaults, plus random pruning for magnitude), the reference method first,
    then the others by name. A new method is in the comparison by registering, with no list to edit here."""
    names = sorted(methods.list_methods(), key=lambda m: (m != REFERENCE, m))
    return [(name, dict(params)) for name in names for params in methods.get(name).comparison_variants]


def study_argvs(dataset: str, model: str, protocol: str, extra: list[str],
                only: set[str] | None = None) -> list[list[str]]:
    """``python -m bench`` argument lists, one study per variant (``only``: a subset of method names)."""
    out = []
    for method, params in comparison_variants():
        if only and method not in only:
            continue
        pinned = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
        out.append(["bench", "--method", method, *pinned, "--dataset", dataset, "--model", model,
                    "--protocol", protocol, *extra])
    return out
