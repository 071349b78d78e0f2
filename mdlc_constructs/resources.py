"""The library's secure defaults for the small stateful resources every stage makes.

Every stage that keeps records (a decision log, an idempotency ledger, online
features, a cool-down) or failed messages (a dead-letter queue) gets them
from here, so each has the same protection: a customer-managed KMS key,
point-in-time recovery, TLS only, retention on delete. A stage module never
imports another stage module for one of these.

Written on aws-cdk-lib's L2s (``dynamodb.Table``, ``sqs.Queue``); what is here
is only the choice of their secure props, in one place.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .compliance import acknowledge
from .spec.schedule import cron_fields
from .tokens import days

#: Why a dead-letter queue has no dead-letter queue of its own (AwsSolutions-SQS3).
DEAD_LETTER_REASON = "This queue is itself the dead-letter destination of a stream consumer"


def encrypted_table(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    partition_key: str,
    ttl_attribute: str | None = None,
    deletion_protection: bool = True,
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
) -> dynamodb.Table:
    """An on-demand table keyed by one string attribute, encrypted with ``key``,
    with point-in-time recovery, retained on delete and protected from deletion
    by default. ``ttl_attribute``: DynamoDB deletes items past that epoch time."""
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=ttl_attribute,
        deletion_protection=deletion_protection or None,
        removal_policy=removal_policy,
    )


def encrypted_queue(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    retention_days: int = 14,
    dead_letter_reason: str = DEAD_LETTER_REASON,
) -> sqs.Queue:
    """A queue for failed records or events: KMS with ``key``, TLS only, kept
    ``retention_days`` (default 14, SQS's maximum). It is a dead-letter queue
    itself, so it has none (``dead_letter_reason`` says whose it is)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=days(retention_days),
    )
    acknowledge(queue, "AwsSolutions-SQS3", dead_letter_reason)
    return queue


def schedule_of(expression: str) -> events.Schedule:
    """An EventBridge schedule from a spec's (validated) expression: a cron
    expression as its fields, anything else (``rate(...)``) as written."""
    fields = cron_fields(expression)
    if fields is None:
        return events.Schedule.expression(expression)
    return events.Schedule.cron(**fields)


__all__ = ["DEAD_LETTER_REASON", "encrypted_queue", "encrypted_table", "schedule_of"]
