"""Plugins: outside modules register methods, models and datasets; the CLI loads them by name or entry point."""
from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from test_cli import run_cli

PLUGIN = "examples.residual_plugin"
SMALL = ["--protocol", "quick", "--epochs", "1", "--finetune-epochs", "1", "--no-log-models", "--no-system-metrics",
         "--threads", "1"]


def test_list_and_help_show_plugin_entries_with_their_origin(tmp_path):
    listed = run_cli("list", "--plugin", PLUGIN, results=tmp_path / "results")
    assert listed.returncode == 0, listed.stderr
    assert f"residual-cnn [plugin {PLUGIN}]" in listed.stdout
    assert f"digits-datamodule [plugin {PLUGIN}]" in listed.stdout
    assert "resnet20," in listed.stdout and "[plugin" not in listed.stdout.split("resnet20")[1].split("\n")[0]
    helped = run_cli("bench", "--plugin", PLUGIN, "--help", results=tmp_path / "results")
    assert helped.returncode == 0 and f"residual-cnn [plugin {PLUGIN}]" in helped.stdout
    plain = run_cli("list", results=tmp_path / "results")
    assert "residual-cnn" not in plain.stdout  # nothing leaks into a run that did not ask for the plugin


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("body,message", [
    ("raise RuntimeError('boom')\n", r"failed to import: RuntimeError: boom; fix the module or leave it out"),
    ("""
     from bench.models import register_model
     @register_model("mlp")
     def mlp(input_shape, num_classes):
         raise AssertionError
     """, r"model 'mlp' from .* is already registered by built-in; register it under another name"),
], ids=["raises", "takes-a-used-name"])
def test_a_broken_plugin_is_one_line_and_exit_2_with_nothing_written(tmp_path, body, message):
    plugin = _write(tmp_path / "broken_plugin.py", body)
    result = run_cli("run", "--plugin", str(plugin), "--ratio", "2", results=tmp_path / "results")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "results").exists()


def test_a_missing_plugin_module_says_how_to_make_it_importable(tmp_path):
    result = run_cli("bench", "--plugin", "no_such_plugin_pkg", results=tmp_path / "results")
    assert result.returncode == 2
    assert "plugin 'no_such_plugin_pkg' not found: no module named 'no_such_plugin_pkg'" in result.stderr


def test_an_installed_package_registers_through_the_entry_point_group(tmp_path):
    """A real distribution on the path (dist-info with entry_points.txt), found by importlib.metadata."""
    site = tmp_path / "site"
    site.mkdir()
    _write(site / "acme_compress.py", """
        from dataclasses import dataclass
        import methods
        from methods.magnitude import Magnitude

        @methods.register("acme-magnitude")
        @dataclass(frozen=True)
        class AcmeMagnitude(Magnitude):
            '''Global magnitude under another name: a method from an installed package.'''
        """)
    info = site / "acme_compress-0.1.dist-info"
    info.mkdir()
    _write(info / "METADATA", "Metadata-Version: 2.1\nName: acme-compress\nVersion: 0.1\n")
    _write(info / "entry_points.txt", "[compression_bench.plugins]\nacme = acme_compress\n")
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("list", results=tmp_path / "results", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    line = next(l for l in listed.stdout.splitlines() if l.strip().startswith("acme-magnitude"))
    assert line.endswith("[plugin acme_compress]")
    _write(info / "entry_points.txt", "[compression_bench.plugins]\nacme = acme_missing_module\n")
    broken = run_cli("list", results=tmp_path / "results", env_extra=env)
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: plugin entry point 'acme' (acme_missing_module) failed to import")


def _runs(store: Path) -> list[tuple[str, str, str]]:
    """(experiment, model param, plugins param or '') of every run in an MLflow SQLite store, read with sqlite3."""
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT e.name, (SELECT value FROM params p WHERE p.run_uuid = r.run_uuid AND p.key = 'model'), "
            "COALESCE((SELECT value FROM params p WHERE p.run_uuid = r.run_uuid AND p.key = 'plugins'), '') "
            "FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id").fetchall()


@pytest.mark.slow
def test_plugin_runs_sit_beside_built_in_runs_and_spawned_workers_load_the_plugin(tmp_path):
    results = tmp_path / "results"
    builtin = run_cli("run", "--dataset", "digits", "--model", "mlp", "--model-option", "widths=(16,)", "--ratio", "2",
                      "--finetune-lr", "1e-3", *SMALL, results=results, timeout=300)
    assert builtin.returncode == 0, builtin.stderr
    # Two spawned workers start with the built-in registries only: each must load the plugin itself.
    plugged = run_cli("bench", "--plugin", PLUGIN, "--model", "residual-cnn", "--model-option", "channels=4",
                      "--dataset", "digits-datamodule", "--method", "magnitude", "--ratios", "2,4", "--seeds", "1",
                      "--finetune-lr", "1e-3", "--workers", "2", "--quiet", *SMALL, "--epochs", "3", results=results,
                      timeout=600)  # 3 epochs: after 1 this 4-channel network is no better than chance (refused)
    assert plugged.returncode == 0, plugged.stderr
    assert "2 complete, 0 failed trials" in plugged.stdout
    runs = _runs(results / "mlflow.db")
    assert ("digits/mlp", "mlp", "") in runs
    assert sum(r == ("digits-datamodule/residual-cnn", "residual-cnn", PLUGIN) for r in runs) >= 2
