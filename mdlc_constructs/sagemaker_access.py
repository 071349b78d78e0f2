"""SageMaker execution roles: who may assume them, and what every one needs
besides its data (its logs, its metrics, its images). Training jobs,
endpoints, batch transforms and Processing jobs share this, so each role's
``*`` resources are only the actions without resource-level permissions
(``cloudwatch:PutMetricData`` under a namespace condition, and
``ecr:GetAuthorizationToken`` when it pulls from a repository)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from .compliance import acknowledge_all, iam5_resource, printed_arn
from .network import ModelNetwork
from .tokens import stack_of

#: SageMaker throttling as Step Functions reports it. The optimized integration
#: wraps every service error in AmazonSageMakerException (the cause names
#: ThrottlingException); retrying is safe where the job or model name is fixed
#: per execution: a repeated Create call cannot start a second job.
SAGEMAKER_TRANSIENT = (
    "SageMaker.ThrottlingException",
    "SageMaker.AmazonSageMakerException",
    "ThrottlingException",
)

#: The cdk-nag reason for a SageMaker role's ``*`` resources (see the module docstring).
WILDCARD_REASON = (
    "cloudwatch:PutMetricData and ecr:GetAuthorizationToken have no resource-level "
    "permissions; metrics are limited to SageMaker's namespaces by condition, and images "
    "are pulled from the named repositories only"
)


def sagemaker_role(scope: Construct, construct_id: str, *, description: str) -> iam.Role:
    """A role only SageMaker acting for this account can assume (the
    ``aws:SourceAccount`` condition prevents a confused deputy).

    In a stack with a network (``ModelNetwork.of(scope)``) the role may also
    place its jobs' and models' network interfaces in that network's VPC.
    """
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal(
            "sagemaker.amazonaws.com",
            conditions={"StringEquals": {"aws:SourceAccount": stack_of(scope).account}},
        ),
        description=description,
    )
    network = ModelNetwork.of(scope)
    if network is not None:
        network.grant_network_interfaces(role)
        acknowledge_all(role, {
            iam5_resource("*"): "ec2:Describe* of the network (VPCs, subnets, "
            "security groups, DHCP options, interfaces) has no resource-level permissions",
            iam5_resource(printed_arn("ec2", "network-interface/*")): "SageMaker names a job's "
            "network interfaces itself; limited to the model's VPC by the ec2:Vpc condition",
        })
    return role


def pass_role_statement(role: iam.IRole) -> iam.PolicyStatement:
    """What a caller of CreateTrainingJob, CreateProcessingJob or CreateModel
    needs to hand ``role`` to SageMaker: ``iam:PassRole`` on that role only,
    and only to SageMaker (``iam:PassedToService``)."""
    return iam.PolicyStatement(
        actions=["iam:PassRole"],
        resources=[role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )


def grant_job_logs(role: iam.IRole, *, log_group: str, stream_pattern: str = "*") -> str:
    """Let SageMaker write ``role``'s job logs to ``/aws/sagemaker/<log_group>``
    (streams matching ``stream_pattern``) and publish its own metrics.

    Returns the log group's ARN. ``cloudwatch:PutMetricData`` has no resource-level
    permission; it is limited to SageMaker's ``/aws/sagemaker/*`` namespaces.
    """
    arn = stack_of(role).format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"/aws/sagemaker/{log_group}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[arn, f"{arn}:log-stream:{stream_pattern}"],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        )
    )
    return arn


def grant_image_pull(role: iam.IRole, repositories: Sequence[ecr.IRepository]) -> None:
    """Let SageMaker pull ``role``'s images from ``repositories`` (this model's
    own, e.g. a custom algorithm's): the layer and image reads on each
    repository, and ``ecr:GetAuthorizationToken``, which has no resource-level
    permission. SageMaker's built-in algorithm images need neither."""
    for repository in repositories:
        repository.grant_pull(role)
