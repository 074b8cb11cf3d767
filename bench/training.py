"""Training under Lightning: one LightningModule for classification (with optional distillation), one
Trainer factory, and batches the data serves in the protocol's order (``Data.train_batches``: slices of
in-memory tensors, no per-sample collation; or a map-style dataset's samples, see ``datasets.loaders``)."""
from __future__ import annotations

import logging
import math
import warnings
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bench.recipes import TrainRecipe
from bench.validity import NonFiniteLossError
from datasets import Data
from datasets.core import TensorBatches, steps_per_epoch  # noqa: F401  (defined with the data; imported from here)



def _quiet_lightning() -> None:
    """No banners or tips per Trainer (lightning sets its loggers to INFO when imported)."""
    # ("pytorch_lightning": the same code under its old name, imported by mlflow.pytorch)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def fit_steps(recipe: TrainRecipe, n_samples: int, max_steps: int | None = None) -> int:
    """The optimiser steps ``fit`` takes for ``recipe`` on ``n_samples`` images (capped by ``max_steps``)."""
    full = recipe.epochs * steps_per_epoch(n_samples, recipe.batch_size)
    return full if max_steps is None else min(full, max_steps)


class StepLimit:
    """At most ``steps`` mini-batches in all, across epochs: the epoch that reaches the limit ends early.

    A budget counted in optimiser steps (an iterative method's round gets a fraction of an epoch) needs
    fits that stop at a step, not at an epoch boundary; validation still runs at the end of that epoch.
    """

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int):
        self.batches, self.left = batches, steps

    def __len__(self) -> int:
        return min(len(self.batches), max(self.left, 1))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            if self.left <= 0:
                return
            self.left -= 1
            yield batch


class StepGroups:
    """Consecutive mini-batches handed to Lightning as one item, so its per-item bookkeeping (hooks,
    batch transfer, loop state) is paid once per ``steps`` optimiser steps instead of once per step.

    The optimiser still steps on every mini-batch, in the same order: only the grouping changes.
    """

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int):
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.steps)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        group: list[tuple[torch.Tensor, torch.Tensor]] = []
        for batch in self.batches:
            group.append(batch)
            if len(group) == self.steps:
                yield group
                group = []
        if group:
            yield group


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      kd_weight: float, temperature: float) -> torch.Tensor:
    """kd_weight·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − kd_weight)·CE (Hinton et al. 2015)."""
    ce = F.cross_entropy(student_logits, targets)
    if kd_weight == 0:
        return ce
    kl = F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                  log_target=True, reduction="batchmean")
    return kd_weight * temperature**2 * kl + (1 - kd_weight) * ce


def _lightning_module_class():
    import lightning.pytorch as pl

    class ClassifierModule(pl.LightningModule):
        """Cross-entropy (or distillation) training with sample-weighted validation accuracy.

        Lean by design (issue 10, target <= 1.2x a plain PyTorch loop): each Lightning batch is a group of
        mini-batches (``StepGroups``) stepped in a tight loop with manual optimisation, so Lightning's
        per-batch machinery runs once per group; the loss is logged once per group as a device tensor
        (no per-step host sync); validation accumulates correct counts on the device.
        """

        def __init__(self, model: nn.Module, recipe: TrainRecipe, teacher: nn.Module | None = None,
                     kd_weight: float = 0.0, temperature: float = 1.0, log_every: int = 50, total_steps: int = 1):
            super().__init__()
            self.total_steps = total_steps  # the cosine schedule decays over exactly the steps this fit takes
            self.automatic_optimization = False
            self.model, self.recipe = model, recipe
            self._teacher = (teacher,)  # a tuple keeps the teacher out of parameters() and the optimiser
            self.kd_weight, self.temperature, self.log_every = kd_weight, temperature, log_every
            self._correct = self._seen = None
            self.steps_taken = 0  # optimiser steps (the raw optimiser does not advance trainer.global_step)
            self.loss_finite: torch.Tensor | None = None  # on the device: read once, after the fit (no sync per step)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def on_fit_start(self) -> None:
            if self._teacher[0] is not None:
                self._teacher[0].to(self.device).eval()

        def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = self.model(x)
            teacher = self._teacher[0]
            if teacher is not None and self.kd_weight > 0:
                with torch.no_grad():
                    teacher_logits = teacher(x)
                return distillation_loss(logits, teacher_logits, y, self.kd_weight, self.temperature)
            return F.cross_entropy(logits, y)

        def training_step(self, group, group_idx):
            # The raw optimiser: Lightning's wrapper adds hooks and a closure per step that plain
            # fp32 training does not need (precision plugins are not used here).
            opt = self.optimizers().optimizer
            scheduler = self.lr_schedulers()
            per_step = scheduler if self.recipe.schedule == "cosine" else None
            clip = self.recipe.grad_clip
            for x, y in group:
                loss = self.loss(x, y)
                finite = torch.isfinite(loss.detach())
                self.loss_finite = finite if self.loss_finite is None else self.loss_finite & finite
                opt.zero_grad()
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                opt.step()
                self.steps_taken += 1
                if per_step is not None:
                    per_step.step()
            self.log("train_loss", loss.detach(), prog_bar=True, batch_size=len(y))
            return None

        def on_validation_epoch_start(self) -> None:
            self._correct = torch.zeros((), device=self.device, dtype=torch.long)
            self._seen = 0

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self._correct += (self.model(x).argmax(1) == y).sum()
            self._seen += len(y)

        def on_validation_epoch_end(self) -> None:
            acc = self._correct.float() / max(self._seen, 1)
            self.log("val_acc", acc, prog_bar=True)
            if self.recipe.schedule == "plateau" and not self.trainer.sanity_checking:
                self.lr_schedulers().step(float(acc))  # one host sync per epoch, only for this schedule

        def configure_optimizers(self):
            r = self.recipe
            params = [p for p in self.model.parameters() if p.requires_grad]
            if r.optimizer == "adam":
                opt = torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
            else:
                opt = torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                                      nesterov=r.momentum > 0)  # Nesterov needs momentum
            if r.schedule == "cosine":
                # Per optimiser step (manual optimisation steps it in training_step), so a fit cut to a
                # fraction of an epoch still decays to zero at its last step.
                return {"optimizer": opt,
                        "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.total_steps, 1))}
            if r.schedule == "plateau":
                # Stepped by hand on each epoch's validation accuracy (manual optimisation steps nothing).
                return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt, mode="max", factor=0.5, patience=r.plateau_patience)}
            return opt

    return ClassifierModule


def _best_validation_callback():
    from lightning.pytorch.callbacks import Callback

    class BestValidation(Callback):
        """Keeps the weights of the epoch with the best validation accuracy and restores them at the end."""

        def __init__(self) -> None:
            self.best, self.state = -1.0, None

        def on_validation_end(self, trainer, module) -> None:
            acc = float(trainer.callback_metrics["val_acc"])
            if acc > self.best:
                self.best = acc
                self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}

        def on_fit_end(self, trainer, module) -> None:
            if self.state is not None:
                module.model.load_state_dict(self.state)

    return BestValidation()


PROGRESS_DELAY_SECONDS = 3.0  # a bar appears only for training that lasts longer than this


def _delayed_progress_bar():
    """Lightning's tqdm bars, shown only once a fit has lasted ``PROGRESS_DELAY_SECONDS``: a sweep's many
    second-long fine-tunes stay silent, a baseline that trains for minutes shows its epochs and speed."""
    import sys

    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class DelayedProgressBar(TQDMProgressBar):
        def init_train_tqdm(self) -> Tqdm:
            return Tqdm(desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
                        leave=False, dynamic_ncols=True, file=sys.stderr, smoothing=0, bar_format=self.BAR_FORMAT,
                        delay=PROGRESS_DELAY_SECONDS)

        def init_validation_tqdm(self) -> Tqdm:
            return Tqdm(desc=self.validation_description, position=2 * self.process_position + 1,
                        disable=self.is_disabled, leave=False, dynamic_ncols=True, file=sys.stderr,
                        bar_format=self.BAR_FORMAT, delay=PROGRESS_DELAY_SECONDS)

    return DelayedProgressBar()


def make_trainer(max_epochs: int, progress: bool = False, accelerator: str = "auto", callbacks: list | None = None,
                 validate: bool = True):
    """The one Trainer factory: GPU when present (accelerator="auto"), quiet, no checkpoint files; with
    ``progress``, Lightning's bars for fits longer than a few seconds; ``validate=False`` skips the
    validation loop (``limit_val_batches=0``)."""
    import lightning.pytorch as pl

    _quiet_lightning()
    return pl.Trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        num_sanity_val_steps=0, callbacks=[*(callbacks or []), *([_delayed_progress_bar()] if progress else [])],
        **({} if validate else {"limit_val_batches": 0}),
    )


def validation_chooses(epochs: int, recipe: TrainRecipe, callbacks: list | None = None) -> bool:
    """Whether a fit's per-epoch validation can change anything: it picks the best epoch, stops early or
    steps a plateau schedule only when there is an epoch after which training goes on, or a caller's
    callback may read it. A one-epoch fit (an iterative method's round) ends on its only validated weights,
    so validating it is a pass over the split that changes nothing."""
    return epochs > 1 or recipe.patience is not None or bool(callbacks)


def _fit_interruptibly(trainer, module, train, val) -> None:
    """``trainer.fit`` that lets Ctrl-C stay a KeyboardInterrupt.

    On Ctrl-C Lightning tears down, ignores SIGINT from then on and calls ``exit(1)``; callers would see a
    plain SystemExit and a process deaf to the next Ctrl-C. Restore both, so the tracked run is marked
    KILLED and the sweep stops cleanly.
    """
    import signal

    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt("interrupted during training") from None
        raise
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def _early_stopping(patience: int):
    """Lightning's EarlyStopping on validation accuracy: "until convergence" with a patience."""
    from lightning.pytorch.callbacks import EarlyStopping

    return EarlyStopping(monitor="val_acc", mode="max", patience=patience, min_delta=0.0, check_finite=True)


def fit(model: nn.Module, recipe: TrainRecipe, data: Data, seed: int, teacher: nn.Module | None = None,
        kd_weight: float = 0.0, temperature: float = 1.0, progress: bool = False, accelerator: str = "auto",
        max_steps: int | None = None, report: dict | None = None, callbacks: list | None = None) -> nn.Module:
    """Train ``model`` in place on the training split; returns it on the CPU with the best-val weights (a
    one-epoch fit keeps its only epoch without a validation pass, see ``validation_chooses``).

    ``max_steps`` cuts training at that many optimiser steps (the last epoch ends early; the epoch
    count becomes what those steps need), so budgets counted in steps can be split between rounds.
    ``recipe.patience`` stops once validation accuracy has not improved for that many epochs. ``report``,
    if given, receives the optimiser ``steps`` and ``epochs`` actually run (fewer than planned after an
    early stop); ``callbacks`` are extra Lightning callbacks.
    """
    n_train = data.sizes()["train"]
    steps = fit_steps(recipe, n_train, max_steps)
    if report is not None:
        report.update(steps=0, epochs=0)
    if steps == 0:
        return model
    epochs = math.ceil(steps / steps_per_epoch(n_train, recipe.batch_size))
    torch.manual_seed(seed)
    model.train()
    module = _lightning_module_class()(model, recipe, teacher, kd_weight, temperature, total_steps=steps)
    validate = validation_chooses(epochs, recipe, callbacks)
    extra = [*(callbacks or []), *([_early_stopping(recipe.patience)] if recipe.patience is not None else [])]
    best = [_best_validation_callback()] if recipe.select_on_val and validate else []
    trainer = make_trainer(epochs, progress, accelerator, [*extra, *best], validate=validate)
    # The recipe's batch size in the run's seeded order, with the dataset's seeded training-only transform
    # (CIFAR crop + flip), if any.
    train = data.train_batches(recipe.batch_size, seed)
    if steps < recipe.epochs * len(train):
        train = StepLimit(train, steps)
    train = StepGroups(train, module.log_every)
    val = data.eval_batches("val")  # never iterated where ``validate`` is False (``limit_val_batches=0``)
    _fit_interruptibly(trainer, module, train, val)
    if report is not None:
        report.update(steps=module.steps_taken, epochs=trainer.current_epoch)
    model.cpu()
    if teacher is not None:
        teacher.cpu()
    if module.loss_finite is not None and not bool(module.loss_finite):
        raise NonFiniteLossError(f"the training loss became NaN or inf during a fit of {recipe.epochs} epoch(s) at lr "
                                 f"{recipe.lr:g}; lower the learning rate, or check the inputs' scale")
    return model
