"""The fraud team's evaluation: the validation metric, penalized for overfitting.

Event (from ``TeamTrainingWorkflow``'s evaluation step)::

    {"metrics": <the training job's FinalMetricDataList>,
     "metric": "validation:auc",       # the spec's evaluation metric
     "max_gap": 0.05}                  # tolerated train - validation gap

Returns ``{"metric", "value", "validation", "train", "gap"}``: ``value`` is the
validation metric minus whatever the train/validation gap exceeds
``max_gap`` (for a metric to maximize), so a model that memorized its
training data does not pass the gate on a lucky validation score.

Raises ``ValueError`` when the job did not report the metric (the workflow's
catch notifies the team and fails the run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def evaluate(metrics: Sequence[Mapping[str, Any]], metric: str, max_gap: float) -> dict[str, Any]:
    values = {m.get("MetricName"): float(m.get("Value")) for m in metrics or []}
    if metric not in values:
        raise ValueError(f"the training job did not report {metric}; it reported {sorted(values)}")
    validation = values[metric]
    # 'validation:auc' -> 'train:auc'; without a train metric there is no gap to judge.
    train_name = "train:" + metric.split(":", 1)[-1]
    train = values.get(train_name)
    gap = max(0.0, train - validation) if train is not None else 0.0
    return {
        "metric": metric,
        "value": round(validation - max(0.0, gap - max_gap), 6),
        "validation": validation,
        "train": train,
        "gap": round(gap, 6),
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return evaluate(event.get("metrics") or [], event["metric"], float(event.get("max_gap", 0.05)))
