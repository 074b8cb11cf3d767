"""Each seed paper's own training recipe as a protocol, at two scales.

A reproduction that runs a paper's method under someone else's budget says more about the budget than about
the method, so every paper figure runs under ``paper-<name>``: the paper's optimiser, schedule, epochs (or its
"until convergence", as early stopping on validation with a patience), rewinding and rounds. Two scales:

* ``paper``: the recipe as published (where the paper does not state a setting, the choice is named here), for
  users with a GPU and the paper's data;
* ``cpu``: the same shape (same optimiser, schedule, rewinding, rounds rule) with fewer epochs, rounds and seeds,
  so that ``make reproduce PAPER=<name>`` finishes offline in under 45 minutes on 2 cores. ``scaled`` says what
  shrank and by how much; it is a run parameter (``protocol.scaled``) and part of every figure caption.

These protocols do **not** equalise budgets across methods: each paper's recipe is what it is, and the
figures compare a paper's method with the controls *under that paper's recipe*. Cross-method verdicts use
``fair``. The data stand-ins (fashion-mnist, mnist-5k for MNIST and CIFAR-10) are chosen per paper in
``bench/papers/<name>.py``, which runs CIFAR-10 instead when ``$CIFAR10_DIR`` is set.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.protocol import QUICK_RATIOS, Protocol
from bench.recipes import TrainRecipe


def _sgd(lr: float, epochs: int, **kw: Any) -> TrainRecipe:
    """SGD with Nesterov momentum 0.9 (every seed paper's SGD), cosine unless told otherwise."""
    return TrainRecipe(**{"optimizer": "sgd", "momentum": 0.9, "schedule": "cosine", "lr": lr, "epochs": epochs,
                          "batch_size": 128, **kw})


def _pair(paper: Protocol, cpu: dict[str, Any], scaled: str) -> dict[str, Protocol]:
    return {"paper": paper, "cpu": replace(paper, scale="cpu", scaled=scaled, **cpu)}


def _recipe(**methods: dict[str, Any]) -> tuple:
    return tuple((m, tuple(sorted(kv.items()))) for m, kv in methods.items())


# ------------------------------------------------------------------ coreset (Mussay et al., ICLR 2020)
# The paper fine-tunes after every pruned layer "until convergence" (about one epoch, it says) and states
# neither optimiser nor learning rate; we use the dense training's Adam 1e-3 with early stopping on
# validation (patience 3 at paper scale, capped at 50 epochs).
_CORESET_BASE = TrainRecipe(epochs=40, lr=1e-3)
_CORESET = Protocol(
    name="paper-coreset", baseline=_CORESET_BASE,
    finetune=TrainRecipe(epochs=50, lr=1e-3, patience=3), extra_epochs=50, lr_candidates=(1e-3,),
    equal_budget=False, seeds=3, ratios=(2.0, 4.0, 10.0, 20.0), scale="paper",
    method_recipe=_recipe(coreset={"finetune_each_layer": True}),
    summary="Mussay et al.: prune layer by layer, fine-tune after every layer until validation accuracy stops "
            "improving (Adam 1e-3: the paper states no optimiser)")

# ------------------------------------------------------------------ magnitude (Han et al., NeurIPS 2015)
# Layer-wise thresholds, iterative prune + retrain; retraining with SGD at a tenth of the training lr
# (LeNet), "until convergence" (30 epochs in ShrinkBench's reading of it).
_MAGNITUDE = Protocol(
    name="paper-magnitude", baseline=_CORESET_BASE,
    finetune=_sgd(1e-3, 30, schedule="constant", patience=3), extra_epochs=30, lr_candidates=(1e-3,),
    equal_budget=False, seeds=3, ratios=(2.0, 4.0, 8.0, 12.0, 32.0), scale="paper",
    method_recipe=_recipe(magnitude={"scope": "layer", "schedule": "iterative", "rounds": 3}),
    summary="Han et al. 2015: layer-wise magnitude, iterative prune and retrain, retraining with SGD at lr/10 "
            "until validation accuracy stops improving")

# ------------------------------------------------------------------ SAP (Diao et al., ICLR 2023)
# Every round: prune by the PQ-index rule, rewind the survivors to their random initialisation, train E
# epochs (the dense model is round 0: E epochs from init). SGD 0.1 Nesterov, wd 5e-4, cosine, grad-norm clip
# 1, batch 250, E = 200, T = 30 rounds; the lottery-ticket baseline prunes 20 % a round the same way.
_SAP_ROUND = _sgd(0.1, 200, weight_decay=5e-4, grad_clip=1.0, batch_size=250)
_SAP = Protocol(
    name="paper-sap", baseline=_SAP_ROUND, finetune=_SAP_ROUND, extra_epochs=200, lr_candidates=(0.1,),
    equal_budget=False, seeds=3, ratios=(32.0,), scale="paper", rewind="init",
    method_recipe=_recipe(sap={"rounds": 30}, lq={"rounds": 30}),
    summary="Diao et al.: T rounds of prune by the PQ index, rewind survivors to init, train E epochs "
            "(SGD 0.1 Nesterov, wd 5e-4, cosine, clip 1); accuracy per round against remaining weights")

# ------------------------------------------------------------------ ℓq (Yang, Wang, Ding, Yang 2022)
# The authors' prototype: prune by the ℓq rule, rewind to init, train (SGD 3e-2 Nesterov, wd 5e-4, cosine,
# batch 250, 100 epochs a round for MLPs), 30 rounds.
_LQ_ROUND = _sgd(3e-2, 100, weight_decay=5e-4, batch_size=250)
_LQ = Protocol(
    name="paper-lq", baseline=_LQ_ROUND, finetune=_LQ_ROUND, extra_epochs=100, lr_candidates=(3e-2,),
    equal_budget=False, seeds=3, ratios=(32.0,), scale="paper", rewind="init",
    method_recipe=_recipe(sap={"rounds": 30}, lq={"rounds": 30}),
    summary="Yang et al. (prototype code): rounds of prune by the ℓq rule, rewind to init, train "
            "(SGD 3e-2 Nesterov, wd 5e-4, cosine)")

# ------------------------------------------------------------------ SuRP (Isik et al., AISTATS 2022)
# Iterative SuRP: 20 % of the survivors a round, retraining 20 epochs before each round (SGD 0.01, momentum
# 0.9, wd 5e-4; the configs' MultiStep decay is replaced by cosine, the one decay implemented besides
# plateau). Dense training: SGD 0.1, wd 5e-4, 350 epochs (cosine for MultiStep again).
_SURP = Protocol(
    name="paper-surp", baseline=_sgd(0.1, 350, weight_decay=5e-4), finetune=_sgd(0.01, 20, weight_decay=5e-4),
    extra_epochs=20, lr_candidates=(0.01,), equal_budget=False, seeds=3, ratios=QUICK_RATIOS,
    scale="paper", method_recipe=_recipe(**{"rate-distortion": {"schedule": "iterative"}}),
    summary="Isik et al.: iterative SuRP (20 % of survivors per round) with retraining before each round "
            "(SGD 0.01, wd 5e-4)")

# ------------------------------------------------------------------ LMA (Xu et al., AAAI 2020)
# Teacher and students: SGD Nesterov 0.9, wd 2.2e-4, lr 1e-2, batch 64, up to 200 epochs; lr halved when
# validation accuracy has not improved for 10 epochs, stop after 30 without improvement (the code watches
# test error; we watch validation). KD weight 0.7, temperature 2 (the method's defaults). No fine-tune after.
_LMA_TRAIN = _sgd(1e-2, 200, weight_decay=2.2e-4, batch_size=64, schedule="plateau", plateau_patience=10,
                  patience=30)
_LMA = Protocol(
    name="paper-lma", baseline=_LMA_TRAIN, finetune=replace(_LMA_TRAIN, epochs=0), extra_epochs=0,
    lr_candidates=(1e-2,), equal_budget=False, seeds=5, ratios=(5.3, 16.7, 48.6), scale="paper",
    summary="Xu et al.: students trained from scratch with KD (0.7, T=2), SGD 1e-2 Nesterov, batch 64, lr "
            "halved on a validation plateau, early stop; no fine-tune after")

# ------------------------------------------------------------------ multihash (Eban et al., CVPR 2020)
# The base model's own recipe (ResNet on CIFAR-10: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, cosine over
# 200 epochs), from scratch; the pruned-dense control is fine-tuned 20 epochs at lr 0.01.
_MH_TRAIN = _sgd(0.1, 200, weight_decay=1e-4)
_MULTIHASH = Protocol(
    name="paper-multihash", baseline=_MH_TRAIN, finetune=_sgd(0.01, 20, weight_decay=1e-4), extra_epochs=20,
    lr_candidates=(0.01,), equal_budget=False, seeds=3, ratios=(2.0, 4.0, 10.0, 20.0), scale="paper",
    summary="Eban et al.: the hashed network trained from scratch with the base model's recipe (SGD 0.1, "
            "wd 1e-4, cosine); accuracy against the fraction of variables kept")

PAPER_PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "paper-coreset": _pair(_CORESET, dict(
        baseline=replace(_CORESET_BASE, epochs=20), finetune=TrainRecipe(epochs=10, lr=1e-3, patience=2),
        extra_epochs=10), "dense 40 -> 20 epochs; convergence patience 3 -> 2, cap 50 -> 10 epochs"),
    "paper-magnitude": _pair(_MAGNITUDE, dict(
        baseline=replace(_CORESET_BASE, epochs=20), finetune=_sgd(1e-3, 15, schedule="constant", patience=3),
        extra_epochs=15), "dense 40 -> 20 epochs; retraining cap 30 -> 15 epochs"),
    "paper-sap": _pair(_SAP, dict(
        baseline=replace(_SAP_ROUND, epochs=2), finetune=replace(_SAP_ROUND, epochs=2), extra_epochs=2,
        method_recipe=_recipe(sap={"rounds": 8}, lq={"rounds": 8})),
        "E = 200 -> 2 epochs a round; T = 30 -> 8 rounds"),
    "paper-lq": _pair(_LQ, dict(
        baseline=replace(_LQ_ROUND, epochs=2), finetune=replace(_LQ_ROUND, epochs=2), extra_epochs=2,
        method_recipe=_recipe(sap={"rounds": 8}, lq={"rounds": 8})),
        "100 -> 2 epochs a round; 30 -> 8 rounds"),
    "paper-surp": _pair(_SURP, dict(
        baseline=_sgd(0.1, 20, weight_decay=5e-4), finetune=_sgd(0.01, 2, weight_decay=5e-4), extra_epochs=2),
        "dense 350 -> 20 epochs; retraining 20 -> 2 epochs a round"),
    "paper-lma": _pair(_LMA, dict(
        baseline=replace(_LMA_TRAIN, epochs=12, plateau_patience=2, patience=4),
        finetune=replace(_LMA_TRAIN, epochs=0, plateau_patience=2, patience=4), seeds=2),
        "at most 200 -> 12 epochs; plateau 10 -> 2 epochs, early stop 30 -> 4 epochs; 5 -> 2 seeds"),
    "paper-multihash": _pair(_MULTIHASH, dict(
        baseline=replace(_MH_TRAIN, epochs=10), finetune=_sgd(0.01, 3, weight_decay=1e-4), extra_epochs=3,
        seeds=2), "200 -> 10 epochs from scratch; control fine-tune 20 -> 3 epochs; 3 -> 2 seeds"),
}
