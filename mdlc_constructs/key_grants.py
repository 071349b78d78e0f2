"""What a caller needs on a customer managed key when a service uses it on its behalf.

aws-cdk-lib's purpose-specific grants (``topic.grant_publish``,
``table.grant_read_write_data``, ``queue.grant_send_messages``) add key
permissions, but the generic ones (``table.grant(...)``), a function's
``dead_letter_queue`` and ``aws_stepfunctions_tasks`` (``SnsPublish``) do not.
These grants are scoped to the one service (``kms:ViaService``) and the one
resource (the encryption context the service sends), per each service's
documentation of how it uses AWS KMS.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs


def grant_publish_key(topic: sns.ITopic, grantee: iam.IGrantable) -> None:
    """Publishing to an encrypted ``topic``: ``kms:GenerateDataKey`` and ``kms:Decrypt``
    (SNS asks both of every publisher; encryption context ``aws:sns:topicArn``)."""
    key = topic.master_key
    if key is None:
        return
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["kms:GenerateDataKey", "kms:Decrypt"],
        resources=[key.key_arn],
        conditions={"StringEquals": {
            "kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:sns:topicArn": topic.topic_arn,
        }},
    ))


def grant_table_key(table: dynamodb.ITable, key: kms.IKey, grantee: iam.IGrantable) -> None:
    """Reading or writing items of a table encrypted with ``key``: ``kms:Decrypt`` of
    the table key, which DynamoDB asks of the caller (encryption context
    ``aws:dynamodb:tableName``)."""
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["kms:Decrypt"],
        resources=[key.key_arn],
        conditions={"StringEquals": {
            "kms:ViaService": f"dynamodb.{Aws.REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:dynamodb:tableName": table.table_name,
        }},
    ))


def grant_send_key(queue: sqs.IQueue, grantee: iam.IGrantable) -> None:
    """Sending to an encrypted ``queue``: ``kms:GenerateDataKey`` and ``kms:Decrypt``
    (SQS asks both of every producer; encryption context ``aws:sqs:arn``). A
    function's ``dead_letter_queue`` gets ``sqs:SendMessage`` alone from aws-cdk-lib."""
    key = queue.encryption_master_key
    if key is None:
        return
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["kms:GenerateDataKey", "kms:Decrypt"],
        resources=[key.key_arn],
        conditions={"StringEquals": {
            "kms:ViaService": f"sqs.{Aws.REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:sqs:arn": queue.queue_arn,
        }},
    ))
