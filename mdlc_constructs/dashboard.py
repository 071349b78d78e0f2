"""Metrics and the CloudWatch dashboard of one model (MDLC stage 7).

Layered like cdk-monitoring-constructs: :class:`ModelMetrics` is a metric
factory (names, dimensions and statistics in one place, matching what the
handlers publish), alarms are built from its metrics (``monitoring.py``), and
:class:`ModelDashboard` lays the same metrics out as widgets, one section per
stage. Sections for resources that other stages create (workflows, the event
stream, the endpoint, stream consumers) are added with ``add_*`` methods, so
the dashboard works before those stages exist and grows with the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mdlc_core.layout import VARIANT_NAME, endpoint_name

from .metrics import endpoint_metric, quality_violations
from .spec import ModelSpec
from .tokens import hours, minutes

#: Where ``lambdas/model_monitor`` publishes by default (``METRICS_NAMESPACE``).
DEFAULT_NAMESPACE = "MDLC"
#: The ``ModelVersion`` that aggregates every version; it exists whatever
#: versions are deployed, so alarms and the dashboard watch it.
ALL_VERSIONS = "all"
#: The production variant of the real-time endpoint.
DEFAULT_VARIANT = VARIANT_NAME

_FULL = 24  # dashboard grid width
_HALF = 12
_THIRD = 8
_HEIGHT = 6


def endpoint_name_of(spec: ModelSpec) -> str:
    """The real-time endpoint's name: ``mdlc-<model>``."""
    return endpoint_name(spec.name)


def _job_metric(metric_name: str, statistic: str) -> Callable[..., cloudwatch.Metric]:
    """A :class:`ModelMetrics` method ``(statistic=<statistic>)`` that returns the
    monitoring job's metric ``metric_name`` (:meth:`ModelMetrics.model_metric`)."""

    def metric(self: ModelMetrics, statistic: str = statistic) -> cloudwatch.Metric:
        return self.model_metric(metric_name, statistic=statistic)

    metric.__doc__ = f"The monitoring job's ``{metric_name}`` (default statistic {statistic})."
    return metric


class ModelMetrics:
    """Metric factory for one model: the monitoring metrics (namespace ``MDLC``,
    dimensions ``Model`` and ``ModelVersion``, see docs/monitoring.md), data
    quality violations, and the AWS metrics of the model's endpoint.

    Args:
        spec: the model spec; ``name`` is the ``Model`` dimension.
        namespace: the monitoring job's ``METRICS_NAMESPACE``. Default ``MDLC``.
        period: the period of the monitoring metrics. Default one day (the job
            runs daily and publishes one value per metric per run).
        model_version: the ``ModelVersion`` dimension. Default ``all``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        period: Duration = Duration.days(1),
        model_version: str = ALL_VERSIONS,
    ) -> None:
        self.spec = spec
        self.namespace = namespace
        self.period = period
        self.model_version = model_version

    # -- monitoring job (closed and open loop) -----------------------------------

    def model_metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Average",
        label: str | None = None,
        period: Duration | None = None,
        **extra_dimensions: str,
    ) -> cloudwatch.Metric:
        """A metric the monitoring job publishes, with ``Model``, ``ModelVersion``
        and any extra dimension (``Feature``, ``Action``; ``ModelVersion`` given
        here replaces this factory's)."""
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=metric_name,
            dimensions_map={
                "Model": self.spec.name,
                "ModelVersion": self.model_version,
                **extra_dimensions,
            },
            statistic=statistic,
            period=period or self.period,
            label=label,
        )

    # The job's metrics without a dimension of their own: name and default
    # statistic, the one their alarm watches (Minimum for a floor, Maximum
    # for a ceiling).
    predictions = _job_metric("Predictions", "Maximum")
    precision = _job_metric("Precision", "Minimum")
    recall = _job_metric("Recall", "Minimum")
    f1 = _job_metric("F1", "Minimum")
    auc = _job_metric("AUC", "Minimum")
    label_coverage = _job_metric("LabelCoverage", "Minimum")
    score_psi = _job_metric("ScorePSI", "Maximum")
    ks_pvalue = _job_metric("KSPValue", "Minimum")

    def unmatched_labels(self, statistic: str = "Maximum") -> cloudwatch.Metric:
        # Published with ModelVersion=all only, whatever model_version is.
        return self.model_metric("UnmatchedLabels", statistic=statistic, ModelVersion=ALL_VERSIONS)

    def feature_psi(self, feature: str, statistic: str = "Maximum") -> cloudwatch.Metric:
        return self.model_metric("FeaturePSI", statistic=statistic, Feature=feature)

    def feature_ks_pvalue(self, feature: str, statistic: str = "Minimum") -> cloudwatch.Metric:
        return self.model_metric("FeatureKSPValue", statistic=statistic, Feature=feature)

    def action_share(self, action: str, statistic: str = "Maximum") -> cloudwatch.Metric:
        return self.model_metric("ActionShare", statistic=statistic, Action=action)

    def actions(self) -> list[str]:
        """The actions whose share is charted: the integration's, plus any the
        spec caps in ``monitoring.open_loop.max_action_share``."""
        names = list(self.spec.integration.action_names) if self.spec.integration else []
        names += list(self.spec.monitoring.open_loop.max_action_share)
        return list(dict.fromkeys(names))

    # -- data quality (stage 2) ---------------------------------------------------

    def quality_violations(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Violations per check, all rules (``MDLC/DataQuality``, dimension Model)."""
        return quality_violations(self.spec.name, period=period or self.period)

    # -- real-time endpoint (stage 6) ---------------------------------------------

    def endpoint_metric(
        self,
        metric_name: str,
        *,
        endpoint_name: str | None = None,
        variant_name: str = DEFAULT_VARIANT,
        statistic: str = "Sum",
        period: Duration = Duration.minutes(5),
        label: str | None = None,
    ) -> cloudwatch.Metric:
        """An ``AWS/SageMaker`` endpoint metric (EndpointName, VariantName),
        per 5 minutes for the dashboard's graphs (the metric itself,
        :func:`mdlc_constructs.metrics.endpoint_metric`, defaults to the
        alarms' minute). Default endpoint: ``mdlc-<model>``."""
        return endpoint_metric(
            endpoint_name or endpoint_name_of(self.spec), metric_name,
            variant_name=variant_name, statistic=statistic, period=period, label=label)


class ModelDashboard(Construct):
    """The CloudWatch dashboard of one model, one row per stage.

    Built with: a header and the model's alarms; the closed loop (precision,
    recall, F1, AUC, label coverage, unmatched labels); the open loop (score
    PSI and KS p-value, feature PSI, action shares, predictions per day); data
    quality violations. Then, as given or added later: the endpoint
    (invocations, errors, latency), the event stream (iterator age), stream
    consumers and other functions, and workflows (executions and failures).

    Args:
        spec: the model spec; thresholds are drawn as annotations.
        metrics: the metric factory. Default: ``ModelMetrics(spec)``.
        dashboard_name: Default ``mdlc-<model>`` (one per model and region,
            like the endpoint's name).
        default_interval: the time range shown. Default 4 weeks (the monitoring
            metrics are daily).
        alarms: shown in an alarm status widget at the top. Default: none.

    Attributes:
        dashboard, metrics.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ModelSpec,
        metrics: ModelMetrics | None = None,
        dashboard_name: str | None = None,
        default_interval: Duration = Duration.days(28),
        alarms: Sequence[cloudwatch.IAlarm] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.metrics = metrics or ModelMetrics(spec)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name or f"mdlc-{spec.name}",
            default_interval=default_interval,
            period_override=cloudwatch.PeriodOverride.AUTO,
        )
        self._workflows: set[str] = set()
        self._header(alarms)
        self.add_closed_loop()
        self.add_open_loop()
        self.add_data_quality()

    # -- sections -----------------------------------------------------------------

    def add_row(self, *widgets: cloudwatch.IWidget) -> None:
        """Append a row of widgets (for a team's own section)."""
        self.dashboard.add_widgets(*widgets)

    def _header(self, alarms: Sequence[cloudwatch.IAlarm]) -> None:
        spec = self.spec
        text = cloudwatch.TextWidget(
            markdown=f"# MDLC {spec.name}\n{spec.description}\n\nOwner: `{spec.owner}`. "
            "Monitoring metrics are daily, for `ModelVersion=all`; "
            "see docs/monitoring.md for what each one means.",
            width=_FULL if not alarms else _HALF,
            height=_HEIGHT,
        )
        if alarms:
            self.add_row(
                text,
                cloudwatch.AlarmStatusWidget(
                    title="Alarms",
                    alarms=list(alarms),
                    width=_HALF,
                    height=_HEIGHT,
                    sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
                ),
            )
        else:
            self.add_row(text)

    def add_alarms(self, alarms: Sequence[cloudwatch.IAlarm], *, title: str = "Alarms") -> None:
        """Append an alarm status row, e.g. for the endpoint's rollback alarms."""
        if alarms:
            self.add_row(
                cloudwatch.AlarmStatusWidget(
                    title=title, alarms=list(alarms), width=_FULL, height=_HEIGHT // 2
                )
            )

    def add_closed_loop(self) -> None:
        """Accuracy against ground truth, with the spec's minimums."""
        m, closed = self.metrics, self.spec.monitoring.closed_loop
        annotations = [
            _floor(closed.min_precision, "min precision"),
            _floor(closed.min_recall, "min recall"),
            _floor(closed.min_auc, "min AUC"),
        ]
        self.add_row(
            _graph(
                _HALF,
                title="Closed loop: accuracy (labelled predictions)",
                left=[
                    _label(m.precision(), "precision"),
                    _label(m.recall(), "recall"),
                    _label(m.f1(), "F1"),
                    _label(m.auc(), "AUC"),
                ],
                left_annotations=[a for a in annotations if a],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False),
            ),
            _graph(
                _HALF,
                title="Closed loop: label coverage and unmatched labels",
                left=[_label(m.label_coverage(), "label coverage")],
                right=[_label(m.unmatched_labels(), "unmatched labels")],
                left_annotations=[
                    a for a in [_floor(closed.min_label_coverage, "min coverage")] if a
                ],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False),
            ),
        )

    def add_open_loop(self) -> None:
        """Drift against the baseline and the share of each action."""
        m, opened = self.metrics, self.spec.monitoring.open_loop
        psi = cloudwatch.HorizontalAnnotation(value=opened.max_psi)
        score = _graph(
            _THIRD,
            title="Open loop: score drift",
            left=[_label(m.score_psi(), "score PSI")],
            right=[_label(m.ks_pvalue(), "score KS p-value")],
            left_annotations=[psi],
            right_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False),
        )
        features = _graph(
            _THIRD,
            title="Open loop: feature PSI",
            left=[_label(m.feature_psi(f), f) for f in self.spec.feature_columns],
            left_annotations=[psi],
        )
        caps = opened.max_action_share
        actions = _graph(
            _THIRD,
            title="Open loop: action shares",
            left=[_label(m.action_share(a), a) for a in m.actions()],
            left_annotations=[
                cloudwatch.HorizontalAnnotation(value=share, label=f"max {action}")
                for action, share in caps.items()
            ],
            right=[_label(m.predictions(), "predictions")],
            left_y_axis=cloudwatch.YAxisProps(min=0, max=1, show_units=False),
        )
        self.add_row(score, features, actions)

    def add_data_quality(self) -> None:
        """Violations per snapshot check (stage 2)."""
        self.add_row(
            _graph(
                _FULL,
                title="Data quality: violations per snapshot",
                left=[_label(self.metrics.quality_violations(), "violations (all rules)")],
            )
        )

    def add_endpoint(
        self, endpoint_name: str | None = None, *, variant_name: str = DEFAULT_VARIANT
    ) -> None:
        """Invocations, error rate and p99 latency of the real-time endpoint,
        with the deployment guardrail's thresholds. Default: ``mdlc-<model>``."""
        name = endpoint_name or endpoint_name_of(self.spec)
        m = self.metrics
        guard = self.spec.inference.realtime.deployment

        def metric(metric_name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return m.endpoint_metric(
                metric_name, endpoint_name=name, variant_name=variant_name, statistic=statistic
            )

        invocations = metric("Invocations")
        errors_4xx, errors_5xx = metric("Invocation4XXErrors"), metric("Invocation5XXErrors")
        self.add_row(
            _graph(
                _THIRD,
                title=f"Endpoint {name}: invocations",
                left=[invocations],
                right=[metric("InvocationsPerInstance")],
            ),
            _graph(
                _THIRD,
                title=f"Endpoint {name}: errors",
                left=[errors_4xx, errors_5xx],
                right=[
                    cloudwatch.MathExpression(
                        expression="IF(inv > 0, e5 / inv, 0)",
                        using_metrics={"e5": errors_5xx, "inv": invocations},
                        label="5XX rate",
                        period=minutes(5),
                    )
                ],
                right_annotations=[cloudwatch.HorizontalAnnotation(value=guard.max_error_rate)],
            ),
            _graph(
                _THIRD,
                title=f"Endpoint {name}: latency (ms)",
                # SageMaker reports latency in microseconds.
                left=[
                    cloudwatch.MathExpression(
                        expression="model / 1000",
                        using_metrics={"model": metric("ModelLatency", "p99")},
                        label="model latency p99",
                        period=minutes(5),
                    ),
                    cloudwatch.MathExpression(
                        expression="overhead / 1000",
                        using_metrics={"overhead": metric("OverheadLatency", "p99")},
                        label="overhead latency p99",
                        period=minutes(5),
                    ),
                ],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=guard.max_p99_latency_ms, label="rollback p99"
                    )
                ],
            ),
        )

    def add_stream(
        self, stream: kinesis.IStream, *, consumers: Sequence[lambda_.IFunction] = ()
    ) -> None:
        """The event stream's iterator age and traffic, and each consumer's
        ``IteratorAge`` (how far behind it reads)."""
        period = minutes(5)
        widgets: list[cloudwatch.IWidget] = [
            _graph(
                _HALF,
                title="Event stream: iterator age (ms)",
                left=[
                    stream.metric_get_records_iterator_age_milliseconds(
                        statistic="Maximum", period=period, label="stream"
                    ),
                    *[
                        fn.metric("IteratorAge", statistic="Maximum", period=period)
                        for fn in consumers
                    ],
                ],
            ),
            _graph(
                _HALF,
                title="Event stream: records",
                left=[stream.metric_incoming_records(statistic="Sum", period=period)],
                right=[
                    stream.metric_write_provisioned_throughput_exceeded(
                        statistic="Sum", period=period
                    )
                ],
            ),
        ]
        self.add_row(*widgets)

    def add_function(self, function: lambda_.IFunction, *, title: str | None = None) -> None:
        """Invocations, errors, throttles and duration of a function."""
        period = minutes(5)
        name = title or function.node.path
        self.add_row(
            _graph(_HALF, title=f"{name}: invocations and errors",
                   left=[function.metric_invocations(period=period)],
                   right=[function.metric_errors(period=period),
                          function.metric_throttles(period=period)]),
            _graph(_HALF, title=f"{name}: duration",
                   left=[function.metric_duration(statistic="p99", period=period)]),
        )

    def add_workflow(self, machine: sfn.IStateMachine, *, title: str | None = None) -> None:
        """Executions started and succeeded, and those that failed, timed out or
        were aborted. Adding the same machine twice is a no-op."""
        key = machine.node.path
        if key in self._workflows:
            return
        self._workflows.add(key)
        period = hours(1)
        name = title or machine.node.path
        self.add_row(
            _graph(_HALF, title=f"Workflow {name}: executions",
                   left=[machine.metric_started(period=period),
                         machine.metric_succeeded(period=period)]),
            _graph(_HALF, title=f"Workflow {name}: failures",
                   left=[machine.metric_failed(period=period),
                         machine.metric_timed_out(period=period),
                         machine.metric_aborted(period=period)]),
        )


def _graph(width: int, **props: Any) -> cloudwatch.GraphWidget:
    """A graph ``width`` columns wide (of 24) and of the dashboard's one height."""
    return cloudwatch.GraphWidget(width=width, height=_HEIGHT, **props)


def _floor(value: float | None, label: str) -> cloudwatch.HorizontalAnnotation | None:
    return None if value is None else cloudwatch.HorizontalAnnotation(value=value, label=label)


def _label(metric: cloudwatch.Metric, label: str) -> cloudwatch.Metric:
    # Labels only on the dashboard: a labelled metric makes CloudFormation
    # alarms use the longer Metrics form instead of MetricName/Dimensions.
    return metric.with_(label=label)
