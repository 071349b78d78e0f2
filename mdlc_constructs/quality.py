"""Stage 2, data quality monitoring: every snapshot is checked before use.

One engine (``mdlc_core.quality``), two runners with the same rules and the
same JSON report: embedded (a Lambda function; also ``mdlc quality``) and
scale-out (a SageMaker Processing job running the same code on a bigger
instance, chosen by ``quality.runner: processing`` in the spec).
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .compliance import (
    acknowledge,
    acknowledge_all,
    acknowledge_grant_actions,
    acknowledge_objects,
)
from .functions import python_function, stage_code
from .images import image_uri
from .spec import ModelSpec
from .storage import DataLake
from .workflow import invoke

METRICS_NAMESPACE = "MDLC/DataQuality"
VIOLATIONS_METRIC = "QualityViolations"
REPORT_PREFIX = "quality-reports"

#: The Processing runner's image: SageMaker's scikit-learn container ships
#: Python with NumPy, pandas and PyArrow, all the engine needs.
PROCESSING_FRAMEWORK = ("sklearn", "1.2-1")


class DataQuality(Construct):
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
        processing_role: the Processing job's role, when the runner is ``processing``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ModelSpec,
        data_lake: DataLake,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.data_lake = data_lake
        self.function: lambda_.Function = python_function(
            self,
            "Function",
            handler="quality_check",
            description=f"MDLC {spec.name}: check a snapshot against the data quality rules",
            key=data_lake.key,
            config=spec.as_config(),
            environment={
                "REPORT_BUCKET": data_lake.artifacts.bucket_name,
                "DATASETS_BUCKET": data_lake.datasets.bucket_name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            memory_size=3008,
            timeout=Duration.minutes(15),
            data_layer=True,
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
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData supports no resource-level permission; it is "
            "limited to the MDLC/DataQuality namespace by condition (X-Ray also needs *)",
        )
        self.processing_role: iam.Role | None = None
        self._code_asset: s3_assets.Asset | None = None
        if spec.quality.runner == "processing":
            self._create_processing_runner()

    def _grant_runner(self, grantee: iam.IGrantable) -> None:
        prefix = f"datasets/{self.spec.name}/*"
        self.data_lake.datasets.grant_read(grantee, prefix)
        reports = f"{REPORT_PREFIX}/{self.spec.name}/*"
        self.data_lake.artifacts.grant_read(grantee, reports)
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

    def _create_processing_runner(self) -> None:
        self.processing_role = iam.Role(
            self,
            "ProcessingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"MDLC {self.spec.name}: data quality Processing job",
        )
        self._grant_runner(self.processing_role)
        self._code_asset = s3_assets.Asset(
            self, "ProcessingCode", path=stage_code("quality_processing", self.spec.as_config())
        )
        self._code_asset.grant_read(self.processing_role)
        logs = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/ProcessingJobs:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.processing_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=[logs],
            )
        )
        self.processing_role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        acknowledge_grant_actions(self.processing_role)
        acknowledge_all(
            self.processing_role,
            {
                "AwsSolutions-IAM5[Resource::*]": "cloudwatch:PutMetricData supports no "
                "resource-level permission; limited to the MDLC/DataQuality namespace",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
                "<AWS::AccountId>-<AWS::Region>/*]": "Reads the job's code, a CDK asset whose "
                "object name is a content hash known only at synthesis of the asset",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:"
                "<AWS::AccountId>:log-group:/aws/sagemaker/ProcessingJobs:*]": "SageMaker "
                "writes one log stream per job into this fixed log group",
            },
        )

    def _processing_state(self, scope: Construct, construct_id: str) -> sfn.IChainable:
        assert self.processing_role is not None and self._code_asset is not None
        framework, version = PROCESSING_FRAMEWORK
        image = image_uri(self, "ProcessingImages", framework=framework, version=version)
        datasets = self.data_lake.datasets.bucket_name
        artifacts = self.data_lake.artifacts.bucket_name
        job = {
            # Execution names are unique per state machine; the job name must be
            # unique per account, so it carries the model name and a run id.
            "ProcessingJobName.$": f"States.Format('{self.spec.name}-quality-{{}}', "
            "States.ArrayGetItem(States.StringSplit($$.Execution.Name, '-'), 0))",
            "RoleArn": self.processing_role.role_arn,
            "AppSpecification": {
                "ImageUri": image,
                "ContainerEntrypoint": ["python3", "/opt/ml/processing/code/index.py"],
                "ContainerArguments.$": "States.Array('--date', $.data.snapshot.date)",
            },
            "ProcessingInputs": [
                {
                    "InputName": "code",
                    "S3Input": {
                        "S3Uri": self._code_asset.s3_object_url,
                        "LocalPath": "/opt/ml/processing/code",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
                {
                    "InputName": "snapshot",
                    "S3Input": {
                        "S3Uri.$": f"States.Format('s3://{datasets}/{{}}', "
                        "$.data.snapshot.snapshot_prefix)",
                        "LocalPath": "/opt/ml/processing/input/current",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                },
            ],
            "ProcessingOutputConfig": {
                "KmsKeyId": self.data_lake.key.key_arn,
                "Outputs": [
                    {
                        "OutputName": "report",
                        "S3Output": {
                            "S3Uri.$": f"States.Format('s3://{artifacts}/{REPORT_PREFIX}/"
                            f"{self.spec.name}/dt={{}}/', $.data.snapshot.date)",
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ],
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.4xlarge",
                    "VolumeSizeInGB": 100,
                    "VolumeKmsKeyId": self.data_lake.key.key_arn,
                }
            },
            # Not isolated: the job publishes its violation metrics to CloudWatch.
            "NetworkConfig": {"EnableNetworkIsolation": False},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        }
        with_previous = json.loads(json.dumps(job))
        with_previous["ProcessingInputs"].append(
            {
                "InputName": "previous",
                "S3Input": {
                    "S3Uri.$": f"States.Format('s3://{datasets}/{{}}', "
                    "$.data.snapshot.previous_snapshot_prefix)",
                    "LocalPath": "/opt/ml/processing/input/previous",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        )
        with_previous["AppSpecification"]["ContainerArguments.$"] = (
            "States.Array('--date', $.data.snapshot.date, "
            "'--previous-date', $.data.snapshot.previous_date)"
        )

        def run(suffix: str, parameters: dict) -> sfn.CustomState:
            return sfn.CustomState(
                scope,
                f"{construct_id}{suffix}",
                state_json={
                    "Type": "Task",
                    "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync",
                    "Parameters": parameters,
                    "ResultPath": sfn.JsonPath.DISCARD,
                    "TimeoutSeconds": 3900,
                },
            )

        # The consistency rules compare with the previous snapshot, when there is one.
        choose = sfn.Choice(scope, construct_id)
        choose.when(
            sfn.Condition.is_present("$.data.snapshot.previous_snapshot_prefix"),
            run("WithPrevious", with_previous),
        )
        choose.otherwise(run("FirstSnapshot", job))
        # The job writes the same report the Lambda runner writes; the gate
        # reads its summary back so both runners stop the workflow alike.
        read = tasks.CallAwsService(
            scope,
            f"{construct_id}ReadReport",
            service="s3",
            action="getObject",
            parameters={
                "Bucket": artifacts,
                "Key.$": f"States.Format('{REPORT_PREFIX}/{self.spec.name}/dt={{}}/report.json', "
                "$.data.snapshot.date)",
            },
            iam_resources=[
                self.data_lake.artifacts.arn_for_objects(f"{REPORT_PREFIX}/{self.spec.name}/*")
            ],
            result_selector={"report.$": "States.StringToJson($.Body)"},
            result_path="$.data.qualityReport",
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        acknowledge_objects(
            Stack.of(scope),
            self.data_lake.artifacts,
            f"{REPORT_PREFIX}/{self.spec.name}/*",
            "The workflow reads back the report of the day the job wrote; names are dated",
        )
        summarize = sfn.Pass(
            scope,
            f"{construct_id}Summary",
            parameters={
                "passed.$": "$.data.qualityReport.report.summary.passed",
                "violations.$": "$.data.qualityReport.report.summary.violations",
                "report_uri.$": f"States.Format('s3://{artifacts}/{REPORT_PREFIX}/"
                f"{self.spec.name}/dt={{}}/report.json', $.data.snapshot.date)",
            },
            result_path="$.data.quality",
        )
        return sfn.Chain.start(choose.afterwards()).next(read).next(summarize)

    def grant_processing(self, role: iam.IRole) -> None:
        """What a state machine needs to run the Processing runner."""
        assert self.processing_role is not None
        stack = Stack.of(self)
        job_arn = stack.format_arn(
            service="sagemaker",
            resource="processing-job",
            resource_name=f"{self.spec.name}-quality-*",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                ],
                resources=[job_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForSageMakerProcessingJobsRule",
                    )
                ],
            )
        )
        self.processing_role.grant_pass_role(role)
        if isinstance(role, Construct):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
                f"<AWS::AccountId>:processing-job/{self.spec.name}-quality-*]",
                "Job names carry the execution id; the prefix limits them to this model",
            )

    # -- workflow steps --------------------------------------------------------

    def check(self, scope: Construct, construct_id: str = "CheckQuality") -> sfn.IChainable:
        """Check ``$.data.snapshot`` (against the previous snapshot for the
        consistency rules) into ``$.data.quality``; violations fail the
        execution with ``DataQualityViolations`` and the report's location,
        so nothing downstream sees bad data (the workflow's catch notifies)."""
        if self.spec.quality.runner == "processing":
            step: sfn.IChainable = self._processing_state(scope, construct_id)
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
                timeout=Duration.minutes(16),
                comment="Check the snapshot against the spec's data quality rules",
            )
        # A Fail, not a notification: the workflow's error boundary notifies
        # once, with this error and cause, whichever step failed.
        violations = sfn.Fail(
            scope,
            f"{construct_id}Violations",
            error="DataQualityViolations",
            cause_path=sfn.JsonPath.format(
                "{} data quality violations; report {}",
                sfn.JsonPath.string_at("$.data.quality.violations"),
                sfn.JsonPath.string_at("$.data.quality.report_uri"),
            ),
        )
        gate = sfn.Choice(scope, f"{construct_id}Passed")
        gate.when(sfn.Condition.boolean_equals("$.data.quality.passed", False), violations)
        return sfn.Chain.start(step).next(gate.afterwards(include_otherwise=True))

    # -- metrics -----------------------------------------------------------------

    def metric_violations(
        self, rule: str | None = None, period: Duration = Duration.days(1)
    ) -> cloudwatch.Metric:
        """Violations per check, in total or for one rule id."""
        dimensions = {"Model": self.spec.name}
        if rule:
            dimensions["Rule"] = rule
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=VIOLATIONS_METRIC,
            dimensions_map=dimensions,
            statistic="Maximum",
            period=period,
        )
