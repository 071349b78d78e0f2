"""``ModelMetrics``: the dimensions, statistics and period of what the monitoring job publishes.

Alarms (monitoring.py) and the dashboard read their metrics from this factory,
so a wrong dimension here is an alarm that watches nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import Duration

from mdlc_constructs.dashboard import ALL_VERSIONS, ModelMetrics
from mdlc_constructs.spec import load_spec
from tests.conftest import FRAUD_SPEC


@pytest.fixture(scope="module")
def metrics() -> ModelMetrics:
    return ModelMetrics(load_spec(FRAUD_SPEC), namespace="Team/MDLC", period=Duration.hours(6),
                        model_version="7")


def _shape(metric: Any) -> tuple[str, str, dict[str, str], str, float]:
    return (metric.namespace, metric.metric_name, dict(metric.dimensions), metric.statistic,
            metric.period.to_seconds())


def test_a_model_metric_carries_the_model_and_the_factorys_version(metrics: ModelMetrics) -> None:
    assert _shape(metrics.precision()) == (
        "Team/MDLC", "Precision", {"Model": "fraud", "ModelVersion": "7"}, "Minimum", 6 * 3600)
    assert _shape(metrics.feature_psi("order_amount"))[2] == {
        "Model": "fraud", "ModelVersion": "7", "Feature": "order_amount"}


def test_unmatched_labels_are_watched_for_every_version(metrics: ModelMetrics) -> None:
    # The job publishes UnmatchedLabels with ModelVersion=all only: a factory
    # of one version must still watch that series.
    assert _shape(metrics.unmatched_labels()) == (
        "Team/MDLC", "UnmatchedLabels", {"Model": "fraud", "ModelVersion": ALL_VERSIONS},
        "Maximum", 6 * 3600)
    assert metrics.unmatched_labels("Sum").statistic == "Sum"
