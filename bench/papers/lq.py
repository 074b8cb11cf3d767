"""Paper figure for ``lq``: Yang, Wang, Ding, Yang (2022, arXiv 2206.05604), ℓq-norm (0 < q < 1) adaptive
per-neuron pruning, reproduced as the shape of its claim: under its own recipe (the authors' prototype: prune
by the ℓq rule, rewind the survivors to their random initialisation, retrain; ``paper-lq``), ℓq adaptive
pruning against standard magnitude pruning (one-shot and lottery-ticket iterative) and against SAP, its
follow-up. No table of the paper's numbers is at hand, so the figure is ours alone.

The runs and the drawing are the SAP figure's (``bench.papers.sap``): the same MLP on Fashion-MNIST, the
per-round trajectory of the adaptive rules, magnitude at fixed ratios; only the protocol differs (SGD 3e-2
instead of 0.1, no gradient clipping), so its files carry the ``sap_`` prefix of that shared figure.
"""
from __future__ import annotations

from pathlib import Path

from bench.papers import register
from bench.papers.step_metrics import draw_each_experiment
from bench.papers.sap import build_experiments as sap_experiments
from bench.papers.sap import draw_experiment


def build_experiments(scale: str) -> list[list[str]]:
    """The ℓq rule and SAP (0.5, 1) at the protocol's ratio, magnitude one-shot and lottery-ticket."""
    return sap_experiments(scale, adaptive=(("lq",), ("sap",)))


@register("lq", experiments=build_experiments)
def figure(runs: "pandas.DataFrame", out_dir: Path) -> list[Path]:
    """The ℓq figure and tables for every dataset/model holding ``lq`` or ``sap`` runs under ``paper-lq``."""
    return draw_each_experiment(runs, draw_experiment, out_dir)
