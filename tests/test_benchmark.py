"""``python -m bench.benchmark``: the report and CSV it writes, its timing helpers, and the lean training
and deployment paths it measures. No timing is asserted: these machines are shared and noisy."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from bench import benchmark
from bench.export import CSRLinear, deployable, lean
from bench.models import SequentialNet, create_model
from bench.recipes import TrainRecipe
from bench.training import StepGroups, TensorBatches, fit


def test_quick_run_writes_the_report_csv_and_figure(tmp_path):
    argv = ["--quick", "--out", str(tmp_path), "--dataset", "synthetic", "--methods", "magnitude,coreset",
            "--models", "lenet300", "--no-memory", "--no-tracking"]
    assert benchmark.main(argv) == 0
    report = (tmp_path / "report.md").read_text()
    for heading in ("## 1. Harness overhead", "## 2. Compress-step cost", "## 3. Deployed speed",
                    "## 4. Sweep wall time", "## 5. Memory", "## 6. Tracking cost"):
        assert heading in report
    assert (tmp_path / "speedup.png").stat().st_size > 0
    (csv_path,) = tmp_path.glob("benchmark_torch*_t2_*.csv")
    assert torch.__version__.split("+")[0] in csv_path.name
    with csv_path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == benchmark.CSV_COLUMNS
    assert {r["section"] for r in rows} == {"overhead", "compress", "scaling", "deployed", "csr", "trial", "rounds"}
    # Section 4's per-trial overhead before and after the work done once, side by side (never judged here).
    assert {r["quantity"] for r in rows if r["section"] == "trial"} == {"before_seconds", "after_seconds", "before/after"}
    assert "### Per-trial overhead" in report
    # Section 4's SAP with 30 rounds vs 3 at the same optimiser steps (issue 24): the row exists, is well-formed, and
    # both arms trained the steps it names (the section refuses to time arms whose step counts differ).
    rounds = {r["quantity"]: r for r in rows if r["section"] == "rounds"}
    assert set(rounds) == {"rounds30_seconds", "rounds3_seconds", "rounds30/rounds3", "seconds_per_extra_round"}
    assert all(float(r["median"]) > 0 for q, r in rounds.items() if q != "seconds_per_extra_round")
    assert {r["unit"] for r in rounds.values()} == {"s", "x"} and "steps per arm" in rounds["rounds30/rounds3"]["condition"]
    assert "### An iterative method's rounds" in report
    assert {r["subject"] for r in rows if r["section"] == "compress"} == {"magnitude", "coreset"}
    for r in rows:
        assert float(r["min"]) <= float(r["median"]) <= float(r["max"]) and int(r["repeats"]) >= 1
    # Coreset at 8x is a physically smaller model: its FLOPs speedup is close to the ratio.
    theory = [float(r["median"]) for r in rows if r["section"] == "deployed" and r["subject"] == "coreset"
              and r["quantity"] == "theoretical_speedup"]
    assert theory and all(6 < t < 10 for t in theory)


def test_alternate_rotates_the_arms_and_drops_the_warmup():
    calls = []

    def arm(name, value):
        def run():
            calls.append(name)
            return value
        return run

    times = benchmark.alternate({"a": arm("a", 1.0), "b": arm("b", 2.0)}, repeats=3, warmup=1)
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3}
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert benchmark.pair_ratios(times["b"], times["a"]) == [2.0] * 3


def test_fit_exponent_recovers_a_power_law():
    sizes = [1e5, 4e5, 1.6e6, 6.4e6]
    assert benchmark.fit_exponent(sizes, [3e-9 * s**1.5 for s in sizes]) == pytest.approx(1.5)
    assert benchmark.fit_exponent(sizes, [0.2] * 4) == pytest.approx(0.0)


def test_time_commands_reports_wall_time_and_memory_and_rejects_failures():
    rows = benchmark.time_commands([("true", "true")])
    assert [r.quantity for r in rows] == ["wall_seconds", "peak_rss_mib"]
    assert all(r.section == "sweep" and r.values[0] > 0 for r in rows)
    with pytest.raises(RuntimeError, match="status 3"):
        benchmark.time_commands([("fails", "exit 3")])


def test_step_groups_keep_every_batch_in_order():
    x, y = torch.arange(23.0).reshape(23, 1), torch.arange(23)
    batches = TensorBatches(x, y, 4)
    groups = list(StepGroups(batches, 2))
    assert len(groups) == len(StepGroups(batches, 2)) == 3 and [len(g) for g in groups] == [2, 2, 2]
    assert torch.equal(torch.cat([b[1] for g in groups for b in g]), y)


@pytest.mark.parametrize("recipe", [TrainRecipe(epochs=1, lr=1e-3, batch_size=32),
                                    TrainRecipe(epochs=1, lr=1e-3, batch_size=7, select_on_val=False)])
def test_fit_trains_exactly_like_a_plain_loop(tiny_data, recipe):
    """The lean Lightning path is the plain loop: same batches, same optimiser steps, bit-identical weights."""
    suite = create_model("lenet300", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    plain = create_model("lenet300", tiny_data.input_shape, tiny_data.num_classes, seed=0)
    fit(suite, recipe, tiny_data, 5, accelerator="cpu")
    benchmark.plain_epoch(plain, tiny_data, recipe, 5)
    assert all(torch.equal(a, b) for a, b in zip(suite.state_dict().values(), plain.state_dict().values()))


def _masked(density: float) -> SequentialNet:
    model = SequentialNet(nn.Flatten(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 3))
    mask = (torch.rand(100, 200, generator=torch.Generator().manual_seed(0)) < density).float()
    prune.custom_from_mask(model[1], "weight", mask)
    return model


def test_csr_only_where_it_is_smaller_and_measured_faster():
    # At density 0.2 CSR takes fewer bytes than dense but is slower (see CSR_MAX_DENSITY): dense is kept.
    from bench.export import CSR_MAX_DENSITY, csr_bytes

    middling = _masked(0.2)
    assert csr_bytes(middling[1].weight) < middling[1].weight.numel() * 4 and 0.2 > CSR_MAX_DENSITY
    assert isinstance(deployable(middling)[1], nn.Linear)
    assert isinstance(deployable(_masked(0.05))[1], CSRLinear)


@pytest.mark.parametrize("density", [1.0, 0.05])
def test_lean_forward_gives_the_deployable_outputs(density):
    model = deployable(_masked(density))
    fast = lean(model, (1, 200))
    x = torch.randn(5, 1, 200)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
    assert not math.isnan(float(fast(x).sum()))
