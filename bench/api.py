"""The Python API: one experiment, or one sweep, from a notebook or a script; the CLI is a thin layer over it.

    from bench import api
    result = api.experiment("coreset", "resnet20", "cifar10", ratio=4)       # registered names
    result = api.experiment("magnitude", MyNet, my_datamodule, ratio=8)      # a builder and your data
    print(result.metrics["acc_top1"], result.run_id)                          # the MLflow run
    summary = api.sweep("lq", MyNet, "digits", ratios=(2, 4, 8), seeds=3)     # an Optuna study

Both go through the same pipeline as ``python -m bench run`` / ``bench``: the protocol trains the dense
model from random initialisation, the method compresses it, the protocol's fine-tune and controls follow,
and every run is recorded in MLflow (``results/mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise).

Models and data may be given as registered names, or as objects, which are registered in this process
under a name derived from their content (so caches and runs of different objects never mix):

- a model *builder* ``f(input_shape, num_classes, **model_options) -> nn.Module``, registered under its
  ``__name__`` (pass ``model_name=`` where two builders share one);
- an ``nn.Module`` *instance*, taken as an architecture: each seed re-initialises a copy
  (``reset_parameters``) and the protocol trains it. To compress weights you have already trained, call
  ``methods.build(name, params).compress(model, ratio, methods.Context(seed=0))`` directly;
- data as ``datasets.DataSplits`` (tensors), a ``LightningDataModule`` or a (train, val, test) triple of
  ``DataLoader``s (val may be None), registered under their name and a digest of their content.

Objects exist only in this process, so a sweep with ``workers > 1`` needs them in a plugin module.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Sequence, Union

from torch import nn

import datasets
import methods
from bench.config import ExperimentConfig
from bench.models import list_models, register_model
from bench.plugins import load_plugins
from bench.protocol import DEFAULT_PROTOCOL, Protocol
from bench.protocol_registry import get_protocol
from bench.registry import UnknownNameError

ModelLike = Union[str, Callable[..., nn.Module], nn.Module]
DataLike = Any  # a registered name, "file:PATH.npz", DataSplits, a LightningDataModule, or DataLoaders


class BudgetError(ValueError):
    """A method setting that breaks the protocol's equal budget; the message says which and the fix."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _register_once(register: Callable[[str], Callable], known: Callable[[], list[str]], name: str, obj: Any) -> str:
    if name not in known():
        register(name)(obj)
    return name


def model_name(model: ModelLike, name: str | None = None) -> str:
    """The registry name of ``model``: itself for a registered name, else a name the object is registered
    under in this process (see the module docstring)."""
    if isinstance(model, str):
        if model not in list_models():
            raise UnknownNameError(f"unknown model {model!r}; choose one of: {', '.join(list_models())}")
        return model
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model)

        def build(input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
            if options:
                raise TypeError(f"a model given as an instance takes no options, got {sorted(options)}")
            fresh = copy.deepcopy(template)
            for module in fresh.modules():  # create_model seeds this, so each seed has its own init
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            return fresh

        build.__module__ = type(model).__module__  # its origin in `list`
        label = name or f"{type(model).__name__}-{_digest(repr(model))}"
        return _register_once(register_model, list_models, label, build)
    if callable(model):
        label = name or getattr(model, "__name__", type(model).__name__)
        return _register_once(register_model, list_models, label, model)
    raise TypeError(f"model must be a registered name, a builder or an nn.Module, got {type(model).__name__}")


def data_name(data: DataLike, name: str | None = None) -> str:
    """The registry name of ``data``: itself for a registered name or ``file:`` path, else a name the object
    is registered under in this process, with a digest of its content."""
    if isinstance(data, str):
        if not datasets.is_known(data):
            raise UnknownNameError(f"unknown dataset {data!r}; choose one of: {', '.join(datasets.list_datasets())}, "
                                   "or file:PATH.npz")
        return data
    from datasets.loaders import adapt

    label = name or getattr(data, "name", None) or type(data).__name__
    adapted = adapt(label, data)  # DataSplits, or LoaderSplits over a DataModule / DataLoaders
    label = f"{label}-{adapted.sha256[:10]}"

    def load() -> Any:
        return adapted

    load.__module__ = type(data).__module__
    return _register_once(datasets.register_dataset, datasets.list_datasets, label, load)


def check_budget(protocol: Protocol, method: str, params: dict[str, Any]) -> None:
    """Under an equal budget a train-time method's pinned epochs must equal the protocol's from-scratch epochs."""
    cls = methods.get(method)
    if not protocol.equal_budget or cls.family != "train-time" or "epochs" not in params:
        return
    allowed = ExperimentConfig.for_protocol(protocol).scratch_recipe().epochs
    try:
        pinned = int(str(params["epochs"]))
    except ValueError:
        raise BudgetError(f"{method} epochs must be an integer, got {params['epochs']!r}") from None
    if pinned != allowed:
        raise BudgetError(f"{method} epochs={pinned} breaks the {protocol.name} protocol's equal budget: every arm "
                          f"trains {allowed} epochs from initialisation ({protocol.baseline.epochs} + "
                          f"{protocol.extra_epochs}); drop the epochs parameter, or use --protocol quick")


def configure(method: str, model: ModelLike, data: DataLike, ratio: float = 8.0,
              protocol: str | Protocol = DEFAULT_PROTOCOL, *, scale: str | None = None, seed: int = 0,
              lr: float | None = None, params: dict[str, Any] | None = None,
              model_options: dict[str, Any] | None = None, dataset_options: dict[str, Any] | None = None,
              plugins: Sequence[str] = (), accelerator: str = "auto") -> ExperimentConfig:
    """One validated experiment configuration (nothing is trained or written).

    ``protocol`` is a name (``fair``, ``quick``, ``paper-<name>`` at ``scale``) or a ``Protocol`` object;
    a name gets the named data recipe of its (dataset, model) pair. ``lr`` picks one of the protocol's
    learning-rate candidates (default: the first). Raises UnknownNameError, ParamError, ProtocolError,
    BudgetError or PluginError with one clear line.
    """
    load_plugins(plugins, entry_points=False)
    check_method(method)
    model, data = model_name(model), data_name(data)
    params = dict(params or {})
    methods.build(method, params)  # parameter schema check before any work
    if isinstance(protocol, str):
        protocol = get_protocol(protocol, scale).for_data(data, model)
    check_budget(protocol, method, params)
    # float(ratio): 2 and 2.0 are one operating point and must hash alike (the CLI parses floats).
    return ExperimentConfig.for_protocol(protocol, lr=lr, method=method, dataset=data, model=model, ratio=float(ratio),
                                         seed=seed, method_params=params, dataset_options=dict(dataset_options or {}),
                                         model_options=dict(model_options or {}), accelerator=accelerator,
                                         plugins=tuple(dict.fromkeys(plugins)))


def check_method(method: str) -> None:
    """Raise UnknownNameError, listing the registered methods, for a name that is not one."""
    if method not in methods.list_methods():
        raise UnknownNameError(f"unknown method {method!r}; choose one of: {', '.join(methods.list_methods())}")


def best_on_validation(results: Sequence[Any]) -> list[Any]:
    """Per (ratio, seed), the result with the best validation accuracy: the protocol's selection rule over
    its learning-rate candidates (never test accuracy)."""
    best: dict[tuple[float, int], Any] = {}
    for r in results:
        key = (r.config.ratio, r.config.seed)
        if key not in best or r.metrics["val_acc_top1"] > best[key].metrics["val_acc_top1"]:
            best[key] = r
    return list(best.values())


def run_configs(configs: Sequence[ExperimentConfig], tracking: Any = None, progress: bool = False,
                arms: tuple[str, ...] = ("method",)) -> list[Any]:
    """Run configurations through the pipeline into one MLflow store; returns their ``RunResult``s."""
    from bench.pipeline import run_experiment
    from bench.tracking import Tracker

    tracker = Tracker(options=tracking) if tracking is not None else Tracker()
    return [run_experiment(config, tracker, progress=progress, arms=arms) for config in configs]


def experiment(method: str, model: ModelLike, data: DataLike, ratio: float,
               protocol: str | Protocol = DEFAULT_PROTOCOL, *, seed: int = 0, lr: float | None = None,
               params: dict[str, Any] | None = None, scale: str | None = None,
               model_options: dict[str, Any] | None = None, dataset_options: dict[str, Any] | None = None,
               plugins: Sequence[str] = (), tracking: Any = None, arms: tuple[str, ...] = ("method",),
               progress: bool = False, allow_large: bool = False) -> Any:
    """Compress ``model`` on ``data`` with ``method`` at ``ratio`` under ``protocol``, fine-tune, measure and
    track it; returns the ``bench.pipeline.RunResult`` (``metrics``, ``run_id``, ``config``, ``controls``).

    Without ``lr`` every learning-rate candidate of the protocol is run (each its own MLflow run) and the
    one with the best validation accuracy is returned. ``arms`` adds controls (``scratch``, ``shuffled``).
    Everything is checked first (``bench.preflight``); ``allow_large`` goes past its resource bounds.
    """
    protocol_obj = get_protocol(protocol, scale) if isinstance(protocol, str) else protocol
    lrs = (lr,) if lr is not None else protocol_obj.lr_candidates
    # Named once: an object's name digests its content (a DataModule is streamed), not once per candidate.
    model, data = model_name(model), data_name(data)
    configs = [configure(method, model, data, ratio, protocol, scale=scale, seed=seed, lr=candidate, params=params,
                         model_options=model_options, dataset_options=dataset_options, plugins=plugins)
               for candidate in lrs]
    from bench.preflight import check_before_work

    check_before_work(configs, allow_large=allow_large)  # the data, model, reach and stores, before any work
    return best_on_validation(run_configs(configs, tracking, progress, arms))[0]


def sweep_config(method: str, model: ModelLike, data: DataLike, protocol: str | Protocol = DEFAULT_PROTOCOL, *,
                 ratios: Sequence[float] | None = None, seeds: int | None = None, trials: int | None = None,
                 ratio_range: tuple[float, float] = (1.5, 64.0), params: dict[str, Any] | None = None,
                 scale: str | None = None, model_options: dict[str, Any] | None = None,
                 dataset_options: dict[str, Any] | None = None, plugins: Sequence[str] = (), workers: int = 1,
                 storage: str | None = None, tracking: Any = None, quiet: bool = True, progress: bool = False,
                 artifact_dir: str | None = None, accelerator: str = "auto", command: str = "") -> Any:
    """A validated ``bench.sweep.SweepConfig``: a grid over ``ratios`` (default: the protocol's operating
    points) × the protocol's lr candidates × ``seeds``, or ``trials`` TPE trials over ``ratio_range``."""
    from bench.sweep import SweepConfig
    from bench.tracking import TrackingOptions

    if workers > 1 and not (isinstance(model, str) and isinstance(data, str)):
        raise ValueError("models and data given as objects live in this process only; use workers=1, or register "
                         "them in a plugin module and pass its name in plugins")
    model, data = model_name(model), data_name(data)  # named once (objects are digested)
    protocol_obj = get_protocol(protocol, scale).for_data(data, model) if isinstance(protocol, str) else protocol
    overrides = {k: v for k, v in {"ratios": tuple(float(r) for r in ratios) if ratios else None,
                                   "seeds": seeds}.items() if v is not None}
    protocol_obj = protocol_obj.with_overrides(**overrides) if overrides else protocol_obj
    template = configure(method, model, data, protocol_obj.ratios[0], protocol_obj, params=params,
                         model_options=model_options, dataset_options=dataset_options, plugins=plugins,
                         accelerator=accelerator)
    return SweepConfig(template=template, mode="tpe" if trials is not None else "grid", ratios=protocol_obj.ratios,
                       ratio_range=tuple(ratio_range), trials=trials, seeds=protocol_obj.seeds, storage=storage,
                       workers=workers, quiet=quiet, progress=progress, tracking=tracking or TrackingOptions(),
                       artifact_dir=artifact_dir, command=command)


def sweep(method: str, model: ModelLike, data: DataLike, protocol: str | Protocol = DEFAULT_PROTOCOL,
          allow_large: bool = False, **options: Any) -> Any:
    """Run (or resume) the Optuna study of ``sweep_config(method, model, data, protocol, **options)``;
    returns its ``bench.sweep.SweepSummary`` (study name, MLflow parent run id, trial counts, Pareto front).
    Everything is checked first (``bench.preflight``); ``allow_large`` goes past its resource bounds."""
    from bench.preflight import check_before_work
    from bench.sweep import run_sweep

    cfg = sweep_config(method, model, data, protocol, **options)
    check_before_work([cfg.template], cfg, allow_large=allow_large)  # before any work
    return run_sweep(cfg)
