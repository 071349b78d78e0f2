"""The topic a model (or a platform) notifies on: failures, approvals, alarms."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


def notification_topic(
    scope: Construct, construct_id: str, *, key: kms.IKey, display_name: str
) -> sns.Topic:
    """An SNS topic encrypted with ``key``, accepting TLS only, and publishable
    only from this account.

    The default topic policy already denies other accounts; stating it keeps a
    later broad grant from opening the topic.
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
            conditions={"StringNotEquals": {"aws:PrincipalAccount": Stack.of(scope).account}},
        )
    )
    return topic
