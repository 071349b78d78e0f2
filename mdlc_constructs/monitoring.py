"""Stage 7, model monitoring: the scheduled job, its alarms, re-training and a dashboard.

The job is ``lambdas/model_monitor`` (its metrics compiled to SQL and run on
DuckDB, ``mdlc_core.sql.monitoring``, also ``mdlc monitor``; or the same code
in a SageMaker Processing job when
``monitoring.runner`` is ``processing``, or with its metrics as Spark SQL on
EMR Serverless when it is ``spark``): once per ``monitoring.schedule`` it computes the open loop
(score and feature drift against the baseline, action shares) for yesterday
and the closed loop (accuracy against labels) for the day whose labels have
had ``monitoring.closed_loop.label_delay_days`` to arrive, in one run, and
publishes the metrics of docs/monitoring.md. Alarms watch ``ModelVersion=all``
against the spec's thresholds and notify the model's topic; the accuracy and
drift alarms also start a re-training through the re-training trigger (whose
cooldown keeps a flapping alarm from starting a storm of trainings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Unpack, runtime_checkable

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mdlc_core.layout import VARIANT_NAME, Layout, package_group_name

from .compliance import acknowledge, acknowledge_objects, iam5_resource, printed_arn
from .dashboard import DEFAULT_NAMESPACE, ModelDashboard, ModelMetrics, endpoint_name_of
from .deprecation import renamed
from .functions import DUCKDB_EPHEMERAL_STORAGE_MB
from .processing import STARTUP_ALLOWANCE
from .resources import schedule_of
from .scale_out import S3Access
from .scale_out_stage import ScaleOutJob, ScaleOutStage
from .spark import STARTUP_ALLOWANCE as SPARK_STARTUP_ALLOWANCE
from .stage import ModelStage, StageProps
from .storage import grant_read_objects, scored_predictions_pattern
from .tokens import days, hours, minutes
from .workflow import error_boundary

#: Where the job writes ``dt=<date>/report.json`` (in the artifacts bucket).
REPORT_PREFIX = "monitoring"
#: Where the scored training snapshot the open loop compares with is expected
#: by default (in the artifacts bucket): ``baselines/<model>/`` (mdlc_core.layout).
BASELINE_PREFIX = "baselines"
#: CloudWatch's longest alarm evaluation range for periods of an hour or more.
MAX_EVALUATION_RANGE = days(7)
#: The Spark job's flag for each key of :meth:`ModelMonitoring.job_environment`
#: (``mdlc_core.spark_monitoring``: the Lambda runner's environment, as flags).
SPARK_FLAGS = {
    "PREDICTIONS_BUCKET": "--predictions-bucket",
    "LABELS_BUCKET": "--labels-bucket",
    "LABELS_PREFIX": "--labels-prefix",
    "BASELINE_BUCKET": "--baseline-bucket",
    "BASELINE_KEY": "--baseline-key",
    "REPORT_BUCKET": "--report-bucket",
    "METRICS_NAMESPACE": "--namespace",
    "CLOSED_LOOP_LAG_DAYS": "--closed-loop-lag-days",
}


@runtime_checkable
class AlarmTrigger(Protocol):
    """Anything that starts work when an alarm fires, e.g.
    :class:`~mdlc_constructs.retraining.Retraining`."""

    def trigger_on_alarm(self, alarm: cloudwatch.IAlarm) -> object: ...


#: What ``retrain`` accepts: a trigger construct, or a function called with the alarm.
RetrainTarget = AlarmTrigger | Callable[[cloudwatch.IAlarm], object]


@dataclass(frozen=True)
class AlarmDefinition:
    """One alarm, before it is created (see :meth:`ModelMonitoring.alarm_definitions`).

    Attributes:
        id: the construct id under ``Alarms`` (a public contract: a new id
            replaces the alarm).
        metric: what is watched (statistic and period included).
        threshold, comparison: when it fires.
        description: what it means and which spec field set the threshold.
        missing: how a period without data counts. Default: not breaching (the
            job publishes nothing for a metric that is undefined that day).
        retrain: also start a re-training when it fires. Default False.
    """

    id: str
    metric: cloudwatch.IMetric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    description: str
    missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING
    retrain: bool = False


class ModelMonitoring(ScaleOutStage, ModelStage):
    """The monitoring template of one model: job, schedule, alarms, re-training, dashboard.

    Args:
        spec: the model spec (``monitoring`` section; ``name`` is the metrics'
            ``Model`` dimension).
        data_lake: predictions are read from ``predictions``
            (``predictions/<model>/dt=YYYY-MM-DD/scored/``); reports are written to
            ``artifacts`` (``monitoring/<model>/dt=<date>/report.json``).
        topic: the model's topic; every alarm notifies it.
        retrain: what the accuracy and drift alarms start: a
            :class:`~mdlc_constructs.retraining.Retraining` (anything with
            ``trigger_on_alarm(alarm)``) or a function called with the alarm.
            It receives one composite alarm, ``RetrainNeeded``, that fires when
            any of them does. Default: none (alarms only notify); connect one
            later with :meth:`connect_retraining`. Nothing is connected when
            ``monitoring.retrain_on_alarm`` is false.
        metrics_namespace: the job's ``METRICS_NAMESPACE``. Default ``MDLC``.
        labels_bucket: where ground truth lands. Default: the predictions bucket.
        labels_prefix: labels under ``<prefix>dt=<event date>/``. Default
            ``labels/<model>/``.
        baseline_bucket: holds the baselines. Default: the artifacts bucket.
        baseline_key: one fixed baseline for every model version: a key, or a
            prefix ending in ``/`` of files. Default: none, so each version's
            predictions are compared with that version's own training data,
            which its model package names (``mdlc:drift-baseline``, written by
            the training workflow under ``baselines/<model>/jobs/``; see
            docs/monitoring.md, "Which baseline").
        model_package_group_name: the group whose packages name the
            per-version baselines (the job may describe only its packages).
            Default ``mdlc-<model>``, the training workflow's group.
        closed_loop_lag_days: accuracy is judged on the predictions of this many
            days before the monitored day. Default
            ``monitoring.closed_loop.label_delay_days``, when the labels are in.
        memory_size: MB of the job. Default 4096 (about 1-2 million predictions a
            day; see docs/monitoring.md, Scale).
        timeout: of the job. Default 15 minutes (Lambda's maximum).
        alarm_period: the period of the monitoring metrics in alarms. Default
            one day (one value per scheduled run).
        alarm_evaluation_periods: an alarm fires when any of this many periods
            breaches. Default 2: the last run's value stays in view until the
            next run has reported, so a run that is a few minutes late does not
            flip the alarm to OK and back.
        alarm_on_missing_predictions: alarm when a run publishes no
            ``Predictions`` (a day without predictions, or a failed run).
            Default True.
        state_machines, stream, stream_consumers, functions, endpoint_name: what
            else the dashboard charts (workflow executions and failures, the
            event stream's iterator age, consumers' ``IteratorAge``, function
            errors, the endpoint's invocations, errors and latency). Default:
            none, and the endpoint ``mdlc-<model>`` when
            ``inference.realtime.enabled``. More can be added later with
            :meth:`add_workflow`, :meth:`add_stream`, :meth:`add_function` and
            :meth:`add_endpoint`.
        dashboard_name: Default ``mdlc-<model>``.

    ``monitoring.runner: processing`` runs the same job code
    (``mdlc_core.monitor_job``) as a SageMaker Processing job instead: the
    schedule starts a small workflow (``Workflow``) that runs the job and
    notifies the topic when it fails; the reports and metrics are the same.
    ``memory_size`` and ``timeout`` then do not apply
    (``monitoring.processing`` sizes the job). ``monitoring.runner: spark``
    is the same job with its metrics as Spark SQL on EMR Serverless
    (``mdlc_core.spark_monitoring``), in the same kind of workflow
    (``monitoring.spark`` sizes the application); the job's role reads this
    model's predictions, labels and baselines only, writes its reports and
    may describe its model packages and publish to ``metrics_namespace``.

    Attributes:
        function: the job (None with the Processing and Spark runners).
        processing_runner, spark_runner, state_machine: the scale-out runner
        of ``monitoring.runner`` (the other None) and its workflow (None with
        the embedded runner).
        dead_letter_queue: failed invocations (of the schedule's target).
        schedule_rule: the EventBridge rule. metrics: the metric factory.
        alarms: ``{id: alarm}``. retrain_alarms: those that re-train.
        retrain_alarm: the composite ``RetrainNeeded`` alarm (None until
        re-training is connected). dashboard: the :class:`ModelDashboard`.

    Extension points (plain methods a subclass overrides): :meth:`alarm_definitions`,
    :meth:`job_environment`, :meth:`schedule_input`; and the classes of its parts,
    :attr:`dashboard_class`, :attr:`processing_runner_class` and
    :attr:`spark_runner_class` (:class:`~mdlc_constructs.scale_out_stage.ScaleOutStage`).
    """

    #: The dashboard's class, built as ``Dashboard`` with the monitor's metric
    #: factory and alarms (a subclass adds widgets in its constructor).
    dashboard_class: type[ModelDashboard] = ModelDashboard
    scale_out_kind = "monitoring"

    #: Deprecated: :attr:`schedule_rule`.
    schedule = renamed("schedule_rule")

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retrain: RetrainTarget | None = None,
        metrics_namespace: str = DEFAULT_NAMESPACE,
        labels_bucket: s3.IBucket | None = None,
        labels_prefix: str | None = None,
        baseline_bucket: s3.IBucket | None = None,
        baseline_key: str | None = None,
        model_package_group_name: str | None = None,
        closed_loop_lag_days: int | None = None,
        memory_size: int = 4096,
        timeout: Duration = Duration.minutes(15),
        alarm_period: Duration = Duration.days(1),
        alarm_evaluation_periods: int = 2,
        alarm_on_missing_predictions: bool = True,
        state_machines: Sequence[sfn.IStateMachine] = (),
        stream: kinesis.IStream | None = None,
        stream_consumers: Sequence[lambda_.IFunction] = (),
        functions: Sequence[lambda_.IFunction] = (),
        endpoint_name: str | None = None,
        dashboard_name: str | None = None,
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake = self.spec, self.data_lake
        self.metrics_namespace = metrics_namespace
        self.labels_bucket: s3.IBucket = labels_bucket or data_lake.predictions
        self.labels_prefix = _prefix(labels_prefix or Layout(spec.name).labels, "labels_prefix")
        self.baseline_bucket: s3.IBucket = baseline_bucket or data_lake.artifacts
        #: the fixed baseline, or None: each version's own (the default)
        self.baseline_key: str | None = baseline_key
        if baseline_key is not None and (not baseline_key or baseline_key.startswith("/")):
            raise ValueError(f"baseline_key must be a key, not {baseline_key!r}")
        self.model_package_group_name = model_package_group_name or package_group_name(spec.name)
        lag = closed_loop_lag_days
        self.closed_loop_lag_days = (
            spec.monitoring.closed_loop.label_delay_days if lag is None else lag
        )
        if self.closed_loop_lag_days < 0:
            raise ValueError(
                f"closed_loop_lag_days must be 0 or more, got {self.closed_loop_lag_days}"
            )
        if alarm_evaluation_periods < 1:
            raise ValueError(
                f"alarm_evaluation_periods must be at least 1, got {alarm_evaluation_periods}"
            )
        if alarm_period.to_seconds() * alarm_evaluation_periods > MAX_EVALUATION_RANGE.to_seconds():
            raise ValueError(
                "alarm_period x alarm_evaluation_periods must be at most 7 days (CloudWatch's "
                f"evaluation range), got {alarm_period.to_seconds()} s x {alarm_evaluation_periods}"
            )
        self._check_action_caps()
        self.alarm_period = alarm_period
        self.alarm_evaluation_periods = alarm_evaluation_periods
        self.alarm_on_missing_predictions = alarm_on_missing_predictions
        self.metrics = ModelMetrics(spec, namespace=metrics_namespace, period=alarm_period)

        self.dead_letter_queue = self._create_dead_letter_queue()
        self.function: lambda_.Function | None = None
        self.state_machine: sfn.StateMachine | None = None
        runner = self._create_scale_out_runner()
        if runner is not None:
            # The job describes the model packages that name its baselines.
            self.grant_describe_packages(runner.role)
            self.state_machine = self._create_workflow()
        else:
            self.function = self._create_function(memory_size, timeout)
        self.schedule_rule = self._create_schedule()

        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.retrain_alarms: list[cloudwatch.Alarm] = []
        alarm_scope = Construct(self, "Alarms")
        for definition in self.alarm_definitions():
            self._create_alarm(alarm_scope, definition)
        self._create_alarm(
            alarm_scope,
            AlarmDefinition(
                id="FailedRuns",
                metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=minutes(5)
                ),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                description=f"MDLC {spec.name}: a monitoring run failed after its retries; "
                "its event is in the dead-letter queue. No metrics were published for it.",
            ),
            evaluation_periods=1,
        )
        self.retrain_alarm: cloudwatch.CompositeAlarm | None = None
        if retrain is not None:
            self.connect_retraining(retrain)

        self.dashboard = self.dashboard_class(
            self,
            "Dashboard",
            spec=spec,
            metrics=self.metrics,
            dashboard_name=dashboard_name,
            alarms=list(self.alarms.values()),
        )
        self._endpoints: set[str] = set()
        endpoint = endpoint_name or (
            endpoint_name_of(spec) if spec.inference.realtime.enabled else None
        )
        if endpoint:
            self.add_endpoint(endpoint)
        if stream is not None:
            self.add_stream(stream, consumers=stream_consumers)
        for machine in state_machines:
            self.add_workflow(machine)
        for function in functions:
            self.add_function(function)
        if self.function is not None:
            self.add_function(self.function, title=f"Monitoring job {spec.name}")
        if self.state_machine is not None:
            self.add_workflow(self.state_machine, title=f"Monitoring job {spec.name}")

    # -- extension points ---------------------------------------------------------

    def alarm_definitions(self) -> list[AlarmDefinition]:
        """The alarms on the monitoring metrics (``ModelVersion=all``), from the spec.

        Closed loop: precision, recall and AUC below their minimums (re-train),
        label coverage below its minimum (notify only: a broken label feed is
        not fixed by training). Open loop: score PSI above ``max_psi`` and score
        KS p-value below ``ks_alpha`` (unless 0), each feature's PSI above
        ``max_psi`` (re-train); each capped action's share above its cap, and
        no predictions at all (notify only: a rule or a feed is more likely
        broken than the model). A ``None`` threshold makes no alarm.
        """
        spec, m = self.spec, self.metrics
        closed, opened = spec.monitoring.closed_loop, spec.monitoring.open_loop
        below = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        name = f"MDLC {spec.name}"
        lag = f"predictions of {self.closed_loop_lag_days} days ago"
        definitions: list[AlarmDefinition] = []

        def floor(
            alarm_id: str,
            metric: cloudwatch.Metric,
            value: float | None,
            field: str,
            what: str,
            retrain: bool = True,
        ) -> None:
            if value is not None:
                definitions.append(
                    AlarmDefinition(
                        alarm_id,
                        metric,
                        value,
                        below,
                        f"{name}: {what} ({lag}) below monitoring.closed_loop.{field} = {value}",
                        retrain=retrain,
                    )
                )

        floor("Precision", m.precision(), closed.min_precision, "min_precision", "precision")
        floor("Recall", m.recall(), closed.min_recall, "min_recall", "recall")
        floor("AUC", m.auc(), closed.min_auc, "min_auc", "AUC")
        floor(
            "LabelCoverage",
            m.label_coverage(),
            closed.min_label_coverage,
            "min_label_coverage",
            "label coverage",
            retrain=False,
        )

        psi_field = f"monitoring.open_loop.max_psi = {opened.max_psi}"
        definitions.append(
            AlarmDefinition(
                "ScorePSI",
                m.score_psi(),
                opened.max_psi,
                above,
                f"{name}: score PSI against the baseline above {psi_field}",
                retrain=True,
            )
        )
        if opened.ks_alpha > 0:
            definitions.append(
                AlarmDefinition(
                    "ScoreKS",
                    m.ks_pvalue(),
                    opened.ks_alpha,
                    below,
                    f"{name}: score KS p-value below monitoring.open_loop.ks_alpha = "
                    f"{opened.ks_alpha} (the score distribution moved)",
                    retrain=True,
                )
            )
        for feature in spec.feature_columns:
            definitions.append(
                AlarmDefinition(
                    f"FeaturePSI-{feature}",
                    m.feature_psi(feature),
                    opened.max_psi,
                    above,
                    f"{name}: PSI of feature {feature!r} above {psi_field}",
                    retrain=True,
                )
            )
        for action, share in opened.max_action_share.items():
            definitions.append(
                AlarmDefinition(
                    f"ActionShare-{action}",
                    m.action_share(action),
                    share,
                    above,
                    f"{name}: share of {action!r} decisions above "
                    f"monitoring.open_loop.max_action_share.{action} = {share}",
                )
            )
        if self.alarm_on_missing_predictions:
            definitions.append(
                AlarmDefinition(
                    "NoPredictions",
                    m.predictions(),
                    1,
                    below,
                    f"{name}: the monitoring run found no predictions (or did not run)",
                    missing=cloudwatch.TreatMissingData.BREACHING,
                )
            )
        return definitions

    def job_environment(self) -> dict[str, str]:
        """The job's environment (see ``lambdas/model_monitor``)."""
        return {
            "PREDICTIONS_BUCKET": self.data_lake.predictions.bucket_name,
            "LABELS_BUCKET": self.labels_bucket.bucket_name,
            "LABELS_PREFIX": self.labels_prefix,
            "BASELINE_BUCKET": self.baseline_bucket.bucket_name,
            **({"BASELINE_KEY": self.baseline_key} if self.baseline_key else {}),
            "REPORT_BUCKET": self.data_lake.artifacts.bucket_name,
            "METRICS_NAMESPACE": self.metrics_namespace,
            "CLOSED_LOOP_LAG_DAYS": str(self.closed_loop_lag_days),
        }

    def schedule_input(self) -> dict[str, object]:
        """The scheduled event. No ``date``: the job monitors yesterday (UTC)."""
        return {"trigger": "schedule"}

    # -- public API ----------------------------------------------------------------

    def connect_retraining(self, retrain: RetrainTarget) -> cloudwatch.CompositeAlarm | None:
        """Start re-training through ``retrain`` when an accuracy or drift alarm fires.

        One composite alarm (``RetrainNeeded``: any of :attr:`retrain_alarms`)
        is handed over, so a model needs one trigger rule, not one per alarm, and
        a second alarm firing while the first is still in ALARM does not ask
        again. Returns it, or None when ``monitoring.retrain_on_alarm`` is false
        or no alarm re-trains.
        """
        if not self.spec.monitoring.retrain_on_alarm or not self.retrain_alarms:
            return None
        if self.retrain_alarm is None:
            self.retrain_alarm = cloudwatch.CompositeAlarm(
                self,
                "RetrainNeeded",
                alarm_rule=cloudwatch.AlarmRule.any_of(*self.retrain_alarms),
                alarm_description=f"MDLC {self.spec.name}: an accuracy or drift alarm fired; "
                "a re-training is requested (the trigger's cooldown applies)",
            )
        if isinstance(retrain, AlarmTrigger):
            retrain.trigger_on_alarm(self.retrain_alarm)
        elif callable(retrain):
            retrain(self.retrain_alarm)
        else:
            raise TypeError(
                "retrain must have trigger_on_alarm(alarm) (e.g. Retraining) or be a "
                f"function of the alarm, got {type(retrain).__name__}"
            )
        return self.retrain_alarm

    def add_workflow(self, machine: sfn.IStateMachine, *, title: str | None = None) -> None:
        """Chart a workflow's executions and failures."""
        self.dashboard.add_workflow(machine, title=title)

    def add_stream(
        self, stream: kinesis.IStream, *, consumers: Sequence[lambda_.IFunction] = ()
    ) -> None:
        """Chart the event stream's iterator age and its consumers' ``IteratorAge``."""
        self.dashboard.add_stream(stream, consumers=consumers)

    def add_function(self, function: lambda_.IFunction, *, title: str | None = None) -> None:
        """Chart a function's invocations, errors, throttles and duration."""
        self.dashboard.add_function(function, title=title)

    def add_endpoint(self, endpoint_name: str, *, variant_name: str = VARIANT_NAME) -> None:
        """Chart a real-time endpoint (once per name)."""
        if endpoint_name in self._endpoints:
            return
        self._endpoints.add(endpoint_name)
        self.dashboard.add_endpoint(endpoint_name, variant_name=variant_name)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` run the job (e.g. a backfill: ``{"date": "YYYY-MM-DD"}``):
        invoke the function, or start the workflow when ``monitoring.runner`` is
        ``processing`` or ``spark`` (the same event is the execution's input)."""
        if self.state_machine is not None:
            return self.state_machine.grant_start_execution(grantee)
        assert self.function is not None
        return self.function.grant_invoke(grantee)

    # -- internals -----------------------------------------------------------------

    def _check_action_caps(self) -> None:
        caps = self.spec.monitoring.open_loop.max_action_share
        integration = self.spec.integration
        if not caps or integration is None:
            return
        unknown = sorted(set(caps) - set(integration.action_names))
        if unknown:
            raise ValueError(
                f"{self.spec.source or self.spec.name}: monitoring.open_loop.max_action_share "
                f"names actions {unknown} that no integration rule or default_action decides; "
                f"expected some of {integration.action_names}"
            )

    def _create_dead_letter_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "FailedRuns",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.data_lake.key,
            enforce_ssl=True,
            retention_period=days(14),
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the monitoring job and its schedule",
        )
        return queue

    def _create_function(self, memory_size: int, timeout: Duration) -> lambda_.Function:
        spec, lake = self.spec, self.data_lake
        # Not data_function: the job reads predictions, labels and baselines,
        # never the dated snapshots, so it has no DATASETS_BUCKET; it still
        # needs the data layer (the engines' libraries).
        function = self.stage_function(
            "Job",
            handler="model_monitor",
            description=f"MDLC {spec.name}: daily closed- and open-loop monitoring metrics",
            environment=self.job_environment(),
            memory_size=memory_size,
            timeout=timeout,
            data_layer=True,
            dead_letter_queue=self.dead_letter_queue,
            ephemeral_storage_size=(DUCKDB_EPHEMERAL_STORAGE_MB
                                    if spec.monitoring.engine == "duckdb" else None),
        )
        # EventBridge invokes asynchronously: Lambda retries a failed run twice
        # (a rerun overwrites the report and republishes the same values), then
        # sends the event to the dead-letter queue.
        function.configure_async_invoke(retry_attempts=2, max_event_age=hours(6))

        # Read-only on what the job reads, put-only on its reports.
        reads, reports = self._job_access()
        for bucket, pattern, reason in reads:
            grant_read_objects(bucket, function, pattern)
            self._acknowledge_objects(function, bucket, pattern, reason)
        lake.artifacts.grant_put(function, reports)
        self._acknowledge_objects(
            function, lake.artifacts, reports, "This model's monitoring reports, one per day"
        )
        self.grant_describe_packages(function)
        # PutMetricData has no resource-level permission; the namespace
        # condition is the only way to scope it.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": self.metrics_namespace}},
            )
        )
        acknowledge(
            function,
            iam5_resource("*"),
            "cloudwatch:PutMetricData supports no resource-level permission; it is limited to "
            f"the {self.metrics_namespace} namespace by condition (X-Ray also needs *)",
        )
        return function

    def _job_access(self) -> tuple[list[tuple[s3.IBucket, str, str]], str]:
        """What the job reads ``(bucket, pattern, why)`` and where it puts reports."""
        spec, lake = self.spec, self.data_lake
        key = self.baseline_key or Layout(spec.name).baselines
        baseline = Layout.everything(key) if key.endswith("/") else key
        reads = [
            (lake.predictions, scored_predictions_pattern(spec.name),
             "This model's predictions (the scored/ folder of each day), one folder per day"),
            (self.labels_bucket, f"{self.labels_prefix}*",
             "This model's labels, one folder per event date"),
            (self.baseline_bucket, baseline, "This model's drift baselines (the training "
             "data of each version)"),
        ]  # fmt: skip
        return reads, Layout.everything(Layout(spec.name).monitoring)

    def grant_describe_packages(self, grantee: iam.IGrantable) -> iam.Grant:
        """DescribeModelPackage on this model's versions, which name their drift
        baselines. With a fixed ``baseline_key`` nothing is needed, and the grant
        returned is ``Grant.drop`` (``success`` False), as aws-cdk-lib returns."""
        if self.baseline_key is not None:
            return iam.Grant.drop(grantee, "describe model packages (a fixed baseline is used)")
        resource = f"model-package/{self.model_package_group_name}/*"
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:DescribeModelPackage"],
            resource_arns=[Stack.of(self).format_arn(service="sagemaker", resource=resource)],
        )
        acknowledge(
            grantee if isinstance(grantee, Construct) else self,
            iam5_resource(printed_arn("sagemaker", resource)),
            "Describes only this model's package versions, named by the day's predictions "
            "at run time (each names its drift baseline)",
        )
        return grant

    def _acknowledge_objects(
        self, function: lambda_.Function, bucket: s3.IBucket, pattern: str, reason: str
    ) -> None:
        if not pattern.endswith("*"):
            return  # one named object: no wildcard to acknowledge
        reason = f"{reason}; objects are named by date at run time"
        if bucket.node.default_child is not None:
            acknowledge_objects(function, bucket, pattern, reason)
        elif not Token.is_unresolved(bucket.bucket_name):
            # An imported bucket: cdk-nag prints its ARN with <AWS::Partition>.
            # A bucket whose name is itself a token is the caller's to
            # acknowledge (its rendering is not known here).
            arn = f"arn:<AWS::Partition>:s3:::{bucket.bucket_name}/{pattern}"
            acknowledge(function, iam5_resource(f"{arn}"), reason)

    def _create_schedule(self) -> events.Rule:
        event = events.RuleTargetInput.from_object(self.schedule_input())
        # Delivery failures only (throttling, a deleted target): a failed run is
        # the workflow's to report, or Lambda's retries' (configure_async_invoke).
        delivery: dict[str, Any] = {"retry_attempts": 4, "max_event_age": hours(2),
                                    "dead_letter_queue": self.dead_letter_queue}
        target: events.IRuleTarget
        if self.state_machine is not None:
            target = targets.SfnStateMachine(self.state_machine, input=event, **delivery)
        else:
            assert self.function is not None
            target = targets.LambdaFunction(self.function, event=event, **delivery)
        return events.Rule(
            self,
            "Schedule",
            schedule=schedule_of(self.spec.monitoring.schedule),
            description=f"MDLC {self.spec.name}: daily model monitoring",
            targets=[target],
        )

    # -- the scale-out runner --------------------------------------------------------

    def _scale_out_job(self) -> ScaleOutJob:
        """``monitor_job.run`` in a Processing job, or with its metrics on Spark:
        the function's reads, reports and metrics, without Lambda's memory and
        time limits; :meth:`job_environment` as the Processing job's environment
        and the Spark job's flags (:data:`SPARK_FLAGS`)."""
        reads, reports = self._job_access()
        dated = "; objects are named by date at run time"
        return ScaleOutJob(
            reads=[S3Access(bucket, pattern, f"{why}{dated}") for bucket, pattern, why in reads],
            writes=[S3Access(self.data_lake.artifacts, reports,
                             f"This model's monitoring reports, one per day{dated}")],
            environment=self.job_environment(),
            spark_flags=SPARK_FLAGS,
            metrics_namespace=self.metrics_namespace,
        )

    def _create_workflow(self) -> sfn.StateMachine:
        """Schedule → this workflow → the Processing or Spark job; a failure
        notifies the topic."""
        spec = self.spec
        # The execution's input is the function's event ({"date": ...} or
        # nothing); the job gets it as JSON, so a backfill works the same way.
        if self.spark_runner is not None:
            # The Spark entry point's --date is the day the execution started
            # (UTC): without an event date the job monitors the day before, as
            # the function does, and a retried run monitors the same day.
            event = sfn.Pass(self, "Event", parameters={
                "event.$": "$",
                "started.$": "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, "
                "'T'), 0)",
            })
            steps = self.spark_runner.run(
                self,
                "RunJob",
                arguments={"--event": "States.JsonToString($.event)", "--date": "$.started"},
                result_path="$.summary",
                comment="Monitor the day with the metrics as Spark SQL on EMR Serverless",
            )
            runtime = minutes(spec.monitoring.spark.max_runtime_minutes).plus(
                SPARK_STARTUP_ALLOWANCE)
            runs_as = "a Spark job on EMR Serverless"
        else:
            assert self.processing_runner is not None
            event = sfn.Pass(self, "Event", parameters={"event.$": "$"})
            steps = self.processing_runner.run(
                self,
                "RunJob",
                arguments={"--event": "States.JsonToString($.event)"},
                result_path="$.summary",
                comment="Monitor the day in a SageMaker Processing job",
            )
            runtime = minutes(spec.monitoring.processing.max_runtime_minutes).plus(
                STARTUP_ALLOWANCE)
            runs_as = "a Processing job"
        boundary = error_boundary(
            self,
            "Monitor",
            steps=steps,
            topic=self.topic,
            failure_id="MonitoringRun",
            subject=f"MDLC {spec.name}: monitoring run failed",
            cause="The monitoring job failed; no metrics were published for the day",
            result_path="$.result",
            result_selector={"summary.$": "$[0].summary"},
        )
        return self.stage_workflow(
            "Workflow",
            definition=event.next(boundary),
            timeout=runtime.plus(minutes(10)),
            comment=f"MDLC {spec.name}: daily model monitoring as {runs_as}",
            run="monitoring",
        )

    def _create_alarm(
        self,
        scope: Construct,
        definition: AlarmDefinition,
        *,
        evaluation_periods: int | None = None,
    ) -> cloudwatch.Alarm:
        if definition.id in self.alarms:
            raise ValueError(f"two alarm definitions have the id {definition.id!r}")
        alarm = cloudwatch.Alarm(
            scope,
            definition.id,
            metric=definition.metric,
            threshold=definition.threshold,
            comparison_operator=definition.comparison,
            evaluation_periods=evaluation_periods or self.alarm_evaluation_periods,
            datapoints_to_alarm=1,
            treat_missing_data=definition.missing,
            alarm_description=definition.description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[definition.id] = alarm
        if definition.retrain:
            self.retrain_alarms.append(alarm)
        return alarm


def _prefix(value: str, field: str) -> str:
    if value.startswith("/") or not value.strip("/"):
        raise ValueError(f"{field} must be a key prefix such as 'labels/fraud/', got {value!r}")
    return value.rstrip("/") + "/"
