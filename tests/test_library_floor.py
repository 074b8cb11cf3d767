"""The library floor: ``methods`` and ``datasets`` (and the vocabulary they share) stand without the runner.

A user can ``import methods`` in their own training code and compress a model with a minimal Context; the
runner (pipeline, sweeps, tracking, Lightning training, figures, papers) is only ever imported above them.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.paths import REPO

# The shared vocabulary under bench/ that the library may use: the registry, models and the classifier rule,
# parameter counting and the other metrics, export (baking masks), training recipes as plain data, content
# hashing of dataclasses, where the repository is, and plugin loading. Every other bench module is the runner.
FLOOR = {"bench", "bench.registry", "bench.models", "bench.metrics", "bench.export", "bench.recipes", "bench.content",
         "bench.paths", "bench.plugins"}
LIBRARY_FILES = sorted([*REPO.glob("methods/**/*.py"), *REPO.glob("datasets/**/*.py"),
                        *(REPO / "bench" / f"{m.split('.')[1]}.py" for m in FLOOR if "." in m)])
# The runner's own dependencies: the library never imports them (scikit-learn's loaders may pull in pandas
# when the digits dataset is read; that is theirs, so only the static check covers pandas and matplotlib).
RUNNER_PACKAGES = ("mlflow", "optuna", "optuna_dashboard")
STATIC_ONLY = ("matplotlib", "pandas")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_floor_files_are_found():
    names = {p.relative_to(REPO).as_posix() for p in LIBRARY_FILES}
    assert {"methods/coreset.py", "methods/common/unit_groups.py", "datasets/loaders.py", "bench/models.py"} <= names


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_library_imports_nothing_from_the_runner(path):
    upward = sorted(m for m in _imports(path)
                    if (m.startswith("bench.") and m not in FLOOR and m.rsplit(".", 1)[0] not in FLOOR)
                    or m.split(".")[0] in ("examples", *RUNNER_PACKAGES, *STATIC_ONLY))
    assert not upward, f"{path.relative_to(REPO)} imports the runner: {upward}"


def test_the_static_check_would_catch_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bench.pipeline import run_experiment\n    import mlflow\n")
    assert {"bench.pipeline", "mlflow"} <= _imports(bad)


MINIMAL_USE = """
import json, sys
import torch
import methods
from bench.models import create_model
from bench.metrics import params_effective, params_total

model = create_model("lenet300", (1, 28, 28), 10, seed=0)
out = {}
for name, params in (("magnitude", {}), ("coreset", {"finetune_each_layer": False})):
    small = methods.build(name, params).compress(create_model("lenet300", (1, 28, 28), 10, seed=0), 8,
                                                 methods.Context(seed=0))
    out[name] = params_total(model) / params_effective(small)
try:
    methods.build("lma", {}).compress(model, 8, methods.Context(seed=0))
except methods.CompressionError as e:
    out["lma"] = str(e)
import datasets
datasets.get("digits")
out["modules"] = sorted(sys.modules)
print(json.dumps(out))
"""


def test_methods_run_in_a_users_own_code_with_a_minimal_context():
    result = subprocess.run([sys.executable, "-c", MINIMAL_USE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert abs(out["magnitude"] / 8 - 1) <= 0.03 and abs(out["coreset"] / 8 - 1) <= 0.03
    assert "give its Context a fit callable" in out["lma"]  # a method that must train says so
    loaded = set(out["modules"])
    runner = sorted(m for m in loaded if (m.startswith("bench.") and m not in FLOOR)
                    or m.split(".")[0] in RUNNER_PACKAGES)
    assert not runner, f"using methods and datasets loaded runner modules: {runner}"


def test_a_plain_module_of_the_users_own_is_compressed_with_a_minimal_context():
    """No registry, no create_model: the classifier rule finds ``fc``; the dependency graph needs the input shape."""
    import methods
    from bench.metrics import params_effective, params_total
    from examples.residual_plugin import ResidualCNN

    model = ResidualCNN((1, 8, 8), 10, channels=8)
    dense = params_total(model)
    with pytest.raises(methods.CompressionError, match=r"set model.input_shape = \(C, H, W\)"):
        methods.build("coreset", {"finetune_each_layer": False}).compress(model, 4, methods.Context(seed=0))
    model.input_shape = (1, 8, 8)
    pruned = methods.build("coreset", {"finetune_each_layer": False}).compress(model, 4, methods.Context(seed=0))
    assert abs(dense / params_total(pruned) / 4 - 1) <= 0.03 and pruned.fc.out_features == 10
    masked = methods.build("magnitude", {}).compress(ResidualCNN((1, 8, 8), 10, channels=8), 4, methods.Context(seed=0))
    assert abs(dense / params_effective(masked) / 4 - 1) <= 0.03
    assert not hasattr(masked.fc, "weight_mask")  # the classifier is never pruned
