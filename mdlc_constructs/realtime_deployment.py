"""The states of ``RealtimeEndpoint``'s deployment workflow (stage 6).

Split from :mod:`mdlc_constructs.realtime`, which keeps the construct's
props, public API and extension points: this module is only the Step
Functions definition (blue/green deployment, the lookup's retries,
verification, autoscaling), as a mixin so every state is still created in the
endpoint's own scope with the construct ids it always had (a public
contract: they name the states and the workflow role's statements).

The mixin reads what :class:`~mdlc_constructs.realtime.RealtimeEndpoint` sets:
``spec``, ``topic``, ``endpoint_name``, ``endpoint_arn``, ``variant_name``,
``model_package_group_name``, ``resource_prefix``, ``execution_role``,
``realtime`` and ``_poll_interval``, and calls its extension points
(``endpoint_config_parameters``, ``deployment_config``,
``scaling_policy_parameters``) and helpers (``_arn``, ``_vpc_config``, ``_tags``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from .tokens import minutes, string_at, task_timeout
from .workflow import notify_and_fail, publish, retry_transient

#: Endpoint states in which a deployment is still moving. Any other state is
#: final for the workflow (UpdateRollbackFailed and Failed need a person).
TRANSITIONAL_STATES = ("Creating", "Updating", "SystemUpdating", "RollingBack")

#: Throttling and transient faults under their own names: safe to retry on
#: reads and on the idempotent autoscaling calls.
SDK_THROTTLING = (
    "SageMaker.ThrottlingException",
    "ApplicationAutoScaling.ConcurrentUpdateException",
    "ApplicationAutoScaling.InternalServiceException",
    "ThrottlingException",
)

#: The one name a Task gets for every SageMaker error the SDK's model does not
#: declare: ThrottlingException, and also ValidationException, which is how
#: DescribeEndpoint answers a missing endpoint ("Could not find endpoint").
#: The AWS SDK integrations report it as SageMaker.SageMakerException (the
#: SDK v2 base class, as they report S3.S3Exception, and as moto's and
#: LocalStack's interpreters name it); the optimized .sync integrations as
#: SageMaker.AmazonSageMakerException. Both spellings, so neither slips past.
SAGEMAKER_UNMODELED = ("SageMaker.SageMakerException", "SageMaker.AmazonSageMakerException")

#: Retries of a read whose resource exists (the event's model package, the
#: endpoint being deployed): an unmodeled error there is throttling in
#: practice, so it is retried with the named ones; a validation or permission
#: error costs the retries' half minute before the boundary's catch.
READ_RETRY = (*SDK_THROTTLING, *SAGEMAKER_UNMODELED)

#: FindEndpoint's own retries of a throttled lookup (Retry cannot tell the
#: unmodeled throttling from a missing endpoint: the Catch reads the cause).
FIND_RETRIES = 4
#: Causes of a throttled SageMaker call: the service's message ("Rate
#: exceeded"), or the error code where the SDK's message includes it.
THROTTLED_CAUSES = ("*Rate exceeded*", "*ThrottlingException*")



class DeploymentWorkflowSteps:
    """The deployment workflow's states, built in the endpoint's scope."""

    def _definition(self) -> sfn.IChainable:
        name = self.spec.name
        boundary = sfn.Parallel(
            self,
            "Deploy",
            result_path=sfn.JsonPath.DISCARD,
            comment="Error boundary: any failure notifies the topic once",
        )
        boundary.branch(self._deploy_chain())
        boundary.add_catch(
            notify_and_fail(
                self,
                "Deployment",
                topic=self.topic,
                subject=f"MDLC {name}: deployment to {self.endpoint_name} failed",
                cause="The deployment failed or was rolled back; see the notification",
            ),
            result_path="$.error",
        )
        return boundary

    def _deploy_chain(self) -> sfn.IChainable:
        """Describe the event's package; deploy it unless it is served already."""
        describe_package, not_deployable = self._describe_package()
        find, no_endpoint = self._find_endpoint()
        already, deploy = self._deploy()
        find.next(
            sfn.Choice(self, "IsAlreadyServing")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.string_equals("$.served.status", "InService"),
                    sfn.Condition.string_equals_json_path("$.served.version", "$.package.tag"),
                ),
                already,
            )
            .otherwise(deploy)
        )
        no_endpoint.next(deploy)
        return (
            sfn.Chain.start(describe_package)
            .next(
                sfn.Choice(self, "IsDeployable")
                .when(
                    sfn.Condition.and_(
                        sfn.Condition.string_equals("$.package.status", "Approved"),
                        sfn.Condition.string_equals(
                            "$.package.group", self.model_package_group_name
                        ),
                    ),
                    find,
                )
                .otherwise(not_deployable)
            )
        )


    def _describe_package(self) -> tuple[sfn.IChainable, sfn.IChainable]:
        """DescribeModelPackage into ``$.package``, and the Fail of a version
        that is not Approved in this model's group."""
        describe_package = self._sdk(
            "DescribeModelPackage",
            "describeModelPackage",
            {"ModelPackageName": string_at("$.detail.ModelPackageArn")},
            resources=[self._arn("model-package", f"{self.model_package_group_name}/*")],
            result_selector={
                "arn": string_at("$.ModelPackageArn"),
                "group": string_at("$.ModelPackageGroupName"),
                "version": sfn.JsonPath.number_at("$.ModelPackageVersion"),
                "status": string_at("$.ModelApprovalStatus"),
                # How the version appears in endpoint configuration names.
                "tag": sfn.JsonPath.format("v{}", string_at("$.ModelPackageVersion")),
            },
            result_path="$.package",
        )
        not_deployable = self._fail(
            "NotDeployable",
            "ModelPackageNotDeployable",
            sfn.JsonPath.format(
                f"{{}} is {{}} in group {{}}; only Approved versions of "
                f"{self.model_package_group_name} are deployed",
                string_at("$.package.arn"),
                string_at("$.package.status"),
                string_at("$.package.group"),
            ),
        )
        return describe_package, not_deployable

    def _find_endpoint(self) -> tuple[tasks.CallAwsService, sfn.Pass]:
        """FindEndpoint into ``$.served``, with its bounded retries of a
        throttled lookup; and NoEndpointYet, where a first deployment goes on."""
        # DescribeEndpoint is the existence check: SageMaker answers a missing
        # endpoint with a ValidationException "Could not find endpoint ...".
        # (ListEndpoints would need "*" and a JSONPath filter that fails on no match.)
        # That error has the unmodeled name throttling also has, and Retry runs
        # before Catch: a Retry on that name would retry every first deployment
        # four times before it reached the catch. So Retry names throttling
        # only by its own names; the catch tells the missing endpoint (go on at
        # once) from throttling (wait and look again, boundedly) by the cause.
        find = self._sdk(
            "FindEndpoint",
            "describeEndpoint",
            {"EndpointName": self.endpoint_name},
            resources=[self.endpoint_arn],
            retry=SDK_THROTTLING,
            result_selector={
                "status": string_at("$.EndpointStatus"),
                "config": string_at("$.EndpointConfigName"),
                # <endpoint>-v<version>-<random>: the version is the second last part.
                # CDK's JsonPath helpers type ArrayLength as a string: write it out.
                "version.$": "States.ArrayGetItem(States.StringSplit($.EndpointConfigName, '-'), "
                "States.MathAdd(States.ArrayLength(States.StringSplit($.EndpointConfigName, "
                "'-')), -2))",
            },
            result_path="$.served",
        )
        lookup_failed = sfn.Fail(
            self, "FindEndpointFailed", error_path="$.lookup.Error", cause_path="$.lookup.Cause"
        )
        no_endpoint = sfn.Pass(
            self, "NoEndpointYet", comment="The first approved version creates the endpoint"
        )
        again = sfn.Wait(
            self,
            "FindEndpointAgain",
            time=sfn.WaitTime.seconds_path("$.find_retries.wait"),
            comment="SageMaker throttled the lookup: back off, then look again",
        )
        again.next(find)
        first_retry = sfn.Pass(
            self,
            "CountFindRetry",
            parameters={"count": 1, "wait": 5},
            result_path="$.find_retries",
        ).next(again)
        next_retry = sfn.Pass(
            self,
            "CountNextFindRetry",
            parameters={
                "count.$": "States.MathAdd($.find_retries.count, 1)",
                # Doubling: 5, 10, 20, 40 seconds.
                "wait.$": "States.MathAdd($.find_retries.wait, $.find_retries.wait)",
            },
            result_path="$.find_retries",
        ).next(again)
        retries_left = (
            sfn.Choice(self, "FindRetriesLeft")
            .when(sfn.Condition.is_not_present("$.find_retries"), first_retry)
            .when(sfn.Condition.number_less_than("$.find_retries.count", FIND_RETRIES),
                  next_retry)
            .otherwise(lookup_failed)
        )
        missing = (
            sfn.Choice(self, "EndpointMissing")
            .when(
                sfn.Condition.string_matches("$.lookup.Cause", "*Could not find endpoint*"),
                no_endpoint,
            )
            .when(
                sfn.Condition.or_(*[sfn.Condition.string_matches("$.lookup.Cause", cause)
                                    for cause in THROTTLED_CAUSES]),
                retries_left,
            )
            .otherwise(lookup_failed)
        )
        find.add_catch(missing, errors=["States.TaskFailed"], result_path="$.lookup")
        return find, no_endpoint

    def _deploy(self) -> tuple[sfn.Succeed, sfn.Chain]:
        """AlreadyServing, and the deployment itself: name, create the model and
        configuration, create or update the endpoint, wait, verify."""
        exists = sfn.Condition.is_present("$.served.status")
        already = sfn.Succeed(
            self, "AlreadyServing", comment="A repeated event for the version already served"
        )
        name = sfn.Pass(
            self,
            "NameResources",
            comment="Model and endpoint configuration names, unique per deployment",
            parameters={
                "name": sfn.JsonPath.format(
                    f"{self.resource_prefix}{{}}-{{}}",
                    string_at("$.package.version"),
                    sfn.JsonPath.array_get_item(
                        sfn.JsonPath.string_split(sfn.JsonPath.uuid(), "-"), 0
                    ),
                )
            },
            result_path="$.deployment",
        )
        create_model = self._sdk(
            "CreateModel",
            "createModel",
            {
                "ModelName": string_at("$.deployment.name"),
                "ExecutionRoleArn": self.execution_role.role_arn,
                "PrimaryContainer": {
                    "ModelPackageName": string_at("$.package.arn"),
                },
                # The container cannot call out: captured payment data stays put.
                "EnableNetworkIsolation": True,
                **self._vpc_config(),
                "Tags": self._tags(),
            },
            resources=[self._arn("model", f"{self.resource_prefix}*")],
            retry=None,
        )
        config_parameters = self.endpoint_config_parameters()
        config_parameters["EndpointConfigName"] = string_at("$.deployment.name")
        create_config = self._sdk(
            "CreateEndpointConfig",
            "createEndpointConfig",
            config_parameters,
            resources=[self._arn("endpoint-config", f"{self.resource_prefix}*")],
            retry=None,
        )
        create_endpoint = self._sdk(
            "CreateEndpoint",
            "createEndpoint",
            {
                "EndpointName": self.endpoint_name,
                "EndpointConfigName": string_at("$.deployment.name"),
                "Tags": self._tags(),
            },
            resources=[self.endpoint_arn,
                       self._arn("endpoint-config", f"{self.resource_prefix}*")],
            retry=None,
        )
        update_endpoint = self._sdk(
            "UpdateEndpoint",
            "updateEndpoint",
            {
                "EndpointName": self.endpoint_name,
                "EndpointConfigName": string_at("$.deployment.name"),
                "DeploymentConfig": self.deployment_config(),
                # Keep the autoscaled instance count and weights; take the new
                # data capture settings from the new configuration.
                "RetainAllVariantProperties": True,
                "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DataCaptureConfig"}],
            },
            resources=[self.endpoint_arn,
                       self._arn("endpoint-config", f"{self.resource_prefix}*")],
            retry=None,
        )
        wait = sfn.Wait(
            self,
            "WaitForEndpoint",
            time=sfn.WaitTime.duration(self._poll_interval),
            comment="Traffic shifting, baking and rollback take minutes",
        )
        describe = self._sdk(
            "DescribeEndpoint",
            "describeEndpoint",
            {"EndpointName": self.endpoint_name},
            resources=[self.endpoint_arn],
            result_path="$.endpoint",
        )
        verify = self._verify()
        settled = (
            sfn.Choice(self, "EndpointSettled")
            .when(
                sfn.Condition.or_(
                    *[sfn.Condition.string_equals("$.endpoint.EndpointStatus", state)
                      for state in TRANSITIONAL_STATES]
                ),
                wait,
            )
            .otherwise(verify)
        )
        wait.next(describe).next(settled)

        deploy = (
            sfn.Chain.start(name)
            .next(create_model)
            .next(create_config)
            .next(
                sfn.Choice(self, "CreateOrUpdate")
                .when(exists, update_endpoint.next(wait))
                .otherwise(create_endpoint.next(wait))
            )
        )
        return already, deploy

    def _verify(self) -> sfn.IChainable:
        """InService AND serving the new configuration, else fail with the reason.

        An endpoint whose alarms fired rolls back to the blue fleet and reports
        InService again: only the served configuration name tells."""
        reason = "$.endpoint.reason"
        with_reason = sfn.Pass(
            self,
            "ReadFailureReason",
            parameters={"text": string_at("$.endpoint.FailureReason")},
            result_path=reason,
        )
        without_reason = sfn.Pass(
            self,
            "NoFailureReason",
            parameters={"text": "SageMaker reported no FailureReason"},
            result_path=reason,
        )
        rolled_back = self._fail(
            "RolledBack",
            "DeploymentRolledBack",
            sfn.JsonPath.format(
                f"{self.endpoint_name} rolled back: it serves {{}} instead of {{}} "
                "(model package {}); a rollback alarm fired or the new fleet failed: {}",
                string_at("$.endpoint.EndpointConfigName"),
                string_at("$.deployment.name"),
                string_at("$.package.arn"),
                string_at("$.endpoint.reason.text"),
            ),
        )
        failed = self._fail(
            "EndpointFailed",
            "DeploymentFailed",
            sfn.JsonPath.format(
                f"{self.endpoint_name} is {{}} serving {{}}, not {{}} (model package {{}}): {{}}",
                string_at("$.endpoint.EndpointStatus"),
                string_at("$.endpoint.EndpointConfigName"),
                string_at("$.deployment.name"),
                string_at("$.package.arn"),
                string_at("$.endpoint.reason.text"),
            ),
        )
        judge = (
            sfn.Choice(self, "RolledBackOrFailed")
            .when(sfn.Condition.string_equals("$.endpoint.EndpointStatus", "InService"),
                  rolled_back)
            .otherwise(failed)
        )
        with_reason.next(judge)
        without_reason.next(judge)
        explain = (
            sfn.Choice(self, "HasFailureReason")
            .when(sfn.Condition.is_present("$.endpoint.FailureReason"), with_reason)
            .otherwise(without_reason)
        )
        success = self._autoscaling().next(self._notify_deployed())
        return (
            sfn.Choice(self, "VerifyDeployment",
                       comment="Serves the new configuration and is InService")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.string_equals("$.endpoint.EndpointStatus", "InService"),
                    sfn.Condition.string_equals_json_path(
                        "$.endpoint.EndpointConfigName", "$.deployment.name"
                    ),
                ),
                success,
            )
            .otherwise(explain)
        )

    def _autoscaling(self) -> sfn.Chain:
        """Register the variant and its target-tracking policy (both idempotent)."""
        a = self.realtime.autoscaling
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": f"endpoint/{self.endpoint_name}/variant/{self.variant_name}",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        }
        register = self._autoscaling_call(
            "RegisterScalableTarget",
            "registerScalableTarget",
            {**target, "MinCapacity": a.min_capacity, "MaxCapacity": a.max_capacity},
        )
        policy = self._autoscaling_call(
            "PutScalingPolicy", "putScalingPolicy", {**target, **self.scaling_policy_parameters()}
        )
        return sfn.Chain.start(register).next(policy)

    def _notify_deployed(self) -> sfn.Chain:
        deployed = publish(
            self,
            "NotifyDeployed",
            topic=self.topic,
            subject=f"MDLC {self.spec.name}: new version serving on {self.endpoint_name}",
            message={
                "model": self.spec.name,
                "endpoint": self.endpoint_name,
                "model_package": string_at("$.package.arn"),
                "version": sfn.JsonPath.number_at("$.package.version"),
                "endpoint_config": string_at("$.deployment.name"),
                "execution": sfn.JsonPath.execution_id,
            },
        )
        return deployed.next(sfn.Succeed(self, "Deployed"))

    # -- helpers ------------------------------------------------------------------

    def _sdk(
        self,
        construct_id: str,
        action: str,
        parameters: dict[str, Any],
        *,
        resources: list[str],
        iam_action: str | None = None,
        result_selector: dict[str, Any] | None = None,
        result_path: str | None = sfn.JsonPath.DISCARD,
        retry: Sequence[str] | None = READ_RETRY,
    ) -> tasks.CallAwsService:
        """A SageMaker SDK call with a timeout, retried on the errors ``retry``
        names (default: a read's, ``READ_RETRY``). None: a create, retried only
        on throttling by name (a second create of the same name would fail)."""
        task = tasks.CallAwsService(
            self,
            construct_id,
            service="sagemaker",
            action=action,
            iam_action=iam_action or f"sagemaker:{action[0].upper()}{action[1:]}",
            iam_resources=resources,
            parameters=parameters,
            result_selector=result_selector,
            result_path=result_path,
            task_timeout=task_timeout(minutes(2)),
        )
        if retry is not None:
            retry_transient(task, errors=tuple(retry))
        else:
            retry_transient(task, errors=("SageMaker.ThrottlingException", "ThrottlingException"))
        return task

    def _autoscaling_call(
        self, construct_id: str, action: str, parameters: dict[str, Any]
    ) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self,
            construct_id,
            service="applicationautoscaling",
            action=action,
            iam_action=f"application-autoscaling:{action[0].upper()}{action[1:]}",
            # Application Auto Scaling has no resource-level permissions for a
            # target that does not exist yet; see _grant_workflow.
            iam_resources=["*"],
            parameters=parameters,
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=task_timeout(minutes(2)),
        )
        retry_transient(task, errors=SDK_THROTTLING)
        return task

    def _fail(self, construct_id: str, error: str, cause: str) -> sfn.Chain:
        """Put ``{Error, Cause}`` at ``$.error`` and fail the branch with them, so the
        boundary's catch notifies with this cause."""
        describe = sfn.Pass(
            self,
            construct_id,
            parameters={"Error": error, "Cause": cause},
            result_path="$.error",
        )
        return describe.next(
            sfn.Fail(
                self,
                f"{construct_id}Fail",
                error_path="$.error.Error",
                cause_path="$.error.Cause",
            )
        )
