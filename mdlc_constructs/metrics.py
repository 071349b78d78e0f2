"""The one definition of each metric a construct and a dashboard both show.

Following cdk-monitoring-constructs' layering, a metric (namespace, name,
dimensions, default statistic and period) is defined once here; the
constructs' ``metric_*`` methods and :class:`~mdlc_constructs.dashboard.ModelMetrics`
both build theirs from it, and a dashboard that wants a coarser period for a
graph passes it explicitly. Every factory takes ``**props``, the keyword
arguments of ``cloudwatch.MetricOptions`` (``period``, ``statistic``,
``label``...), as aws-cdk-lib's own ``metric_*`` methods do.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_cloudwatch as cloudwatch
from mdlc_core.layout import VARIANT_NAME

from .tokens import days, minutes

#: Where the quality check publishes (``lambdas/quality_check``'s Powertools namespace).
QUALITY_NAMESPACE = "MDLC/DataQuality"
#: Violations of one check run, per model and, with ``Rule``, per rule.
VIOLATIONS_METRIC = "QualityViolations"


def quality_violations(model: str, rule: str | None = None, **props: Any) -> cloudwatch.Metric:
    """Violations per check, in total or for one rule id (Maximum per day by
    default: the check runs daily)."""
    dimensions = {"Model": model}
    if rule:
        dimensions["Rule"] = rule
    return cloudwatch.Metric(
        namespace=QUALITY_NAMESPACE, metric_name=VIOLATIONS_METRIC, dimensions_map=dimensions,
        **{"statistic": "Maximum", "period": days(1), **props})


def endpoint_metric(endpoint_name: str, metric_name: str, *, variant_name: str = VARIANT_NAME,
                    **props: Any) -> cloudwatch.Metric:
    """An ``AWS/SageMaker`` metric of an endpoint's variant (Sum per minute by
    default, the resolution the deployment guardrail's alarms evaluate)."""
    return cloudwatch.Metric(
        namespace="AWS/SageMaker", metric_name=metric_name,
        dimensions_map={"EndpointName": endpoint_name, "VariantName": variant_name},
        **{"statistic": "Sum", "period": minutes(1), **props})


__all__ = ["QUALITY_NAMESPACE", "VIOLATIONS_METRIC", "endpoint_metric", "quality_violations"]
