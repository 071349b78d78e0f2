"""BatchInferenceWorkflow: synthesized once (cdk-nag on), its shape and grants;
the batch_decisions handler against moto: the transform input carries every
model input, rules see the features, actions act once per (date, entity,
model version)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template


@pytest.fixture(scope="module")
def template(tmp_path_factory, fraud_spec) -> Template:
    from aws_cdk import Stack
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_sns as sns
    from aws_cdk import aws_sqs as sqs

    from mdlc_constructs.batch_inference import ActionTargets, BatchInferenceWorkflow
    from mdlc_constructs.compliance import acknowledge, read_findings
    from mdlc_constructs.preparation import DataPreparation
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("batch.out")
    app = make_app(outdir=str(outdir))
    stack = Stack(app, "Batch")
    acknowledge(stack, "PCI.DSS.321-IAMNoInlinePolicy", "Grants attach one scoped policy "
                "per role, as the model stack acknowledges")
    lake = DataLake(stack, "DataLake")
    topic = sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True)
    stream = kinesis.Stream(stack, "Events", encryption=kinesis.StreamEncryption.KMS,
                            encryption_key=lake.key)
    acknowledge(stream, "AwsSolutions-KDS3", "The test stream uses the customer key")
    preparation = DataPreparation(stack, "Data", spec=fraud_spec, data_lake=lake, topic=topic,
                                  stream=stream)
    # Its own targets (no integration), the common case's shape.
    BatchInferenceWorkflow(stack, "BatchInference", spec=fraud_spec, data_lake=lake, topic=topic,
                           model_package_group_name="mdlc-fraud", preparation=preparation)
    # The integration's targets and idempotency table, given (as the model stack does).
    shared_topic = sns.Topic(stack, "SharedTopic", master_key=lake.key, enforce_ssl=True)
    shared_queue = sqs.Queue(stack, "SharedQueue", encryption=sqs.QueueEncryption.KMS,
                             encryption_master_key=lake.key, enforce_ssl=True)
    acknowledge(shared_queue, "AwsSolutions-SQS3",
                "A test stand-in for the client integration action queue")
    table = dynamodb.Table(stack, "SharedIdempotency", partition_key=dynamodb.Attribute(
        name="id", type=dynamodb.AttributeType.STRING),
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=lake.key,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True))
    BatchInferenceWorkflow(stack, "SharedBatch", spec=fraud_spec, data_lake=lake, topic=topic,
                           model_package_group_name="mdlc-fraud", preparation=preparation,
                           schedule=False, idempotency_table=table,
                           action_targets=ActionTargets(topic=shared_topic, queue=shared_queue))
    # No integration section: predictions only.
    plain = fraud_spec.model_copy(update={"integration": None})
    BatchInferenceWorkflow(stack, "PlainBatch", spec=plain, data_lake=lake, topic=topic,
                           model_package_group_name="mdlc-fraud", preparation=preparation,
                           schedule=False)
    try:
        assembly = app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return Template.from_json(assembly.get_stack_by_name("Batch").template)


def _definition(template: Template, prefix: str = "BatchInference") -> dict[str, Any]:
    machines = template.find_resources("AWS::StepFunctions::StateMachine")
    (machine,) = [m for k, m in machines.items() if k.startswith(prefix)]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))


def test_the_run_prepares_finds_the_model_transforms_decides_and_notifies(template):
    definition = _definition(template)
    run = definition["States"]["Run"]
    states = run["Branches"][0]["States"]
    assert run["Branches"][0]["StartAt"] == "BatchSourceSnapshot"
    # The data preparation chain (its quality gate branches), then the batch steps.
    edges = {
        "BatchComputeFeatures": "PrepareTransformInput",
        "PrepareTransformInput": "HasRows",
        "FindApprovedModel": "ModelFound",
        "CreateModel": "Transform",
        "Transform": "DecideParts",
        "DecideParts": "NotifyDone",
    }
    for state, following in edges.items():
        assert states[state]["Next"] == following, state
    assert states["ModelFound"]["Choices"][0]["Next"] == "CreateModel"
    # A day without entities ends the run without a transform over nothing.
    assert states["HasRows"]["Choices"][0] == {
        "Variable": "$.batch.rows", "NumericEquals": 0, "Next": "NothingToScore"}
    assert states["HasRows"]["Default"] == "FindApprovedModel"
    assert states["NothingToScore"]["Type"] == "Succeed"
    assert "BatchCheckQuality" in states
    assert run["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    for name, state in states.items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, name


def test_the_newest_approved_package_is_looked_up_and_its_absence_notifies(template):
    states = _definition(template)["States"]["Run"]["Branches"][0]["States"]
    find = states["FindApprovedModel"]
    assert find["Resource"].endswith(":states:::aws-sdk:sagemaker:listModelPackages")
    assert find["Parameters"] == {"ModelPackageGroupName": "mdlc-fraud",
                                  "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
                                  "SortOrder": "Descending", "MaxResults": 1}
    assert states["ModelFound"]["Default"] == "NoApprovedModel"
    assert states["NoApprovedModel"]["Next"] == "NoModelNotify"
    assert states["NoModelFailed"]["Type"] == "Fail"
    create = states["CreateModel"]["Parameters"]
    assert create["EnableNetworkIsolation"] is True
    assert "States.UUID()" in create["ModelName.$"]


def test_the_transform_waits_and_encrypts_volume_and_output(template):
    transform = _definition(template)["States"]["Run"]["Branches"][0]["States"]["Transform"]
    assert transform["Resource"].endswith(":states:::sagemaker:createTransformJob.sync")
    params = transform["Parameters"]
    assert params["TransformOutput"]["KmsKeyId"]
    assert params["TransformResources"]["VolumeKmsKeyId"]
    assert params["TransformResources"]["InstanceType"] == "ml.m5.xlarge"
    assert params["TransformInput"]["ContentType"] == "text/csv"
    assert {r["ErrorEquals"][0] for r in transform["Retry"]} <= {
        "SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException",
        "ThrottlingException"}


def test_decisions_run_in_a_distributed_map_over_the_output(template):
    decide = _definition(template)["States"]["Run"]["Branches"][0]["States"]["DecideParts"]
    assert decide["Type"] == "Map"
    assert decide["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert decide["ItemReader"]["Resource"].endswith(":states:::s3:listObjectsV2")
    # Only the run's own day: the prefix comes from the prepare step.
    assert decide["ItemReader"]["Parameters"] == {
        "Bucket": "TOKEN", "Prefix.$": "$.batch.output_key_prefix"}
    assert decide["ItemSelector"]["step"] == "decide"
    assert decide["MaxConcurrency"] == 50


def test_the_schedule_is_the_specs(template, fraud_spec):
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "cron(0 6 * * ? *)",
        "Description": "MDLC fraud: daily batch inference",
        "Targets": Match.any_value(),
    })
    assert fraud_spec.inference.batch.schedule == "cron(0 6 * * ? *)"


def _function_env(template: Template, prefix: str) -> dict[str, Any]:
    functions = template.find_resources("AWS::Lambda::Function")
    (function,) = [f for k, f in functions.items() if k.startswith(f"{prefix}Decisions")]
    return function["Properties"]["Environment"]["Variables"]


def _policy_statements(template: Template, prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    return [s for k, p in policies.items() if k.startswith(f"{prefix}Decisions")
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        if logical_id in json.dumps(statement["Resource"]):
            actions = statement["Action"]
            found |= set([actions] if isinstance(actions, str) else actions)
    return found


def test_each_part_acts_and_retries_only_incomplete_actions(template):
    decide = _definition(template)["States"]["Run"]["Branches"][0]["States"]["DecideParts"]
    # The decision names the approved package version the transform ran.
    assert decide["ItemSelector"]["model_version.$"] == "$.approved.packages[0].ModelPackageArn"
    part = decide["ItemProcessor"]["States"]["DecidePart"]
    retried = {e for r in part["Retry"] for e in r["ErrorEquals"]}
    assert "ActionsIncomplete" in retried
    assert "States.ALL" not in retried and "States.TaskFailed" not in retried
    assert part["TimeoutSeconds"] == 660


def test_own_targets_are_created_encrypted_and_granted_one_send_action(template):
    env = _function_env(template, "BatchInference")
    topics = [k for k in template.find_resources("AWS::SNS::Topic")
              if k.startswith("BatchInferenceActionTopic")]
    queues = [k for k in template.find_resources("AWS::SQS::Queue")
              if k.startswith("BatchInferenceActionQueue")
              and "DeadLetters" not in k]
    tables = [k for k in template.find_resources("AWS::DynamoDB::Table")
              if k.startswith("BatchInferenceIdempotency")]
    assert len(topics) == len(queues) == len(tables) == 1
    # block is sns, review is sqs; approve is log: no bus.
    assert env["ACTION_TOPIC_ARN"] == {"Ref": topics[0]}
    assert env["ACTION_QUEUE_URL"] == {"Ref": queues[0]}
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": tables[0]}
    assert "ACTION_EVENT_BUS_NAME" not in env
    assert env["ACTION_CONCURRENCY"] == "16"
    assert env["ACTION_IDEMPOTENCY_SECONDS"] == str(8 * 86_400)
    statements = _policy_statements(template, "BatchInference")
    assert _actions_on(statements, topics[0]) == {"sns:Publish"}
    assert _actions_on(statements, queues[0]) == {
        "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert "dynamodb:PutItem" in _actions_on(statements, tables[0])
    table = template.find_resources("AWS::DynamoDB::Table")[tables[0]]
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expiration", "Enabled": True}
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    topic = template.find_resources("AWS::SNS::Topic")[topics[0]]
    assert topic["Properties"]["KmsMasterKeyId"]


def test_given_targets_and_table_are_used_instead_of_new_ones(template):
    env = _function_env(template, "SharedBatch")
    assert env["ACTION_TOPIC_ARN"]["Ref"].startswith("SharedTopic")
    assert env["ACTION_QUEUE_URL"]["Ref"].startswith("SharedQueue")
    assert env["IDEMPOTENCY_TABLE"]["Ref"].startswith("SharedIdempotency")
    created = [k for t in ("AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::DynamoDB::Table")
               for k in template.find_resources(t) if k.startswith("SharedBatch")]
    assert created == []
    statements = _policy_statements(template, "SharedBatch")
    assert _actions_on(statements, env["ACTION_TOPIC_ARN"]["Ref"]) == {"sns:Publish"}


def test_without_integration_a_run_writes_predictions_only(template):
    states = _definition(template, "PlainBatch")["States"]["Run"]["Branches"][0]["States"]
    assert "DecideParts" not in states
    assert states["Transform"]["Next"] == "NotifyDone"
    env = _function_env(template, "PlainBatch")
    assert not {"IDEMPOTENCY_TABLE", "ACTION_TOPIC_ARN", "ACTION_QUEUE_URL"} & set(env)


# --- the handler ---------------------------------------------------------------------

DATE = "2026-11-27"
VERSION = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mdlc-fraud/3"
REGION = "us-east-1"


def _config(fraud_spec, tmp_path, rules: list[dict[str, Any]] | None = None):
    config = fraud_spec.as_config()
    if rules is not None:
        config["integration"]["rules"] = rules
    path = tmp_path / "mdlc_config.json"
    path.write_text(json.dumps(config))
    return config, path


@pytest.fixture
def batch_aws(tmp_path, monkeypatch, fraud_spec):
    """moto S3, the action targets (SNS topic delivering to a queue, SQS queue) and the
    idempotency table; yields a function that loads the handler with a config."""
    import boto3
    from mdlc_core import runtime_config
    from moto import mock_aws

    from tests.lambda_loader import load_handler

    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "FEATURES_BUCKET": "features",
                        "PREDICTIONS_BUCKET": "predictions", "MODEL_NAME": "fraud",
                        "AWS_LAMBDA_FUNCTION_NAME": "batch-decisions",
                        "IDEMPOTENCY_TABLE": "idempotency"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("features", "predictions"):
            s3.create_bucket(Bucket=bucket)
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
        sqs = boto3.client("sqs", region_name=REGION)
        blocked = sqs.create_queue(QueueName="blocked")["QueueUrl"]
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="block")["TopicArn"]
        arn = sqs.get_queue_attributes(QueueUrl=blocked,
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"})
        # The review queue is created by the test (its absence is a failing action).
        review = f"https://sqs.{REGION}.amazonaws.com/123456789012/review"
        monkeypatch.setenv("ACTION_TOPIC_ARN", topic)
        monkeypatch.setenv("ACTION_QUEUE_URL", review)

        def load(rules: list[dict[str, Any]] | None = None):
            _, path = _config(fraud_spec, tmp_path, rules)
            monkeypatch.setenv("MDLC_CONFIG_FILE", str(path))
            runtime_config.load_config.cache_clear()
            return load_handler("batch_decisions")

        yield {"s3": s3, "sqs": sqs, "blocked": blocked, "review": review, "load": load}


def _drain(sqs, url: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return messages
        messages += [json.loads(m["Body"]) for m in got]
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _put_entities(s3, columns: dict[str, list[Any]]) -> str:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    key = f"features/fraud/dt={DATE}/entities.parquet"
    s3.put_object(Bucket="features", Key=key, Body=buffer.getvalue())
    return key


def _orders(rows: list[tuple[str, str, str, str, str]]) -> bytes:
    """A source drop of orders: (order id, customer, timestamp, amount, tenure)."""
    from tests.producers import HEADER

    return ("\n".join([HEADER, *(",".join([*r, "0"]) for r in rows)]) + "\n").encode()


def _features(batch_aws, fraud_spec, days: dict[str, bytes], *,
              new_version: bool = False) -> dict[str, Any]:
    """Snapshot each day's drop and run the feature step on the last day (moto);
    returns its result (``entities_key``: the real entities.parquet)."""
    from datetime import date

    from mdlc_core import feature_job

    from tests import producers

    s3, config = batch_aws["s3"], fraud_spec.as_config()
    if not new_version:
        producers.create_buckets(s3, producers.RAW, producers.DATASETS)
    for day, body in days.items():
        producers.snapshot(s3, config, date.fromisoformat(day), body, new_version=new_version)
    return feature_job.run(config, date.fromisoformat(max(days)), s3=s3,
                           datasets_bucket=producers.DATASETS, features_bucket="features")


def _objects(s3, prefix: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket="predictions", Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket="predictions", Key=o["Key"])["Body"].read().decode()
            for o in listed}


def _transform(s3, prepared: dict[str, Any], score_of) -> list[str]:
    """SageMaker's part of the run (moto has no transform): every object under the
    input prefix is scored line by line, and its output is named as a transform
    names it, ``<input object name>.out`` under the output prefix."""
    outputs = []
    for key, text in _objects(s3, prepared["input_key_prefix"]).items():
        scores = [score_of([float(v) if v else None for v in line.split(",")])
                  for line in text.splitlines()]
        out = prepared["output_key_prefix"] + key.removeprefix(prepared["input_key_prefix"])
        s3.put_object(Bucket="predictions", Key=f"{out}.out",
                      Body=("\n".join(scores) + "\n").encode())
        outputs.append(f"{out}.out")
    return outputs


def test_transform_input_has_every_model_input_from_the_latest_event(batch_aws, fraud_spec):
    """sourcing -> feature_job.run (entities.parquet) -> prepare_input: every column of
    spec.feature_columns, in order, with the raw inputs of each entity's latest event."""
    from mdlc_core.features import FeatureSet

    assert list(FeatureSet.from_config(fraud_spec.as_config()).inputs) == [
        "order_amount", "account_tenure"]
    features = _features(batch_aws, fraud_spec, {
        "2026-11-20": _orders([("o1", "c1", "2026-11-20T10:00:00", "100.0", "300")]),
        DATE: _orders([
            ("o2", "c1", "2026-11-27T09:00:00", "300.0", "307"),
            # Late in the day's drop but after the day: not the latest event as of it.
            ("o3", "c1", "2026-11-28T09:00:00", "9.0", "308"),
            ("o4", "c2", "2026-11-26T23:59:59", "", "5"),
        ]),
    })
    module = batch_aws["load"]()

    out = module.handler({"step": "prepare_input", "date": DATE,
                          "entities_key": features["entities_key"]}, None)

    assert out["rows"] == 2 and out["parts"] == 1
    s3 = batch_aws["s3"]
    inputs = _objects(s3, out["input_key_prefix"])
    assert out["input_prefix"] == f"s3://predictions/{out['input_key_prefix']}"
    assert list(inputs) == [f"{out['input_key_prefix']}part-00000.csv"]
    # order_amount, account_tenure (latest event), order_total_30d, order_count_30d, ratio
    assert inputs[f"{out['input_key_prefix']}part-00000.csv"].splitlines() == [
        "300.0,307.0,400.0,2.0,1.5", ",5.0,0.0,1.0,"]
    ids = _objects(s3, out["ids_key_prefix"])
    assert [text.split() for text in ids.values()] == [["c1", "c2"]]


def test_transform_reads_only_csv_parts_and_decide_finds_each_parts_ids(
    batch_aws, fraud_spec, monkeypatch
):
    """Everything under the transform's input prefix is a CSV part of exactly the
    model's inputs (a transform job reads every object there); decide joins each
    output, named as the transform names it, with its part's ids; a rerun of the
    day with fewer parts leaves no stale part behind."""
    s3 = batch_aws["s3"]
    width = len(fraud_spec.feature_columns)
    orders = [(f"o{i}", f"c{i}", f"{DATE}T{10 + i}:00:00", f"{100 + i}.0", "50")
              for i in range(5)]
    features = _features(batch_aws, fraud_spec, {DATE: _orders(orders)})
    module = batch_aws["load"]()
    monkeypatch.setattr(module, "PART_ROWS", 2)
    event = {"step": "prepare_input", "date": DATE, "entities_key": features["entities_key"]}

    prepared = module.handler(event, None)

    assert prepared["parts"] == 3 and prepared["rows"] == 5
    inputs = _objects(s3, prepared["input_key_prefix"])
    assert [key.rsplit("/", 1)[1] for key in inputs] == [
        "part-00000.csv", "part-00001.csv", "part-00002.csv"]
    for key, text in inputs.items():
        assert {len(line.split(",")) for line in text.splitlines()} == {width}, key
    # Scores by amount, so each decision can be traced to its entity.
    outputs = _transform(s3, prepared, lambda row: f"{(row[0] - 100) / 10:.1f}")
    assert [key.rsplit("/", 1)[1] for key in outputs] == [
        "part-00000.csv.out", "part-00001.csv.out", "part-00002.csv.out"]
    decided = {}
    for key in outputs:
        result = module.handler({"step": "decide", "date": DATE, "Key": key,
                                 "model_version": VERSION}, None)
        lines = s3.get_object(Bucket="predictions", Key=result["key"])["Body"].read()
        for record in map(json.loads, lines.splitlines()):
            decided[record["entity_id"]] = (record["score"], record["features"]["order_amount"])
    assert decided == {f"c{i}": (i / 10, 100.0 + i) for i in range(5)}

    # The day rerun on a new snapshot version with one entity: one part, and
    # nothing stale left for the transform to read.
    features = _features(batch_aws, fraud_spec, {DATE: _orders(orders[:1])}, new_version=True)
    rerun = module.handler({**event, "entities_key": features["entities_key"]}, None)
    assert rerun["parts"] == 1
    assert list(_objects(s3, rerun["input_key_prefix"])) == [
        f"{rerun['input_key_prefix']}part-00000.csv"]
    assert list(_objects(s3, rerun["ids_key_prefix"])) == [
        f"{rerun['ids_key_prefix']}part-00000.ids"]


def test_transform_input_refuses_a_table_without_the_raw_inputs(batch_aws):
    module = batch_aws["load"]()
    key = _put_entities(batch_aws["s3"], {
        "customer_id": ["c1"], "order_total_30d": [1.0], "order_count_30d": [1],
        "amount_to_30d_mean": [1.0]})
    with pytest.raises(ValueError, match=r"no column\(s\) \['order_amount', 'account_tenure'\]"):
        module.handler({"step": "prepare_input", "date": DATE, "entities_key": key}, None)


def _scored_part(batch_aws, fraud_spec, module, orders: list[tuple[str, ...]],
                 scores: dict[float | None, str]) -> str:
    """The day's real transform input (sourcing, the feature step, prepare_input)
    and its one output part, each row scored by its order amount (``scores``);
    returns the output's key."""
    features = _features(batch_aws, fraud_spec, {DATE: _orders(orders)})
    prepared = module.handler({"step": "prepare_input", "date": DATE,
                               "entities_key": features["entities_key"]}, None)
    [output] = _transform(batch_aws["s3"], prepared, lambda row: scores[row[0]])
    return output


def _decide(module, key: str) -> dict[str, Any]:
    return module.handler({"step": "decide", "date": DATE, "Key": key,
                           "model": "mdlc-fraud-b-1", "model_version": VERSION}, None)


def test_rules_see_the_features_and_actions_act_once_per_entity_and_version(
    batch_aws, fraud_spec
):
    """A rule on a feature matches in batch; block publishes, review sends, approve only
    logs; a failed action fails the part, and the retry acts only where it had not."""
    s3, sqs = batch_aws["s3"], batch_aws["sqs"]
    module = batch_aws["load"]([
        {"id": "block_high_risk", "when": "score >= 0.9", "action": "block"},
        # Only true when the rules see the joined inputs.
        {"id": "review_big_new_account", "when": "order_amount >= 1000 and account_tenure < 30",
         "action": "review"},
        {"id": "review_medium_risk", "when": "score >= 0.6", "action": "review"},
    ])
    key = _scored_part(batch_aws, fraud_spec, module, [
        ("o1", "c1", f"{DATE}T10:00:00", "10.0", "400"),
        ("o2", "c2", f"{DATE}T10:00:00", "2500.0", "3"),
        ("o3", "c3", f"{DATE}T09:00:00", "20.0", "899"),
        ("o4", "c3", f"{DATE}T10:00:00", "20.0", "900"),
        ("o5", "c4", f"{DATE}T10:00:00", "", ""),  # nothing to score on: no score
    ], {10.0: "0.95", 2500.0: "0.1", 20.0: "0.2", None: "nan"})

    # The review queue does not exist yet: review actions fail, block acts.
    with pytest.raises(Exception) as failed:
        _decide(module, key)
    assert type(failed.value).__name__ == "ActionsIncomplete"
    assert "1 of 3 actions" in str(failed.value)
    decisions_key = f"predictions/fraud/dt={DATE}/decisions/part-00000.jsonl"
    assert "Contents" not in s3.list_objects_v2(Bucket="predictions", Prefix=decisions_key)
    assert [m["event_id"] for m in _drain(sqs, batch_aws["blocked"])] == [f"{DATE}#c1"]

    sqs.create_queue(QueueName="review")
    result = _decide(module, key)

    assert result["actions"] == {"block": 1, "review": 1, "approve": 1, "no_score": 1}
    assert _drain(sqs, batch_aws["blocked"]) == []  # acted on the first try only
    [review] = _drain(sqs, batch_aws["review"])
    assert (review["event_id"], review["rule_id"]) == (f"{DATE}#c2", "review_big_new_account")
    assert review["model_version"] == VERSION
    records = [json.loads(line) for line in
               s3.get_object(Bucket="predictions", Key=decisions_key)["Body"].read().splitlines()]
    assert [(r["event_id"], r["entity_id"], r["rule_id"], r["action"]) for r in records] == [
        (f"{DATE}#c1", "c1", "block_high_risk", "block"),
        (f"{DATE}#c2", "c2", "review_big_new_account", "review"),
        (f"{DATE}#c3", "c3", "default", "approve")]
    assert all(r["model_version"] == VERSION for r in records)
    assert records[1]["features"] == {"order_amount": 2500.0, "account_tenure": 3.0,
                                      "order_total_30d": 2500.0, "order_count_30d": 1.0,
                                      "amount_to_30d_mean": 1.0}
    assert records[0]["score"] == 0.95

    # A retried map item: nothing acts again, and the record is the one acted on.
    again = _decide(module, key)
    assert again["actions"] == result["actions"]
    assert _drain(sqs, batch_aws["blocked"]) == [] and _drain(sqs, batch_aws["review"]) == []
    rewritten = [json.loads(line) for line in
                 s3.get_object(Bucket="predictions", Key=decisions_key)["Body"].read().splitlines()]
    assert rewritten[:2] == records[:2]


def test_a_new_model_version_acts_again_on_the_same_day(batch_aws, fraud_spec):
    sqs = batch_aws["sqs"]
    module = batch_aws["load"]()
    key = _scored_part(batch_aws, fraud_spec, module,
                       [("o1", "c1", f"{DATE}T10:00:00", "10.0", "400")], {10.0: "0.95"})
    _decide(module, key)
    module.handler({"step": "decide", "date": DATE, "Key": key,
                    "model_version": VERSION.replace("/3", "/4")}, None)
    assert [m["model_version"][-1] for m in _drain(sqs, batch_aws["blocked"])] == ["3", "4"]


def test_decide_refuses_a_part_whose_inputs_do_not_match_its_ids(batch_aws, fraud_spec):
    s3 = batch_aws["s3"]
    module = batch_aws["load"]()
    key = _scored_part(batch_aws, fraud_spec, module,
                       [("o1", "c1", f"{DATE}T10:00:00", "10.0", "400")], {10.0: "0.95"})
    # The input part damaged after the transform read it.
    s3.put_object(Bucket="predictions", Key=f"{module.input_key_prefix(DATE)}part-00000.csv",
                  Body=b"10.0,400.0\n")
    with pytest.raises(ValueError, match="input line 1 has 2 fields, expected 5"):
        _decide(module, key)
