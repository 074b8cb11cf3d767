"""Summaries over seeds: mean ± std per variant and requested ratio (errors or accuracies in %), and the
dense references' errors."""
from __future__ import annotations

from typing import Sequence

from bench.papers.text import error_pct, pm


def summarise(comp: "pandas.DataFrame", labels_in_order: Sequence[str] | None = None) -> "pandas.DataFrame":
    """Mean ± std over seeds per (variant, requested ratio): errors in %, before and after fine-tuning;
    rows in ``labels_in_order`` order, then by ratio."""
    comp = comp.assign(err_after=error_pct(comp["acc_top1"]), err_before=error_pct(comp["acc_top1_before_finetune"]))
    agg = comp.groupby(["label", "requested"], sort=False).agg(
        n_seeds=("seed", "nunique"), ratio=("compression_ratio", "mean"), params_after=("params_effective", "mean"),
        params_before=("params_total", "mean"),
        err_before_mean=("err_before", "mean"), err_before_std=("err_before", "std"),
        err_after_mean=("err_after", "mean"), err_after_std=("err_after", "std"),
    ).reset_index()
    agg["removed_pct"] = 100.0 * (1.0 - agg["params_after"] / agg["params_before"])
    order = {label: i for i, label in enumerate(dict.fromkeys(labels_in_order or []))}
    agg["_order"] = [order.get(label, len(order)) for label in agg["label"]]
    agg = agg.sort_values(["_order", "requested"]).drop(columns="_order").reset_index(drop=True)
    for col in ("err_before_std", "err_after_std"):
        agg[col] = agg[col].fillna(0.0)
    return agg


def dense_errors(dense: "pandas.DataFrame") -> dict[str, tuple[float, float, int]]:
    """(mean, std, n) test error in % of the dense baseline and the dense + fine-tune control, per seed once."""
    out = {}
    for kind in ("baseline", "control"):
        err = error_pct(dense[dense["kind"] == kind].drop_duplicates("seed")["acc_top1"])
        if len(err):
            out[kind] = (float(err.mean()), float(err.std()) if len(err) > 1 else 0.0, len(err))
    return out


def variant_accuracy_table(comp: "pandas.DataFrame", order: Sequence[str],
                           params_column: str = "params") -> "pandas.DataFrame":
    """Mean ± std over seeds (accuracy in %) per ``paper_variant`` and requested ratio; rows by ratio, then
    variants in ``order``. ``params_column`` names the mean parameter count's column."""
    comp = comp.assign(acc_pct=100 * comp["acc_top1"], before_pct=100 * comp["acc_top1_before_finetune"])
    agg = comp.groupby(["paper_variant", "requested"]).agg(
        n_seeds=("acc_pct", "size"), achieved_ratio=("compression_ratio", "mean"),
        **{params_column: ("params_effective", "mean")}, acc_mean_pct=("acc_pct", "mean"),
        acc_std_pct=("acc_pct", "std"), acc_before_finetune_pct=("before_pct", "mean"),
    ).reset_index().rename(columns={"paper_variant": "variant", "requested": "requested_ratio"})
    agg["acc_std_pct"] = agg["acc_std_pct"].fillna(0.0)
    agg["acc (mean ± std)"] = [pm(m, s) for m, s in zip(agg["acc_mean_pct"], agg["acc_std_pct"])]
    rank = {v: i for i, v in enumerate(order)}
    return agg.sort_values(["requested_ratio", "variant"], key=lambda c: c.map(rank) if c.name == "variant" else c,
                           ignore_index=True)
