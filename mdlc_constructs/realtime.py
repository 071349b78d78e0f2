"""Stage 6, real-time inference: a SageMaker endpoint that serves the latest
approved model version, deployed blue/green with automatic rollback.

Who owns what (see docs/deployment.md for the reasoning):

* **CloudFormation** owns everything that exists before any model is
  approved: the SageMaker execution role, the two rollback alarms (they name
  the endpoint, which has a deterministic name), the EventBridge rule and the
  deployment workflow.
* **The deployment workflow** owns the endpoint itself: its models,
  endpoint configurations, the endpoint and its autoscaling registration.
  CloudFormation never holds an ``AWS::SageMaker::Endpoint`` that it would
  revert to a stale configuration on the next ``cdk deploy``.

The workflow, started by a ``SageMaker Model Package State Change`` event
(``ModelApprovalStatus == Approved`` in this model's package group), or by
hand with ``{"detail": {"ModelPackageArn": "<arn>"}}``::

    Deploy (error boundary: any failure notifies the topic once, then fails)
      DescribeModelPackage -> IsDeployable (Approved, this group) else NotDeployable
      FindEndpoint (DescribeEndpoint; "Could not find endpoint" -> NoEndpointYet,
        at once; throttled -> FindEndpointAgain after a backoff, at most 4 times)
        IsAlreadyServing? (this version, InService) -> AlreadyServing (Succeed)
      NameResources (mdlc-<model>-v<version>-<random>) -> CreateModel -> CreateEndpointConfig
      CreateOrUpdate: CreateEndpoint | UpdateEndpoint (blue/green + auto-rollback alarms)
      WaitForEndpoint -> DescribeEndpoint -> EndpointSettled? (loop while Creating/Updating/...)
      VerifyDeployment: InService AND EndpointConfigName == the new one, else
        RolledBack / EndpointFailed (Fail with the reason)
      RegisterScalableTarget -> PutScalingPolicy -> NotifyDeployed -> Deployed
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Unpack

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct
from mdlc_core.layout import VARIANT_NAME as LAYOUT_VARIANT_NAME
from mdlc_core.layout import Layout
from mdlc_core.layout import endpoint_name as layout_endpoint_name

from .compliance import acknowledge_all, iam5_action, iam5_resource, printed_arn, resource_token
from .deprecation import renamed
from .metrics import endpoint_metric
from .network import ModelNetwork
from .realtime_deployment import (  # noqa: F401 - the constants stay importable from here
    FIND_RETRIES,
    READ_RETRY,
    SAGEMAKER_UNMODELED,
    SDK_THROTTLING,
    THROTTLED_CAUSES,
    TRANSITIONAL_STATES,
    DeploymentWorkflowSteps,
)
from .sagemaker_access import (
    WILDCARD_REASON,
    grant_image_pull,
    grant_job_logs,
    pass_role_statement,
    sagemaker_role,
)
from .spec import ModelSpec
from .stage import ModelStage, StageProps
from .storage import grant_read_objects
from .tokens import hours, minutes, seconds, string_at
from .workflow import notify_timeouts, state_machine

#: The one production variant (mdlc_core.layout): it never changes between
#: endpoint configurations; the alarms and the autoscaling target name it.
VARIANT_NAME = LAYOUT_VARIANT_NAME

#: Time SageMaker needs to provision a fleet before shifting traffic.
PROVISIONING = minutes(30)


def _deployment_seconds(spec: ModelSpec) -> int:
    """An upper bound of one blue/green deployment, for SageMaker's own timeout."""
    d = spec.inference.realtime.deployment
    shifts = {"canary": 1, "linear": math.ceil(100 / d.step_percent) - 1, "all_at_once": 0}
    total = int(PROVISIONING.to_seconds()) + (shifts[d.strategy] * d.wait_minutes +
                                              d.bake_minutes) * 60
    # UpdateEndpoint accepts 600..28800 seconds.
    return max(600, min(28800, total))


def validate_realtime(spec: ModelSpec) -> None:
    """Fail at synthesis on settings SageMaker would only reject at deployment.

    The spec's validation runs the same rules (``spec.rules.realtime_problems``),
    so this only fires for a spec built without it (``model_copy``).

    Raises:
        ValueError: naming the spec field, the value and what is accepted.
    """
    from .spec.rules import realtime_problems

    where = f" in {spec.source}" if spec.source else ""
    problems = list(realtime_problems(spec.inference.realtime))
    if problems:
        raise ValueError("\n".join(f"{path}{where}: {message}" for path, message in problems))


class RealtimeEndpoint(DeploymentWorkflowSteps, ModelStage):
    """A SageMaker endpoint for the latest approved version of a model package
    group, deployed by an event-driven, verified, blue/green workflow.

    Args:
        spec: the model spec; ``inference.realtime`` gives the instance type
            and count, autoscaling, deployment strategy, rollback thresholds
            and data capture percentage.
        data_lake: its key encrypts the instance volumes and captured data;
            captured requests go to ``capture/<model>/`` in its ``capture``
            bucket; model artifacts are read from its ``artifacts`` bucket.
        topic: deployments (success and failure with the reason) and the
            rollback alarms are published here.
        model_package_group_name: the registry group whose approved versions
            are served (``TrainingWorkflow.model_package_group_name``).
        endpoint_name: Default ``mdlc-<model>``. It is a public contract:
            clients invoke it and the alarms name it.
        model_artifacts_prefix: where the group's model artifacts are in the
            artifacts bucket; the execution role reads nothing else. Default
            ``training-output/<model>/`` (where ``TrainingWorkflow`` writes).
        image_repositories: ECR repositories of custom inference images, that
            the execution role may pull from. Default: none (SageMaker pulls
            built-in algorithm images from AWS's registries itself).
        poll_interval: how often the workflow checks a deployment. Default one
            minute.

    Attributes:
        endpoint_name, endpoint_arn, variant_name, execution_role,
        state_machine (the deployment workflow), approval_rule (its trigger), error_rate_alarm,
        latency_alarm, model_package_group_name, model_package_group_arn.

    Extension points (plain methods called from the constructor):
    ``build_execution_role``, ``build_alarms``, ``endpoint_config_parameters``,
    ``deployment_config``, ``scaling_policy_parameters``.
    """

    #: Deprecated: :attr:`state_machine`.
    deployment_workflow = renamed("state_machine")
    #: Deprecated: :attr:`approval_rule`.
    rule = renamed("approval_rule")

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model_package_group_name: str,
        endpoint_name: str | None = None,
        model_artifacts_prefix: str | None = None,
        image_repositories: Sequence[ecr.IRepository] = (),
        poll_interval: Duration = Duration.minutes(1),
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, topic = self.spec, self.topic
        validate_realtime(spec)
        self.realtime = spec.inference.realtime
        self.stack = Stack.of(self)
        self.endpoint_name = endpoint_name or layout_endpoint_name(spec.name)
        self.variant_name = VARIANT_NAME
        # Models and endpoint configurations are named <prefix><version>-<random>.
        self.resource_prefix = f"{self.endpoint_name}-v"
        self.model_package_group_name = model_package_group_name
        self.model_package_group_arn = self.stack.format_arn(
            service="sagemaker",
            resource="model-package-group",
            resource_name=model_package_group_name,
        )
        self.endpoint_arn = self._arn("endpoint", self.endpoint_name)
        self.model_artifacts_prefix = model_artifacts_prefix or Layout(spec.name).training_output
        self.capture_prefix = Layout(spec.name).capture
        self._image_repositories = list(image_repositories)
        self._poll_interval = poll_interval

        self.error_rate_alarm, self.latency_alarm = self.build_alarms()
        self.execution_role = self.build_execution_role()
        self.state_machine = state_machine(
            self,
            "DeploymentWorkflow",
            definition=self._definition(),
            key=self.key,
            timeout=seconds(_deployment_seconds(spec) + 3600),
            comment=f"Deploy approved versions of {model_package_group_name} to "
            f"{self.endpoint_name}, blue/green, and verify",
            notifies=[self.topic],
        )
        self._grant_workflow()
        self.approval_rule = events.Rule(
            self,
            "ModelApproved",
            description=f"Deploy approved versions of {model_package_group_name}",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [model_package_group_name],
                    "ModelApprovalStatus": ["Approved"],
                },
            ),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    retry_attempts=8,
                    max_event_age=hours(2),
                )
            ],
        )
        notify_timeouts(
            self,
            "DeploymentTimedOut",
            machine=self.state_machine,
            topic=topic,
            description=f"Notify when a deployment to {self.endpoint_name} times out",
        )

    # -- public API ---------------------------------------------------------------

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call ``sagemaker:InvokeEndpoint`` on this endpoint only."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:InvokeEndpoint"], resource_arns=[self.endpoint_arn]
        )

    def metric(self, metric_name: str, **props: Any) -> cloudwatch.Metric:
        """A SageMaker metric of this endpoint's variant (``AWS/SageMaker``; Sum
        per minute by default)."""
        return endpoint_metric(self.endpoint_name, metric_name,
                               variant_name=self.variant_name, **props)

    def metric_invocations(self, **props: Any) -> cloudwatch.Metric:
        """Requests served (Sum per minute by default)."""
        return self.metric("Invocations", **props)

    def metric_errors(self, **props: Any) -> cloudwatch.Metric:
        """Requests the model failed (HTTP 5XX; Sum per minute by default)."""
        return self.metric("Invocation5XXErrors", **props)

    def metric_latency(self, **props: Any) -> cloudwatch.Metric:
        """The model's latency in microseconds (p99 per minute by default)."""
        return self.metric("ModelLatency", **{"statistic": "p99", **props})

    # -- extension points ---------------------------------------------------------

    def build_alarms(self) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm]:
        """The two alarms that roll a deployment back (and notify the topic).

        Both take 2 of 3 one-minute datapoints, and treat no traffic as OK:
        an idle endpoint is not a broken one.
        """
        d = self.realtime.deployment
        error_rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, errors / invocations, 0)",
            using_metrics={
                "errors": self.metric_errors(),
                "invocations": self.metric_invocations(),
            },
            period=minutes(1),
            label="5XX error rate",
        )
        errors = cloudwatch.Alarm(
            self,
            "ErrorRateAlarm",
            alarm_name=f"{self.endpoint_name}-5xx-error-rate",
            alarm_description=f"{self.endpoint_name}: 5XX share of invocations above "
            f"{d.max_error_rate} (inference.realtime.deployment.max_error_rate); rolls back a "
            "deployment in progress",
            metric=error_rate,
            threshold=d.max_error_rate,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency = cloudwatch.Alarm(
            self,
            "LatencyAlarm",
            alarm_name=f"{self.endpoint_name}-p99-model-latency",
            alarm_description=f"{self.endpoint_name}: p99 model latency above "
            f"{d.max_p99_latency_ms} ms (inference.realtime.deployment.max_p99_latency_ms); "
            "rolls back a deployment in progress",
            # ModelLatency is in microseconds.
            metric=self.metric_latency(),
            threshold=d.max_p99_latency_ms * 1000,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        for alarm in (errors, latency):
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return errors, latency

    def build_execution_role(self) -> iam.Role:
        """The role SageMaker assumes to run the model: this group's artifacts,
        this endpoint's capture prefix and logs, the data key, listed images."""
        role = sagemaker_role(
            self,
            "ExecutionRole",
            description=f"SageMaker endpoint {self.endpoint_name} of {self.spec.name}",
        )
        artifacts, capture = self.data_lake.artifacts, self.data_lake.capture
        grant_read_objects(artifacts, role, f"{self.model_artifacts_prefix}*")
        capture.grant_put(role, f"{self.capture_prefix}*")
        grant_job_logs(role, log_group=f"Endpoints/{self.endpoint_name}")
        # Deployment guardrails read the rollback alarms' state.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[self.error_rate_alarm.alarm_arn, self.latency_alarm.alarm_arn],
            )
        )
        grant_image_pull(role, self._image_repositories)
        reasons = {
            iam5_resource("*"): WILDCARD_REASON,
            iam5_action("s3:GetObject*"): "grant_read_objects on this model's "
            "artifacts only",
            iam5_action("s3:GetBucket*"): "grant_read_objects on the artifacts "
            "bucket only",
            iam5_action("s3:Abort*"): "grant_put lets SageMaker abort its own "
            "multipart uploads of captured data",
            iam5_action("kms:GenerateDataKey*"): "Encrypting captured data with "
            "the data key",
            iam5_action("kms:ReEncrypt*"): "grant_put's key actions on the data "
            "key only",
            iam5_resource(f"{resource_token(artifacts)}/{self.model_artifacts_prefix}*"):
            "Reads only this model's artifacts",
            iam5_resource(f"{resource_token(capture)}/{self.capture_prefix}*"):
            "Writes only this model's captured requests and responses",
            iam5_resource(printed_arn(
                "logs", f"log-group:/aws/sagemaker/Endpoints/{self.endpoint_name}:log-stream:*")):
            "Log streams of this endpoint's instances only (named by "
            "SageMaker per instance)",
        }
        acknowledge_all(role, reasons)
        return role

    def endpoint_config_parameters(self) -> dict[str, Any]:
        """CreateEndpointConfig's parameters, without the names (set per version)."""
        realtime = self.realtime
        parameters: dict[str, Any] = {
            "ProductionVariants": [
                {
                    "VariantName": self.variant_name,
                    "ModelName": string_at("$.deployment.name"),
                    "InstanceType": realtime.instance_type,
                    "InitialInstanceCount": realtime.initial_instance_count,
                    "InitialVariantWeight": 1,
                }
            ],
            # Encrypts the ML storage volumes of the instances.
            "KmsKeyId": self.key.key_arn,
            "Tags": self._tags(),
        }
        if realtime.data_capture_percent > 0:
            parameters["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": realtime.data_capture_percent,
                "DestinationS3Uri": f"s3://{self.data_lake.capture.bucket_name}/"
                f"{self.capture_prefix}",
                "KmsKeyId": self.key.key_arn,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {
                    "CsvContentTypes": ["text/csv"],
                    "JsonContentTypes": ["application/json"],
                },
            }
        return parameters

    def deployment_config(self) -> dict[str, Any]:
        """UpdateEndpoint's DeploymentConfig: blue/green traffic shifting per the
        spec, and rollback when either alarm fires."""
        d = self.realtime.deployment
        routing: dict[str, Any] = {
            "Type": d.strategy.upper(),
            "WaitIntervalInSeconds": d.wait_minutes * 60,
        }
        step = {"Type": "CAPACITY_PERCENT", "Value": d.step_percent}
        if d.strategy == "canary":
            routing["CanarySize"] = step
        elif d.strategy == "linear":
            routing["LinearStepSize"] = step
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                # The bake time: the blue fleet is kept (and alarms watched) this long
                # after the last shift, so a rollback is instant.
                "TerminationWaitInSeconds": d.bake_minutes * 60,
                "MaximumExecutionTimeoutInSeconds": _deployment_seconds(self.spec),
            },
            "AutoRollbackConfiguration": {
                "Alarms": [
                    {"AlarmName": self.error_rate_alarm.alarm_name},
                    {"AlarmName": self.latency_alarm.alarm_name},
                ]
            },
        }

    def scaling_policy_parameters(self) -> dict[str, Any]:
        """PutScalingPolicy's target tracking on invocations per instance."""
        a = self.realtime.autoscaling
        return {
            "PolicyName": f"{self.endpoint_name}-invocations-per-instance",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": a.target_invocations_per_instance,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                # Scale out fast under load, scale in slowly to avoid flapping.
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
            },
        }

    # -- the workflow -------------------------------------------------------------

    def _arn(self, resource: str, name: str) -> str:
        return self.stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

    def _vpc_config(self) -> dict[str, Any]:
        """The model's ``VpcConfig`` in the stack's network, if it has one."""
        network = ModelNetwork.of(self)
        return {"VpcConfig": network.vpc_config()} if network is not None else {}

    def _tags(self) -> list[dict[str, str]]:
        return [
            {"Key": "mdlc:model", "Value": self.spec.name},
            {"Key": "mdlc:owner", "Value": self.spec.owner},
        ]

    def _grant_workflow(self) -> None:
        """What the workflow's role needs beyond the tasks' own statements."""
        role = self.state_machine.role
        configs = self._arn("endpoint-config", f"{self.resource_prefix}*")
        models = self._arn("model", f"{self.resource_prefix}*")
        statements = [
            # CreateModel hands the execution role to SageMaker: this role only.
            pass_role_statement(self.execution_role),
            # Tags given to Create* calls are authorized as AddTags.
            iam.PolicyStatement(
                actions=["sagemaker:AddTags"],
                resources=[models, configs, self.endpoint_arn],
            ),
            # KmsKeyId on volumes and capture: SageMaker creates grants for the fleet...
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            # ...and describes the key as the caller. kms:GrantIsForAWSResource
            # is set on grant operations only: DescribeKey under it never applies.
            iam.PolicyStatement(actions=["kms:DescribeKey"], resources=[self.key.key_arn]),
            # UpdateEndpoint validates the AutoRollbackConfiguration alarms.
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[self.error_rate_alarm.alarm_arn, self.latency_alarm.alarm_arn],
            ),
            # RegisterScalableTarget checks the caller can see and scale the variant.
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                ],
                resources=[self.endpoint_arn, configs],
            ),
            # Target tracking creates and replaces its own alarms on the caller's behalf.
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms",
                         "cloudwatch:DeleteAlarms"],
                resources=[
                    self.stack.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name=f"TargetTracking-endpoint/{self.endpoint_name}/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
            # The first registration in an account creates Application Auto
            # Scaling's service-linked role for SageMaker.
            iam.PolicyStatement(
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    self.stack.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name="aws-service-role/sagemaker.application-autoscaling."
                        "amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                    )
                ],
                conditions={
                    "StringLike": {
                        "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"
                    }
                },
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        sagemaker_arn = "arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>"
        acknowledge_all(
            self.state_machine,
            {
                iam5_resource("*"): "Application Auto Scaling's "
                "RegisterScalableTarget/PutScalingPolicy have no resource-level permissions "
                "(scalable targets get random ids)",
                iam5_resource(f"{sagemaker_arn}:model/{self.resource_prefix}*"):
                "Models of this endpoint only: one per deployed version, named per execution",
                iam5_resource(f"{sagemaker_arn}:endpoint-config/{self.resource_prefix}*"):
                "Endpoint configurations of this endpoint only: "
                "one per deployed version, named per execution",
                iam5_resource(f"{sagemaker_arn}:model-package/{self.model_package_group_name}/*"):
                "Versions of this model's package "
                "group only",
                iam5_resource(printed_arn(
                    "cloudwatch", f"alarm:TargetTracking-endpoint/{self.endpoint_name}/*")):
                "The alarms target tracking creates for this endpoint's variant only",
            },
        )
