"""Stage 2, data quality monitoring: every snapshot is checked before use.

Two engines with the same rules and the same JSON report, chosen by
``quality.engine``: ``embedded`` (the default: ``mdlc_core.quality``,
pyarrow in memory) and ``duckdb`` (the rules compiled to SQL, run by DuckDB
with a memory limit and spilling; docs/engines.md says when to choose it). Two runners of
either: a Lambda function (also ``mdlc quality``) and a SageMaker
Processing job running the same code on a bigger instance, chosen by
``quality.runner: processing`` (see :mod:`mdlc_constructs.processing`); and
beyond one machine the rules as Spark SQL on EMR Serverless,
``quality.runner: spark`` (:mod:`mdlc_constructs.spark`).
With DuckDB the function's asset carries the DuckDB and sqlglot wheels for
its runtime and architecture (:mod:`mdlc_constructs.wheels`, no Docker).
"""

from __future__ import annotations

from typing import Any, Unpack

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mdlc_core.layout import Layout

from .compliance import (
    acknowledge,
    acknowledge_objects,
    iam5_resource,
)
from .functions import DUCKDB_EPHEMERAL_STORAGE_MB
from .metrics import QUALITY_NAMESPACE, quality_violations
from .scale_out import S3Access
from .scale_out_stage import ScaleOutJob, ScaleOutStage
from .stage import DataStage, DataStageProps
from .storage import grant_read_objects
from .tokens import minutes, string_at
from .workflow import invoke

METRICS_NAMESPACE = QUALITY_NAMESPACE
REPORT_PREFIX = "quality-reports"
#: The Spark job's flag for each variable of the Processing job's environment.
SPARK_FLAGS = {
    "DATASETS_BUCKET": "--datasets-bucket",
    "REPORT_BUCKET": "--report-bucket",
    "METRICS_NAMESPACE": "--namespace",
}


class DataQuality(ScaleOutStage, DataStage):
    """Checks a snapshot against the spec's rules; violations stop the workflow.

    The report (each rule, its observed value, pass/fail and a sample of
    offending keys) is written to the artifacts bucket under
    ``quality-reports/<model>/dt=<date>/report.json`` and the metric
    ``QualityViolations`` (dimensions Model, Rule; and Model alone for the
    total) is published to namespace ``MDLC/DataQuality``.

    Args:
        spec: the model spec; ``quality.runner`` picks the runner.
        data_lake: snapshots are read from ``datasets``, reports written to
            ``artifacts``.

    Attributes:
        function: the embedded runner (a Lambda function).
        processing_runner: the :class:`~mdlc_constructs.processing.ProcessingRunner`
            when the runner is ``processing`` (else None); processing_role: its role.
        spark_runner: the :class:`~mdlc_constructs.spark.SparkRunner` when the
            runner is ``spark`` (else None).

    Extension points: :attr:`processing_runner_class`, :attr:`spark_runner_class`
    (:class:`~mdlc_constructs.scale_out_stage.ScaleOutStage`).
    """

    scale_out_kind = "quality"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        **stage: Unpack[DataStageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake = self.spec, self.data_lake
        self.function: lambda_.Function = self.data_function(
            "Function", handler="quality_check",
            description=f"MDLC {spec.name}: check a snapshot against the data quality rules",
            environment={"REPORT_BUCKET": data_lake.artifacts.bucket_name,
                         "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE},
            memory_size=3008, timeout=minutes(15),
            ephemeral_storage_size=DUCKDB_EPHEMERAL_STORAGE_MB,
        )
        self._grant_runner(self.function)
        # PutMetricData has no resource-level permissions; the namespace
        # condition is the only way to scope it.
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        acknowledge(
            self.function,
            iam5_resource("*"),
            "cloudwatch:PutMetricData supports no resource-level permission; it is "
            "limited to the MDLC/DataQuality namespace by condition (X-Ray also needs *)",
        )
        self._create_scale_out_runner()
        self.processing_role: iam.IRole | None = (
            self.processing_runner.role if self.processing_runner is not None else None)

    def _grant_runner(self, grantee: iam.IGrantable) -> None:
        prefix = Layout.everything(Layout(self.spec.name).datasets)
        grant_read_objects(self.data_lake.datasets, grantee, prefix)
        reports = Layout.everything(Layout(self.spec.name).quality_reports)
        grant_read_objects(self.data_lake.artifacts, grantee, reports)
        self.data_lake.artifacts.grant_put(grantee, reports)
        scope = grantee if isinstance(grantee, Construct) else self
        acknowledge_objects(
            scope,
            self.data_lake.datasets,
            prefix,
            "Snapshot objects are named at run time; limited to this model",
        )
        acknowledge_objects(
            scope,
            self.data_lake.artifacts,
            reports,
            "One report per date, named at run time; limited to this model",
        )

    # -- the scale-out runner --------------------------------------------------

    def _scale_out_job(self) -> ScaleOutJob:
        """What either scale-out runner of the check is given: its reads and
        writes, the buckets and the namespace (as the function gets them)."""
        lake = self.data_lake
        layout = Layout(self.spec.name)
        reports = S3Access(lake.artifacts, Layout.everything(layout.quality_reports),
                           "One report per date, named at run time; limited to this model")
        return ScaleOutJob(
            reads=[
                S3Access(lake.datasets, Layout.everything(layout.datasets),
                         "Snapshot objects are named at run time; limited to this model"),
                # The earlier days' reports tell which snapshot last passed,
                # the one the consistency rules compare with.
                reports,
            ],
            writes=[reports],
            environment={
                "DATASETS_BUCKET": lake.datasets.bucket_name,
                "REPORT_BUCKET": lake.artifacts.bucket_name,
                "METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            spark_flags=SPARK_FLAGS,
            metrics_namespace=METRICS_NAMESPACE,
        )

    def grant_processing(self, role: iam.IRole) -> iam.Grant:
        """What a state machine needs to run the Processing runner (the steps of
        :meth:`check` already bring it to the state machine they are in)."""
        if self.processing_runner is None:
            raise ValueError(
                f"model {self.spec.name!r} checks quality in Lambda (quality.runner: embedded)"
            )
        return self.processing_runner.grant_start(role)

    # -- workflow steps --------------------------------------------------------

    def check(self, scope: Construct, construct_id: str = "CheckQuality") -> sfn.IChainable:
        """Check ``$.data.snapshot`` (against the previous snapshot for the
        consistency rules) into ``$.data.quality``; violations fail the
        execution with ``DataQualityViolations`` and the report's location,
        so nothing downstream sees bad data (the workflow's catch notifies)."""
        runner = self._scale_out_runner
        if runner is not None:
            # The same check, report and metrics in a Processing job, or the
            # rules as Spark SQL on EMR Serverless; the result lands at
            # $.data.quality as the function's would.
            step: sfn.IChainable = runner.run(
                scope,
                construct_id,
                arguments={
                    "--date": "$.data.snapshot.date",
                    "--snapshot-prefix": "$.data.snapshot.snapshot_prefix",
                },
                result_path="$.data.quality",
                comment="Check the snapshot against the spec's data quality rules "
                f"({runner.runs_on})",
            )
        else:
            step = invoke(
                scope,
                construct_id,
                self.function,
                payload={
                    "bucket": self.data_lake.datasets.bucket_name,
                    "snapshot_prefix.$": "$.data.snapshot.snapshot_prefix",
                    "date.$": "$.data.snapshot.date",
                    "previous_prefix": "latest",
                },
                result_path="$.data.quality",
                timeout=minutes(16),
                comment="Check the snapshot against the spec's data quality rules",
            )
        # A Fail, not a notification: the workflow's error boundary notifies
        # once, with this error and cause, whichever step failed.
        violations = sfn.Fail(
            scope,
            f"{construct_id}Violations",
            error="DataQualityViolations",
            # The notification names the failed rules (e.g. tenure_grows_daily), so
            # the reader knows what broke without opening the report.
            cause_path=sfn.JsonPath.format(
                "{} data quality violations, rules {}; report {}",
                string_at("$.data.quality.violations"),
                sfn.JsonPath.json_to_string(sfn.JsonPath.list_at("$.data.quality.failed_rules")),
                string_at("$.data.quality.report_uri"),
            ),
        )
        gate = sfn.Choice(scope, f"{construct_id}Passed")
        gate.when(sfn.Condition.boolean_equals("$.data.quality.passed", False), violations)
        return sfn.Chain.start(step).next(gate.afterwards(include_otherwise=True))

    # -- metrics -----------------------------------------------------------------

    def metric_violations(self, rule: str | None = None, **props: Any) -> cloudwatch.Metric:
        """Violations per check, in total or for one rule id (Maximum per day by
        default; ``props``: ``cloudwatch.MetricOptions``)."""
        return quality_violations(self.spec.name, rule, **props)
