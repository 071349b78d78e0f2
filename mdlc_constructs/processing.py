"""The scale-out runner: one SageMaker Processing path for quality, features and monitoring.

DESIGN §6: every engine has an embedded runner (Lambda) and a scale-out
runner with the same inputs and the same outputs, chosen by one spec field
(``quality.runner``, ``features.runner``, ``monitoring.runner``). The
scale-out runner is a SageMaker Processing job on one larger instance running
``lambdas/processing_job`` with ``--kind quality|features|monitoring``, which
calls the same ``mdlc_core`` functions as the Lambda handlers with its own
boto3 clients.

A workflow runs it with :meth:`ProcessingRunner.run`: a unique job name, the
job (``createProcessingJob.sync``), then the job's small JSON result read back
from S3 into the same result path the Lambda runner's step uses, so the steps
after it do not care which runner ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .compliance import (
    acknowledge,
    acknowledge_all,
    acknowledge_grant_actions,
    iam5_resource,
    printed_arn,
)
from .functions import stage_code
from .images import image_uri
from .network import ModelNetwork
from .sagemaker_access import grant_job_logs, pass_role_statement, sagemaker_role
from .scale_out import S3Access, ScaleOutRunner, acknowledge_objects
from .spec import ModelSpec
from .spec.data import ProcessingResources
from .storage import grant_read_objects
from .tokens import minutes, seconds, task_timeout
from .wheels import DUCKDB_PACKAGES, PROCESSING_TARGET
from .workflow import retry_transient

#: SageMaker's scikit-learn image: NumPy, pandas, PyArrow and boto3, everything
#: the engines need, maintained and patched by AWS. The Python 3.12 variant
#: (Ubuntu 24.04, PyArrow 17, NumPy 2.1; aws/deep-learning-containers#6344):
#: mdlc_core needs Python 3.11 or later, and 1.2-1 runs 3.9, where its first
#: import would fail.
FRAMEWORK = ("sklearn", "1.4-2-py312")
#: The job's kinds (``processing_job --kind``) and the longest (10 characters),
#: which with a 20-character model name and a 12-character run id keeps the
#: job name within SageMaker's 63.
KINDS = ("quality", "features", "monitoring")
#: Where job results land in the output bucket: ``processing/<model>/<kind>/<job>/``.
OUTPUT_PREFIX = "processing"

CODE_INPUT = "/opt/ml/processing/input/code"
CODE_DIR = "/opt/ml/processing/mdlc"
OUTPUT_DIR = "/opt/ml/processing/output"
#: A CDK folder asset is one zip object: the container unpacks it and runs
#: index.py with the job's arguments, as ``python3 index.py ...`` would.
BOOTSTRAP = (
    "import glob, runpy, sys, zipfile; "
    f"zipfile.ZipFile(sorted(glob.glob('{CODE_INPUT}/*.zip'))[0]).extractall('{CODE_DIR}'); "
    f"sys.path.insert(0, '{CODE_DIR}'); sys.argv = ['index.py', *sys.argv[1:]]; "
    f"runpy.run_path('{CODE_DIR}/index.py', run_name='__main__')"
)
#: The .sync integration waits through this EventBridge rule in the account.
SYNC_RULE = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
#: Time to get an instance and pull the image, on top of the job's own limit.
STARTUP_ALLOWANCE = minutes(20)


def stage_engine(spec: ModelSpec, kind: str) -> str:
    """The engine (``embedded`` or ``duckdb``) of the spec section ``kind`` names."""
    return str(getattr(getattr(spec, kind), "engine", "embedded"))


class ProcessingRunner(ScaleOutRunner):
    """One kind of job of one model on SageMaker Processing, and the step that runs it.

    Args:
        spec: the model spec (``name`` prefixes job names; the spec is bundled
            with the code as ``mdlc_config.json``).
        kind: ``quality``, ``features`` or ``monitoring`` (the entry's ``--kind``).
        key: encrypts the job's volume and its outputs; the job may use it.
        output_bucket: where the job's result lands
            (``processing/<model>/<kind>/<job name>/result.json``) and is read back.
        reads: objects the job reads (``s3:GetObject*``, and ``s3:ListBucket``
            under the pattern's prefix: :func:`~mdlc_constructs.storage.grant_read_objects`).
        writes: objects the job writes (``s3:PutObject`` via ``grant_put``).
        environment: the job's environment (bucket names and settings, as the
            Lambda runner gets them). Default: none.
        metrics_namespace: the CloudWatch namespace the job may publish to.
            Default: none (no ``cloudwatch:PutMetricData``).
        resources: instance type, volume and time limit. Default: the spec
            section of ``kind`` (``quality.processing``, ``features.processing``,
            ``monitoring.processing``).

    Attributes:
        role: the job's role. code: the code asset. image_uri: the image.
        job_prefix: ``<model>-<kind>-``; every job name starts with it.
        output_prefix: ``processing/<model>/<kind>/``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ModelSpec,
        kind: str,
        key: kms.IKey,
        output_bucket: s3.IBucket,
        reads: Sequence[S3Access] = (),
        writes: Sequence[S3Access] = (),
        environment: Mapping[str, str] | None = None,
        metrics_namespace: str | None = None,
        resources: ProcessingResources | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if environment and len(environment) > 100:
            raise ValueError(
                f"a Processing job takes at most 100 environment variables, got {len(environment)}"
            )
        self.spec = spec
        self.kind = kind
        self.key = key
        self.output_bucket = output_bucket
        self.environment = dict(environment or {})
        self.metrics_namespace = metrics_namespace
        self.resources = resources or getattr(spec, kind).processing
        self.job_prefix = f"{spec.name}-{kind}-"
        self.output_prefix = f"{OUTPUT_PREFIX}/{spec.name}/{kind}/"
        stack = Stack.of(self)
        self.role = sagemaker_role(
            self, "Role", description=f"MDLC {spec.name}: {kind} Processing jobs"
        )
        # A job whose stage runs on DuckDB needs its wheel (the image has none);
        # the other jobs' code stays without it.
        packages = DUCKDB_PACKAGES if stage_engine(spec, kind) == "duckdb" else ()
        self.code = s3_assets.Asset(
            self, "Code", path=stage_code("processing_job", spec.as_config(), packages=packages,
                                          target=PROCESSING_TARGET)
        )
        framework, version = FRAMEWORK
        # One mapping per stack, shared by every runner of the stack.
        self.image_uri = image_uri(
            stack, "MdlcProcessingImages", framework=framework, version=version
        )
        self._grant_job(list(reads), list(writes))

    # -- the job's role ----------------------------------------------------------------

    def network_config(self) -> dict[str, Any]:
        """The job's ``NetworkConfig``: in the stack's network when it has one
        (``ModelNetwork.of``), with traffic between instances encrypted."""
        config: dict[str, Any] = {"EnableNetworkIsolation": False}
        network = ModelNetwork.of(self)
        if network is not None:
            config["VpcConfig"] = network.vpc_config()
            config["EnableInterContainerTrafficEncryption"] = True
        return config

    def _grant_job(self, reads: list[S3Access], writes: list[S3Access]) -> None:
        role = self.role
        granted = self._grant_data(
            reads, writes,
            "SageMaker uploads each job's result under its own job name, below this prefix")
        # The code input is the asset's one object (an S3Prefix input lists its
        # key as the prefix): not the rest of the account's CDK assets bucket.
        grant_read_objects(self.code.bucket, role, self.code.s3_object_key)
        # The volume and the uploaded outputs are encrypted with the data key.
        self.key.grant_encrypt_decrypt(role)
        grant_job_logs(role, log_group="ProcessingJobs", stream_pattern=f"{self.job_prefix}*")
        reasons = {
            iam5_resource("*"): "cloudwatch:PutMetricData has no resource-level "
            "permission; it is limited by a namespace condition",
            iam5_resource(printed_arn(
                "logs", f"log-group:/aws/sagemaker/ProcessingJobs:log-stream:{self.job_prefix}*")):
            "Log streams of this model's jobs of this kind only",
        }
        if self.metrics_namespace:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": self.metrics_namespace}},
                )
            )
        acknowledge_all(role, reasons)
        acknowledge_grant_actions(role)
        for access in granted:
            acknowledge_objects(role, access)

    # -- the workflow side ------------------------------------------------------------------

    def start_statements(self) -> list[iam.PolicyStatement]:
        """What a state machine needs to run :meth:`run`'s job (reading the
        result's object is granted by the read step itself)."""
        stack = Stack.of(self)
        return [
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                ],
                resources=[self.job_arn_pattern],
            ),
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(service="events", resource="rule", resource_name=SYNC_RULE)
                ],
            ),
            pass_role_statement(self.role),
            # VolumeKmsKeyId/KmsKeyId: SageMaker creates grants on the key on
            # behalf of the caller of CreateProcessingJob...
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            # ...and describes the key as the caller (kms:GrantIsForAWSResource
            # is never set on DescribeKey); reading the result back decrypts an
            # SSE-KMS object of the output bucket.
            iam.PolicyStatement(
                actions=["kms:DescribeKey", "kms:Decrypt"], resources=[self.key.key_arn]
            ),
        ]

    @property
    def job_arn_pattern(self) -> str:
        return Stack.of(self).format_arn(
            service="sagemaker", resource="processing-job", resource_name=f"{self.job_prefix}*"
        )

    start_intent = "start the Processing jobs"

    def acknowledge_start_resources(self, scope: Construct) -> None:
        acknowledge(
            scope,
            iam5_resource(printed_arn("sagemaker", f"processing-job/{self.job_prefix}*")),
            "Job names carry a run id; the prefix limits them to this model's jobs of this kind",
        )

    def run(
        self,
        scope: Construct,
        construct_id: str,
        *,
        arguments: Mapping[str, str],
        result_path: str,
        comment: str | None = None,
    ) -> sfn.Chain:
        """The steps that run one job and put its result at ``result_path``.

        1. ``<id>`` (Pass): a job name, ``<model>-<kind>-<12 hex digits>``,
           unique per run, kept at ``<result_path>.job_name`` until step 3.
        2. ``<id>Job``: ``createProcessingJob.sync`` with ``--kind <kind>`` and
           ``arguments`` (flag -> a JSONPath such as ``$.data.snapshot.date``,
           an intrinsic such as ``States.JsonToString($.event)``, or a literal);
           it waits for the job and fails when the job fails.
        3. ``<id>ReadResult``: the job's ``result.json`` (s3:GetObject), then
           ``<id>Result`` puts it at ``result_path``, exactly where the Lambda
           runner's step puts its return value.

        The state machine that contains these steps gets the statements of
        :meth:`start_statements` with them.
        """
        if not result_path.startswith("$.") or result_path.endswith("."):
            raise ValueError(
                f"result_path must be a JSONPath such as '$.data.x', got {result_path!r}"
            )
        bucket = self.output_bucket.bucket_name
        job_name = f"{result_path}.job_name"
        name = sfn.Pass(
            scope,
            construct_id,
            comment=comment or f"Run the {self.kind} job of {self.spec.name} on Processing",
            parameters={
                # The last group of a UUID is 48 random bits: unique enough for
                # a daily job, short enough for SageMaker's 63 characters.
                "job_name.$": f"States.Format('{self.job_prefix}{{}}', States.ArrayGetItem("
                "States.StringSplit(States.UUID(), '-'), 4))"
            },
            result_path=result_path,
        )
        args = ["'--kind'", f"'{self.kind}'"]
        for flag, value in arguments.items():
            args += [f"'{flag}'", value if value.startswith(("$", "States.")) else f"'{value}'"]
        resources = self.resources
        job = sfn.CustomState(
            scope,
            f"{construct_id}Job",
            state_json={
                "Type": "Task",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync",
                "Parameters": {
                    "ProcessingJobName.$": job_name,
                    "RoleArn": self.role.role_arn,
                    "AppSpecification": {
                        "ImageUri": self.image_uri,
                        "ContainerEntrypoint": ["python3", "-c", BOOTSTRAP],
                        "ContainerArguments.$": f"States.Array({', '.join(args)})",
                    },
                    "Environment": self.environment,
                    "ProcessingInputs": [
                        {
                            "InputName": "code",
                            "S3Input": {
                                "S3Uri": self.code.s3_object_url,
                                "LocalPath": CODE_INPUT,
                                "S3DataType": "S3Prefix",
                                "S3InputMode": "File",
                            },
                        }
                    ],
                    "ProcessingOutputConfig": {
                        "KmsKeyId": self.key.key_arn,
                        "Outputs": [
                            {
                                "OutputName": "result",
                                "S3Output": {
                                    "S3Uri.$": f"States.Format('s3://{bucket}/"
                                    f"{self.output_prefix}{{}}/', {job_name})",
                                    "LocalPath": OUTPUT_DIR,
                                    "S3UploadMode": "EndOfJob",
                                },
                            }
                        ],
                    },
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": resources.instance_type,
                            "VolumeSizeInGB": resources.volume_size_gb,
                            "VolumeKmsKeyId": self.key.key_arn,
                        }
                    },
                    # Not isolated: the job reads and writes S3 and publishes
                    # metrics through the AWS APIs itself, as the Lambda does.
                    "NetworkConfig": self.network_config(),
                    "StoppingCondition": {
                        "MaxRuntimeInSeconds": resources.max_runtime_minutes * 60
                    },
                    "Tags": [
                        {"Key": "mdlc:model", "Value": self.spec.name},
                        {"Key": "mdlc:kind", "Value": self.kind},
                    ],
                },
                # A null ResultPath does not survive jsii (the key is dropped and
                # the job's description would replace the state, losing the
                # job name ReadResult needs): keep the description beside it.
                "ResultPath": f"{result_path}.job",
                "TimeoutSeconds": resources.max_runtime_minutes * 60
                + int(STARTUP_ALLOWANCE.to_seconds()),
            },
        )
        # Throttling and capacity errors of CreateProcessingJob: no job was
        # created, so the same name is free for the retry. A failed job is
        # States.TaskFailed and is not retried (it would fail the same way).
        retry_transient(job, errors=("ThrottlingException", "SageMaker.AmazonSageMakerException"),
                        attempts=3, interval=seconds(30))
        read = tasks.CallAwsService(
            scope,
            f"{construct_id}ReadResult",
            service="s3",
            action="getObject",
            parameters={
                "Bucket": bucket,
                "Key.$": f"States.Format('{self.output_prefix}{{}}/result.json', {job_name})",
            },
            iam_resources=[self.output_bucket.arn_for_objects(f"{self.output_prefix}*")],
            # Whatever state machine these steps end up in can run the job.
            additional_iam_statements=self.start_statements(),
            result_selector={"result.$": "States.StringToJson($.Body)"},
            result_path=result_path,
            task_timeout=task_timeout(minutes(1)),
            comment="The job's result: what the Lambda runner would have returned",
        )
        retry_transient(read, errors=("S3.SdkClientException", "S3.InternalErrorException",
                                      "ThrottlingException"))  # fmt: skip
        result = sfn.Pass(
            scope,
            f"{construct_id}Result",
            input_path=f"{result_path}.result",
            result_path=result_path,
        )
        self._acknowledge_start(Stack.of(scope))
        return sfn.Chain.start(name).next(job).next(read).next(result)
