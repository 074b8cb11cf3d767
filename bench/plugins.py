"""Plugins: outside modules that register methods, models and datasets with the public decorators.

A plugin is any importable module (or a ``.py`` file) whose import registers entries with
``methods.register``, ``bench.models.register_model`` or ``datasets.register_dataset``. It is loaded
by name (``--plugin MODULE``, ``make ... PLUGINS=MODULE``, ``ExperimentConfig.plugins``) or, for an
installed package, through the entry-point group ``compression_bench.plugins``::

    [project.entry-points."compression_bench.plugins"]
    my_suite = "my_package.bench_plugin"

Loading is idempotent (Python caches imported modules), so every process that runs an experiment (a
spawned sweep worker, say) loads the plugins its configuration names, and a second load is free.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterable

ENTRY_POINT_GROUP = "compression_bench.plugins"


class PluginError(ValueError):
    """A plugin that cannot be loaded, or that registers a name already taken; the message says which."""


def _import(spec: str) -> None:
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise PluginError(f"plugin file {spec!r} does not exist; give an importable module name or a .py file")
        module_name = f"compression_bench_plugin_{path.stem}"
        if module_name in sys.modules:
            return
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        try:
            loader.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return
    # As ``python -m`` does: modules next to where the command runs are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.import_module(spec)


def _explain(source: str, error: BaseException, module: str = "") -> PluginError:
    """One line for a plugin that could not be loaded. ``module`` is the plugin's own module name ("" for a
    ``.py`` file): a ``ModuleNotFoundError`` for that module (or a package above it) means the plugin itself was
    not found; one for any other module means the plugin was found but needs something not installed."""
    from bench.registry import DuplicateNameError

    if isinstance(error, DuplicateNameError):
        return PluginError(f"plugin {source}: {error}")
    if isinstance(error, SystemExit):  # sys.exit() at import would end the whole command, having run nothing
        return PluginError(f"plugin {source} called sys.exit({error.code!r}) while being imported; a plugin module "
                           "must only register entries: remove the exit (guard script code with "
                           "if __name__ == '__main__')")
    if isinstance(error, ModuleNotFoundError) and error.name:
        if module and (module == error.name or module.startswith(error.name + ".")):
            if source.startswith("entry point"):
                return PluginError(f"plugin {source} failed to import: its module {error.name!r} is not installed; "
                                   "reinstall the package that declares the entry point, or uninstall it")
            return PluginError(f"plugin {source} not found: no module named {error.name!r}; give an importable "
                               "module (run from the folder that holds it, or pip install its package) or a .py file")
        return PluginError(f"plugin {source} failed to import: it needs module {error.name!r}, which is not "
                           "installed; pip install the package that provides it (or the plugin's package with its "
                           "dependencies)")
    return PluginError(f"plugin {source} failed to import: {type(error).__name__}: {error}; fix the module or leave "
                       "it out")


def load_plugins(modules: Iterable[str] = (), entry_points: bool = True) -> tuple[str, ...]:
    """Import each plugin module (and, with ``entry_points``, every installed ``compression_bench.plugins``
    entry point); returns the module names given. Raises PluginError with one line for any failure."""
    loaded = []
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            # Any error in someone else's package, sys.exit() included: one clear line, not a traceback or an
            # exit status 0 for a command that ran nothing (KeyboardInterrupt still interrupts).
            except (Exception, SystemExit) as e:
                raise _explain(f"entry point {ep.name!r} ({ep.value})", e, ep.module) from None
    for spec in modules:
        try:
            _import(spec)
        except PluginError:
            raise
        except (Exception, SystemExit) as e:
            raise _explain(repr(spec), e, "" if spec.endswith(".py") else spec) from None
        loaded.append(spec)
    return tuple(loaded)
