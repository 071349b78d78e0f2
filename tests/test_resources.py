"""The secure defaults every stage's tables and queues get (mdlc_constructs.resources)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_kms as kms


@pytest.fixture(scope="module")
def template():
    from mdlc_constructs.resources import encrypted_queue, encrypted_table

    app = cdk.App()
    stack = cdk.Stack(app, "S")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    encrypted_table(stack, "Ledger", key=key, partition_key="id", ttl_attribute="expiration")
    encrypted_table(stack, "Cooldown", key=key, partition_key="model",
                    deletion_protection=False, removal_policy=cdk.RemovalPolicy.DESTROY)
    encrypted_queue(stack, "DeadLetters", key=key)
    return assertions.Template.from_stack(stack)


def test_tables_are_kms_encrypted_recoverable_and_retained(template):
    template.has_resource("AWS::DynamoDB::Table", {
        "Properties": {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS",
                                 "KMSMasterKeyId": assertions.Match.any_value()},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            "DeletionProtectionEnabled": True,
        },
        "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
    })


def test_deletion_protection_and_retention_are_the_callers_choice(template):
    (cooldown,) = template.find_resources("AWS::DynamoDB::Table", {
        "Properties": {"KeySchema": [{"AttributeName": "model", "KeyType": "HASH"}]}}).values()
    assert "DeletionProtectionEnabled" not in cooldown["Properties"]
    assert cooldown["DeletionPolicy"] == "Delete"


def test_queues_are_kms_encrypted_tls_only_and_kept_14_days(template):
    template.has_resource_properties("AWS::SQS::Queue", {
        "KmsMasterKeyId": assertions.Match.any_value(), "MessageRetentionPeriod": 14 * 86400})
    template.has_resource_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {
        "Statement": assertions.Match.array_with([assertions.Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
