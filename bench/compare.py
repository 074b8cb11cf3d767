"""A whole comparison in one command: every registered method (and the random-pruning control) under one
protocol on one dataset/model, then its verdict (``python -m bench compare``, ``make compare``).

Each entry is one Optuna study (``python -m bench bench ...``); the protocol adds its controls inside every
trial (dense + fine-tune, scratch for structured methods, shuffled masks for masked ones), and the verdict
(``bench.verdict``) is written from the tracked runs only, so an interrupted comparison resumes where it
stopped and the verdict can be redrawn at any time with ``make figures``.
"""
from __future__ import annotations

# (method, pinned parameters): the methods at their documented defaults, plus random pruning, the control
# every masked method should beat. Order: cheapest first, so a partial comparison has the baselines.
VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("magnitude", {}),
    ("magnitude", {"random": "true"}),
    ("rate-distortion", {}),
    ("coreset", {}),
    ("multihash", {}),
    ("lma", {}),
    ("lq", {}),
    ("sap", {}),
)


def study_argvs(dataset: str, model: str, protocol: str, extra: list[str],
                only: set[str] | None = None) -> list[list[str]]:
    """``python -m bench`` argument lists, one study per variant (``only``: a subset of method names)."""
    out = []
    for method, params in VARIANTS:
        if only and method not in only:
            continue
        pinned = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
        out.append(["bench", "--method", method, *pinned, "--dataset", dataset, "--model", model,
                    "--protocol", protocol, *extra])
    return out
