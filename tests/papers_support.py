"""Small real stores for the paper-figure tests (``tests/test_papers_*.py``): tiny-budget experiment configs,
a scratch results folder, grids of ``run_experiment`` calls, and references computed straight from the runs,
never through the paper modules."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pytest

from bench.config import ExperimentConfig
from bench.recipes import TrainRecipe


def tiny_config(dataset: str, model: str, method: str, ratio: float, seed: int, params: dict[str, Any],
                epochs: int = 1, finetune_epochs: int = 1, **options: Any) -> ExperimentConfig:
    """One run on a tiny budget (batch 64, two latency repeats); ``options`` (``model_options``,
    ``accelerator``, ...) go to ``ExperimentConfig.create`` unchanged. The dense baseline trains at lr 1e-2:
    at the default 1e-3 one or two epochs leave a constant-class model on ``synthetic`` (69 % one class), a
    baseline at chance that the suite refuses as known wrong (lenet300 needs 2 epochs even at 1e-2)."""
    return ExperimentConfig.create(
        dataset=dataset, model=model, method=method, ratio=ratio, seed=seed, method_params=dict(params),
        baseline=TrainRecipe(epochs=epochs, batch_size=64, lr=1e-2), finetune=TrainRecipe(epochs=finetune_epochs, batch_size=64),
        latency_repeats=2, **options)


@contextmanager
def scratch_store(root: Path) -> Iterator[Any]:
    """A ``Tracker`` on a fresh store under ``root``; ``COMPRESSION_BENCH_RESULTS`` points there (and no
    ``MLFLOW_TRACKING_URI`` is set) until the block ends."""
    from bench.tracking import Tracker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSION_BENCH_RESULTS", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield Tracker()


def run_grid(tracker: Any, configure: Callable[[float, int], ExperimentConfig], ratios: Sequence[float],
             seeds: Sequence[int]) -> list[str]:
    """``run_experiment(configure(ratio, seed))`` for every ratio, then every seed; the run ids in that order."""
    from bench.pipeline import run_experiment

    return [run_experiment(configure(ratio, seed), tracker).run_id for ratio in ratios for seed in seeds]


def run_labelled_grid(tracker: Any, labels: Iterable[str], ratios: Sequence[float], seeds: Sequence[int],
                      configure: Callable[[str, float, int], ExperimentConfig]) -> dict[str, str]:
    """``run_grid`` for every label in turn; {run id: the label it was made with}."""
    made: dict[str, str] = {}
    for label in labels:
        for run_id in run_grid(tracker, lambda ratio, seed: configure(label, ratio, seed), ratios, seeds):
            made[run_id] = label
    return made


def error_reference(runs: pd.DataFrame, made: dict[str, str], exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Mean / std over seeds of the test error in %, after and before fine-tuning, per (label, requested ratio),
    from the runs we made (each labelled by how it was made), leaving out the run ids in ``exclude``."""
    comp = runs[runs["run_id"].isin(set(made) - set(exclude))].copy()
    comp["label"] = comp["run_id"].map(made)
    comp["after"] = 100 * (1 - comp["acc_top1"])
    comp["before"] = 100 * (1 - comp["acc_top1_before_finetune"])
    return comp.groupby(["label", "requested_ratio"]).agg(
        after_mean=("after", "mean"), after_std=("after", "std"), before_mean=("before", "mean"),
        before_std=("before", "std"), n=("seed", "size")).reset_index()


def compressed_raw(tracker: Any) -> pd.DataFrame:
    """The compressed runs straight from MLflow (raw ``params.*`` / ``metrics.*`` / ``tags.*`` columns, not the
    tidy frame), with the requested ratio as a float in ``ratio``."""
    raw = tracker.runs_frame()
    raw = raw[raw["tags.kind"] == "compressed"].copy()
    raw["ratio"] = raw["params.requested_ratio"].astype(float)
    return raw


def parsed_experiments(name: str, scale: str = "cpu") -> list[tuple[Any, Any]]:
    """(CLI arguments, validated sweep) of every argv list of paper ``name``'s reproduction at ``scale``, after
    asserting that each runs under the paper's own protocol at that scale, with one thread."""
    from bench.cli import build_parser, sweep_from_args
    from bench.papers import experiments, list_papers
    from bench.protocol_registry import get_protocol

    assert name in list_papers()
    parser = build_parser()
    out = []
    for argv in experiments(name, scale):
        args = parser.parse_args(argv)
        assert (args.protocol, args.scale, args.threads) == (f"paper-{name}", scale, "1")
        sweep = sweep_from_args(args)
        assert sweep.template.protocol.label == get_protocol(f"paper-{name}", scale).label  # --ratios is a plan
        out.append((args, sweep))
    return out


def series_rows(table: pd.DataFrame, groups: dict[str, pd.DataFrame], n: int) -> Iterator[tuple[pd.Series, pd.DataFrame]]:
    """For every (series, requested ratio) of the runs in ``groups`` (series -> its runs): the table's one row
    for it and those runs, after asserting that there is exactly one such row and that it counts ``n`` runs."""
    for series, runs_of in groups.items():
        for ratio, g in runs_of.groupby("requested_ratio"):
            row = table[(table["series"] == series) & np.isclose(table["requested_ratio"], ratio)]
            assert len(row) == 1 and int(row["n"].iloc[0]) == len(g) == n
            yield row.iloc[0], g


def assert_files_written(written: Sequence[Path], expected_names: Iterable[str]) -> None:
    """Every expected file name is among ``written``, and every written file exists and is not empty."""
    names = {p.name for p in written}
    missing = set(expected_names) - names
    assert not missing, f"not written: {sorted(missing)}"
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
