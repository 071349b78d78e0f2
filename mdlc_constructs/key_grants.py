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


def _grant_via(grantee: iam.IGrantable, key: kms.IKey, service: str, actions: list[str],
               context: str, resource: str) -> None:
    """``actions`` on ``key`` only when ``service`` uses it for ``resource`` (its
    ``kms:ViaService`` and the encryption context ``context`` it sends)."""
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=actions,
        resources=[key.key_arn],
        conditions={"StringEquals": {
            "kms:ViaService": f"{service}.{Aws.REGION}.amazonaws.com",
            f"kms:EncryptionContext:{context}": resource,
        }},
    ))


def grant_publish_key(topic: sns.ITopic, grantee: iam.IGrantable) -> None:
    """Publishing to an encrypted ``topic``: ``kms:GenerateDataKey`` and ``kms:Decrypt``
    (SNS asks both of every publisher; encryption context ``aws:sns:topicArn``)."""
    if topic.master_key is not None:
        _grant_via(grantee, topic.master_key, "sns", ["kms:GenerateDataKey", "kms:Decrypt"],
                   "aws:sns:topicArn", topic.topic_arn)


def grant_table_key(table: dynamodb.ITable, key: kms.IKey, grantee: iam.IGrantable) -> None:
    """Reading or writing items of a table encrypted with ``key``: ``kms:Decrypt`` of
    the table key, which DynamoDB asks of the caller (encryption context
    ``aws:dynamodb:tableName``)."""
    _grant_via(grantee, key, "dynamodb", ["kms:Decrypt"], "aws:dynamodb:tableName",
               table.table_name)


def grant_send_key(queue: sqs.IQueue, grantee: iam.IGrantable) -> None:
    """Sending to an encrypted ``queue``: ``kms:GenerateDataKey`` and ``kms:Decrypt``
    (SQS asks both of every producer; encryption context ``aws:sqs:arn``). A
    function's ``dead_letter_queue`` gets ``sqs:SendMessage`` alone from aws-cdk-lib."""
    if queue.encryption_master_key is not None:
        _grant_via(grantee, queue.encryption_master_key, "sqs",
                   ["kms:GenerateDataKey", "kms:Decrypt"], "aws:sqs:arn", queue.queue_arn)
