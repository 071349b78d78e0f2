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

from collections.abc import Mapping
from typing import Any, Unpack

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .compliance import acknowledge, iam5_resource, printed_arn
from .functions import stage_code
from .images import image_uri
from .network import ModelNetwork
from .sagemaker_access import grant_job_logs, pass_role_statement, sagemaker_role
from .scale_out import METRICS_REASON, ScaleOutProps, ScaleOutRunner
from .scale_out import S3Access as S3Access  # re-exported: it was defined here first
from .spec import ModelSpec
from .spec.data import ProcessingResources
from .storage import grant_read_objects
from .tokens import minutes, seconds
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
    """The engine of the spec section ``kind`` names: ``duckdb`` for the batch
    stages (the only engine since issue #18), ``""`` for a section without one."""
    return str(getattr(getattr(spec, kind), "engine", ""))


class ProcessingRunner(ScaleOutRunner):
    """One kind of job of one model on SageMaker Processing, and the step that runs it.

    Args (besides :class:`~mdlc_constructs.scale_out.ScaleOutProps`: ``spec``,
    ``kind``, ``key``, ``output_bucket``, ``reads``, ``writes``, ``metrics_namespace``):
        kind: ``quality``, ``features`` or ``monitoring`` (:data:`KINDS`).
        key: encrypts the job's volume and its outputs.
        output_bucket: the result lands at
            ``processing/<model>/<kind>/<job name>/result.json``.
        environment: the job's environment (bucket names and settings, as the
            Lambda runner gets them). Default: none.
        resources: instance type, volume and time limit. Default: the spec
            section of ``kind`` (``quality.processing``, ``features.processing``,
            ``monitoring.processing``).

    Attributes (besides :class:`~mdlc_constructs.scale_out.ScaleOutRunner`'s):
        role: the job's role. code: the code asset. image_uri: the image.
        job_prefix: ``<model>-<kind>-``; every job name starts with it.
        output_prefix: ``processing/<model>/<kind>/``.
    """

    kinds = KINDS
    output_root = OUTPUT_PREFIX
    resources_field = "processing"
    runs_on = "Processing"
    outputs_reason = "SageMaker uploads each job's result under its own job name, below this prefix"
    start_intent = "start the Processing jobs"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: Mapping[str, str] | None = None,
        resources: ProcessingResources | None = None,
        **props: Unpack[ScaleOutProps],
    ) -> None:
        super().__init__(scope, construct_id, resources=resources, **props)
        if environment and len(environment) > 100:
            raise ValueError(
                f"a Processing job takes at most 100 environment variables, got {len(environment)}"
            )
        self.environment = dict(environment or {})
        spec, kind = self.spec, self.kind
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
        self._grant_job()

    @property
    def job_prefix(self) -> str:
        """``<model>-<kind>-``: every job name starts with it (:attr:`name_prefix`)."""
        return self.name_prefix

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

    def _grant_service(self, role: iam.Role) -> dict[str, str]:
        # The code input is the asset's one object (an S3Prefix input lists its
        # key as the prefix): not the rest of the account's CDK assets bucket.
        grant_read_objects(self.code.bucket, role, self.code.s3_object_key)
        # The volume and the uploaded outputs are encrypted with the data key.
        self.key.grant_encrypt_decrypt(role)
        grant_job_logs(role, log_group="ProcessingJobs", stream_pattern=f"{self.job_prefix}*")
        return {
            # grant_job_logs: SageMaker's own metrics, in its /aws/sagemaker/* namespaces.
            iam5_resource("*"): METRICS_REASON,
            iam5_resource(printed_arn(
                "logs", f"log-group:/aws/sagemaker/ProcessingJobs:log-stream:{self.job_prefix}*")):
            "Log streams of this model's jobs of this kind only",
        }

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

    def acknowledge_start_resources(self, scope: Construct) -> None:
        acknowledge(
            scope,
            iam5_resource(printed_arn("sagemaker", f"processing-job/{self.job_prefix}*")),
            "Job names carry a run id; the prefix limits them to this model's jobs of this kind",
        )

    def _job_state(self, scope: Construct, state_id: str, *, arguments: Mapping[str, str],
                   job_name: str, result_key: str, result_path: str) -> sfn.CustomState:
        """``createProcessingJob.sync``: the job's output uploads to
        ``<output_prefix><job name>/``, where ``result_key`` reads it back."""
        bucket = self.output_bucket.bucket_name
        args = ["'--kind'", f"'{self.kind}'", *self.run_arguments(arguments)]
        resources = self.resources
        job = sfn.CustomState(
            scope,
            state_id,
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
        return job
