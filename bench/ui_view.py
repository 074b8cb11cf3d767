"""A saved view of the MLflow UI that opens one comparison: the runs of one protocol, grouped by operating point,
with the columns that matter and a chart of every group, so the link ``make ui`` prints answers "which method
wins at which size" on its first screen, without a search typed or a column picked.

MLflow 3's runs page has **saved views** ("Views" → "Save as new view": the columns, filters, sort, grouping and
charts, shared by link). The UI stores each one as an experiment tag ``mlflow.sharedViewState.<key>`` holding a
JSON envelope ``{name, createdAt, updatedAt, state}`` and opens it from ``?viewStateShareKey=<key>``; the view
appears in the experiment's "Views" menu like one a user saved. This module writes that tag through the public
``MlflowClient.set_experiment_tag``, with the state in the form the 3.17 UI writes itself (read back from a view
saved by clicking, and checked by the browser test ``tests/test_e2e_ui.py``).

What the view fixes, and why:
- ``runsHiddenMode = SHOW_ALL``: by default the UI charts only the first 10 runs or groups, so a chart of a sweep
  of 7 ratios showed two of them;
- grouped by the ``group`` tag (everything but the seed), so each chart point is the mean over seeds of one
  (method, arm, ratio) point at its chosen configuration and the table has one row per point;
- the X axis is ``log2_compression_ratio`` (1 = 2x, 7 = 128x), because on a linear ratio axis 2-16x pile up;
- a ``logged_model`` column (``models:/<id>``, a tag on every run that logged one) instead of MLflow's own
  Models column, which fetches an experiment's first 50 logged models only and is blank for most runs of a
  sweep; the Dataset column is left out too (one dataset per experiment), so the numbers fit the first screen;
- the filter keeps the runs the verdict keeps (tag ``chosen = 'yes'``, ``bench.chosen_tags``): per (method, arm,
  ratio) the configuration chosen on validation, on every seed, and the dense + fine-tune control at its chosen
  lr; not the other candidates tuned on seed 0, the sweep parents nor the baselines. Sorted by achieved ratio.
"""
from __future__ import annotations

import json
import time
from typing import Any

VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the MLflow UI's saved-view tag (3.x)
SECTION = "compression-bench"

# The runs table's columns, in the UI's own key form: what a reader needs to read a comparison off the table.
COLUMNS = (  # the answer's columns first: the first screen holds about six beside the run names
    "tags.`method`", "tags.`arm`", "tags.`requested_ratio`", "metrics.`compression_ratio`", "metrics.`acc_top1`",
    "metrics.`val_acc_top1`", "tags.`lr`", "tags.`seed`", "metrics.`theoretical_speedup`",
    "metrics.`measured_speedup`", "tags.`logged_model`",
)


def view_key(protocol_label: str) -> str:
    """The saved view's key (one per protocol of an experiment: re-saving replaces it)."""
    return f"comparison-{protocol_label}"


def comparison_state(protocol_hash: str) -> dict[str, Any]:
    """The runs page's state for one comparison (search, sort, columns, grouping, charts)."""
    chart = {"uuid": "compression-bench-front", "type": "SCATTER", "runsCountToCompare": 10_000,
             "metricSectionId": SECTION, "deleted": False, "isGenerated": False,
             "xaxis": {"key": "log2_compression_ratio", "type": "METRIC"},
             "yaxis": {"key": "acc_top1", "type": "METRIC"}}
    val_chart = {**chart, "uuid": "compression-bench-front-val", "yaxis": {"key": "val_acc_top1", "type": "METRIC"}}
    return {
        "searchFilter": f"tags.protocol_hash = '{protocol_hash}' and tags.chosen = 'yes'",
        "orderByKey": "metrics.`compression_ratio`", "orderByAsc": True,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": list(COLUMNS), "columnOrder": list(COLUMNS), "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [chart, val_chart],
        "compareRunSections": [{"uuid": SECTION, "name": "Accuracy against log2(compression ratio)", "display": True,
                                "isReordered": False, "deleted": False, "isGenerated": False}],
        "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "group"}]},
        "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def save_comparison_view(client: Any, experiment_id: str, protocol_label: str, protocol_hash: str) -> str:
    """Write (or replace) the saved view of one comparison on the experiment; returns its key."""
    key = view_key(protocol_label)
    now = int(time.time() * 1000)
    envelope = {"name": f"comparison {protocol_label}", "createdAt": now, "updatedAt": now,
                "state": json.dumps(comparison_state(protocol_hash))}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    return key


def view_url(base: str, experiment_id: str, key: str) -> str:
    """The runs page of the experiment opened on the saved view ``key`` (``workflowType=machine_learning``
    makes MLflow 3 open its "Model training" runs table, not the GenAI overview)."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={key}")
