"""One training budget per figure: the (baseline, fine-tune) epochs a figure's runs share, and the runs of
that budget picked per variant, so curves never mix budgets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from bench.papers.variants import Variant, VariantSpec, label_variants


@dataclass(frozen=True)
class Budget:
    """Dense-baseline epochs and the shared fine-tune epochs of one dataset's runs."""

    epochs: int
    finetune_epochs: int


def budgets_in(runs: "pandas.DataFrame", model: str) -> dict[str, Budget]:
    """Per dataset of ``model``'s compressed runs, the (baseline, fine-tune) epochs most of them used: under a
    paper protocol every run of a figure shares them."""
    import pandas as pd

    comp = runs[(runs["kind"] == "compressed") & (runs["model"] == model)]
    out = {}
    for dataset, group in comp.groupby("dataset"):
        base = pd.to_numeric(group.get("baseline.epochs"), errors="coerce").dropna()
        ft = pd.to_numeric(group.get("finetune.epochs"), errors="coerce").dropna()
        if len(base) and len(ft):
            out[str(dataset)] = Budget(int(base.mode().iloc[0]), int(ft.mode().iloc[0]))
    return out


def budget_rows(runs: "pandas.DataFrame", dataset: str, model: str, budget: Budget) -> "pandas.DataFrame":
    """Runs of the dataset/model trained with this budget (baselines have no fine-tune epochs)."""
    import pandas as pd

    sel = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    epochs = pd.to_numeric(sel.get("baseline.epochs"), errors="coerce")
    ft = pd.to_numeric(sel.get("finetune.epochs"), errors="coerce")
    ok = (epochs == budget.epochs) & ((ft == budget.finetune_epochs) | (sel["kind"] == "baseline"))
    return sel[ok]


def select_runs(runs: "pandas.DataFrame", dataset: str, model: str, budget: Budget,
                variant_list: Sequence[Variant]) -> tuple["pandas.DataFrame", "pandas.DataFrame"]:
    """(compressed runs labelled with their variant, the dense baseline and control runs).

    One run per (variant, requested ratio, seed): the store lists newest first, so a repeated
    experiment counts once, with its latest result.
    """
    sel = budget_rows(runs, dataset, model, budget)
    dense = sel[sel["kind"].isin(["baseline", "control"])]
    comp = sel[sel["kind"] == "compressed"].copy()
    labels = [next((v.label for v in variant_list if v.matches(m, p)), None)
              for m, p in zip(comp["method"], comp["method_params"])]
    comp["label"] = labels
    comp = comp[comp["label"].notna()].copy()
    comp["requested"] = comp["requested_ratio"].round(3)
    comp = comp.drop_duplicates(["label", "requested", "seed"], keep="first")
    return comp, dense


def most_frequent(values: "pandas.Series") -> Any:
    """The most frequent value; a tie goes to the largest value (so the larger budget wins)."""
    return values.value_counts().sort_index(ascending=False).idxmax()


def dense_runs(group: "pandas.DataFrame", comp: "pandas.DataFrame") -> "pandas.DataFrame":
    """The baseline and control runs behind ``comp``: same seeds, same baseline and fine-tune epochs."""
    dense = group[group["kind"].isin(["baseline", "control"]) & group["seed"].isin(comp["seed"].unique())]
    dense = dense[dense["baseline.epochs"].astype(str).isin(comp["baseline.epochs"].astype(str).unique())]
    same_ft = dense["finetune.epochs"].astype(str).isin(comp["finetune.epochs"].astype(str).unique())
    return dense[(dense["kind"] == "baseline") | same_ft]


Selected = dict[str, tuple["pandas.DataFrame", "pandas.DataFrame", str]]  # experiment -> (comp, dense, budget)


def select_per_experiment(runs: "pandas.DataFrame", variants: dict[str, VariantSpec],
                          pick_budget: Callable[["pandas.DataFrame"], tuple["pandas.DataFrame", str]]) -> Selected:
    """Per dataset/model: (compressed runs of the variants at one budget, its dense runs, the budget described).

    ``pick_budget(comp)`` keeps the runs of one budget and says which, so variants are only ever compared at
    equal budgets. Repeated runs of one configuration and seed are deterministic replicas: only one is kept.
    The variant's label is in ``paper_variant``, the rounded requested ratio in ``requested``.
    """
    if runs.empty or "method_params" not in runs:
        return {}
    runs = runs.copy()
    runs["paper_variant"] = label_variants(runs, variants)
    out = {}
    for experiment, group in runs.groupby("experiment"):
        comp = group[group["paper_variant"].notna()].copy()
        if comp.empty:
            continue
        comp, budget = pick_budget(comp)
        comp = comp.assign(requested=comp["requested_ratio"].round(3))
        comp = comp.drop_duplicates(["paper_variant", "requested", "seed"])
        out[experiment] = (comp, dense_runs(group, comp), budget)
    return out


def budget_runs(runs: "pandas.DataFrame", comp: "pandas.DataFrame") -> tuple["pandas.DataFrame", "pandas.DataFrame", str]:
    """Keep the (baseline epochs, fine-tune epochs) budget most of ``comp`` used, for compressed runs and the
    dense references alike, so curves never mix budgets. Returns (runs, comp, a caption fragment)."""
    def key(df: "pandas.DataFrame") -> "pandas.Series":
        return df["baseline.epochs"].astype(str) + "/" + df["finetune.epochs"].astype(str)

    if comp.empty or "finetune.epochs" not in comp or "baseline.epochs" not in comp:
        return runs, comp, ""
    chosen = key(comp).value_counts().index[0]
    comp = comp[key(comp) == chosen]
    base, ft = chosen.split("/")
    dense_ok = (runs["kind"] == "baseline") & (runs["baseline.epochs"].astype(str) == base)
    control_ok = (runs["kind"] == "control") & (key(runs) == chosen)
    runs = runs[dense_ok | control_ok | runs["run_id"].isin(comp["run_id"])]
    return runs, comp, f"baseline {base} epochs, fine-tune {ft} epochs"
