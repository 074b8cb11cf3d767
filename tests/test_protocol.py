"""The comparison protocol: equal budgets counted in optimiser steps, refusals, control arms, and run lookup
by recorded tags. Real Lightning training, real MLflow and Optuna stores (SQLite in a temporary folder)."""
from __future__ import annotations

import dataclasses
from collections import Counter

import optuna
import pytest
import torch

import methods
from bench import controls
from bench.controls.masks import masks_of
from bench.budget import BudgetError
from bench.cli import main
from bench.config import ExperimentConfig
from bench.figures import tidy_runs
from bench.pipeline import load_data, run_experiment
from bench.protocol import FAIR, QUICK, Protocol, ProtocolError
from bench.protocol_registry import get_protocol
from bench.recipes import TrainRecipe
from bench.sweep import SweepConfig, run_sweep
from bench.tracking import Tracker
from bench.training import steps_per_epoch
from bench.verdict import select_on_validation

# A small equal-budget protocol: 2 dense epochs, E = 2 epochs on top, one candidate (two where tuning is tested).
TINY = dataclasses.replace(FAIR, name="tiny-fair", baseline=TrainRecipe(epochs=2, batch_size=64),
                           finetune=TrainRecipe(epochs=2, lr=3e-3, batch_size=64, schedule="cosine"),
                           extra_epochs=2, lr_candidates=(3e-3,), ratios=(2.0, 4.0))


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSION_BENCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _config(method: str, protocol: Protocol = TINY, **kw) -> ExperimentConfig:
    base = dict(dataset="digits", model="mlp", model_options={"widths": (32, 16)}, method=method, ratio=4.0,
                latency_repeats=2)
    base.update(kw)
    return ExperimentConfig.for_protocol(protocol, **base)


@pytest.fixture
def counted_steps(monkeypatch):
    """Every optimiser step taken in the process (Adam and SGD), counted where it happens."""
    counter = Counter()
    for cls in (torch.optim.Adam, torch.optim.SGD):
        original = cls.step

        def step(self, *a, _original=original, **k):
            counter["steps"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(cls, "step", step)
    return counter


def _steps_of(config: ExperimentConfig, counter: Counter, **kw):
    from bench.baseline import ensure_baseline
    from bench.pipeline import ensure_control, load_data

    # The baseline and the dense + fine-tune control first: their steps are not the arm's.
    tracker, data = Tracker(), load_data(config)
    ensure_control(tracker, config, ensure_baseline(config, data)[0], data)
    before = counter["steps"]
    result = run_experiment(config, tracker, **kw)
    return result, counter["steps"] - before


# ---------------------------------------------------------------- the protocol object

def test_protocol_hash_names_content_not_prose():
    reworded = dataclasses.replace(FAIR, summary="other words")
    assert reworded.hash == FAIR.hash
    assert dataclasses.replace(FAIR, extra_epochs=7).hash != FAIR.hash
    assert dataclasses.replace(FAIR, finetune=dataclasses.replace(FAIR.finetune, optimizer="sgd")).hash != FAIR.hash
    # The plan (seeds, points, candidates) is not what a run is: runs of wider plans pool with narrower ones.
    assert dataclasses.replace(FAIR, seeds=5, ratios=(4.0,), lr_candidates=(1e-3,)).hash == FAIR.hash
    assert FAIR.hash != QUICK.hash and len(FAIR.hash) == 10
    assert get_protocol("fair") is FAIR
    with pytest.raises(ProtocolError, match="choose one of: fair, quick"):
        get_protocol("nope")
    with pytest.raises(ProtocolError, match="unknown control"):
        dataclasses.replace(FAIR, controls=("ensemble",))


def test_scratch_recipe_is_baseline_plus_extra_under_an_equal_budget():
    cfg = ExperimentConfig.for_protocol(FAIR, lr=3e-3)
    assert (cfg.finetune.epochs, cfg.finetune.lr, cfg.finetune.schedule) == (FAIR.extra_epochs, 3e-3, "cosine")
    scratch = cfg.scratch_recipe()
    assert scratch.epochs == FAIR.baseline.epochs + FAIR.extra_epochs and scratch.lr == 3e-3
    assert ExperimentConfig.for_protocol(QUICK).scratch_recipe() == QUICK.baseline  # the old lma/multihash default


# ---------------------------------------------------------------- equal budgets

def test_iterative_and_adaptive_methods_spend_exactly_a_one_shot_budget(results, counted_steps):
    """Counted at the optimiser, not from the ledger: one-shot, 3-round iterative and 4-round SAP arms take the
    same number of steps, E epochs' worth, and every arm reports the same epochs from initialisation."""
    one_shot = _config("magnitude")
    spe = steps_per_epoch(len(load_data(one_shot).train_y), 64)
    expected = TINY.extra_epochs * spe
    seen = {}
    for name, cfg in {
        "one-shot": one_shot,
        "iterative": _config("magnitude", method_params={"schedule": "iterative", "rounds": 3}),
        "sap": _config("sap", method_params={"rounds": 4}),
        "coreset": _config("coreset"),  # fine-tunes after each pruned layer
    }.items():
        result, steps = _steps_of(cfg, counted_steps)
        seen[name] = (steps, result.metrics["train_epochs_total"])
    assert {name: s for name, (s, _) in seen.items()} == {name: expected for name in seen}
    assert {e for _, e in seen.values()} == {TINY.baseline.epochs + TINY.extra_epochs}


def test_train_time_methods_train_baseline_plus_extra_from_scratch(results, counted_steps):
    cfg = _config("multihash")
    result, steps = _steps_of(cfg, counted_steps)
    spe = steps_per_epoch(len(load_data(cfg).train_y), 64)
    assert steps == (TINY.baseline.epochs + TINY.extra_epochs) * spe  # and no fine-tune after it
    assert result.metrics["train_epochs_total"] == TINY.baseline.epochs + TINY.extra_epochs


def test_a_configuration_over_budget_is_refused_and_nothing_is_tracked(results):
    cfg = _config("lma", method_params={"epochs": 9})  # 9 > 2 + 2 epochs from init
    with pytest.raises(BudgetError, match="protocol allows 4 .* leave the method's training parameters"):
        run_experiment(cfg)
    assert Tracker().runs_frame().empty or "compressed" not in set(Tracker().runs_frame()["tags.kind"])
    under = _config("lma", method_params={"epochs": 1})  # under-spending is unequal too
    with pytest.raises(BudgetError, match="exactly 4"):
        run_experiment(under)


def test_the_cli_refuses_a_pinned_budget_with_one_line_and_exit_2(results, capsys):
    code = main(["run", "--method", "lma", "--ratio", "4", "--dataset", "digits", "--model", "mlp",
                 "--param", "epochs=30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "equal budget" in err[0] and "--protocol quick" in err[0]
    assert not (results / "mlflow.db").exists()


def test_a_method_that_fine_tunes_more_often_than_it_planned_is_refused(results, monkeypatch):
    monkeypatch.setattr(methods.get("magnitude"), "planned_finetunes", lambda self, model, ratio: 1)
    cfg = _config("magnitude", method_params={"schedule": "iterative", "rounds": 3})  # calls finetune twice
    with pytest.raises(BudgetError, match="more often than the 1 times"):
        run_experiment(cfg)


def test_the_quick_protocol_keeps_the_old_unequal_accounting(results):
    cfg = _config("magnitude", protocol=QUICK, baseline=TrainRecipe(epochs=2, batch_size=64),
                  finetune=TrainRecipe(epochs=1, lr=1e-4, batch_size=64),
                  method_params={"schedule": "iterative", "rounds": 3})
    m = run_experiment(cfg).metrics
    # Two in-method fine-tunes and the final one, each a whole fine-tune: the budget grows with the rounds.
    assert (m["finetune_epochs_in_method"], m["finetune_epochs_total"], m["train_epochs_total"]) == (2, 3, 5)


# ---------------------------------------------------------------- control arms

def test_shuffled_control_keeps_each_layers_density_at_other_positions(results):
    result = run_experiment(_config("magnitude", protocol=dataclasses.replace(TINY, controls=("shuffled",))),
                            arms=("method", "shuffled"))
    (control,) = result.controls
    assert control.arm == "shuffled" and control.metrics["compression_ratio"] == pytest.approx(
        result.metrics["compression_ratio"])
    assert control.metrics["train_epochs_total"] == result.metrics["train_epochs_total"]


def test_shuffled_masks_are_permutations_per_tensor(tiny_data):
    from bench.models import create_model
    from tests.conftest import make_context

    dense = create_model("mlp", tiny_data.input_shape, tiny_data.num_classes, seed=0, widths=(32, 16))
    pruned = methods.build("magnitude").compress(__import__("copy").deepcopy(dense), 4.0, make_context(tiny_data))
    shuffled = controls.get_control("shuffled").derive(pruned, dense, 0)
    before, after = masks_of(pruned), masks_of(shuffled)
    assert before.keys() == after.keys()
    for key in before:
        assert int(before[key].sum()) == int(after[key].sum())  # same density per layer
        assert not torch.equal(before[key], after[key])  # at other positions
    assert masks_of(controls.get_control("shuffled").derive(pruned, dense, 0)).keys() == after.keys()
    assert all(torch.equal(after[k], masks_of(controls.get_control("shuffled").derive(pruned, dense, 0))[k]) for k in after)


def test_scratch_control_keeps_the_architecture_and_redraws_the_weights(tiny_data):
    from bench.models import create_model
    from tests.conftest import make_context

    dense = create_model("mlp", tiny_data.input_shape, tiny_data.num_classes, seed=0, widths=(32, 16))
    small = methods.build("coreset", {"finetune_each_layer": False}).compress(
        __import__("copy").deepcopy(dense), 4.0, make_context(tiny_data))
    fresh = controls.get_control("scratch").derive(small, dense, 0)
    shapes = [p.shape for p in small.parameters()]
    assert [p.shape for p in fresh.parameters()] == shapes
    assert all(not torch.equal(a, b) for a, b in zip(small.parameters(), fresh.parameters()) if a.dim() > 1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), controls.get_control("scratch").derive(small, dense, 0).parameters()))
    with pytest.raises(methods.CompressionError, match="masked"):
        controls.get_control("scratch").derive(methods.build("magnitude").compress(
            __import__("copy").deepcopy(dense), 4.0, make_context(tiny_data)), dense, 0)


def test_arms_follow_the_method_structure():
    names = ("scratch", "shuffled")
    assert controls.applicable_arms(methods.build("coreset"), names) == ("method", "scratch")
    assert controls.applicable_arms(methods.build("lma"), names) == ("method", "scratch")
    assert controls.applicable_arms(methods.build("magnitude"), names) == ("method", "shuffled")
    assert controls.applicable_arms(methods.build("magnitude", {"random": True}), names) == ("method",)
    assert controls.applicable_arms(methods.build("multihash"), names) == ("method",)
    assert controls.applicable_arms(methods.build("sap"), ()) == ("method",)


# ---------------------------------------------------------------- sweeps, tags and lookup

def test_a_fair_sweep_tags_every_run_and_tunes_every_arm_on_validation(results):
    # every-seed tuning, the lr alone (tests/test_tuned_protocol.py covers fair's own seed-0 tuning of settings)
    protocol = dataclasses.replace(TINY, lr_candidates=(1e-3, 1e-2), ratios=(4.0,), tuning="every-seed", settings=1)
    template = _config("coreset", protocol=protocol, method_params={"finetune_each_layer": False})
    cfg = SweepConfig(template=template, ratios=protocol.ratios, seeds=1, quiet=True)
    run_sweep(cfg)
    study = optuna.load_study(study_name=cfg.study_name(), storage=f"sqlite:///{results / 'optuna.db'}")
    assert protocol.label in cfg.study_name()
    assert sorted((t.params["ratio"], t.params["lr"]) for t in study.trials) == [(4.0, 1e-3), (4.0, 1e-2)]
    runs = tidy_runs(Tracker())
    tuned = runs[runs["kind"].isin(["compressed", "control"])]
    assert set(tuned["protocol"]) == {"tiny-fair"} and set(tuned["protocol_hash"]) == {protocol.hash}
    assert Counter(zip(tuned["kind"], tuned["arm"])) == {("compressed", "method"): 2, ("compressed", "scratch"): 2,
                                                        ("control", "method"): 2}
    assert set(tuned["train_epochs_total"]) == {protocol.baseline.epochs + protocol.extra_epochs}
    chosen = select_on_validation(runs)
    for arm, group in chosen[chosen["kind"] == "compressed"].groupby("arm"):
        candidates = tuned[(tuned["kind"] == "compressed") & (tuned["arm"] == arm)]
        assert group["val_acc_top1"].iloc[0] == candidates["val_acc_top1"].max()


def test_run_lookup_survives_a_change_of_a_method_default(results, monkeypatch):
    run_experiment(_config("magnitude"))
    run_experiment(_config("magnitude", method_params={"scope": "layer"}))
    before = sorted(tidy_runs(Tracker()).query("kind == 'compressed'")["variant"])
    assert before == ["magnitude", "magnitude (scope=layer)"]

    @dataclasses.dataclass(frozen=True)
    class LayerByDefault(methods.get("magnitude")):  # tomorrow's default: layer-wise
        scope: str = "layer"

    monkeypatch.setattr(methods, "get", lambda name: LayerByDefault if name == "magnitude" else methods._METHODS.get(name))
    assert sorted(tidy_runs(Tracker()).query("kind == 'compressed'")["variant"]) == before


def test_unreachable_points_are_recorded_once_and_not_retried(results):
    protocol = dataclasses.replace(TINY, ratios=(4.0, 1000.0))
    cfg = SweepConfig(template=_config("magnitude", protocol=protocol), ratios=protocol.ratios, seeds=1, quiet=True)
    run_sweep(cfg)
    run_sweep(cfg)  # resumed: the unreachable point is not tried again
    study = optuna.load_study(study_name=cfg.study_name(), storage=f"sqlite:///{results / 'optuna.db'}")
    # fair tunes magnitude's two settings (global, layer) on seed 0: at 4x two tune trials and the confirm one;
    # at 1000x each settings candidate is out of reach once, and there is nothing to confirm
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 3, "PRUNED": 2}
    runs = tidy_runs(Tracker())
    unreachable = runs[runs["kind"] == "unreachable"]
    assert len(unreachable) == 2 and unreachable["error"].str.contains("out of reach").all()
    assert set(unreachable["requested_ratio"]) == {1000.0}
    assert set(unreachable["settings"]) == {"defaults", "scope=layer"}


def test_named_data_recipes_reach_the_runs_through_the_protocol():
    """`run --dataset cifar10 --model resnet20` trains the dense ResNet with the papers' SGD recipe, and
    every fine-tune takes its shape; the run's params name the recipe. Other data keep the protocol as is."""
    from bench.cli import build_parser, configs_from_args
    from bench.recipes import RECIPES

    def config(dataset: str, model: str, *extra: str):
        args = build_parser().parse_args(["run", "--dataset", dataset, "--model", model, "--ratio", "4", *extra])
        return configs_from_args(args)[0]

    cifar = config("cifar10", "resnet20")
    baseline, finetune = RECIPES["cifar10-resnet"]
    assert cifar.baseline == baseline and cifar.scratch_recipe().optimizer == "sgd"
    assert (cifar.finetune.optimizer, cifar.finetune.weight_decay, cifar.finetune.momentum) == (
        finetune.optimizer, finetune.weight_decay, finetune.momentum)
    assert cifar.finetune.epochs == FAIR.extra_epochs and cifar.lr == FAIR.lr_candidates[0]  # the protocol's plan
    assert cifar.params()["protocol.recipe"] == "cifar10-resnet" and cifar.protocol.hash != FAIR.hash
    assert config("cifar100", "vgg16").baseline == RECIPES["cifar100-vgg"][0]
    plain = config("fashion-mnist", "lenet300")
    assert plain.protocol == FAIR and "protocol.recipe" not in plain.params()
    # a paper protocol keeps the paper's own recipe
    assert config("cifar10", "resnet32", "--protocol", "paper-multihash").protocol.recipe == ""
