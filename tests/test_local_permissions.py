"""Calls in the local execution run as their roles: what each call needs, who makes it.

The simulation tests (tests/test_simulation.py) run the fraud lifecycle with
zero denied calls and revoke one grant to see the run fail on that call.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdlc_constructs.local.hooks import ServiceError
from mdlc_constructs.local.permissions import Authorizer, PolicyStore, needs
from mdlc_constructs.local.principals import Principals

ACCOUNT = "123456789012"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Handler"


def _store() -> PolicyStore:
    store = PolicyStore()
    store.keys["arn:aws:s3:::data"] = KEY
    store.keys[f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/items"] = KEY
    store.keys[f"arn:aws:sqs:us-east-1:{ACCOUNT}:dlq"] = KEY
    store.keys[f"arn:aws:sns:us-east-1:{ACCOUNT}:topic"] = KEY
    return store


def _as_dicts(found):
    return [(n.action, n.resource, dict(n.context)) for n in found]


def test_an_s3_write_to_an_sse_kms_bucket_needs_the_key_with_the_objects_context():
    found = _as_dicts(needs(_store(), "s3", "PutObject", {"Bucket": "data", "Key": "a/b.csv"}))
    assert found[0][:2] == ("s3:PutObject", "arn:aws:s3:::data/a/b.csv")
    assert found[0][2]["aws:SecureTransport"] is True
    action, resource, context = found[1]
    assert (action, resource) == ("kms:GenerateDataKey", KEY)
    assert context["kms:EncryptionContext:aws:s3:arn"] == "arn:aws:s3:::data/a/b.csv"
    assert context["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


def test_a_listing_carries_its_prefix_for_s3_prefix_conditions():
    found = _as_dicts(needs(_store(), "s3", "ListObjectsV2",
                            {"Bucket": "data", "Prefix": "datasets/fraud/"}))
    assert found == [("s3:ListBucket", "arn:aws:s3:::data",
                      {"aws:SecureTransport": True, "s3:prefix": "datasets/fraud/"})]


def test_a_transaction_needs_each_items_action_and_the_table_key_once():
    found = _as_dicts(needs(_store(), "dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "items", "Item": {}}},
        {"ConditionCheck": {"TableName": "items", "Key": {}}},
        {"Put": {"TableName": "items", "Item": {}}}]}))
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/items"
    assert [(a, r) for a, r, _ in found] == [
        ("dynamodb:PutItem", table), ("dynamodb:ConditionCheckItem", table), ("kms:Decrypt", KEY)]
    assert found[2][2]["kms:EncryptionContext:aws:dynamodb:tableName"] == "items"


def test_producers_of_encrypted_queues_and_topics_need_generate_data_key_and_decrypt():
    queue = needs(_store(), "sqs", "SendMessage",
                  {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/dlq"})
    topic = needs(_store(), "sns", "Publish",
                  {"TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:topic"})
    assert [n.action for n in queue] == ["sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"]
    assert [n.action for n in topic] == ["sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"]
    assert dict(topic[1].context)["kms:EncryptionContext:aws:sns:topicArn"].endswith(":topic")


def test_an_operation_without_a_mapping_is_checked_on_star_and_says_so():
    store = _store()
    store.roles[ROLE] = _role_policies([])
    authorizer = Authorizer(store, Principals())
    with pytest.raises(ServiceError) as raised:
        authorizer.check(ROLE, "ssm", "GetParameter", needs(store, "ssm", "GetParameter", {}))
    assert raised.value.code == "AccessDeniedException"
    assert "no IAM mapping for ssm GetParameter" in authorizer.denied[0]["reason"]


def _role_policies(statements):
    from mdlc_constructs.local.permissions import RolePolicies

    return RolePolicies(arn=ROLE, name="Handler", stack="S", logical_id="HandlerRole",
                        trust={}, identity=[{"Version": "2012-10-17", "Statement": statements}])


def test_a_denied_kms_use_fails_as_the_service_fails_it_and_is_reported():
    store = _store()
    store.resource_policies[KEY] = ("kms", {"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]})
    store.roles[ROLE] = _role_policies([
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"},
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY}])
    authorizer = Authorizer(store, Principals())
    params = {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/dlq"}
    with pytest.raises(ServiceError) as raised:
        authorizer.check_params(ROLE, "sqs", "SendMessage", params)
    assert raised.value.code == "KMS.AccessDeniedException"
    denied = authorizer.report()
    assert [(d["principal"], d["action"], d["resource"]) for d in denied] == [
        (ROLE, "kms:GenerateDataKey", KEY)]
    assert denied[0]["context"]["kms:EncryptionContext:aws:sqs:arn"].endswith(":dlq")


def test_threads_started_by_a_caller_call_as_it():
    principals = Principals()
    seen = []
    principals.install()
    try:
        with principals.acting_as(ROLE):
            worker = threading.Thread(target=lambda: seen.append(principals.current()))
            worker.start()
            worker.join()
        outside = threading.Thread(target=lambda: seen.append(principals.current()))
        outside.start()
        outside.join()
    finally:
        principals.uninstall()
    assert seen == [ROLE, None]


_PUT = '''
import boto3, os
s3 = boto3.client("s3")

def handler(event, context):
    s3.put_object(Bucket=os.environ["BUCKET"], Key=event["key"], Body=b"x")
    return {"ok": True}
'''


def _function_stack(directory: Path, grants: list[dict]) -> Path:
    from tests.local_assemblies import assembly_with_function

    bucket = {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}}}
    return assembly_with_function(directory, _PUT, bucket, tuple(grants),
                                  environment={"BUCKET": {"Ref": "Bucket"}})


@pytest.mark.parametrize("granted", [True, False])
def test_a_handler_calls_as_its_role(tmp_path, granted):
    from mdlc_constructs.local.runtime import LocalCloud

    prefix = "allowed/*" if granted else "elsewhere/*"
    grants = [{"Effect": "Allow", "Action": "s3:PutObject",
               "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/" + prefix]]}}]
    assembly = _function_stack(tmp_path / "cdk.out", grants)
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        name = cloud.physical("S", "Fn")
        response = cloud.client("lambda").invoke(FunctionName=name,
                                                 Payload=b'{"key": "allowed/a"}')
        body = json.loads(response["Payload"].read())
        denied = cloud.authorizer.report()
        role = cloud.physical("S", "Role")
    if granted:
        assert body == {"ok": True} and denied == []
        return
    # The handler's put fails as S3 fails it, and the report names the call.
    assert response["FunctionError"] == "Unhandled"
    assert "AccessDenied" in body["errorMessage"]
    assert [(d["action"], d["resource"].rsplit(":", 1)[-1], d["operation"]) for d in denied] == [
        ("s3:PutObject", f"{cloud.physical('S', 'Bucket')}/allowed/a", "s3:PutObject")]
    assert denied[0]["principal"].endswith(f"role/{role}")
    assert "no statement of the identity policies allows it" in denied[0]["reason"]


def test_events_are_put_on_the_bus_they_name():
    # botocore's service id is "eventbridge"; IAM's prefix is "events".
    found = _as_dicts(needs(_store(), "eventbridge", "PutEvents", {"Entries": [
        {"Source": "team", "DetailType": "Case", "Detail": "{}"}]}))
    assert found == [("events:PutEvents",
                      f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default", {})]


def test_the_summary_names_each_refused_call_once():
    from mdlc_constructs.cli.simulate import _summary

    denied = {"principal": ROLE, "action": "s3:PutObject", "resource": "arn:aws:s3:::b/k",
              "context": {}, "operation": "s3:PutObject", "reason": "no statement allows it"}
    report = {"executions": [], "model_versions": [], "decisions": {"stream": {}, "batch": {}},
              "endpoint": {"name": "e", "serving_version": None, "deployments": []},
              "dead_letters": 0, "notifications": [], "denied_calls": [denied, denied],
              "days": 1, "seconds": 1.0}
    lines = _summary(report, "validation:auc")
    assert "denied calls: 2" in "\n".join(lines)
    assert [line for line in lines if "denied:" in line] == [
        "  denied: Handler s3:PutObject on arn:aws:s3:::b/k: no statement allows it"]


@pytest.mark.parametrize("allows_logs", [True, False])
def test_a_log_group_deploys_only_with_a_key_cloudwatch_logs_may_use(tmp_path, allows_logs):
    from mdlc_constructs.local.runtime import LocalCloud
    from tests.local_assemblies import write_assembly

    statements = [{"Effect": "Allow", "Action": "kms:*", "Resource": "*",
                   "Principal": {"AWS": {"Fn::Join": ["", ["arn:aws:iam::", {
                       "Ref": "AWS::AccountId"}, ":root"]]}}}]
    if allows_logs:
        statements.append({"Effect": "Allow", "Resource": "*",
                           "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                           "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*",
                                      "kms:GenerateDataKey*"],
                           "Condition": {"ArnLike": {
                               "kms:EncryptionContext:aws:logs:arn":
                                   "arn:aws:logs:us-east-1:123456789012:log-group:*"}}})
    assembly = write_assembly(tmp_path / "cdk.out", {"Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {
            "Version": "2012-10-17", "Statement": statements}}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "KmsKeyId": {"Fn::GetAtt": ["Key", "Arn"]}}}}})
    start = datetime(2026, 11, 2, tzinfo=UTC)
    if allows_logs:
        with LocalCloud(assembly, start=start) as cloud:
            assert cloud.authorizer.denied == []
        return
    with pytest.raises(ServiceError) as raised, LocalCloud(assembly, start=start):
        pass
    assert "kms:Encrypt" in raised.value.message and "logs.us-east-1" in raised.value.message


def test_a_named_version_needs_get_object_version_and_its_own_key():
    """S3's GetObject reference: a request with a versionId needs
    s3:GetObjectVersion (not s3:GetObject), and the version is decrypted with
    the key it was written with, whatever the current version's is."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        first = s3.put_object(Bucket="data", Key="a.csv", Body=b"1",
                              ServerSideEncryption="aws:kms", SSEKMSKeyId=KEY)["VersionId"]
        other = KEY.replace("k1", "k2")
        s3.put_object(Bucket="data", Key="a.csv", Body=b"2", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=other)
        named = _as_dicts(needs(_store(), "s3", "GetObject",
                                {"Bucket": "data", "Key": "a.csv", "VersionId": first}))
        current = _as_dicts(needs(_store(), "s3", "GetObject", {"Bucket": "data", "Key": "a.csv"}))
    assert [(a, r) for a, r, _ in named] == [("s3:GetObjectVersion", "arn:aws:s3:::data/a.csv"),
                                             ("kms:Decrypt", KEY)]
    assert [(a, r) for a, r, _ in current] == [("s3:GetObject", "arn:aws:s3:::data/a.csv"),
                                               ("kms:Decrypt", other)]
