"""Every data-lake bucket is private, TLS-only, KMS-encrypted, versioned,
logged, lifecycled and retained; existing resources are accepted."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from mdlc_constructs.storage import BUCKET_KINDS, DataLake
from mdlc_constructs.testing import make_app


def _data_buckets(template: Template) -> dict[str, dict]:
    buckets = template.find_resources("AWS::S3::Bucket")
    return {
        logical_id: resource
        for logical_id, resource in buckets.items()
        if "LoggingConfiguration" in resource["Properties"]
    }


def test_one_bucket_per_kind_plus_access_logs(fraud_template):
    assert len(_data_buckets(fraud_template)) == len(BUCKET_KINDS)
    fraud_template.resource_count_is("AWS::S3::Bucket", len(BUCKET_KINDS) + 1)


def test_buckets_block_all_public_access(fraud_template):
    for resource in fraud_template.find_resources("AWS::S3::Bucket").values():
        assert resource["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }


def test_buckets_are_versioned_retained_and_expire_noncurrent_versions(fraud_template):
    for resource in fraud_template.find_resources("AWS::S3::Bucket").values():
        assert resource["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"
        rule = resource["Properties"]["LifecycleConfiguration"]["Rules"][0]
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 365
        assert rule["Status"] == "Enabled"


def test_data_buckets_use_the_customer_managed_key(fraud_template):
    key_id = next(iter(fraud_template.find_resources("AWS::KMS::Key")))
    for resource in _data_buckets(fraud_template).values():
        sse = resource["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }


def test_data_buckets_log_to_the_access_log_bucket(fraud_template):
    log_bucket = next(
        logical_id
        for logical_id, resource in fraud_template.find_resources("AWS::S3::Bucket").items()
        if "LoggingConfiguration" not in resource["Properties"]
    )
    prefixes = set()
    for resource in _data_buckets(fraud_template).values():
        logging = resource["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": log_bucket}
        prefixes.add(logging["LogFilePrefix"])
    assert prefixes == {f"{kind}/" for kind in BUCKET_KINDS}


def test_every_bucket_denies_insecure_transport(fraud_template):
    bucket_ids = set(fraud_template.find_resources("AWS::S3::Bucket"))
    policies = fraud_template.find_resources(
        "AWS::S3::BucketPolicy",
        {
            "Properties": {
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Action": "s3:*",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            }
        },
    )
    covered = {p["Properties"]["Bucket"]["Ref"] for p in policies.values()}
    assert covered == bucket_ids


def test_key_rotates_and_is_retained(fraud_template):
    fraud_template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "Retain",
        },
    )


def test_existing_key_and_buckets_are_used_not_created():
    app = make_app(compliance=False)
    stack = cdk.Stack(app, "Existing")
    key = kms.Key.from_key_arn(
        stack, "Key", "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    raw = s3.Bucket.from_bucket_name(stack, "Raw", "team-raw-data")
    lake = DataLake(stack, "Lake", key=key, buckets={"raw": raw})
    assert lake.key is key
    assert lake.raw is raw
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::KMS::Key", 0)
    template.resource_count_is("AWS::S3::Bucket", len(BUCKET_KINDS))  # 5 data + access logs


def test_unknown_bucket_kind_is_rejected():
    app = make_app(compliance=False)
    stack = cdk.Stack(app, "Bad")
    with pytest.raises(ValueError, match=r"unknown kinds \['models'\]"):
        DataLake(
            stack, "Lake", buckets={"models": s3.Bucket.from_bucket_name(stack, "B", "team-models")}
        )


@pytest.mark.parametrize("flag", [None, False, True])
def test_log_delivery_is_the_bucket_policy_whatever_the_s3_flag(flag):
    """Without ``@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy`` (or with it
    false) CDK would grant log delivery by ACL, which bucket-owner ownership
    forbids: the data lake synthesizes the same bucket policy either way."""
    context = {} if flag is None else {"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": flag}
    app = cdk.App(context=context, analytics_reporting=False)
    stack = cdk.Stack(app, "Lake")
    DataLake(stack, "DataLake")
    template = Template.from_stack(stack)
    buckets = template.find_resources("AWS::S3::Bucket")
    log_id = next(i for i, r in buckets.items() if "LoggingConfiguration" not in r["Properties"])
    assert log_id.startswith("DataLakeAccessLogs")  # the construct id, unchanged
    log_bucket = buckets[log_id]["Properties"]
    assert "AccessControl" not in log_bucket
    assert log_bucket["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }
    (policy,) = [p for p in template.find_resources("AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": log_id}]
    delivery = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}]
    sources = {json.dumps(s["Condition"]["ArnLike"]["aws:SourceArn"]) for s in delivery}
    assert len(delivery) == len(BUCKET_KINDS) == len(sources)
    for statement in delivery:
        assert statement["Effect"] == "Allow" and statement["Action"] == "s3:PutObject"
        assert statement["Condition"]["StringEquals"] == {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"}
        }
