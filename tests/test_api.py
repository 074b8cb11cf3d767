"""The Python API (bench.api): the same pipeline as the CLI, with models and data as names or objects."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench import api
from bench.protocol_registry import get_protocol
from bench.registry import UnknownNameError
from examples.residual_plugin import ArrayDataModule, ResidualCNN
from papers_support import scratch_store
from test_cli import run_cli

# One epoch of everything, one lr candidate: small enough for a test, still the real pipeline.
TINY = get_protocol("quick").with_overrides(lr_candidates=(1e-3,),
    baseline=dataclasses.replace(get_protocol("quick").baseline, epochs=1, batch_size=64),
    finetune=dataclasses.replace(get_protocol("quick").finetune, epochs=1, batch_size=64), extra_epochs=1)


def test_the_cli_is_a_thin_layer_over_the_api(tmp_path):
    """The same experiment through ``api.experiment`` and ``python -m bench run`` is the same configuration
    (one config key) and, trained twice from the same seed, the same numbers."""
    root = tmp_path / "results"
    with scratch_store(root):
        result = api.experiment("magnitude", "mlp", "digits", 2, "quick", lr=1e-3, model_options={"widths": (16,)},
                                params={"scope": "layer"})
    assert result.metrics["acc_top1"] > 0.5 and abs(result.metrics["compression_ratio"] / 2 - 1) <= 0.03
    cli = run_cli("run", "--method", "magnitude", "--model", "mlp", "--dataset", "digits", "--ratio", "2",
                  "--protocol", "quick", "--lr", "1e-3", "--model-option", "widths=(16,)", "--param", "scope=layer",
                  "--no-system-metrics", results=root, timeout=300)
    assert cli.returncode == 0, cli.stderr
    cli_run_id = cli.stdout.split(" run ")[-1].strip()
    assert cli_run_id != result.run_id
    with scratch_store(root) as tracker:
        cli_run = tracker.client.get_run(cli_run_id)
        api_run = tracker.client.get_run(result.run_id)
    differ = {k: (v, cli_run.data.params.get(k)) for k, v in api_run.data.params.items() if cli_run.data.params.get(k) != v}
    assert not differ
    assert cli_run.data.params["config_key"] == result.config.key()
    assert cli_run.data.metrics["acc_top1"] == result.metrics["acc_top1"]
    assert cli_run.data.metrics["val_acc_top1"] == result.metrics["val_acc_top1"]


def test_a_module_instance_and_a_datamodule_run_and_are_tracked(tmp_path):
    with scratch_store(tmp_path / "results") as tracker:
        result = api.experiment("coreset", ResidualCNN((1, 8, 8), 10, channels=4), ArrayDataModule(), 2, TINY,
                                params={"finetune_each_layer": False})
        run = tracker.client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    model_name, data_name = run.data.params["model"], run.data.params["dataset"]
    assert model_name.startswith("ResidualCNN-") and data_name.startswith("ArrayDataModule-")
    assert abs(result.metrics["compression_ratio"] / 2 - 1) <= 0.03
    # Equal objects get the same names (content digests), hence the same configuration and baseline cache.
    again = api.configure("coreset", ResidualCNN((1, 8, 8), 10, channels=4), ArrayDataModule(), 2, TINY,
                          params={"finetune_each_layer": False})
    assert again.key() == result.config.key() and again.baseline_key() == result.config.baseline_key()
    assert api.model_name(ResidualCNN((1, 8, 8), 10, channels=8)) != model_name  # another architecture


def test_an_instance_is_an_architecture_reinitialised_per_seed():
    from bench.models import create_model

    name = api.model_name(ResidualCNN((1, 8, 8), 10, channels=4))
    a, b = (create_model(name, (1, 8, 8), 10, seed=s) for s in (0, 1))
    again = create_model(name, (1, 8, 8), 10, seed=0)
    assert torch.equal(a.fc.weight, again.fc.weight) and not torch.equal(a.fc.weight, b.fc.weight)


def test_a_sweep_runs_its_grid_and_reports_its_study(tmp_path):
    with scratch_store(tmp_path / "results"):
        summary = api.sweep("magnitude", "mlp", "digits", TINY, ratios=(2, 4), seeds=1,
                            model_options={"widths": (16,)}, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert (summary.complete, summary.failed) == (2, 0)
    assert summary.study_name.startswith("magnitude/digits/mlp/")
    assert sorted(round(p["compression_ratio"]) for p in summary.pareto) in ([2], [4], [2, 4])


def test_bad_input_is_refused_before_any_work(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        api.configure("nope", "mlp", "digits")
    with pytest.raises(UnknownNameError, match="unknown dataset 'imagenet'"):
        api.configure("magnitude", "mlp", "imagenet")
    with pytest.raises(TypeError, match="model must be a registered name, a builder or an nn.Module"):
        api.configure("magnitude", 42, "digits")
    with pytest.raises(ValueError, match="objects live in this process only; use workers=1"):
        api.sweep_config("magnitude", ResidualCNN((1, 8, 8), 10), "digits", TINY, workers=2)


def test_the_controls_run_on_a_residual_network(tmp_path):
    """The scratch control re-initialises coreset's pruned ResidualCNN and trains it; the shuffled control keeps
    magnitude's per-tensor densities on it at random positions. Both stay exactly as small as the method."""
    from bench.metrics import params_effective, params_total

    with scratch_store(tmp_path / "results"):
        structured = api.experiment("coreset", "residual-cnn", "digits", 2, TINY, model_options={"channels": 4},
                                    params={"finetune_each_layer": False}, arms=("method", "scratch"))
        masked = api.experiment("magnitude", "residual-cnn", "digits", 2, TINY, model_options={"channels": 4},
                                arms=("method", "shuffled"))
    for result, arm in ((structured, "scratch"), (masked, "shuffled")):
        (control,) = result.controls
        assert control.arm == arm
        assert control.metrics["params_effective"] == result.metrics["params_effective"]
        assert control.metrics["params_total"] == result.metrics["params_total"]


def test_the_api_goes_past_the_resource_bounds_only_when_asked(tmp_path, monkeypatch):
    from bench.preflight import PreflightError

    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    artifacts = str(blocked / "artifacts")  # unwritable for anyone, root included: the next check refuses
    with pytest.raises(PreflightError, match="--seeds 20 .*allow_large=True"):
        api.sweep("magnitude", "mlp", "digits", "quick", ratios=(2,), seeds=20, artifact_dir=artifacts)
    with pytest.raises(PreflightError) as past:
        api.sweep("magnitude", "mlp", "digits", "quick", allow_large=True, ratios=(2,), seeds=20,
                  artifact_dir=artifacts)
    assert "seeds" not in str(past.value) and str(blocked) in str(past.value)
    assert not (tmp_path / "results").exists()
