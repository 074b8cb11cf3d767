"""Training budgets as plain data: the baseline recipe and the one fine-tune budget all methods share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.content import content_of, later


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 10
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: Literal["constant", "cosine", "plateau"] = "constant"
    # Restore the weights of the epoch with the best validation accuracy (never test).
    select_on_val: bool = True
    # "Until convergence": stop once validation accuracy has not improved for this many epochs (``epochs``
    # is then the cap). None trains every epoch.
    patience: int | None = later(None)
    # ``schedule="plateau"``: halve the learning rate when validation accuracy has not improved for this
    # many epochs (LMA's CIFAR schedule halves on a plateau).
    plateau_patience: int = later(3)
    # Clip the gradient's global L2 norm to this value before each step (SAP's recipe clips to 1).
    grad_clip: float | None = later(None)

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 epoch (or None: no early stopping), got {self.patience}")
        if self.plateau_patience < 1:
            raise ValueError(f"plateau_patience must be >= 1 epoch, got {self.plateau_patience}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None: no clipping), got {self.grad_clip}")

    def as_params(self, prefix: str) -> dict[str, object]:
        return {f"{prefix}.{k}": v for k, v in content_of(self).items()}

    def describe(self) -> str:
        """One phrase for captions: "SGD 0.1 (Nesterov, wd 5e-4, clip 1), cosine, batch 250, 8 epochs"."""
        extras = [f"wd {self.weight_decay:g}"] if self.weight_decay else []
        if self.grad_clip is not None:
            extras.append(f"clip {self.grad_clip:g}")
        opt = f"{self.optimizer.upper() if self.optimizer == 'sgd' else 'Adam'} {self.lr:g}"
        opt += f" ({', '.join(extras)})" if extras else ""
        sched = f"halved after {self.plateau_patience} flat epochs" if self.schedule == "plateau" else self.schedule
        length = (f"until val stops improving for {self.patience} epochs (at most {self.epochs})"
                  if self.patience is not None else f"{self.epochs} epochs")
        return f"{opt}, {sched}, batch {self.batch_size}, {length}"


# Baseline: Adam 1e-3 for 10 epochs reaches ~89 % on Fashion-MNIST with LeNet-300-100 in about a minute
# on 2 cores. Fine-tune: 2 epochs at 1e-4, the calibration budget of the foundation issue.
BASELINE_RECIPE = TrainRecipe(epochs=10, lr=1e-3)
FINETUNE_RECIPE = TrainRecipe(epochs=2, lr=1e-4)


# The seed papers' common CIFAR setting: SGD with momentum 0.9, batch 128, cosine decay over the run
# (He et al. 2016 decay in steps at 32k/48k of 64k iterations, ~182 epochs; cosine over 200 epochs is the
# common substitute and the one schedule ``bench.training`` implements besides constant). Weight decay:
# 1e-4 for the ResNets on CIFAR-10 (He et al. 2016, Sec. 4.2), 5e-4 for VGG-16 (SuRP's configs, see
# docs/methods/rate_distortion.md) and for everything on CIFAR-100 (LMA's CIFAR-100 setting, docs/methods/lma.md).
# Fine-tuning: 20 epochs at a tenth of the baseline's learning rate, SuRP's retraining budget per round
# (lr 0.01 for ResNet-20, 0.001 for VGG-16). Training batches are augmented (crop + flip) by the dataset.
def _cifar(lr: float, weight_decay: float, finetune_lr: float) -> tuple[TrainRecipe, TrainRecipe]:
    sgd = dict(optimizer="sgd", momentum=0.9, weight_decay=weight_decay, batch_size=128, schedule="cosine")
    return TrainRecipe(epochs=200, lr=lr, **sgd), TrainRecipe(epochs=20, lr=finetune_lr, **sgd)


# name -> (baseline, fine-tune); the name is recorded with the run, the budgets through ``as_params``.
RECIPES: dict[str, tuple[TrainRecipe, TrainRecipe]] = {
    "cifar10-resnet": _cifar(lr=0.1, weight_decay=1e-4, finetune_lr=0.01),
    "cifar10-vgg": _cifar(lr=0.01, weight_decay=5e-4, finetune_lr=0.001),
    "cifar100-resnet": _cifar(lr=0.1, weight_decay=5e-4, finetune_lr=0.01),
    "cifar100-vgg": _cifar(lr=0.01, weight_decay=5e-4, finetune_lr=0.001),
}


def recipe_for(dataset: str, model: str) -> str | None:
    """The name of the recipe in RECIPES for a (dataset, model) pair, or None where the defaults apply."""
    family = "resnet" if model.startswith("resnet") else "vgg" if model.startswith("vgg") else None
    name = f"{dataset}-{family}"
    return name if family is not None and name in RECIPES else None
