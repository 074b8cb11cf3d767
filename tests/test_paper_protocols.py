"""Each paper's own recipe (``bench.paper_protocols``) and the mechanics it needs: rewinding to the saved
random initialisation, training per round under the protocol, stopping at convergence, halving the learning
rate on a plateau, clipping gradients, and LMA students with BatchNorm in front of the activation."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

import datasets
from bench.baseline import cache_dir, ensure_baseline
from bench.config import ExperimentConfig
from bench.paths import REPO
from bench.models import create_model
from bench.paper_protocols import PAPER_PROTOCOLS
from bench.papers import experiments, list_papers
from bench.pipeline import run_experiment
from bench.protocol import FAIR, QUICK, ProtocolError
from bench.protocol_registry import get_protocol
from bench.recipes import TrainRecipe
from bench.training import fit, steps_per_epoch
from methods.common.base import CompressionError
from methods.common.pruning import current_mask, prunable_tensors, rewind_to
from papers_support import parsed_experiments, scratch_store



@pytest.fixture(scope="module")
def digits() -> datasets.DataSplits:
    return datasets.get("digits")


# ------------------------------------------------------------------ the protocols


def test_every_paper_has_its_protocol_at_both_scales():
    assert set(PAPER_PROTOCOLS) == {f"paper-{name}" for name in list_papers()}
    for name, scales in PAPER_PROTOCOLS.items():
        paper, cpu = scales["paper"], scales["cpu"]
        assert (paper.name, cpu.name, paper.scale, cpu.scale) == (name, name, "paper", "cpu")
        assert cpu.scaled and not paper.scaled  # the cpu scale says what shrank
        assert cpu.hash != paper.hash and not paper.equal_budget
        assert cpu.scaled in cpu.caption() and "cpu scale" in cpu.caption()
        assert get_protocol(name) == cpu and get_protocol(name, "paper") == paper
        # The recipe's shape is kept: optimiser, schedule, rewinding and the stopping rule
        for a, b in ((paper.baseline, cpu.baseline), (paper.finetune, cpu.finetune)):
            assert (a.optimizer, a.schedule, a.lr, a.grad_clip, a.batch_size) == (b.optimizer, b.schedule, b.lr,
                                                                                    b.grad_clip, b.batch_size)
            assert (a.patience is None) == (b.patience is None)
        assert paper.rewind == cpu.rewind


def test_paper_protocol_params_name_the_scale_and_what_was_scaled():
    params = get_protocol("paper-sap").params()
    assert params["protocol.scale"] == "cpu" and params["protocol.rewind"] == "init"
    assert params["protocol.scaled"].startswith("E = 200 -> 2 epochs a round")
    assert params["protocol.method_recipe"] == "sap: rounds=8; lq: rounds=8"


def test_new_recipe_fields_left_at_their_defaults_keep_every_existing_hash():
    # Computed before the fields existed (the fair and quick protocols, a default configuration): tracked runs
    # and cached baselines keep their names.
    # fair itself changed on purpose when it began tuning each method's settings on seed 0 (a new hash, so
    # its runs never pool with the lr-only ones); with those two fields at their defaults it is the old fair.
    old_fair = dataclasses.replace(FAIR, settings=1, tuning="every-seed")
    assert (old_fair.label, QUICK.label) == ("fair-0e15c0980a", "quick-97b9db0fc3")
    assert FAIR.label == "fair-07ebf9f85d"
    config = ExperimentConfig.for_protocol(old_fair)
    assert (config.key(), config.baseline_key()) == ("201a52c72e692c59", "6c56e5678e0af1a7")
    assert "finetune.patience" not in config.params()
    changed = config.with_(finetune=dataclasses.replace(config.finetune, patience=2))
    assert changed.key() != config.key() and changed.params()["finetune.patience"] == 2


def test_a_paper_protocols_method_settings_are_pinned_under_the_users():
    sap = get_protocol("paper-sap")
    assert dict(ExperimentConfig.for_protocol(sap, method="sap").method_params) == {"rounds": 8}
    mine = ExperimentConfig.for_protocol(sap, method="sap", method_params={"rounds": 3, "p": 1.0, "q": 2.0})
    assert dict(mine.method_params) == {"rounds": 3, "p": 1.0, "q": 2.0}
    assert dict(ExperimentConfig.for_protocol(sap, method="magnitude").method_params) == {}


def test_scale_on_a_comparison_protocol_is_refused_with_one_line():
    with pytest.raises(ProtocolError, match="--scale applies to the paper protocols"):
        get_protocol("fair", "cpu")
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "magnitude", "--ratio", "4",
                           "--protocol", "fair", "--scale", "paper"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--scale" in proc.stderr


@pytest.mark.parametrize("paper", ["coreset", "magnitude", "sap", "lq", "surp", "lma", "multihash"])
def test_paper_scale_commands_are_valid_and_run_the_published_recipe(paper, monkeypatch):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    parsed = parsed_experiments(paper, "paper")
    assert parsed and all(s.template.protocol.scale == "paper" for _, s in parsed)


# ------------------------------------------------------------------ rewinding to the random initialisation


def test_the_baseline_cache_keeps_the_random_init(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    config = ExperimentConfig.create(dataset="digits", model="mlp", model_options={"widths": (32, 16)},
                                     baseline=TrainRecipe(epochs=1, batch_size=64), protocol=_rewinding(1, 1))
    trained, fresh = ensure_baseline(config, digits)
    assert fresh
    init = create_model("mlp", digits.input_shape, digits.num_classes, seed=0, widths=(32, 16)).state_dict()
    assert trained.init_state.keys() == init.keys()
    for key, value in init.items():
        torch.testing.assert_close(trained.init_state[key], value, rtol=0, atol=0)
    first = next(iter(init))
    assert not torch.equal(trained.model.state_dict()[first], init[first])  # the baseline did train
    # Loaded from the cache, and rebuilt (then written) when an older cache lacks the file.
    (cache_dir() / f"{config.baseline_key()}.init.pt").unlink()
    cached, fresh = ensure_baseline(config, digits)
    assert not fresh and (cache_dir() / f"{config.baseline_key()}.init.pt").is_file()
    for key, value in init.items():
        torch.testing.assert_close(cached.init_state[key], value, rtol=0, atol=0)
    # A protocol that never rewinds does not read the initialisation back (every trial loads the baseline).
    assert ensure_baseline(config.with_(protocol=QUICK), digits)[0].init_state is None


def test_rewind_puts_the_survivors_back_to_their_init_and_keeps_pruned_weights_zero():
    from torch.nn.utils import prune

    net = create_model("mlp", (1, 8, 8), 4, seed=3, widths=(16, 8))
    init = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # "trained"
    for module, name in prunable_tensors(net):
        prune.random_unstructured(module, name, amount=0.6)
    rewind_to(net, init)
    net(torch.zeros(1, 1, 8, 8))  # refresh the masked weights
    for path, module in net.named_modules():
        for name, param in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if name.endswith("_mask"):
                continue
            base = name.removesuffix("_orig")
            torch.testing.assert_close(param, init[f"{path}.{base}"], rtol=0, atol=0)
    for module, name in prunable_tensors(net):
        mask = current_mask(module, name).bool()
        weight = getattr(module, name)
        assert (weight[~mask] == 0).all()
        torch.testing.assert_close(weight[mask], init[f"{_path(net, module)}.{name}"][mask], rtol=0, atol=0)


def _path(net: nn.Module, module: nn.Module) -> str:
    return next(p for p, m in net.named_modules() if m is module)


def test_rewinding_a_structurally_pruned_model_is_refused():
    net = create_model("mlp", (1, 8, 8), 4, seed=0, widths=(16, 8))
    init = net.state_dict()
    smaller = create_model("mlp", (1, 8, 8), 4, seed=0, widths=(8, 8))
    with pytest.raises(CompressionError, match="cannot rewind"):
        rewind_to(smaller, init)


def _rewinding(epochs: int, finetune_epochs: int, **kw):
    base = get_protocol("paper-sap")
    recipe = dataclasses.replace(base.baseline, epochs=epochs, batch_size=64)
    return dataclasses.replace(base, baseline=recipe, finetune=dataclasses.replace(recipe, epochs=finetune_epochs),
                               method_recipe=(), **kw)


def test_under_a_rewinding_protocol_the_final_model_starts_from_the_init(tmp_path, digits, monkeypatch):
    # No training after the rewind: every surviving weight (and every bias) of the final model must equal the
    # saved init exactly, and pruned weights stay zero. The final model is the one the pipeline measures.
    import bench.records as records  # where each tracked run calls measure

    measured = []
    real_measure = records.measure
    # measure gets the model's shared forms (bench.export.Forms); the model itself is ``forms.model``.
    monkeypatch.setattr(records, "measure", lambda dense, forms, *a: measured.append(forms.model) or real_measure(dense, forms, *a))
    config = ExperimentConfig.for_protocol(_rewinding(3, 0), dataset="digits", model="mlp", method="magnitude",
                                           ratio=4.0, model_options={"widths": (32, 16)}, latency_repeats=2)
    with scratch_store(tmp_path) as tracker:
        result = run_experiment(config, tracker)
        baseline, _ = ensure_baseline(config, digits)
    model = measured[-1]
    model(digits.val_x[:2])  # refresh the masked weights
    checked = 0
    for path, module in model.named_modules():
        for name, value in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if name.endswith("_mask"):
                continue
            base = name.removesuffix("_orig")
            torch.testing.assert_close(value, baseline.init_state[f"{path}.{base}"], rtol=0, atol=0)
            if name.endswith("_orig"):
                mask = getattr(module, f"{base}_mask").bool()
                assert 0 < mask.float().mean() < 1 and (getattr(module, base)[~mask] == 0).all()
                checked += 1
    assert checked == len(prunable_tensors(baseline.model))
    # Before the final training the pruned *trained* weights were measured: better than the untrained init.
    assert result.metrics["acc_top1_before_finetune"] > result.metrics["acc_top1"]


# ------------------------------------------------------------------ per-round training under the protocol


def test_each_round_trains_the_protocols_full_recipe(tmp_path):
    # A paper protocol does not split a budget: each of the 3 rounds trains the whole round recipe (2 epochs),
    # the first two inside the method, the last as the pipeline's final training.
    protocol = _rewinding(1, 2)
    config = ExperimentConfig.for_protocol(protocol, dataset="digits", model="mlp", method="magnitude", ratio=8.0,
                                           model_options={"widths": (32, 16)}, latency_repeats=2,
                                           method_params={"schedule": "iterative", "rounds": 3})
    with scratch_store(tmp_path) as tracker:
        metrics = run_experiment(config, tracker).metrics
    n_train = len(datasets.get("digits").train_y)
    assert metrics["finetune_epochs_total"] == 3 * 2
    assert metrics["train_steps_charged"] == 3 * 2 * steps_per_epoch(n_train, 64)


def test_a_round_that_converges_early_is_charged_the_steps_it_took(tmp_path):
    recipe = TrainRecipe(epochs=30, lr=1e-12, batch_size=64, patience=2)  # nothing improves: stops after 3 epochs
    base = get_protocol("paper-magnitude")
    protocol = dataclasses.replace(base, baseline=TrainRecipe(epochs=1, batch_size=64), finetune=recipe,
                                   lr_candidates=(recipe.lr,), method_recipe=())
    config = ExperimentConfig.for_protocol(protocol, dataset="digits", model="mlp", method="magnitude", ratio=4.0,
                                           model_options={"widths": (32, 16)}, latency_repeats=2)
    with scratch_store(tmp_path) as tracker:
        metrics = run_experiment(config, tracker).metrics
    n_train = len(datasets.get("digits").train_y)
    assert metrics["train_steps_charged"] == 3 * steps_per_epoch(n_train, 64)
    assert metrics["finetune_epochs_total"] == 3


# ------------------------------------------------------------------ convergence, plateau, clipping


class _Epochs(Callback):
    def __init__(self) -> None:
        self.validations, self.lrs = 0, []

    def on_validation_end(self, trainer, module) -> None:
        self.validations += 1
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_convergence_rule_stops_on_a_planted_plateau(digits):
    # lr 1e-12: the weights, hence validation accuracy, cannot move; patience 2 stops after epoch 3 of 50.
    model = create_model("mlp", digits.input_shape, digits.num_classes, seed=0, widths=(32, 16))
    counter, report = _Epochs(), {}
    fit(model, TrainRecipe(epochs=50, lr=1e-12, batch_size=64, patience=2), digits, 0, report=report,
        callbacks=[counter])
    per_epoch = steps_per_epoch(len(digits.train_y), 64)
    assert counter.validations == 3 and report == {"steps": 3 * per_epoch, "epochs": 3}


def test_convergence_rule_keeps_training_while_validation_improves(digits):
    model = create_model("mlp", digits.input_shape, digits.num_classes, seed=0, widths=(32, 16))
    counter, report = _Epochs(), {}
    fit(model, TrainRecipe(epochs=4, lr=1e-3, batch_size=64, patience=1000), digits, 0, report=report,
        callbacks=[counter])
    assert counter.validations == 4 and report["epochs"] == 4  # the cap, never the patience


def test_plateau_schedule_halves_the_lr_after_flat_epochs(digits):
    model = create_model("mlp", digits.input_shape, digits.num_classes, seed=0, widths=(32, 16))
    counter = _Epochs()
    # lr 1e-6: validation accuracy stays flat (and a halving, 5e-7, is above ReduceLROnPlateau's eps of 1e-8)
    fit(model, TrainRecipe(epochs=5, lr=1e-6, batch_size=64, optimizer="sgd", schedule="plateau",
                           plateau_patience=1), digits, 0, callbacks=[counter])
    # ReduceLROnPlateau(patience=1): epoch 1 sets the best, the second flat epoch past it halves the lr
    lrs = [lr / 1e-6 for lr in counter.lrs]
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])


def test_gradient_clipping_bounds_the_first_sgd_step(digits):
    model = create_model("mlp", digits.input_shape, digits.num_classes, seed=0, widths=(32, 16))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(model, TrainRecipe(epochs=1, lr=1.0, batch_size=len(digits.train_y), optimizer="sgd", momentum=0.0,
                           grad_clip=1e-3, select_on_val=False), digits, 0)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 * (1 + 1e-5)  # one step of lr 1 on a gradient of norm <= 1e-3


# ------------------------------------------------------------------ LMA students with BatchNorm


def test_lma_cnn_student_puts_batchnorm_before_each_lma_and_starts_as_relu():
    from methods.lma import LMA
    from methods.lma import build_student

    teacher = create_model("cnn", (1, 16, 16), 4, seed=0, channels=(8, 16, 16))
    student = build_student(teacher, 3.0, "lma", 8, seed=1)
    layers = list(student)
    lmas = [i for i, m in enumerate(layers) if isinstance(m, LMA)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert len(lmas) == len(convs) >= 3 and all(isinstance(layers[i - 1], nn.BatchNorm2d) for i in lmas)
    seen = []

    def check(module, inputs, output):
        seen.append(True)
        torch.testing.assert_close(output, torch.relu(inputs[0]), rtol=0, atol=1e-6)

    hooks = [layers[i].register_forward_hook(check) for i in lmas]
    student.train()
    student(torch.randn(32, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    for h in hooks:
        h.remove()
    assert len(seen) == len(lmas)


# ------------------------------------------------------------------ CIFAR-10 when it is there


def test_the_lma_reproduction_runs_on_cifar10_when_cifar10_dir_is_set(tmp_path):
    """The same command on CIFAR-10: a small archive in the real on-disk format (python-pickle batches)."""
    import os

    from test_cifar import make_cifar10

    make_cifar10(tmp_path / "cifar" / "cifar-10-batches-py")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(CIFAR10_DIR=str(tmp_path / "cifar"), COMPRESSION_BENCH_RESULTS=str(tmp_path / "results"),
               COMPRESSION_BENCH_DATA=str(tmp_path / "data"))
    script = ("import os, sys; from bench.papers import experiments; from bench.cli import main; "
              "argv = experiments('lma', 'cpu')[0]; print(' '.join(argv)); "
              "sys.exit(main([*argv, '--ratios', '16.7', '--seeds', '1', '--no-log-models', '--no-system-metrics']))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--dataset cifar10 --model cnn" in proc.stdout and "--protocol paper-lma --scale cpu" in proc.stdout
    from bench.figures import tidy_runs
    from bench.tracking import Tracker

    runs = tidy_runs(Tracker(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"))
    comp = runs[runs["kind"] == "compressed"]
    assert list(comp["dataset"]) == ["cifar10"] and list(comp["protocol"]) == ["paper-lma"]
    assert comp["compression_ratio"].iloc[0] == pytest.approx(16.7, rel=0.03)
