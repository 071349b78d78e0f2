"""The local runtime's shortcuts answer as the code paths they skip would.

Each shortcut (``mdlc_constructs/local/moto_speedups.py``, the in-process
reads of ``alarms.py``, ``sagemaker.py`` and ``dynamodb.py``, the local
calls of ``hooks.py``) is compared here with what moto or botocore answers
without it, on the same data, in the same process.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from mdlc_constructs.local import moto_speedups
from mdlc_constructs.local.stepfunctions import MotoVersionError

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _patched():
    moto_speedups.install()


def test_a_patch_refuses_a_moto_function_it_was_not_written_for(monkeypatch):
    from moto.kinesis.models import Shard

    def get_max_sequence_number(self):  # another release's body
        return max(self.records, default=0)

    monkeypatch.setattr(Shard, "get_max_sequence_number", get_max_sequence_number)
    with pytest.raises(MotoVersionError, match="get_max_sequence_number"):
        moto_speedups._check("moto.kinesis.models.Shard.get_max_sequence_number",
                             Shard.get_max_sequence_number)


def test_kinesis_sequence_bounds_are_the_first_and_last_record():
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="s", ShardCount=1)
        from moto.kinesis.models import kinesis_backends

        shard = next(iter(kinesis_backends["123456789012"][REGION].describe_stream(
            stream_arn=None, stream_name="s").shards.values()))
        assert (shard.get_min_sequence_number(), shard.get_max_sequence_number()) == (0, 0)
        numbers = []
        for start in range(0, 30, 10):
            answer = kinesis.put_records(StreamName="s", Records=[
                {"Data": str(n).encode(), "PartitionKey": "p"} for n in range(start, start + 10)])
            numbers += [int(r["SequenceNumber"]) for r in answer["Records"]]
        assert numbers == sorted(set(numbers))  # each put after the last, none twice
        keys = list(shard.records)
        assert shard.get_min_sequence_number() == keys[0] == numbers[0]
        assert shard.get_max_sequence_number() == keys[-1] == numbers[-1]
        iterator = kinesis.get_shard_iterator(StreamName="s", ShardId=shard.shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=100)["Records"]
        assert [r["Data"] for r in records] == [str(n).encode() for n in range(30)]


def test_sqs_sends_count_and_deduplicate_as_moto_does():
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        standard = sqs.create_queue(QueueName="standard")["QueueUrl"]
        fifo = sqs.create_queue(QueueName="q.fifo", Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        for _ in range(5):
            sqs.send_message(QueueUrl=standard, MessageBody="same")
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        sqs.send_message_batch(QueueUrl=standard, Entries=[
            {"Id": str(n), "MessageBody": f"b{n}"} for n in range(3)])
        sqs.receive_message(QueueUrl=standard, MaxNumberOfMessages=2, VisibilityTimeout=60)

        def counts(url):
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
                "Attributes"]
            return (attributes["ApproximateNumberOfMessages"],
                    attributes["ApproximateNumberOfMessagesNotVisible"])

        # A standard queue keeps every message (two in flight); the FIFO queue
        # deduplicates the same body by content, as moto (and SQS) does.
        assert counts(standard) == ("6", "2")
        assert counts(fifo) == ("1", "0")
        assert "ContentBasedDeduplication" not in sqs.get_queue_attributes(
            QueueUrl=standard, AttributeNames=["All"])["Attributes"]
        # A FIFO queue still refuses what moto refuses.
        plain_fifo = sqs.create_queue(QueueName="p.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"]
        with pytest.raises(sqs.exceptions.ClientError, match="ContentBasedDeduplication"):
            sqs.send_message(QueueUrl=plain_fifo, MessageBody="x", MessageGroupId="g")


def test_an_asl_definition_is_parsed_once_and_built_per_execution():
    from moto.stepfunctions.parser.asl.parse.asl_parser import (
        AmazonStateLanguageParser,
        ASLParserException,
    )

    definition = json.dumps({"StartAt": "P", "States": {"P": {
        "Type": "Pass", "Result": {"x": 1}, "End": True}}})
    first, tree = AmazonStateLanguageParser.parse(definition)
    second, same_tree = AmazonStateLanguageParser.parse(definition)
    assert same_tree is tree  # the syntax tree is cached
    assert second is not first  # the components, which hold an execution's state, are not
    assert type(second) is type(first)
    broken = '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": tru}}}'
    for _ in range(2):  # a syntax error is raised on every parse, as before
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse(broken)


def test_executions_of_one_definition_run_apart():
    """Two executions of one machine (the cached tree) get their own input and output."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = sfn.create_state_machine(name="m", roleArn=role, definition=json.dumps({
            "StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"n.$": "$.n"},
                                             "End": True}}}))["stateMachineArn"]
        runs = [sfn.start_execution(stateMachineArn=machine, name=f"run-{n}",
                                    input=json.dumps({"n": n}))["executionArn"]
                for n in range(3)]
        outputs = []
        for arn in runs:
            for _ in range(500):
                described = sfn.describe_execution(executionArn=arn)
                if described["status"] != "RUNNING":
                    break
                time.sleep(0.01)
            outputs.append(json.loads(described["output"]))
    assert outputs == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_alarm_statistics_are_moto_get_metric_statistics():
    from mdlc_constructs.local.alarms import AlarmEvaluator

    base = datetime(2026, 11, 2, 5, 0, 0, tzinfo=UTC)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        dimensions = [{"Name": "Model", "Value": "fraud"}]
        for minutes, value, dims in ((0, 1.5, dimensions), (59.99, 2.0, dimensions),
                                     (60, 4.0, dimensions), (61, 8.0, []),
                                     (125.5, 0.25, dimensions), (300, 9.0, dimensions)):
            cloudwatch.put_metric_data(Namespace="Mdlc", MetricData=[{
                "MetricName": "m", "Value": value, "Dimensions": dims,
                "Timestamp": base + timedelta(minutes=minutes)}])
        for statistic in ("Average", "Sum", "Maximum", "Minimum", "SampleCount"):
            for start, end, period, dims in (
                    (base, base + timedelta(hours=3), 3600, dimensions),
                    (base + timedelta(seconds=59.5), base + timedelta(minutes=126, seconds=0.7),
                     60, dimensions),
                    (base - timedelta(hours=1), base + timedelta(hours=6), 7200, []),
                    (base + timedelta(hours=7), base + timedelta(hours=8), 3600, dimensions)):
                answer = cloudwatch.get_metric_statistics(
                    Namespace="Mdlc", MetricName="m", Dimensions=dims, StartTime=start,
                    EndTime=end, Period=period, Statistics=[statistic])
                expected = [float(d[statistic]) for d in
                            sorted(answer["Datapoints"], key=lambda d: d["Timestamp"])]
                found = AlarmEvaluator.statistics("Mdlc", "m", dims, start, end, period,
                                                  statistic)
                assert found == expected, (statistic, start, end, period)
        assert AlarmEvaluator.statistics("Mdlc", "m", dimensions, base,
                                         base + timedelta(hours=3), 3600, "Sum") == [3.5, 4.0, 0.25]


def test_an_endpoint_config_s_model_and_its_version_are_what_describe_answers():
    from mdlc_constructs.local.sagemaker import SageMakerLocal

    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        for name, model in (("c1", "model-a"), ("c2", "model-b")):
            sagemaker.create_model(ModelName=model, ExecutionRoleArn=(
                "arn:aws:iam::123456789012:role/r"), PrimaryContainer={"Image": "i"})
            sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
                "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large"}])
        local = SageMakerLocal.__new__(SageMakerLocal)  # model_of_config reads moto only
        for name in ("c1", "c2"):
            assert local.model_of_config(name) == sagemaker.describe_endpoint_config(
                EndpointConfigName=name)["ProductionVariants"][0]["ModelName"]
        from moto.sagemaker.exceptions import ValidationError

        with pytest.raises(ValidationError, match="Could not find endpoint configuration"):
            local.model_of_config("missing")
        # A model from a registered package serves that package's version.
        sagemaker.create_model_package_group(ModelPackageGroupName="g")
        packages = [sagemaker.create_model_package(
            ModelPackageGroupName="g", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": "i", "ModelDataUrl": "s3://b/m"}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]})[
            "ModelPackageArn"] for _ in range(2)]
        sagemaker.create_model(ModelName="from-package", ExecutionRoleArn=(
            "arn:aws:iam::123456789012:role/r"), PrimaryContainer={
            "ModelPackageName": packages[1]})
        expected = sagemaker.describe_model_package(ModelPackageName=sagemaker.describe_model(
            ModelName="from-package")["PrimaryContainer"]["ModelPackageName"])[
            "ModelPackageVersion"]
        assert local.version_of_model("from-package") == expected == 2
        assert local.version_of_model("model-a") is None


def test_every_item_is_listed_once_with_its_newest_value():
    """``all_items`` of a table whose items are held, in moto, or both (older in moto)."""
    from mdlc_constructs.local.dynamodb import FastItems
    from mdlc_constructs.local.hooks import ServiceHooks

    hooks, items = ServiceHooks(), FastItems()
    with mock_aws():
        hooks.install()
        items.install(hooks)
        try:
            client = boto3.client("dynamodb", region_name=REGION)
            client.create_table(
                TableName="t", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
            for key in "abc":
                client.put_item(TableName="t", Item={"pk": {"S": key}, "v": {"N": "1"}},
                                ConditionExpression="attribute_not_exists(pk)")
            client.scan(TableName="t")  # moto has a, b, c (written back)
            client.put_item(TableName="t", Item={"pk": {"S": "b"}, "v": {"N": "2"}},
                            ConditionExpression="v = :one",
                            ExpressionAttributeValues={":one": {"N": "1"}})
            client.put_item(TableName="t", Item={"pk": {"S": "d"}, "v": {"N": "5"}},
                            ConditionExpression="attribute_not_exists(pk)")
            assert items._dirty["t"]  # b and d are held, b's older value is in moto
            listed = sorted((i["pk"]["S"], i["v"]["N"]) for i in items.all_items("t"))
            scanned = sorted((i["pk"]["S"], i["v"]["N"])
                             for i in client.scan(TableName="t")["Items"])
            assert listed == scanned == [("a", "1"), ("b", "2"), ("c", "1"), ("d", "5")]
        finally:
            items.uninstall()
            hooks.uninstall()


def test_a_local_answer_is_validated_but_not_routed(monkeypatch):
    """A locally answered call skips endpoint resolution (never contacted) and
    still fails botocore's parameter validation; its request id is a UUID4."""
    from botocore.exceptions import ParamValidationError
    from botocore.regions import EndpointRulesetResolver

    from mdlc_constructs.local.hooks import ServiceHooks

    resolved: list[str] = []
    original = EndpointRulesetResolver.construct_endpoint

    def construct_endpoint(self, operation_model, *args, **kwargs):
        resolved.append(operation_model.name)
        return original(self, operation_model, *args, **kwargs)

    monkeypatch.setattr(EndpointRulesetResolver, "construct_endpoint", construct_endpoint)
    hooks = ServiceHooks()
    with mock_aws():
        hooks.install()
        try:
            hooks.add("dynamodb", "GetItem", lambda params: {"Item": {"pk": {"S": "x"}}})
            client = boto3.client("dynamodb", region_name=REGION)
            answer = client.get_item(TableName="t", Key={"pk": {"S": "x"}})
            assert answer["Item"] == {"pk": {"S": "x"}}
            assert uuid.UUID(answer["ResponseMetadata"]["RequestId"]).version == 4
            with pytest.raises(ParamValidationError, match="Key"):
                client.get_item(TableName="t")
            assert "GetItem" not in resolved
            client.list_tables()  # answered by moto: resolved as before
            assert "ListTables" in resolved
        finally:
            hooks.uninstall()


def test_every_task_of_the_interpreter_shares_one_client_per_service():
    """moto's boto_client_for ignores the task's credentials: one client serves all."""
    import sys

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import (
        StateCredentials,
    )

    from mdlc_constructs.local.stepfunctions import install_aws_semantics

    install_aws_semantics()
    with mock_aws():
        boto3.setup_default_session()
        utils = sys.modules["moto.stepfunctions.parser.asl.component.state.exec.state_task."
                            "lambda_eval_utils"]
        role = StateCredentials(role_arn="arn:aws:iam::123456789012:role/execution")
        other = StateCredentials(role_arn="arn:aws:iam::123456789012:role/other")
        first = utils.boto_client_for(region=REGION, service="lambda", state_credentials=role)
        assert utils.boto_client_for(REGION, "lambda", other) is first
        assert utils.boto_client_for(REGION, "lambda") is first
        assert utils.boto_client_for(REGION, "sqs", role) is not first
        boto3.setup_default_session()  # a new default session: new clients
        assert utils.boto_client_for(REGION, "lambda", role) is not first


def test_a_json_path_is_parsed_once_and_applied_to_each_input_afresh():
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    from mdlc_constructs.local.stepfunctions import install_aws_semantics

    install_aws_semantics()
    assert json_path.parse("$.a.b[0]") is json_path.parse("$.a.b[0]")
    assert json_path.extract_json("$.a.b[0]", {"a": {"b": [1, 2]}}) == 1
    assert json_path.extract_json("$.a.b[0]", {"a": {"b": [3]}}) == 3
    assert json_path.extract_json("$.items[*].n", {"items": [{"n": 1}, {"n": 2}]}) == [1, 2]
    with pytest.raises(json_path.NoSuchJsonPathError):
        json_path.extract_json("$.a.b[0]", {"a": {}})
    # ResultPath's update writes into the data it is given, never into the path.
    first = result_path.parse("$.out.x").update_or_create({}, 1)
    second = result_path.parse("$.out.x").update_or_create({"keep": True}, 2)
    assert first == {"out": {"x": 1}} and second == {"keep": True, "out": {"x": 2}}


def test_a_versioned_object_read_answers_as_moto_does():
    """GetObject with a VersionId in process: the version's body and headers, and
    moto's own errors for a version that is not there or is a delete marker."""
    from mdlc_constructs.local.hooks import ServiceHooks
    from mdlc_constructs.local.s3 import FastObjects

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="versioned")
        s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        old = s3.put_object(Bucket="versioned", Key="k", Body=b"old",
                            Metadata={"m": "1"})["VersionId"]
        new = s3.put_object(Bucket="versioned", Key="k", Body=b"new")["VersionId"]
        marker = s3.delete_object(Bucket="versioned", Key="k")["VersionId"]
        s3.create_bucket(Bucket="plain")
        s3.put_object(Bucket="plain", Key="k", Body=b"p")
        reads = [{"Bucket": "versioned", "Key": "k", "VersionId": old},
                 {"Bucket": "versioned", "Key": "k", "VersionId": new},
                 {"Bucket": "versioned", "Key": "k", "VersionId": marker},
                 {"Bucket": "versioned", "Key": "k", "VersionId": "no-such-version"},
                 {"Bucket": "versioned", "Key": "k"},
                 {"Bucket": "plain", "Key": "k", "VersionId": "null"}]

        def read(client, params):
            try:
                response = client.get_object(**params)
            except client.exceptions.ClientError as error:
                return {"error": error.response["Error"],
                        "status": error.response["ResponseMetadata"]["HTTPStatusCode"]}
            response.pop("ResponseMetadata")
            return {**response, "Body": response["Body"].read()}

        by_moto = [read(s3, params) for params in reads]
        hooks = ServiceHooks()
        hooks.install()
        try:
            FastObjects().install(hooks)
            local = [read(boto3.client("s3", region_name=REGION), params) for params in reads]
            assert FastObjects.shortcut(reads[0]) is not None  # a version: in process
            assert FastObjects.shortcut(reads[5]) is not None
            for moto_s in (reads[2], reads[3]):  # a marker, a missing version: moto's
                assert FastObjects.shortcut(moto_s) is None
        finally:
            hooks.uninstall()
    assert local == by_moto
    assert local[0]["Body"] == b"old" and local[0]["Metadata"] == {"m": "1"}
    assert local[1]["Body"] == b"new" and local[1]["VersionId"] == new
    assert local[3]["status"] == 404
