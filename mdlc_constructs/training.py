"""Stage 5, training and evaluation: train, judge against the spec's threshold, register.

:class:`TrainingWorkflow` is one Step Functions state machine::

    [prepare_data]            sourcing, quality gate, features (DataPreparation.chain)
    PrepareTrainingInput      Lambda: run parameters, train/validation channels
    [BuildImage]              custom containers only: CodeBuild, skipped when built
    Train                     SageMaker CreateTrainingJob.sync
    evaluation                default: the job's FinalMetricDataList -> $.evaluation.value
    gate                      Choice on the spec's metric, threshold and goal
      passed -> Register      CreateModelPackage in the model's package group
                NotifyRegistered -> Registered (Succeed)
      failed -> NotifyBelowThreshold -> BelowThreshold (Fail, ModelBelowThreshold)
    every task catches into TrainingFailedNotify -> TrainingFailed (Fail)

Why a ``CustomState`` for the training job and not
``tasks.SageMakerCreateTrainingJob``: with a job name from the execution
the L2 grants ``sagemaker:*TrainingJob`` on ``training-job/*`` (we scope to
this model's prefix), and its hyperparameters cannot be one object from the
input (we merge the input's overrides over the spec's in a Lambda). The
state is the same optimized ``createTrainingJob.sync`` integration.

Extension points are plain-Python methods called from the constructor:
``build_input_step``, ``build_training_step``, ``build_evaluation``,
``build_gate``, ``build_registration``. Override one in a subclass; use
``self.catch(state)`` on the tasks you create so their failures notify.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Unpack

from aws_cdk import Aws, CfnTag, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct
from mdlc_core.layout import Layout, package_group_name

from .algorithms import TrainingAlgorithm, training_algorithm
from .compliance import acknowledge_all, iam5_action, iam5_resource, printed_arn, resource_token
from .lineage import code_version
from .network import ModelNetwork
from .preparation import PreparationSteps
from .sagemaker_access import (
    SAGEMAKER_TRANSIENT,
    grant_job_logs,
    pass_role_statement,
    sagemaker_role,
)
from .stage import ModelStage, StageProps
from .storage import grant_read_objects, grant_read_write_objects
from .tokens import minutes, seconds, string_at, task_timeout
from .workflow import invoke, notify_and_fail, publish, retry_transient

#: Deprecated (use ``preparation=``): builds the data preparation chain.
PrepareData = Callable[[Construct, str], sfn.IChainable]


class _ChainOnly:
    """A ``prepare_data`` callable as :class:`PreparationSteps` (no extra grant)."""

    def __init__(self, build: PrepareData) -> None:
        self.build = build

    def chain(self, scope: Construct, prefix: str) -> sfn.IChainable:
        return self.build(scope, prefix)

    def grant_to(self, machine: sfn.StateMachine) -> iam.Grant:
        return iam.Grant.drop(machine, "a prepare_data chain brings its own grants")

#: The Fail state's error when the model does not reach the threshold.
BELOW_THRESHOLD_ERROR = "ModelBelowThreshold"

APPROVAL_STATUS = {"manual": "PendingManualApproval", "automatic": "Approved"}


class TrainingWorkflow(ModelStage):
    """Train, evaluate, gate and register one model, as a Step Functions workflow.

    Execution input (every field optional; the spec gives the defaults)::

        {"date": "YYYY-MM-DD",                 # the dataset day (data preparation)
         "hyperparameters": {"eta": 0.1},      # merged over training.hyperparameters
         "instance_type": "ml.m5.2xlarge", "instance_count": 2,
         "threshold": 0.85,                    # the gate's threshold
         "code_version": "<git commit>"}       # recorded; default 'unknown'

    Args:
        spec: the model spec.
        data_lake: its key encrypts everything; features are read from its
            ``features`` bucket, channels and artifacts go to ``artifacts``.
        topic: failures, below-threshold results and registrations are
            published here.
        preparation: the model's data preparation (a :class:`DataPreparation`,
            or any :class:`PreparationSteps`): its chain (sourcing, quality,
            features, leaving ``$.data``) runs first, and the state machine
            gets what the chain needs (``grant_to``), as in
            ``BatchInferenceWorkflow``. Default: none; the execution
            input must then carry ``data.features.features_key`` (a Parquet
            key under ``features/<model>/`` in the features bucket, one row
            per event with the label and the features) and, for lineage,
            ``data.features.date`` and ``data.snapshot`` (``snapshot_prefix``,
            ``manifest_key``, ``content_hash``); missing lineage is recorded
            as 'unknown'.
        prepare_data: deprecated, the chain-building callable alone
            (``preparation.chain``); use ``preparation``.
        algorithm: the algorithm. Default: from ``spec.training.algorithm``.
        network_isolation: run the training job without network access.
            Default: the algorithm's (yes for built-ins and Marketplace, no
            for custom containers, which may fetch packages).
        source_root: what a custom algorithm's ``source`` is relative to.
            Default: the spec file's folder.

    Attributes:
        state_machine, training_role, model_package_group_name,
        model_package_group_arn, algorithm, input_function, job_prefix.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        preparation: PreparationSteps | None = None,
        prepare_data: PrepareData | None = None,
        algorithm: TrainingAlgorithm | None = None,
        network_isolation: bool | None = None,
        source_root: Path | None = None,
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, topic = self.spec, self.topic
        self.training = spec.training
        self.stack = Stack.of(self)
        if "'" in self.training.evaluation.metric:
            raise ValueError(
                f"training.evaluation.metric: {self.training.evaluation.metric!r} must not "
                "contain a quote (it is matched in a JSONPath filter)"
            )
        if self.training.content_type not in ("text/csv", "application/x-parquet"):
            raise ValueError(
                f"training.content_type: {self.training.content_type!r} is not written by the "
                "training input step (text/csv, application/x-parquet); override "
                "build_input_step to write it"
            )
        self.algorithm = algorithm or training_algorithm(
            self, "Algorithm", spec=spec, key=self.key, source_root=source_root
        )
        self.network_isolation = (
            self.algorithm.network_isolation if network_isolation is None else network_isolation
        )
        self.job_prefix = f"mdlc-{spec.name}-"
        self.model_package_group_name = package_group_name(spec.name)
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=self.model_package_group_name,
            model_package_group_description=f"Versions of {spec.name!r}: "
            f"{spec.description}"[:1024],
            tags=[CfnTag(key="mdlc:model", value=spec.name),
                  CfnTag(key="mdlc:owner", value=spec.owner)],
        )
        # Registered versions are the audit trail: keep them with the stack gone.
        self.model_package_group.apply_removal_policy(RemovalPolicy.RETAIN)
        self.model_package_group_arn = self.stack.format_arn(
            service="sagemaker",
            resource="model-package-group",
            resource_name=self.model_package_group_name,
        )
        self.training_role = self._create_training_role()

        # One failure path for every task: the notification carries the error.
        self.failure = notify_and_fail(
            self,
            "Training",
            topic=topic,
            subject=f"MDLC {spec.name}: training failed",
            cause="A step of the training workflow failed; see the notification",
        )
        if prepare_data is not None:
            if preparation is not None:
                raise ValueError("TrainingWorkflow: give preparation or prepare_data, not both")
            warnings.warn("TrainingWorkflow(prepare_data=...) is deprecated: pass "
                          "preparation= (a DataPreparation or any PreparationSteps)",
                          DeprecationWarning, stacklevel=2)
            preparation = _ChainOnly(prepare_data)
        self.preparation = preparation
        chain = self._definition(preparation)
        # A timed-out run cannot catch its own timeout: EventBridge reports it.
        self.state_machine = self.stage_workflow(
            "StateMachine", definition=chain, timeout=self.machine_timeout(),
            comment=f"Train, evaluate and register {spec.name!r}", run="training",
        )
        self._grant_workflow()
        if preparation is not None:
            preparation.grant_to(self.state_machine)

    # -- extension points -----------------------------------------------------------

    def build_input_step(self) -> sfn.IChainable:
        """Resolve the run's parameters and write the channels; leaves ``$.training``.

        ``$.training``: ``job_name``, ``client_token``, ``parameters``
        (``hyperparameters``, ``instance_type``, ``instance_count``,
        ``threshold``), ``channels`` (``train``, ``validation``), ``output_uri``,
        ``rows`` and ``lineage``.
        """
        model = self.spec.name
        self.input_function = self.stage_function(
            "TrainingInput", handler="training_input",
            description=f"Splits {model}'s feature snapshot into training channels",
            environment={
                "FEATURES_BUCKET": self.data_lake.features.bucket_name,
                "ARTIFACTS_BUCKET": self.data_lake.artifacts.bucket_name,
                "MODEL_NAME": model,
                "FEATURE_COLUMNS": json.dumps(self.spec.feature_columns),
                # The deployed commit: the lineage of every run that does not
                # name one (scheduled and triggered re-trainings included).
                "CODE_VERSION": code_version(self),
            },
            memory_size=2048, timeout=minutes(10), data_layer=True,
        )
        layout = Layout(model)
        grant_read_objects(self.data_lake.features, self.input_function,
                           layout.everything(layout.features))
        self.data_lake.artifacts.grant_put(self.input_function,
                                           layout.everything(layout.training_input))
        # Each job's training features become the drift baseline of the version
        # it registers (open loop), one object per job.
        self.data_lake.artifacts.grant_put(
            self.input_function, layout.everything(layout.job_baselines)
        )
        acknowledge_all(
            self.input_function,
            {
                iam5_action("s3:GetObject*"): "grant_read_objects' object actions, "
                "scoped to this model's feature snapshots",
                iam5_action("s3:GetBucket*"): "grant_read_objects' bucket actions on "
                "the features bucket only",
                iam5_action("kms:GenerateDataKey*"): "Writing SSE-KMS objects "
                "with the data key",
                iam5_action("kms:ReEncrypt*"): "grant_put's key actions for "
                "SSE-KMS objects, on the data key only",
                iam5_action("s3:Abort*"): "grant_put lets the function abort "
                "its own multipart uploads of training channels",
                iam5_resource(f"{resource_token(self.data_lake.features)}/features/{model}/*"):
                "Reads only this model's feature snapshots",
                iam5_resource(f"{resource_token(self.data_lake.artifacts)}/training-input/"
                              f"{model}/*"): "Writes only this model's training "
                "channels",
                iam5_resource(f"{resource_token(self.data_lake.artifacts)}/"
                              f"{layout.everything(layout.job_baselines)}"): "Writes only "
                "this model's per-job drift baselines, named by job at run time",
            },
        )
        return self.catch(
            invoke(
                self,
                "PrepareTrainingInput",
                self.input_function,
                payload={
                    "state": sfn.JsonPath.entire_payload,
                    "execution": sfn.JsonPath.execution_id,
                },
                result_path="$.training",
                timeout=minutes(11),
                comment="Run parameters (input over spec) and train/validation channels",
            )
        )

    def build_training_step(self) -> sfn.IChainable:
        """The SageMaker training job (waits for it); leaves DescribeTrainingJob at ``$.job``."""
        t = self.training
        content_type = t.content_type
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": t.max_runtime_minutes * 60}
        parameters: dict[str, Any] = {
            "TrainingJobName.$": "$.training.job_name",
            "RoleArn": self.training_role.role_arn,
            "AlgorithmSpecification": self.algorithm.algorithm_specification(),
            "HyperParameters.$": "$.training.parameters.hyperparameters",
            "InputDataConfig": [
                {
                    "ChannelName": channel,
                    "ContentType": content_type,
                    "CompressionType": "None",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3DataDistributionType": "FullyReplicated",
                            "S3Uri.$": f"$.training.channels.{channel}",
                        }
                    },
                }
                for channel in ("train", "validation")
            ],
            "OutputDataConfig": {
                "S3OutputPath.$": "$.training.output_uri",
                "KmsKeyId": self.key.key_arn,
            },
            "ResourceConfig": {
                "InstanceType.$": "$.training.parameters.instance_type",
                "InstanceCount.$": "$.training.parameters.instance_count",
                "VolumeSizeInGB": t.volume_size_gb,
                "VolumeKmsKeyId": self.key.key_arn,
            },
            "StoppingCondition": stopping,
            "EnableNetworkIsolation": self.network_isolation,
            "EnableInterContainerTrafficEncryption": True,
            "Tags": [
                {"Key": "mdlc:model", "Value": self.spec.name},
                {"Key": "mdlc:owner", "Value": self.spec.owner},
            ],
        }
        network = ModelNetwork.of(self)
        if network is not None:
            parameters["VpcConfig"] = network.vpc_config()
        if t.spot.enabled:
            parameters["EnableManagedSpotTraining"] = True
            stopping["MaxWaitTimeInSeconds"] = t.spot.max_wait_minutes * 60
            # Spot jobs are interrupted; checkpoints let them resume, not restart.
            parameters["CheckpointConfig"] = {
                "S3Uri.$": f"States.Format('s3://{{}}/training-checkpoints/{self.spec.name}/"
                "{}/', '" + self.data_lake.artifacts.bucket_name + "', $.training.job_name)"
            }
        train = sfn.CustomState(
            self,
            "Train",
            state_json={
                "Type": "Task",
                "Comment": "SageMaker training job; waits for it to end",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
                "Parameters": parameters,
                "ResultPath": "$.job",
                "TimeoutSeconds": int(self.training_timeout().to_seconds()),
            },
        )
        retry_transient(train, errors=SAGEMAKER_TRANSIENT, attempts=3, interval=seconds(15))
        return self.catch(train)

    def build_evaluation(self) -> sfn.IChainable:
        """Put the spec's metric at ``$.evaluation.value`` (and its name at ``.metric``).

        Default: the value the training job reported in FinalMetricDataList
        (built-ins report their ``validation:*`` metrics there). A metric the
        job did not report fails the run with ``MetricNotReported``.
        """
        metric = self.training.evaluation.metric
        missing = sfn.Pass(
            self,
            "MetricNotReported",
            parameters={
                "Error": "MetricNotReported",
                "Cause": f"The training job did not report {metric} in FinalMetricDataList",
            },
            result_path="$.error",
        ).next(self.failure)
        read = sfn.Pass(
            self,
            "ReadMetric",
            parameters={
                "metric": metric,
                "source": "FinalMetricDataList",
                "value": sfn.JsonPath.array_get_item(
                    sfn.JsonPath.list_at("$.evaluation.values"), 0
                ),
            },
            result_path="$.evaluation",
        )
        count = sfn.Pass(
            self,
            "CountMetric",
            parameters={
                "metric": metric,
                "values": sfn.JsonPath.list_at("$.evaluation.values"),
                "count": sfn.JsonPath.array_length(sfn.JsonPath.list_at("$.evaluation.values")),
            },
            result_path="$.evaluation",
        ).next(
            sfn.Choice(self, "MetricFound")
            .when(sfn.Condition.number_greater_than("$.evaluation.count", 0), read)
            .otherwise(missing)
        )
        select = sfn.Pass(
            self,
            "SelectMetric",
            parameters={
                "metric": metric,
                "values": sfn.JsonPath.list_at(
                    f"$.job.FinalMetricDataList[?(@.MetricName == '{metric}')].Value"
                ),
            },
            result_path="$.evaluation",
        ).next(count)
        return (
            sfn.Choice(self, "MetricsReported")
            .when(sfn.Condition.is_present("$.job.FinalMetricDataList"), select)
            .otherwise(missing)
            .afterwards()
        )

    def build_gate(self, *, passed: sfn.IChainable, failed: sfn.IChainable) -> sfn.Choice:
        """Go to ``passed`` when ``$.evaluation.value`` meets the run's threshold.

        The threshold is ``$.training.parameters.threshold`` (the input's
        ``threshold``, else the spec's); ``goal`` decides the direction.
        """
        value, threshold = "$.evaluation.value", "$.training.parameters.threshold"
        if self.training.evaluation.goal == "maximize":
            meets = sfn.Condition.number_greater_than_equals_json_path(value, threshold)
        else:
            meets = sfn.Condition.number_less_than_equals_json_path(value, threshold)
        return (
            sfn.Choice(self, "MeetsThreshold", comment=f"{self.training.evaluation.metric} "
                       f"{'>=' if self.training.evaluation.goal == 'maximize' else '<='} "
                       "threshold")
            .when(sfn.Condition.and_(sfn.Condition.is_numeric(value), meets), passed)
            .otherwise(failed)
        )

    def build_registration(self) -> sfn.IChainable:
        """Register a version in the model package group; leaves ``$.registration``."""
        model_data = string_at("$.job.ModelArtifacts.S3ModelArtifacts")
        parameters: dict[str, Any] = {
            "ModelPackageGroupName": self.model_package_group_name,
            "ModelPackageDescription": sfn.JsonPath.format(
                f"{self.spec.name} trained by {{}} on data of {{}}",
                string_at("$.job.TrainingJobName"),
                string_at("$.training.lineage.dataset_date"),
            ),
            "ModelApprovalStatus": APPROVAL_STATUS[self.training.approval],
            # Idempotent: a retried call returns the version the first one made.
            "ClientToken": string_at("$.training.client_token"),
            "CustomerMetadataProperties": self.lineage_properties(),
            "MetadataProperties": {
                "CommitId": string_at("$.training.lineage.code_version"),
                "GeneratedBy": sfn.JsonPath.execution_id,
                "ProjectId": self.spec.name,
            },
        }
        if self.algorithm.algorithm_name is not None:
            parameters["SourceAlgorithmSpecification"] = {
                "SourceAlgorithms": [
                    {"AlgorithmName": self.algorithm.algorithm_name, "ModelDataUrl": model_data}
                ]
            }
        else:
            parameters["InferenceSpecification"] = {
                "Containers": [{"Image": self.algorithm.image_uri, "ModelDataUrl": model_data}],
                "SupportedContentTypes": [self.training.content_type],
                "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            }
        register = tasks.CallAwsService(
            self,
            "Register",
            service="sagemaker",
            action="createModelPackage",
            iam_action="sagemaker:CreateModelPackage",
            iam_resources=[
                self.model_package_group_arn,
                self.stack.format_arn(
                    service="sagemaker",
                    resource="model-package",
                    resource_name=f"{self.model_package_group_name}/*",
                ),
            ],
            parameters=parameters,
            result_selector={"model_package_arn": string_at("$.ModelPackageArn")},
            result_path="$.registration",
            task_timeout=task_timeout(minutes(2)),
            comment=f"Version of {self.model_package_group_name}, "
            f"{APPROVAL_STATUS[self.training.approval]}",
        )
        retry_transient(register, errors=("SageMaker.ThrottlingException", "ThrottlingException"))
        return self.catch(register)

    # -- helpers for subclasses -----------------------------------------------------

    def catch(self, state: sfn.TaskStateBase | sfn.CustomState | sfn.Parallel | sfn.Map) -> Any:
        """Send every error of ``state`` to the failure notification; returns ``state``."""
        state.add_catch(self.failure, errors=["States.ALL"], result_path="$.error")
        return state

    def lineage_properties(self) -> dict[str, Any]:
        """The model package's CustomerMetadataProperties: where the version came from."""
        lineage = "$.training.lineage"
        return {
            "mdlc:model": self.spec.name,
            "mdlc:dataset-date": string_at(f"{lineage}.dataset_date"),
            "mdlc:dataset-snapshot": string_at(f"{lineage}.dataset_snapshot"),
            "mdlc:dataset-manifest": string_at(f"{lineage}.dataset_manifest"),
            "mdlc:dataset-content-hash": string_at(
                f"{lineage}.dataset_content_hash"
            ),
            "mdlc:feature-snapshot": string_at(f"{lineage}.feature_snapshot"),
            "mdlc:training-job": string_at("$.job.TrainingJobName"),
            # The open-loop monitor compares this version's predictions with it.
            "mdlc:drift-baseline": string_at("$.training.baseline"),
            "mdlc:evaluation-metric": string_at("$.evaluation.metric"),
            "mdlc:evaluation-value": sfn.JsonPath.format(
                "{}", string_at("$.evaluation.value")
            ),
            "mdlc:evaluation-threshold": sfn.JsonPath.format(
                "{}", string_at("$.training.parameters.threshold")
            ),
            "mdlc:code-version": string_at(f"{lineage}.code_version"),
            "mdlc:execution": sfn.JsonPath.execution_id,
        }

    def training_timeout(self) -> Duration:
        """The training task's timeout: the job's own limit plus provisioning time."""
        t = self.training
        limit = t.spot.max_wait_minutes if t.spot.enabled else t.max_runtime_minutes
        return minutes(limit + 30)

    def machine_timeout(self) -> Duration:
        """The whole run: data preparation, image build, training, registration."""
        build = 60 if self.algorithm.build_project is not None else 0
        return minutes(int(self.training_timeout().to_minutes()) + 90 + build)

    # -- public API -----------------------------------------------------------------

    def grant_start_execution(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` start a training run."""
        return self.state_machine.grant_start_execution(grantee)

    def metric_failed(self, **kwargs: Any) -> cloudwatch.Metric:
        """Runs that failed (errors and below-threshold models)."""
        return self.state_machine.metric_failed(**kwargs)

    def metric_succeeded(self, **kwargs: Any) -> cloudwatch.Metric:
        """Runs that registered a model version."""
        return self.state_machine.metric_succeeded(**kwargs)

    def metric_timed_out(self, **kwargs: Any) -> cloudwatch.Metric:
        return self.state_machine.metric_timed_out(**kwargs)

    # -- internals ------------------------------------------------------------------

    def _definition(self, preparation: PreparationSteps | None) -> sfn.IChainable:
        # The hooks are called in the order the workflow runs them, so each may
        # use what an earlier one set (build_registration may read
        # self.input_function, which build_input_step creates).
        steps: list[sfn.IChainable] = []
        if preparation is not None:
            steps.append(preparation.chain(self, "PrepareData"))
        steps.append(self.build_input_step())
        build = self.algorithm.build_step(self, "BuildImage")
        if build is not None:
            steps.append(self.catch(build))
        steps.append(self.build_training_step())
        steps.append(self.build_evaluation())
        name = self.spec.name
        # No retry: a failed notification is caught into the failure path,
        # which reports it (the version is registered either way).
        notify_registered = publish(
            self,
            "NotifyRegistered",
            topic=self.topic,
            subject=f"MDLC {name}: model version registered",
            message={
                "model": name,
                "model_package": string_at("$.registration.model_package_arn"),
                "approval": APPROVAL_STATUS[self.training.approval],
                "metric": string_at("$.evaluation.metric"),
                "value": sfn.JsonPath.number_at("$.evaluation.value"),
                "execution": sfn.JsonPath.execution_id,
            },
            retry=(),
        )
        self.catch(notify_registered)
        passed = sfn.Chain.start(self.build_registration()).next(notify_registered).next(
            sfn.Succeed(self, "Registered")
        )
        notify_below = publish(
            self,
            "NotifyBelowThreshold",
            topic=self.topic,
            subject=f"MDLC {name}: model below threshold, not registered",
            message={
                "model": name,
                "result": "below threshold",
                "metric": string_at("$.evaluation.metric"),
                "value": sfn.JsonPath.number_at("$.evaluation.value"),
                "threshold": sfn.JsonPath.number_at("$.training.parameters.threshold"),
                "goal": self.training.evaluation.goal,
                "training_job": string_at("$.job.TrainingJobName"),
                "execution": sfn.JsonPath.execution_id,
            },
            retry=(),
        )
        self.catch(notify_below)
        failed = notify_below.next(
            sfn.Fail(
                self,
                "BelowThreshold",
                error=BELOW_THRESHOLD_ERROR,
                cause="The model did not reach the evaluation threshold; nothing was registered",
            )
        )
        steps.append(self.build_gate(passed=passed, failed=failed))
        chain = sfn.Chain.start(steps[0])
        for step in steps[1:]:
            chain = chain.next(step)
        return chain

    def _logical(self, bucket: Any) -> str:
        # resource_token registers the bucket, so acknowledge() also matches
        # the finding when the bucket lives in a shared platform stack.
        return resource_token(bucket)[1:].split(".")[0]

    def _create_training_role(self) -> iam.Role:
        """The role SageMaker assumes for the job: this model's data, this key, its logs."""
        model = self.spec.name
        role = sagemaker_role(
            self, "TrainingRole", description=f"SageMaker training jobs of {model}"
        )
        artifacts = self.data_lake.artifacts
        layout = Layout(model)
        grant_read_objects(artifacts, role, layout.everything(layout.training_input))
        grant_read_write_objects(artifacts, role, layout.everything(layout.training_output))
        grant_read_write_objects(artifacts, role, layout.everything(layout.training_checkpoints))
        self.key.grant_encrypt_decrypt(role)
        grant_job_logs(role, log_group="TrainingJobs", stream_pattern=f"{self.job_prefix}*")
        self.algorithm.grant_training_role(role)
        bucket = self._logical(artifacts)
        acknowledge_all(
            role,
            {
                iam5_resource("*"): "cloudwatch:PutMetricData has no "
                "resource-level permissions; limited to SageMaker's namespaces by condition",
                iam5_action("s3:GetObject*"): "S3 grants, scoped to this "
                "model's training prefixes",
                iam5_action("s3:GetBucket*"): "S3 grants on the artifacts "
                "bucket only",
                iam5_action("s3:DeleteObject*"): "SageMaker replaces its own "
                "checkpoints and output under this model's prefixes",
                iam5_action("s3:Abort*"): "SageMaker aborts its own multipart "
                "uploads of model artifacts",
                iam5_action("kms:GenerateDataKey*"): "Encrypting the volume and "
                "the model artifact with the data key",
                iam5_action("kms:ReEncrypt*"): "grant_encrypt_decrypt on the "
                "data key only",
                iam5_resource(f"<{bucket}.Arn>/training-input/{model}/*"): "Reads "
                "only this model's training channels",
                iam5_resource(f"<{bucket}.Arn>/training-output/{model}/*"): "Writes"
                " only this model's artifacts",
                iam5_resource(f"<{bucket}.Arn>/training-checkpoints/{model}/*"):
                "Spot checkpoints of this model only",
                iam5_resource(printed_arn(
                    "logs",
                    f"log-group:/aws/sagemaker/TrainingJobs:log-stream:{self.job_prefix}*")):
                "Log streams of this model's training jobs only",
            },
        )
        return role

    def _grant_workflow(self) -> None:
        """What the state machine's role needs beyond the L2 tasks' own grants."""
        role = self.state_machine.role
        job_arn = self.stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{self.job_prefix}*"
        )
        statements = [
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[job_arn],
            ),
            # The .sync integration waits through this managed EventBridge rule.
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    self.stack.format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                    )
                ],
            ),
            pass_role_statement(self.training_role),
            # VolumeKmsKeyId/KmsKeyId: SageMaker creates grants for the job on
            # behalf of the caller of CreateTrainingJob...
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            # ...and describes the key as the caller. kms:GrantIsForAWSResource
            # is set on grant operations only: DescribeKey under it never applies.
            iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[self.key.key_arn]),
            *self.algorithm.workflow_statements(),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        # CreateModelPackage checks that the caller can read the model artifact.
        grant_read_objects(self.data_lake.artifacts, role,
                           Layout.everything(Layout(self.spec.name).training_output))
        bucket = self._logical(self.data_lake.artifacts)
        self._acknowledge_workflow(bucket)

    def _acknowledge_workflow(self, bucket: str) -> None:
        acknowledge_all(
            self.state_machine,
            {
                iam5_resource(printed_arn("sagemaker", f"training-job/{self.job_prefix}*")):
                "Training jobs of this "
                "model only: job names are unique per execution under this prefix",
                iam5_resource(printed_arn(
                    "sagemaker", f"model-package/{self.model_package_group_name}/*")):
                "Versions "
                "of this model's package group only",
                iam5_action("s3:GetObject*"): "Reading this model's artifacts "
                "(CreateModelPackage validates the model data)",
                iam5_action("s3:GetBucket*"): "grant_read_objects on the artifacts "
                "bucket only",
                iam5_resource(f"<{bucket}.Arn>/training-output/{self.spec.name}/*"):
                "This model's artifacts only",
            },
        )

