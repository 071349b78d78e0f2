"""The Spark runner: a stage's rules as Spark SQL on EMR Serverless.

``quality.runner: spark`` checks each snapshot with the rules compiled to
Spark SQL (:mod:`mdlc_core.sql`) on an EMR Serverless application of the
model, for days beyond one machine. docs/engines.md ("Spark") says why EMR
Serverless rather than Glue, and what the job's Python is.

A workflow runs it with :meth:`SparkRunner.run`: a unique run name, the job
(``emr-serverless:startJobRun.sync``, a ``CustomState``: aws-cdk-lib has no
task class for it), then the job's small JSON result read back from S3 into
the same result path the Lambda runner's step uses, so the steps after it do
not care which runner ran.

What it creates: the application (Spark of ``spark.release_label``, capacity
bounded by ``spark.max_*``, stopped when idle, its logs in a KMS-encrypted log
group of the model and its managed Spark UI logs encrypted with the same key,
in the model's subnets when the stack has a network), the job's execution
role (the model's prefixes only), and two assets built without Docker: the
entry point (``mdlc_core/spark_job.py``) and a zip of ``mdlc_core`` with the
spec (``spark.submit.pyFiles``). The job's Python is ``spark.python_environment``
(``spark.archives``), because the release's own Python is older than
mdlc_core's 3.11.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Unpack

from aws_cdk import ArnFormat, Aws, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_emrserverless as emrs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .compliance import (
    acknowledge,
    iam5_resource,
    printed_arn,
    resource_token,
)
from .functions import core_root
from .network import ModelNetwork
from .scale_out import ScaleOutProps, ScaleOutRunner
from .spec.data import SparkResources
from .storage import grant_read_objects, grant_read_write_objects
from .tokens import minutes, seconds
from .workflow import retry_transient

#: The job kinds the entry point runs (``spark_job --kind``).
KINDS = ("quality", "features", "monitoring")
#: Where job results land in the output bucket: ``spark/<model>/<kind>/<run>/result.json``.
OUTPUT_PREFIX = "spark"
#: The .sync integration waits through this EventBridge rule in the account.
SYNC_RULE = "StepFunctionsGetEventsForEMRServerlessJobRule"
SERVICE = "emr-serverless.amazonaws.com"
#: Time to start the application and its workers, on top of the job's own limit.
STARTUP_ALLOWANCE = minutes(15)
CONFIG_FILE_NAME = "mdlc_config.json"
#: The kinds whose executors write their tables under the run's folder of the
#: output prefix first (``<run>/staging/``), which the driver then copies to
#: their keys and deletes (``mdlc_core.spark_io.write_parquet``).
STAGED_KINDS = ("features",)
#: The EMRFS settings that encrypt every object Spark writes with the data key
#: (``mdlc_core.spark_io.EMRFS_SSE``, ``EMRFS_SSE_KEY``: the local stand-in reads the same).
EMRFS_SSE = "spark.hadoop.fs.s3.enableServerSideEncryption"
EMRFS_SSE_KEY = "spark.hadoop.fs.s3.serverSideEncryption.kms.keyId"


class SparkRunner(ScaleOutRunner):
    """One kind of job of one model on EMR Serverless, and the step that runs it.

    Args:
        spec: the model spec (``name`` prefixes run names; the spec ships with
            the code as ``mdlc_config.json``).
        kind: one of :data:`KINDS` (the entry's ``--kind``).
        key: encrypts the logs, the managed Spark UI logs and the result; the
            job may use it.
        output_bucket: where the job's result lands
            (``spark/<model>/<kind>/<run name>/result.json``) and is read back.
        reads: objects the job reads (``s3:GetObject*``, ``s3:ListBucket`` under
            the pattern's prefix).
        writes: objects the job writes (``grant_put``).
        arguments: entry-point arguments every run gets (flag -> literal), e.g.
            the buckets; :meth:`run` adds the per-run ones.
        metrics_namespace: the CloudWatch namespace the job may publish to.
            Default: none (no ``cloudwatch:PutMetricData``).
        resources: release, Python environment, capacity and time limit.
            Default: the spec section of ``kind`` (``<kind>.spark``, e.g. ``features.spark``).

    Attributes:
        application: the ``CfnApplication``. role: the job's execution role.
        entry, code: the assets. log_group: the jobs' logs.
        run_prefix: ``<model>-<kind>-``; every run name starts with it.
        output_prefix: ``spark/<model>/<kind>/``.
    """

    kinds = KINDS
    output_root = OUTPUT_PREFIX
    resources_field = "spark"
    runs_on = "Spark"
    run_noun = "run"
    outputs_reason = "Each run writes its result under its own run name, below this prefix"
    start_intent = "start the Spark jobs"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        arguments: Mapping[str, str] | None = None,
        resources: SparkResources | None = None,
        **props: Unpack[ScaleOutProps],
    ) -> None:
        super().__init__(scope, construct_id, resources=resources, **props)
        spec, kind = self.spec, self.kind
        self.arguments = dict(arguments or {})
        if self.resources.python_environment is None:
            raise ValueError(
                f"model {spec.name!r}: {kind}.spark.python_environment is required with "
                "runner spark (a packed Python 3.11+ environment, s3://.../env.tar.gz; "
                "docs/engines.md)")
        self.entry = s3_assets.Asset(self, "Entry", path=str(core_root() / "spark_job.py"))
        self.code = s3_assets.Asset(self, "Code", path=stage_spark_code(spec.as_config()))
        self.log_group = logs.LogGroup(
            self, "Logs", encryption_key=self.key, retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.security_group = self._security_group()
        self.application = self._application()
        self.role = self._role()
        self._grant_job()

    @property
    def run_prefix(self) -> str:
        """``<model>-<kind>-``: every run name starts with it (:attr:`name_prefix`)."""
        return self.name_prefix

    # -- the application ------------------------------------------------------------

    def _security_group(self) -> ec2.SecurityGroup | None:
        network = ModelNetwork.of(self)
        if network is None:
            return None
        group = ec2.SecurityGroup(
            self, "Workers", vpc=network.vpc, allow_all_outbound=False,
            description="MDLC Spark workers: each other (driver and executors), HTTPS to AWS "
            "endpoints",
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
            "HTTPS to AWS APIs through the VPC endpoints (the subnets have no other route; "
            "the S3 gateway's addresses are an AWS prefix list)")
        group.add_ingress_rule(group, ec2.Port.all_tcp(),
                               "The driver and executors of one job talk to each other")
        group.add_egress_rule(group, ec2.Port.all_tcp(),
                              "The driver and executors of one job talk to each other")
        return group

    def _application(self) -> emrs.CfnApplication:
        resources = self.resources
        network = ModelNetwork.of(self)
        network_config = None
        if network is not None:
            assert self.security_group is not None
            network_config = emrs.CfnApplication.NetworkConfigurationProperty(
                subnet_ids=list(network.subnet_ids),
                security_group_ids=[self.security_group.security_group_id],
            )
        return emrs.CfnApplication(
            self, "Application",
            name=f"mdlc-{self.spec.name}-{self.kind}",
            release_label=resources.release_label,
            type="SPARK",
            architecture="X86_64",
            auto_start_configuration=emrs.CfnApplication.AutoStartConfigurationProperty(
                enabled=True),
            auto_stop_configuration=emrs.CfnApplication.AutoStopConfigurationProperty(
                enabled=True, idle_timeout_minutes=resources.idle_timeout_minutes),
            maximum_capacity=emrs.CfnApplication.MaximumAllowedResourcesProperty(
                cpu=f"{resources.max_vcpu} vCPU", memory=f"{resources.max_memory_gb} GB",
                disk=f"{resources.max_disk_gb} GB"),
            network_configuration=network_config,
            monitoring_configuration=emrs.CfnApplication.MonitoringConfigurationProperty(
                cloud_watch_logging_configuration=(
                    emrs.CfnApplication.CloudWatchLoggingConfigurationProperty(
                        enabled=True, log_group_name=self.log_group.log_group_name,
                        log_stream_name_prefix=self.run_prefix.rstrip("-"),
                        encryption_key_arn=self.key.key_arn)),
                # The Spark UI's event logs EMR Serverless keeps for 30 days.
                managed_persistence_monitoring_configuration=(
                    emrs.CfnApplication.ManagedPersistenceMonitoringConfigurationProperty(
                        enabled=True, encryption_key_arn=self.key.key_arn)),
            ),
            tags=[{"key": "mdlc:model", "value": self.spec.name},
                  {"key": "mdlc:kind", "value": self.kind}],
        )

    @property
    def application_arn(self) -> str:
        return self.application.attr_arn

    # -- the job's role ---------------------------------------------------------------

    def _role(self) -> iam.Role:
        stack = Stack.of(self)
        # Only EMR Serverless acting for this application in this account
        # (aws:SourceArn, aws:SourceAccount: no confused deputy).
        return iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal(SERVICE, conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnEquals": {"aws:SourceArn": self.application_arn},
            }),
            description=f"MDLC {self.spec.name}: {self.kind} Spark jobs (EMR Serverless)",
        )

    def _grant_service(self, role: iam.Role) -> dict[str, str]:
        # The entry point and the code archive: these two objects of the assets
        # bucket, not the rest of the account's CDK assets.
        for asset in (self.entry, self.code):
            grant_read_objects(asset.bucket, role, asset.s3_object_key)
        environment_bucket, environment_key = _split_s3_uri(self.resources.python_environment)
        stack = Stack.of(self)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[f"arn:{stack.partition}:s3:::{environment_bucket}/{environment_key}"],
        ))
        if self.kind in STAGED_KINDS:
            # The executors write under the run's staging folder (EMRFS's
            # committer reads and lists what it wrote); the driver copies from
            # it and deletes it. Only this kind's own output prefix.
            grant_read_write_objects(self.output_bucket, role, f"{self.output_prefix}*")
        # Results, logs and the Spark UI's logs are encrypted with the data key.
        self.key.grant_encrypt_decrypt(role)
        self.log_group.grant_write(role)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["logs:DescribeLogGroups", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="*",
                                        arn_format=ArnFormat.COLON_RESOURCE_NAME)],
        ))
        return {
            iam5_resource(printed_arn("logs", "log-group:*")): "EMR Serverless looks its log "
            "group up by name (logs:DescribeLogGroups has no narrower resource)",
            iam5_resource(f"{resource_token(self.log_group)}:*"): "The jobs' log streams are "
            "named by EMR Serverless per run, inside this log group",
        }

    # -- the workflow side ----------------------------------------------------------

    def start_statements(self) -> list[iam.PolicyStatement]:
        """What a state machine needs to run :meth:`run`'s job, per the Step
        Functions EMR Serverless integration's IAM page (static resources,
        Run a Job): start runs on this application, get and cancel its runs,
        the managed rule that reports a run's end, PassRole of the job role
        to EMR Serverless only; and decrypting the result it reads back."""
        stack = Stack.of(self)
        return [
            iam.PolicyStatement(actions=["emr-serverless:StartJobRun"],
                                resources=[self.application_arn]),
            iam.PolicyStatement(actions=["emr-serverless:GetJobRun",
                                         "emr-serverless:CancelJobRun"],
                                resources=[self.job_run_arn_pattern]),
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule",
                                            resource_name=SYNC_RULE)],
            ),
            iam.PolicyStatement(actions=["iam:PassRole"], resources=[self.role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": SERVICE}}),
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:DescribeKey"],
                                resources=[self.key.key_arn]),
        ]

    @property
    def job_run_arn_pattern(self) -> str:
        return f"{self.application_arn}/jobruns/*"

    def acknowledge_start_resources(self, scope: Construct) -> None:
        acknowledge(
            scope, iam5_resource(f"{resource_token(self.application)}/jobruns/*"),
            "Job run ids are chosen by EMR Serverless per run; limited to this application")

    def submit_parameters(self) -> str:
        """``SparkSubmitParameters``: the code archive, the Python environment
        (the driver's and executors' interpreter), Spark's own catalog (no
        Glue Data Catalog: the job registers temporary views only) and EMRFS's
        SSE-KMS with the data key on every object the executors write."""
        python = "./environment/bin/python"
        conf = {
            "spark.submit.pyFiles": self.code.s3_object_url,
            "spark.archives": f"{self.resources.python_environment}#environment",
            "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": python,
            "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": python,
            "spark.executorEnv.PYSPARK_PYTHON": python,
            "spark.sql.catalogImplementation": "in-memory",
            "spark.sql.session.timeZone": "UTC",
            EMRFS_SSE: "true",
            EMRFS_SSE_KEY: self.key.key_arn,
        }
        return " ".join(f"--conf {name}={value}" for name, value in conf.items())

    def _job_state(self, scope: Construct, state_id: str, *, arguments: Mapping[str, str],
                   job_name: str, result_key: str, result_path: str) -> sfn.CustomState:
        """``emr-serverless:startJobRun.sync``: the entry point gets ``--kind``, the
        runner's :attr:`arguments`, the run's, and where to write its result.
        The run name is also the start's idempotency token (``ClientToken``): a
        retried start does not start a second run."""
        args = ["'--kind'", f"'{self.kind}'"]
        # The runner's own arguments are literals (bucket names: tokens until
        # deployment, which also start with "$"); a run's may be JSONPaths.
        for flag, value in self.arguments.items():
            args += [f"'{flag}'", f"'{value}'"]
        args += self.run_arguments(arguments)
        args += ["'--result-bucket'", f"'{self.output_bucket.bucket_name}'",
                 "'--result-key'", result_key,
                 "'--kms-key'", f"'{self.key.key_arn}'", "'--read-from'", "'s3'"]
        resources = self.resources
        job = sfn.CustomState(
            scope, state_id,
            state_json={
                "Type": "Task",
                "Resource": f"arn:{Aws.PARTITION}:states:::emr-serverless:startJobRun.sync",
                "Parameters": {
                    "ApplicationId": self.application.attr_application_id,
                    "ExecutionRoleArn": self.role.role_arn,
                    "Name.$": job_name,
                    "ClientToken.$": job_name,
                    "ExecutionTimeoutMinutes": resources.max_runtime_minutes,
                    "JobDriver": {
                        "SparkSubmit": {
                            "EntryPoint": self.entry.s3_object_url,
                            "EntryPointArguments.$": f"States.Array({', '.join(args)})",
                            "SparkSubmitParameters": self.submit_parameters(),
                        }
                    },
                    "Tags": {"mdlc:model": self.spec.name, "mdlc:kind": self.kind},
                },
                # Beside the run name, which ReadResult needs (see ProcessingRunner.run).
                "ResultPath": f"{result_path}.job",
                "TimeoutSeconds": resources.max_runtime_minutes * 60
                + int(STARTUP_ALLOWANCE.to_seconds()),
            },
        )
        # Throttling of StartJobRun: the client token makes a retried start the
        # same run. A failed run is States.TaskFailed and is not retried.
        retry_transient(job, attempts=3, interval=seconds(30),
                        errors=("ThrottlingException", "EMRServerless.InternalServerException"))
        return job


def _split_s3_uri(uri: str | None) -> tuple[str, str]:
    if not uri or not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def stage_spark_code(config: Mapping[str, Any]) -> str:
    """The folder of the job's code archive: ``mdlc_core`` and the spec as
    ``mdlc_config.json`` at its root (the job finds it on ``sys.path``)."""
    return _staged(json.dumps(dict(config), sort_keys=True, separators=(",", ":")))


@cache
def _staged(config_json: str) -> str:
    # A fresh folder per process (parallel test workers); its content, not its
    # path, decides the asset hash, so synthesis is deterministic.
    folder = tempfile.mkdtemp(prefix="mdlc-asset-spark-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = Path(folder) / "code"
    shutil.copytree(core_root(), target / "mdlc_core",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    (target / CONFIG_FILE_NAME).write_text(config_json)
    return str(target)
