"""The topic a model (or a platform) notifies on: failures, approvals, alarms."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


def notification_topic(
    scope: Construct, construct_id: str, *, key: kms.IKey, display_name: str
) -> sns.Topic:
    """An SNS topic encrypted with ``key``, accepting TLS only, and publishable
    only from this account (its principals, and its CloudWatch alarms).

    The default topic policy already denies other accounts; stating it keeps a
    later broad grant from opening the topic. The deny spares AWS service
    principals (``aws:PrincipalIsAWSService``): their requests carry no
    ``aws:PrincipalAccount``, so without the exception the deny would refuse
    CloudWatch alarm actions and EventBridge targets, which the topic exists for.
    """
    topic = sns.Topic(
        scope, construct_id, display_name=display_name, master_key=key, enforce_ssl=True
    )
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringNotEquals": {"aws:PrincipalAccount": Stack.of(scope).account},
                "Bool": {"aws:PrincipalIsAWSService": "false"},
            },
        )
    )
    # Alarm actions: CloudWatch publishes as its service principal, which a topic
    # policy must name (the key policy lets it use the key); only this account's alarms.
    account = Stack.of(scope).account
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:"
                                             f"{account}:alarm:*"},
                "StringEquals": {"aws:SourceAccount": account},
            },
        )
    )
    return topic

