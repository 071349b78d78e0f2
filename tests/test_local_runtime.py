"""The local runtime's building blocks, each against AWS's documented behaviour.

These run without synthesis: a template is written by hand where the test
is about the runtime (not about a stage's template), and every state
machine here runs on moto's interpreter with the AWS-semantics patches.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdlc_constructs.local.assembly import Assembly, AssemblyError, Resolver, StackArtifact
from mdlc_constructs.local.clock import fire_times
from mdlc_constructs.local.events import matches
from mdlc_constructs.local.stepfunctions import MOTO_VERSION, local_definition
from tests.local_assemblies import assembly_with_function as _assembly_with_function
from tests.local_assemblies import role as _role
from tests.local_assemblies import write_assembly as _write_assembly


def test_moto_is_the_version_the_patches_were_written_for():
    import moto

    # The AWS-semantics patches touch moto internals: another release must be
    # re-checked (mdlc_constructs/local/stepfunctions.py), not silently used.
    assert moto.__version__ == MOTO_VERSION
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"moto[' in pyproject and f"=={MOTO_VERSION}" in pyproject


def test_another_moto_version_is_refused(monkeypatch):
    import moto

    from mdlc_constructs.local import stepfunctions

    monkeypatch.setattr(stepfunctions, "_INSTALLED", False)
    monkeypatch.setattr(moto, "__version__", "9.9.9")
    with pytest.raises(stepfunctions.MotoVersionError, match=r"moto 9\.9\.9 is installed"):
        stepfunctions.install_aws_semantics()


@pytest.mark.parametrize(
    ("expression", "start", "end", "expected"),
    [
        ("cron(0 2 * * ? *)", "2026-11-01T00:00", "2026-11-03T00:00",
         ["2026-11-01T02:00", "2026-11-02T02:00"]),
        # Day-of-week 1 is Sunday in EventBridge; 2026-11-01 is a Sunday.
        ("cron(0 4 ? * SUN *)", "2026-11-01T00:00", "2026-11-15T00:00",
         ["2026-11-01T04:00", "2026-11-08T04:00"]),
        ("cron(30 6 ? * 2-6 *)", "2026-11-06T00:00", "2026-11-10T00:00",
         ["2026-11-06T06:30", "2026-11-09T06:30"]),
        ("cron(0 0 L * ? *)", "2026-11-01T00:00", "2026-12-02T00:00", ["2026-11-30T00:00"]),
        ("cron(0 9 ? * 2#1 *)", "2026-11-01T00:00", "2026-12-31T00:00",
         ["2026-11-02T09:00", "2026-12-07T09:00"]),
        ("cron(0/30 1 * * ? 2026)", "2026-12-31T00:00", "2027-01-02T00:00",
         ["2026-12-31T01:00", "2026-12-31T01:30"]),
    ],
)
def test_schedules_fire_as_eventbridge_documents(expression, start, end, expected):
    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    fired = [t.strftime("%Y-%m-%dT%H:%M") for t in fire_times(expression, utc(start), utc(end))]
    assert fired == expected


def test_rate_schedules_count_from_the_rule_creation():
    created = datetime(2026, 11, 1, 0, 10, tzinfo=UTC)
    fired = list(fire_times("rate(6 hours)", created, datetime(2026, 11, 2, tzinfo=UTC),
                            created=created))
    assert [t.hour for t in fired] == [6, 12, 18]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ({"source": ["aws.sagemaker"], "detail": {"ModelApprovalStatus": ["Approved"]}},
         {"source": "aws.sagemaker", "detail": {"ModelApprovalStatus": "Approved"}}, True),
        ({"source": ["aws.sagemaker"], "detail": {"ModelApprovalStatus": ["Approved"]}},
         {"source": "aws.sagemaker", "detail": {"ModelApprovalStatus": "Rejected"}}, False),
        ({"detail": {"state": {"value": ["ALARM"]}}},
         {"detail": {"state": {"value": "OK"}}}, False),
        ({"resources": ["arn:a"]}, {"resources": ["arn:b", "arn:a"]}, True),
        ({"detail": {"model": [{"prefix": "fr"}]}}, {"detail": {"model": "fraud"}}, True),
        ({"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"n": 5}}, True),
        ({"detail": {"n": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"n": 6}}, False),
        ({"detail": {"x": [{"exists": False}]}}, {"detail": {}}, True),
        ({"detail": {"x": [{"anything-but": ["a"]}]}}, {"detail": {"x": "b"}}, True),
        ({"detail-type": ["MDLC Retrain Requested"]}, {"detail-type": "Other"}, False),
    ],
)
def test_event_patterns_match_as_eventbridge_does(pattern, event, expected):
    assert matches(pattern, event) is expected


def test_local_definition_replaces_sync_sagemaker_waits_and_backoff():
    definition = {"StartAt": "Train", "States": {
        "Train": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                  "Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 30, "BackoffRate": 2,
                             "MaxAttempts": 3}], "Next": "Wait"},
        "Wait": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Branch"},
        "Branch": {"Type": "Parallel", "End": True, "Branches": [{"StartAt": "T", "States": {
            "T": {"Type": "Task", "End": True,
                  "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync"}}}]},
    }}
    local, rewrites = local_definition(definition, region="us-east-1", account="123456789012")
    assert local["States"]["Train"]["Resource"].endswith(
        ":function:mdlc-local-sagemaker-createTrainingJob")
    assert local["States"]["Train"]["Retry"][0] == {"ErrorEquals": ["X"], "IntervalSeconds": 1,
                                                    "BackoffRate": 1, "MaxAttempts": 3}
    assert local["States"]["Wait"] == {"Type": "Wait", "Seconds": 0, "Next": "Branch"}
    branch = local["States"]["Branch"]["Branches"][0]["States"]["T"]
    assert branch["Resource"].endswith(":function:mdlc-local-sagemaker-createTransformJob")
    assert definition["States"]["Wait"]["SecondsPath"] == "$.wait"  # the input is untouched
    assert len(rewrites) == 3


def _stack(template: dict) -> StackArtifact:
    return StackArtifact(name="S", template=template, assets={})


def test_resolver_evaluates_the_intrinsics_templates_use():
    stack = _stack({"Mappings": {"Images": {"us-east-1": {"image": "img:1"}}},
                    "Conditions": {"Yes": {"Fn::Equals": ["a", "a"]}},
                    "Resources": {}})
    resolver = Resolver(stack, exports={"Platform-Key": "arn:key"})
    resolver.attributes["Bucket"] = {"Ref": "b-1", "Arn": "arn:aws:s3:::b-1"}
    assert resolver.resolve({"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/*"]]}) == \
        "arn:aws:s3:::b-1/*"
    assert resolver.resolve({"Fn::Sub": "s3://${Bucket}/x/${AWS::Region}"}) == \
        "s3://b-1/x/us-east-1"
    assert resolver.resolve({"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "image"]}) == \
        "img:1"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}) == "b"
    assert resolver.resolve({"Fn::ImportValue": "Platform-Key"}) == "arn:key"
    assert resolver.resolve({"Fn::If": ["Yes", 1, 2]}) == 1
    assert resolver.resolve([{"Ref": "AWS::NoValue"}, "kept"]) == ["kept"]
    with pytest.raises(AssemblyError, match=r"Fn::GetAtt Missing\.Arn"):
        resolver.resolve({"Fn::GetAtt": ["Missing", "Arn"]})


def test_resolver_reads_an_output_of_another_deployed_stack():
    """A weak cross-stack reference (``Fn::GetStackOutput``), as CDK writes it
    under ``@aws-cdk/core:defaultCrossStackReferences`` "weak" or "both"."""
    outputs = {"Mdlc-Platform": {"PublishOutputBucketArn1234": "arn:aws:s3:::b-1"}}
    resolver = Resolver(_stack({"Resources": {}}), exports={}, outputs=outputs)
    reference = {"Fn::GetStackOutput": {"StackName": "Mdlc-Platform",
                                        "Region": {"Ref": "AWS::Region"},
                                        "OutputName": "PublishOutputBucketArn1234"}}
    assert resolver.resolve({"Fn::Join": ["", [reference, "/datasets/*"]]}) == \
        "arn:aws:s3:::b-1/datasets/*"
    missing = {"Fn::GetStackOutput": {"StackName": "Mdlc-Platform", "OutputName": "Other"}}
    with pytest.raises(AssemblyError, match=r"Mdlc-Platform\.Other is not an output"):
        resolver.resolve(missing)
    elsewhere = {"Fn::GetStackOutput": {**reference["Fn::GetStackOutput"],
                                        "Region": "eu-west-1"}}
    with pytest.raises(AssemblyError, match=r"region 'eu-west-1'"):
        resolver.resolve(elsewhere)






def _machine(definition: dict) -> dict:
    return {"Resources": {
        "Role": _role("states.amazonaws.com"),
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
            "DefinitionString": json.dumps(definition)}},
    }}


def test_states_runtime_is_not_caught_by_states_all(tmp_path):
    from mdlc_constructs.local.runtime import LocalCloud

    # AWS: "A retry or catch on States.ALL won't catch States.Runtime errors."
    definition = {"StartAt": "Bad", "States": {
        "Bad": {"Type": "Pass", "Parameters": {"x.$": "$.missing.path"}, "Next": "Done",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"},
        "Done": {"Type": "Succeed"},
    }}
    assembly = _write_assembly(tmp_path / "cdk.out", _machine(definition))
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        run = cloud.wait(cloud.start_execution("S", "Machine", {}))
    assert run.status == "FAILED"
    assert run.error == "States.Runtime"


def test_a_states_error_out_of_a_parallel_branch_keeps_its_name(tmp_path):
    from mdlc_constructs.local.runtime import LocalCloud

    definition = {"StartAt": "Boundary", "States": {
        "Boundary": {"Type": "Parallel", "End": True, "ResultPath": "$.out",
                     "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                "Next": "Report"}],
                     "Branches": [{"StartAt": "Transform", "States": {
                         "Transform": {
                             "Type": "Task", "End": True,
                             "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync",
                             "Parameters": {
                                 "TransformJobName": "t", "ModelName": "no-such-model",
                                 "TransformInput": {"DataSource": {"S3DataSource": {
                                     "S3Uri": "s3://b/in/", "S3DataType": "S3Prefix"}}},
                                 "TransformOutput": {"S3OutputPath": "s3://b/out/"}}}}}]},
        "Report": {"Type": "Pass", "End": True},
    }}
    template = _machine(definition)
    # The role may run the job (the failure under test is the missing model's).
    template["Resources"]["Role"] = _role("states.amazonaws.com", {
        "Effect": "Allow", "Resource": "*", "Action": [
            "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob",
            "sagemaker:StopTransformJob", "events:PutTargets", "events:PutRule",
            "events:DescribeRule"]})
    assembly = _write_assembly(tmp_path / "cdk.out", template)
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        run = cloud.wait(cloud.start_execution("S", "Machine", {}))
    # A failed .sync job is States.TaskFailed, with the job's description as
    # the cause, and it leaves the Parallel under that name for its Catch.
    assert run.status == "SUCCEEDED"
    assert run.output["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(run.output["error"]["Cause"])
    assert cause["TransformJobStatus"] == "Failed"
    assert "no-such-model" in cause["FailureReason"]


def test_a_definite_path_into_an_array_selects_one_value(tmp_path):
    from mdlc_constructs.local.runtime import LocalCloud

    definition = {"StartAt": "Pick", "States": {"Pick": {
        "Type": "Pass", "End": True,
        "Parameters": {"one.$": "$.packages[0].arn", "all.$": "$.packages[*].arn"}}}}
    assembly = _write_assembly(tmp_path / "cdk.out", _machine(definition))
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        run = cloud.wait(cloud.start_execution(
            "S", "Machine", {"packages": [{"arn": "a"}, {"arn": "b"}]}))
    assert run.output == {"one": "a", "all": ["a", "b"]}


def test_an_unknown_assembly_is_a_clear_error(tmp_path):
    with pytest.raises(AssemblyError, match=r"no manifest\.json"):
        Assembly(tmp_path)




_CONSUMER = '''
import base64, json, os
SEEN = []

def handler(event, context):
    assert os.environ["GREETING"] == "hello"
    failures = []
    for record in event["Records"]:
        body = json.loads(base64.b64decode(record["kinesis"]["data"]))
        SEEN.append(body["n"])
        if body["n"] == 3:
            raise RuntimeError("poison record")
        if body["n"] == 7 and SEEN.count(7) == 1:
            failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
    return {"batchItemFailures": failures}
'''


def test_kinesis_batches_are_delivered_as_the_event_source_mapping_does(tmp_path):
    from mdlc_constructs.local.runtime import LocalCloud

    extra = {
        "Stream": {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}},
        "Failures": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "FunctionName": {"Ref": "Fn"}, "EventSourceArn": {"Fn::GetAtt": ["Stream", "Arn"]},
            "BatchSize": 4, "BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 2,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "StartingPosition": "TRIM_HORIZON",
            "DestinationConfig": {"OnFailure": {"Destination": {
                "Fn::GetAtt": ["Failures", "Arn"]}}}}},
    }
    grants = ({"Effect": "Allow", "Resource": {"Fn::GetAtt": ["Stream", "Arn"]}, "Action": [
                  "kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords",
                  "kinesis:ListShards"]},
              {"Effect": "Allow", "Action": "sqs:SendMessage",
               "Resource": {"Fn::GetAtt": ["Failures", "Arn"]}})
    assembly = _assembly_with_function(tmp_path / "cdk.out", _CONSUMER, extra, grants)
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        stream = cloud.physical("S", "Stream")
        cloud.client("kinesis").put_records(StreamName=stream, Records=[
            {"Data": json.dumps({"n": n}).encode(), "PartitionKey": "p"} for n in range(10)])
        cloud.settle()
        module = cloud.lambdas.get(cloud.physical("S", "Fn")).module
        seen = list(module.SEEN)
        queue = cloud.physical("S", "Failures")
        messages = cloud.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    records = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    # Every record is delivered; a reported item failure is retried from that
    # record on; the poison record is bisected down to itself and, after the
    # retries, goes to the on-failure destination as Lambda's metadata record.
    assert set(seen) == set(range(10))
    assert seen.count(7) >= 2
    assert [r["KinesisBatchInfo"]["batchSize"] for r in records] == [1]
    assert records[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    # Metadata only, as Lambda sends it: where the records are, not their data.
    assert set(records[0]) == {"requestContext", "responseContext", "version", "timestamp",
                               "KinesisBatchInfo"}
    assert records[0]["KinesisBatchInfo"]["streamArn"].endswith(stream)


def test_a_handler_runs_with_its_environment_and_reports_errors_as_lambda_does(tmp_path):
    from mdlc_constructs.local.runtime import LocalCloud

    code = "import os\ndef handler(event, context):\n    if event.get('fail'):\n" \
           "        raise ValueError('bad input: ' + event['fail'])\n" \
           "    return {'greeting': os.environ['GREETING'], 'left': " \
           "context.get_remaining_time_in_millis() > 0}\n"
    assembly = _assembly_with_function(tmp_path / "cdk.out", code, {})
    with LocalCloud(assembly, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        name = cloud.physical("S", "Fn")
        ok = cloud.client("lambda").invoke(FunctionName=name, Payload=b"{}")
        bad = cloud.client("lambda").invoke(FunctionName=name, Payload=b'{"fail": "x"}')
        ok_body, bad_body = json.loads(ok["Payload"].read()), json.loads(bad["Payload"].read())
    assert ok_body == {"greeting": "hello", "left": True} and "FunctionError" not in ok
    assert bad["FunctionError"] == "Unhandled"
    assert bad_body["errorType"] == "ValueError" and bad_body["errorMessage"] == "bad input: x"


def test_simulate_refuses_unusable_input_with_exit_code_2(tmp_path, capsys):
    from mdlc_constructs.cli import main

    root = Path(__file__).resolve().parents[1]
    spec = str(root / "models" / "fraud.yaml")
    missing = tmp_path / "orders.csv"
    missing.write_text("order_id,customer_id\no-1,c-1\n")
    assert main(["simulate", spec, "--orders", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["simulate", spec, "--orders", str(missing)]) == 2
    assert "missing column(s)" in capsys.readouterr().err
    assert main(["simulate", spec, "--orders", str(missing), "--start", "11/01"]) == 2
    assert "--start" in capsys.readouterr().err


def _item_store_run(shortcut: bool) -> list:
    """The same item operations through the shortcut or through moto's handler."""
    import boto3
    from moto import mock_aws

    from mdlc_constructs.local.dynamodb import FastItems
    from mdlc_constructs.local.hooks import ServiceError

    items = FastItems()

    def run(operation, params):
        try:
            if shortcut:
                answer = items.shortcut(operation, params)
                assert answer is not None, f"{operation} should take the shortcut"
                return answer
            return items.call(operation, params)
        except ServiceError as error:
            return {"error": error.code, **error.extra}

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        client.put_item(TableName="t", Item={
            "pk": {"S": "a"}, "n": {"N": "1.5"}, "status": {"S": "INPROGRESS"},
            "nested": {"M": {"x": {"N": "2"}, "y": {"L": [{"S": "z"}]}}},
            "days": {"L": [{"N": "1"}, {"M": {"k": {"S": "v"}}}]}, "tags": {"SS": ["p", "q"]}})
        client.put_item(TableName="t", Item={"pk": {"S": "b"}, "n": {"N": "3"}})
        results = [run("UpdateItem", {
            "TableName": "t", "Key": {"pk": {"S": "a"}},
            "UpdateExpression": "SET #status = :s, #expiry = :e, payload = :d",
            "ExpressionAttributeNames": {"#status": "status", "#expiry": "expiry"},
            "ExpressionAttributeValues": {":s": {"S": "COMPLETED"}, ":e": {"N": "99"},
                                          ":d": {"S": "{}"}}})]
        results.append(run("UpdateItem", {  # an item that did not exist
            "TableName": "t", "Key": {"pk": {"S": "c"}}, "UpdateExpression": "SET n = :n",
            "ExpressionAttributeValues": {":n": {"N": "7"}}}))
        # The feature store's conditional puts: first write, versioned write, stale write.
        first = {"TableName": "t", "ConditionExpression": "attribute_not_exists(pk)",
                 "Item": {"pk": {"S": "d"}, "version": {"N": "1"}}}
        results.append(run("PutItem", first))
        results.append(run("PutItem", {**first, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}))
        versioned = {"TableName": "t", "ConditionExpression": "version = :v",
                     "ExpressionAttributeValues": {":v": {"N": "1.0"}},
                     "Item": {"pk": {"S": "d"}, "version": {"N": "2"}}}
        results.append(run("PutItem", versioned))
        results.append(run("PutItem", versioned))  # now stale: version is 2
        results.append(run("PutItem", {**versioned, "Item": {"pk": {"S": "new"}}}))
        # Powertools idempotency's save: absent, live, expired, and stuck in progress.
        idempotency = {
            "TableName": "t",
            "ConditionExpression": "attribute_not_exists(#id) OR #expiry < :now OR "
            "(#status = :inprogress AND attribute_exists(#in_progress_expiry) AND "
            "#in_progress_expiry < :now_in_millis)",
            "ExpressionAttributeNames": {"#id": "pk", "#expiry": "expiration",
                                         "#in_progress_expiry": "in_progress_expiration",
                                         "#status": "status"},
            "ExpressionAttributeValues": {":now": {"N": "100"}, ":now_in_millis": {"N": "100000"},
                                          ":inprogress": {"S": "INPROGRESS"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        for pk, expiration, status, in_progress in [
                ("i1", "200", "INPROGRESS", "200000"),   # absent: saved
                ("i1", "200", "INPROGRESS", "200000"),   # live, in progress: refused
                ("i2", "50", "COMPLETED", None),         # absent: saved
                ("i2", "300", "INPROGRESS", "300000"),   # expired: saved
                ("i2", "300", "INPROGRESS", "300000")]:  # live again: refused
            item = {"pk": {"S": pk}, "expiration": {"N": expiration}, "status": {"S": status}}
            if in_progress:
                item["in_progress_expiration"] = {"N": in_progress}
            results.append(run("PutItem", {**idempotency, "Item": item}))
        stuck = {"pk": {"S": "i3"}, "expiration": {"N": "900"}, "status": {"S": "INPROGRESS"},
                 "in_progress_expiration": {"N": "50000"}}
        results.append(run("PutItem", {"TableName": "t", "Item": stuck,
                                       "ConditionExpression": "attribute_not_exists(pk)"}))
        results.append(run("PutItem", {**idempotency, "Item": {**stuck, "status": {
            "S": "COMPLETED"}}}))  # in progress past its expiry: saved
        # The action ledger: claim, complete (SET ... REMOVE ... under the claim's
        # token), a completion by a stale token, and a condition on a missing item.
        results.append(run("PutItem", {
            "TableName": "t", "ConditionExpression": "attribute_not_exists(#k)",
            "ExpressionAttributeNames": {"#k": "pk"},
            "Item": {"pk": {"S": "e1"}, "action_status": {"S": "acting"},
                     "action_claim": {"S": "tok"}, "action_lease_expires_at": {"N": "10"}}}))
        complete = {
            "TableName": "t", "Key": {"pk": {"S": "e1"}},
            "UpdateExpression": "SET action_status = :done, action_receipt = :receipt, "
                                "acted_at = :at REMOVE action_lease_expires_at",
            "ConditionExpression": "action_claim = :token",
            "ExpressionAttributeValues": {":done": {"S": "done"}, ":receipt": {"M": {
                "id": {"S": "m-1"}}}, ":at": {"N": "12.5"}, ":token": {"S": "tok"}}}
        results.append(run("UpdateItem", complete))
        stale = {**complete, "ExpressionAttributeValues": {
            **complete["ExpressionAttributeValues"], ":token": {"S": "other"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        results.append(run("UpdateItem", stale))
        results.append(run("UpdateItem", {**complete, "Key": {"pk": {"S": "never"}}}))
        results.append(run("UpdateItem", {
            "TableName": "t", "Key": {"pk": {"S": "e1"}},
            "UpdateExpression": "SET action_status = :unconfirmed",
            "ConditionExpression": "action_claim = :token AND action_status = :acting",
            "ExpressionAttributeValues": {":unconfirmed": {"S": "unconfirmed"},
                                          ":token": {"S": "tok"}, ":acting": {"S": "acting"}}}))
        # Strings order by their bytes; NOT binds tighter than AND.
        results.append(run("PutItem", {
            "TableName": "t", "Item": {"pk": {"S": "i3"}, "status": {"S": "x"}},
            "ConditionExpression": "NOT #s < :low AND #s <= :high",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":low": {"S": "COMPLETE"}, ":high": {"S": "COMPLETEZ"}}}))
        results.append(run("GetItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                                       "ConsistentRead": True}))
        results.append(run("GetItem", {"TableName": "t", "Key": {"pk": {"S": "absent"}}}))
        batch = run("BatchGetItem", {"RequestItems": {"t": {
            "Keys": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}}, {"pk": {"S": "missing"}},
                     {"pk": {"S": "c"}}],
            "ProjectionExpression": "pk, #n, nested, #s, days",
            "ExpressionAttributeNames": {"#n": "n", "#s": "status"}}}})
        results.append(sorted(batch["Responses"]["t"], key=lambda i: i["pk"]["S"]))
        results.append(batch.get("UnprocessedKeys"))
        items.flush()  # what the runtime does before any other call reaches moto
        results.append(sorted((i for i in client.scan(TableName="t")["Items"]),
                              key=lambda i: i["pk"]["S"]))
    return results


def test_the_item_store_shortcut_answers_as_moto_does():
    assert _item_store_run(shortcut=True) == _item_store_run(shortcut=False)


def test_the_item_store_shortcut_leaves_conditions_and_paths_to_moto():
    import boto3
    from moto import mock_aws

    from mdlc_constructs.local.dynamodb import FastItems

    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        _leaves_to_moto(FastItems())


def _leaves_to_moto(items) -> None:
    # The table exists: each None below is the expression's doing.
    assert items.shortcut("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}},
                                      "ConditionExpression": "attribute_not_exists(pk)"}) == {}
    assert items.shortcut("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                                         "UpdateExpression": "SET n = n + :one"}) is None
    assert items.shortcut("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                                         "UpdateExpression": "SET n = :v",
                                         "ExpressionAttributeValues": {":v": {"N": "1"}},
                                         "ConditionExpression": "nested.x = :v"}) is None
    # An unused value, a path both set and removed, a removed key: moto's errors.
    for expression, values in [("SET n = :v", {":v": {"N": "1"}, ":w": {"N": "2"}}),
                               ("SET n = :v REMOVE n", {":v": {"N": "1"}}),
                               ("SET n = :v REMOVE pk", {":v": {"N": "1"}})]:
        assert items.shortcut("UpdateItem", {
            "TableName": "t", "Key": {"pk": {"S": "a"}}, "UpdateExpression": expression,
            "ExpressionAttributeValues": values}) is None, expression
    assert items.shortcut("BatchGetItem", {"RequestItems": {"t": {
        "Keys": [{"pk": {"S": "a"}}], "ProjectionExpression": "nested.x"}}}) is None
    # An unaliased reserved word: moto (as DynamoDB) refuses it, so moto answers.
    assert items.shortcut("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                                         "UpdateExpression": "SET data = :v"}) is None
    # Conditions beyond the plain kind: moto's (a nested path, <>, an unused value).
    for condition, values in [("nested.x = :v", {":v": {"N": "1"}}),
                              ("n <> :v", {":v": {"N": "1"}}),
                              ("attribute_exists(pk)", {":v": {"N": "1"}}),
                              ("begins_with(pk, :v)", {":v": {"S": "a"}})]:
        assert items.shortcut("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}},
                                          "ConditionExpression": condition,
                                          "ExpressionAttributeValues": values}) is None, condition


def test_the_item_store_shortcut_leaves_every_error_to_moto():
    """An unknown table, an undefined #name or :value: an AWS error, never the shortcut's
    answer, and never a raw moto exception through the hook."""
    import boto3
    from moto import mock_aws

    from mdlc_constructs.local.dynamodb import FastItems
    from mdlc_constructs.local.hooks import ServiceError

    items = FastItems()
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        bad = [
            ("GetItem", {"TableName": "nope", "Key": {"pk": {"S": "a"}}}),
            ("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                            "UpdateExpression": "SET #x = :v",
                            "ExpressionAttributeValues": {":v": {"S": "1"}}}),
            ("UpdateItem", {"TableName": "t", "Key": {"pk": {"S": "a"}},
                            "UpdateExpression": "SET n = :missing"}),
            ("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}},
                         "ConditionExpression": "version = :v"}),
        ]
        for operation, params in bad:
            assert items.shortcut(operation, params) is None, operation
            with pytest.raises(ServiceError) as raised:
                items.run(operation, params)
            assert raised.value.code in ("ResourceNotFoundException", "ValidationException"), (
                operation, raised.value.code)
        # An undefined alias in a projection: moto answers (it is lenient there).
        undefined = {"RequestItems": {"t": {"Keys": [{"pk": {"S": "a"}}],
                                            "ProjectionExpression": "#gone"}}}
        assert items.shortcut("BatchGetItem", undefined) is None
        assert items.run("BatchGetItem", undefined)["Responses"] == {"t": []}


def test_items_held_by_the_shortcuts_are_what_every_other_reader_sees():
    """The shortcuts hold items ahead of moto; every other path reads them, and the
    shortcuts read what moto changed meanwhile."""
    import boto3
    from moto import mock_aws

    from mdlc_constructs.local.dynamodb import FastItems
    from mdlc_constructs.local.hooks import ServiceHooks
    from mdlc_constructs.local.resources import raw_client

    hooks, items = ServiceHooks(), FastItems()
    with mock_aws():
        hooks.install()
        items.install(hooks)
        try:
            client = boto3.client("dynamodb", region_name="us-east-1")  # through the hooks
            client.create_table(
                TableName="t", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "n", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "n", "AttributeType": "N"}])
            key = {"pk": {"S": "a"}, "n": {"N": "1"}}
            client.put_item(TableName="t", Item={**key, "v": {"N": "1"}},
                            ConditionExpression="attribute_not_exists(pk)")
            assert items._dirty == {"t": {(("pk", "S", "a"), ("n", "N", "1"))}}
            # Another operation through the hooks, and a client of its own, see it.
            assert client.query(TableName="t", KeyConditionExpression="pk = :a",
                                ExpressionAttributeValues={":a": {"S": "a"}})["Count"] == 1
            client.put_item(TableName="t", Item={**key, "v": {"N": "2"}},
                            ConditionExpression="v = :one",
                            ExpressionAttributeValues={":one": {"N": "1"}})
            assert raw_client("dynamodb").get_item(TableName="t", Key=key)["Item"]["v"] == {
                "N": "2"}
            # moto changes the item (an ADD is no shortcut); the shortcut reads the change.
            client.update_item(TableName="t", Key=key, UpdateExpression="ADD v :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})
            assert client.get_item(TableName="t", Key={"pk": {"S": "a"}, "n": {"N": "1.0"}})[
                "Item"]["v"] == {"N": "3"}
            # A key of the wrong type is moto's to refuse, as DynamoDB does.
            with pytest.raises(client.exceptions.ClientError, match="ValidationException"):
                client.put_item(TableName="t", Item={"pk": {"S": "b"}, "n": {"S": "x"}},
                                ConditionExpression="attribute_not_exists(pk)")
            client.put_item(TableName="t", Item={"pk": {"S": "c"}, "n": {"N": "2"}},
                            ConditionExpression="attribute_not_exists(pk)")
            assert sorted(i["pk"]["S"] for i in items.all_items("t")) == ["a", "c"]
            assert {i["pk"]["S"] for i in client.scan(TableName="t")["Items"]} == {"a", "c"}
        finally:
            items.uninstall()
            hooks.uninstall()


def test_a_plain_object_read_answers_as_moto_does():
    """GetObject in process (local/s3.py) returns what moto's own handler returns;
    everything it does not cover, errors included, is moto's answer."""
    import boto3
    from moto import mock_aws

    from mdlc_constructs.local.hooks import ServiceError, ServiceHooks
    from mdlc_constructs.local.s3 import FastObjects

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
        s3.create_bucket(Bucket="versioned-kms")
        s3.put_bucket_versioning(Bucket="versioned-kms",
                                 VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(Bucket="versioned-kms", ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}, "BucketKeyEnabled": True}]})
        s3.create_bucket(Bucket="plain")
        s3.put_object(Bucket="versioned-kms", Key="a/b.csv", Body=b"x,y\n1,2\n",
                      Metadata={"mdlc-sha": "abc"}, ContentType="text/csv")
        s3.put_object(Bucket="plain", Key="k", Body=b"z" * 1000)
        s3.put_object(Bucket="plain", Key="gone", Body=b"z")
        s3.delete_object(Bucket="plain", Key="gone")
        s3.put_object(Bucket="versioned-kms", Key="marked", Body=b"m")
        s3.delete_object(Bucket="versioned-kms", Key="marked")  # a delete marker
        reads = [{"Bucket": "versioned-kms", "Key": "a/b.csv"}, {"Bucket": "plain", "Key": "k"},
                 {"Bucket": "plain", "Key": "k", "Range": "bytes=0-9"},
                 {"Bucket": "plain", "Key": "missing"}, {"Bucket": "plain", "Key": "gone"},
                 {"Bucket": "no-such-bucket", "Key": "k"},
                 {"Bucket": "versioned-kms", "Key": "marked"}]

        def read(params):
            try:
                response = s3.get_object(**params)
            except s3.exceptions.ClientError as error:
                return {"error": error.response["Error"],
                        "status": error.response["ResponseMetadata"]["HTTPStatusCode"]}
            response.pop("ResponseMetadata")
            return {**response, "Body": response["Body"].read()}

        by_moto = [read(params) for params in reads]
        hooks = ServiceHooks()
        hooks.install()
        try:
            FastObjects().install(hooks)
            s3 = boto3.client("s3", region_name="us-east-1")  # through the hooks now
            local = [read(params) for params in reads]
            assert FastObjects.shortcut(reads[0]) is not None
            assert FastObjects.shortcut(reads[2]) is None  # a range: moto's
            assert FastObjects.shortcut(reads[6]) is None  # a delete marker: moto's
            for absent in (reads[3], reads[4]):  # no such key: answered in process
                with pytest.raises(ServiceError):
                    FastObjects.shortcut(absent)
        finally:
            hooks.uninstall()
    assert local == by_moto
    assert local[0]["SSEKMSKeyId"] == key and local[0]["Metadata"] == {"mdlc-sha": "abc"}
    assert local[3]["error"]["Code"] == "NoSuchKey" and local[3]["status"] == 404
