"""The model, run once before any training: built on the data, one forward pass on a real batch in eval mode
on the configured device, its output one tensor of shape (batch, classes), and the classifier the rule finds
(or the user names with ``--model-option classifier=NAME``) with one output per class.

Looking at a model is not enough: a builder that ignores ``num_classes``, a forward that fails on the data's
shape or returns a tuple, or a named classifier of another width all used to start training and end in a
traceback (or a recorded run below chance). Each is one ``PreflightError`` line naming the model, the class
and module that define it, and what to change.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.preflight.environment import PreflightError

BATCH = 8  # samples of the validation split the model is run on


def check_model(config: Any, data: Any) -> None:
    """The model builds on the data, runs on a real batch and ends in a classifier of ``num_classes`` outputs."""
    from bench.models import CLASSIFIER_NAME, build_unmarked, classifier_of, mark_classifier

    options = dict(config.model_options)
    named = options.pop("classifier", None)
    classes = data.num_classes
    try:
        model = build_unmarked(config.model, data.input_shape, classes, config.seed,
                               None if named is None else str(named), **options)
    except (TypeError, ValueError) as e:
        given = " ".join(f"{k}={v}" for k, v in config.model_options) or "no --model-option"
        raise PreflightError(f"model {config.model!r} cannot be built on {config.dataset} with {given}: {e}") from None
    except Exception as e:  # a user's builder may raise anything: one line, not a traceback
        raise PreflightError(f"model {config.model!r} (builder from {_origin(config.model)}) raised "
                             f"{_first_line(e)} when built for input_shape={tuple(data.input_shape)}, "
                             f"num_classes={classes}; fix the builder") from None
    who = f"model {config.model!r} ({type(model).__qualname__} in {_where(type(model))})"
    x = next(iter(data.eval_batches("val", BATCH)))[0]
    out = _forward(who, model, x, _device(config.accelerator), data)
    if not isinstance(out, torch.Tensor):
        kind = type(out).__name__ + (f" of {len(out)}" if isinstance(out, (tuple, list, dict)) else "")
        raise PreflightError(f"{who} returns a {kind} from forward; it must return one tensor of logits shaped "
                             f"(batch, {classes}): return only the logits")
    if tuple(out.shape) != (len(x), classes):
        raise PreflightError(f"{who} returns outputs shaped {tuple(out.shape)} for a batch of {len(x)} inputs; it "
                             f"must return logits shaped ({len(x)}, {classes}), one per class of {config.dataset}: "
                             f"give its output layer the num_classes its builder is called with ({classes} here)")
    try:
        mark_classifier(model, classes, None if named is None else str(named))
    except ValueError as e:
        raise PreflightError(f"{who}: {e}") from None
    head = classifier_of(model, classes)
    width = _outputs(head)
    if width is not None and width != classes:
        name = getattr(model, CLASSIFIER_NAME, None) or _name_of(model, head)
        how = (f"named with --model-option classifier={named}" if named is not None
               else "its `classifier` attribute")
        fits = [n for n, m in model.named_modules() if _outputs(m) == classes and n]
        raise PreflightError(f"{who}: its classifier {name!r} ({how}) has {width} outputs, but {config.dataset} has "
                             f"{classes} classes; the classifier is the layer that produces the model's outputs: "
                             f"name one of {', '.join(fits) or '(none)'} instead")


def _forward(who: str, model: nn.Module, x: torch.Tensor, device: torch.device, data: Any) -> Any:
    model.eval()
    try:
        with torch.no_grad():
            out = model.to(device)(x.to(device))
    except Exception as e:  # the user's forward: any error is one line naming the model
        raise PreflightError(f"{who} fails on a batch of inputs shaped {tuple(x.shape)}: {_first_line(e)}; its "
                             f"forward must take inputs shaped (batch, *input_shape) with input_shape="
                             f"{tuple(data.input_shape)}, the shape its builder is called with") from None
    finally:
        model.cpu()
    return out


def _device(accelerator: str) -> torch.device:
    """The device Lightning's ``accelerator`` trains on: a CUDA GPU for "gpu"/"cuda", and for "auto" where there
    is one; the CPU otherwise (an accelerator torch cannot reach from here is left for Lightning to report)."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise PreflightError(f"--accelerator {accelerator} asks for a GPU, but torch finds no CUDA device; "
                             "use --accelerator cpu (or auto)")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _outputs(module: nn.Module | None) -> int | None:
    """A layer's number of outputs (Linear features, conv channels); None for modules without one."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module.out_channels
    return None


def _name_of(model: nn.Module, module: nn.Module | None) -> str:
    return next((n for n, m in model.named_modules() if m is module), type(module).__name__)


def _where(cls: type) -> str:
    """The file that defines ``cls`` (what a user edits), else its module's name."""
    import sys

    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return str(path) if path else f"module {cls.__module__}"


def _origin(model: str) -> str:
    from bench.models import model_origin

    return model_origin(model)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
