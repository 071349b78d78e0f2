"""ClientIntegration: both modes synthesized once (cdk-nag on), then asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

MODES = ("fused", "state_machine")


@pytest.fixture(scope="module")
def templates(tmp_path_factory, fraud_spec) -> dict[str, Template]:
    from aws_cdk import Stack
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.compliance import acknowledge, read_findings
    from mdlc_constructs.integration import ClientIntegration
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("integration.out")
    app = make_app(outdir=str(outdir))
    stacks = {}
    for mode in MODES:
        spec = fraud_spec.model_copy(
            update={"integration": fraud_spec.integration.model_copy(update={"mode": mode})}
        )
        stack = Stack(app, f"Integration-{mode.replace('_', '-')}")
        # As MdlcModelStack does: grants are inline policies scoped per role.
        acknowledge(stack, "PCI.DSS.321-IAMNoInlinePolicy", "Grants attach one scoped "
                    "policy per role, as the model stack acknowledges")
        lake = DataLake(stack, "DataLake")
        topic = sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True)
        stream = kinesis.Stream(stack, "Events", encryption=kinesis.StreamEncryption.KMS,
                                encryption_key=lake.key)
        acknowledge(stream, "AwsSolutions-KDS3", "The test stream uses the customer key")
        table = dynamodb.Table(
            stack, "Features",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
        )
        construct = ClientIntegration(stack, "Integration", spec=spec, data_lake=lake,
                                      topic=topic, stream=stream, feature_table=table,
                                      endpoint_name="mdlc-fraud")
        stacks[mode] = (stack, construct)
    try:
        assembly = app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return {
        mode: Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)
        for mode, (stack, _) in stacks.items()
    } | {f"{mode}:construct": construct for mode, (_, construct) in stacks.items()}


def _resources(template: Template, kind: str) -> dict[str, Any]:
    return template.find_resources(kind)


def _statements(template: Template) -> list[dict[str, Any]]:
    found = []
    for policy in _resources(template, "AWS::IAM::Policy").values():
        found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


# -- fused --------------------------------------------------------------------------------


def test_fused_event_source_mapping_is_bounded(templates, fraud_spec):
    integration = fraud_spec.integration
    templates["fused"].has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": integration.batch_size,
        "MaximumBatchingWindowInSeconds": integration.max_batching_window_seconds,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": integration.retry_attempts,
        "MaximumRecordAgeInSeconds": integration.max_record_age_seconds,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "StartingPosition": "TRIM_HORIZON",
        "DestinationConfig": {"OnFailure": {"Destination": {
            "Fn::GetAtt": [Match.string_like_regexp("IntegrationDeadLetters"), "Arn"]}}},
    })
    construct = templates["fused:construct"]
    assert construct.consumer is not None and construct.state_machine is None
    templates["fused"].resource_count_is("AWS::StepFunctions::StateMachine", 0)
    templates["fused"].resource_count_is("AWS::Pipes::Pipe", 0)


def test_consumer_environment_names_every_resource(templates):
    functions = _resources(templates["fused"], "AWS::Lambda::Function")
    (consumer,) = [f for f in functions.values()
                   if f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME")
                   == "stream_consumer"]
    env = consumer["Properties"]["Environment"]["Variables"]
    assert env["ENDPOINT_NAME"] == "mdlc-fraud"
    for name in ("FEATURES_TABLE", "DECISIONS_TABLE", "DEAD_LETTER_QUEUE_URL",
                 "DEAD_LETTER_BUCKET", "ACTION_TOPIC_ARN", "ACTION_QUEUE_URL"):
        assert name in env, name
    # The decision log is both paths' action ledger: the old Powertools table is
    # neither named to nor granted to either.
    assert "IDEMPOTENCY_TABLE" not in env
    for mode in MODES:
        assert not any("IntegrationIdempotency" in json.dumps(s["Resource"])
                       for s in _statements(templates[mode])), mode
    # The spec has no eventbridge action: no bus and no variable.
    assert "ACTION_EVENT_BUS_NAME" not in env
    templates["fused"].resource_count_is("AWS::Events::EventBus", 0)


def test_dead_letter_and_action_queues_are_encrypted_and_tls_only(templates):
    for mode in MODES:
        template = templates[mode]
        queues = _resources(template, "AWS::SQS::Queue")
        assert queues, mode
        for logical_id, queue in queues.items():
            assert "KmsMasterKeyId" in queue["Properties"], logical_id
        for policy in _resources(template, "AWS::SQS::QueuePolicy").values():
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            assert any(s["Effect"] == "Deny" and s["Condition"] == {
                "Bool": {"aws:SecureTransport": "false"}} for s in statements)
        template.has_resource_properties("AWS::SNS::Topic", {
            "KmsMasterKeyId": Match.any_value(),
            "DisplayName": "MDLC fraud: decisions",
        })


def test_tables_keys_encryption_recovery_ttl_and_retention(templates):
    template = templates["fused"]
    tables = {
        logical_id: table for logical_id, table in
        _resources(template, "AWS::DynamoDB::Table").items() if "Integration" in logical_id
    }
    by_key = {t["Properties"]["KeySchema"][0]["AttributeName"]: t for t in tables.values()}
    assert set(by_key) == {"event_id", "id"}
    for table in by_key.values():
        props = table["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["SSEType"] == "KMS"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["DeletionProtectionEnabled"] is True
        assert table["DeletionPolicy"] == "Retain"
        assert props["AttributeDefinitions"][0]["AttributeType"] == "S"
    assert by_key["id"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expiration", "Enabled": True}
    assert "TimeToLiveSpecification" not in by_key["event_id"]["Properties"]


def test_invoke_endpoint_is_granted_on_one_endpoint_only(templates):
    for mode in MODES:
        sagemaker = [s for s in _statements(templates[mode])
                     if any(a.startswith("sagemaker:") for a in _actions(s))]
        granted = {a: json.dumps(s["Resource"]) for s in sagemaker for a in _actions(s)}
        # Both paths also read which package the endpoint serves, for the
        # decisions' model_version: this endpoint's configurations and models only.
        assert set(granted) == {"sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint",
                                "sagemaker:DescribeEndpointConfig",
                                "sagemaker:DescribeModel"}, mode
        for action in ("sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"):
            if action in granted:
                assert ":endpoint/mdlc-fraud" in granted[action], action
                assert "*" not in granted[action], action
        assert ":endpoint-config/mdlc-fraud-v*" in granted["sagemaker:DescribeEndpointConfig"]
        assert ":model/mdlc-fraud-v*" in granted["sagemaker:DescribeModel"]


def test_no_wildcard_resources_beyond_acknowledged_ones(templates):
    """Resource '*' appears only for X-Ray and log delivery (acknowledged where made)."""
    for mode in MODES:
        for statement in _statements(templates[mode]):
            if statement["Resource"] == "*":
                assert all(a.startswith(("xray:", "logs:")) for a in _actions(statement)), \
                    statement


def test_predictions_are_put_only_in_the_models_scored_folders(templates):
    """Both paths write monitoring's input: PREDICTIONS_BUCKET names the lake's predictions
    bucket, and the acting function may only put objects under
    predictions/fraud/dt=*/scored/ there (plus encrypt with the bucket's key)."""
    for mode in MODES:
        functions = _resources(templates[mode], "AWS::Lambda::Function")
        (bucket,) = [f["Properties"]["Environment"]["Variables"]["PREDICTIONS_BUCKET"]
                     for f in functions.values()
                     if "PREDICTIONS_BUCKET" in f["Properties"]["Environment"]["Variables"]]
        assert bucket["Ref"].startswith("DataLakePredictions"), (mode, bucket)
        s3_writes = [s for s in _statements(templates[mode])
                     if any(a.startswith(("s3:Put", "s3:Delete", "s3:Abort"))
                            for a in _actions(s))
                     and "/dead-letters/" not in json.dumps(s["Resource"])]
        assert len(s3_writes) == 1, (mode, s3_writes)
        assert _actions(s3_writes[0]) == ["s3:PutObject"]
        resource = json.dumps(s3_writes[0]["Resource"])
        assert "DataLakePredictions" in resource and "/predictions/fraud/dt=*/scored/*" in resource


def test_dead_letter_payloads_are_granted_exactly_what_keeping_them_needs(templates):
    """Issue 14.1: the consumer keeps each rejected record's payload in the raw bucket
    under dead-letters/fraud/stream-consumer/ (a queue message is bounded): put and
    get (the existence check) there, a listing of that prefix only, and S3's data
    key from the bucket's key. The state-machine path's step function gets none."""
    fused = templates["fused"]
    statements = _statements(fused)
    on_prefix = [s for s in statements if "dead-letters/" in json.dumps(s)]
    objects = [s for s in on_prefix if "s3:PutObject" in _actions(s)]
    assert len(objects) == 1 and sorted(_actions(objects[0])) == ["s3:GetObject",
                                                                 "s3:PutObject"]
    resource = json.dumps(objects[0]["Resource"])
    assert "DataLakeRaw" in resource and "/dead-letters/fraud/stream-consumer/*" in resource
    (listing,) = [s for s in on_prefix if _actions(s) == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [
        "dead-letters/fraud/stream-consumer/*", "dead-letters/fraud/stream-consumer/"]}}
    (consumer,) = [f for f in _resources(fused, "AWS::Lambda::Function").values()
                   if "DEAD_LETTER_BUCKET" in f["Properties"]["Environment"]["Variables"]]
    env = consumer["Properties"]["Environment"]["Variables"]
    assert env["DEAD_LETTER_PREFIX"] == "dead-letters/fraud/stream-consumer/"
    assert env["DEAD_LETTER_BUCKET"]["Ref"].startswith("DataLakeRaw")
    assert not any("dead-letters/" in json.dumps(s)
                   for s in _statements(templates["state_machine"]))


def test_feature_table_is_read_and_recorded_into_only(templates):
    """The integration reads the online features and records an event the updater
    has not applied yet (conditional puts in one TransactWriteItems): PutItem is
    its only write; it never updates, deletes or batch-writes the updater's items."""
    for mode in MODES:
        puts = []
        for statement in _statements(templates[mode]):
            if "Features" in json.dumps(statement["Resource"]):
                writes = [a for a in _actions(statement)
                          if a.startswith("dynamodb:") and ("Put" in a or "Write" in a
                                                            or "Update" in a or "Delete" in a)]
                assert writes in ([], ["dynamodb:PutItem"]), (mode, statement)
                puts += writes
        assert puts == ["dynamodb:PutItem"], mode


# -- state machine -------------------------------------------------------------------------


def _definition(template: Template) -> dict[str, Any]:
    (machine,) = _resources(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)  # inside strings
    return json.loads(text)


def test_state_machine_mode_is_an_express_workflow_with_logging(templates):
    template = templates["state_machine"]
    template.has_resource_properties("AWS::StepFunctions::StateMachine", {
        "StateMachineType": "EXPRESS",
        "TracingConfiguration": {"Enabled": True},
        "LoggingConfiguration": {"Level": "ALL", "IncludeExecutionData": False,
                                 "Destinations": Match.any_value()},
        "EncryptionConfiguration": Match.object_like({"Type": "CUSTOMER_MANAGED_KMS_KEY"}),
    })
    construct = templates["state_machine:construct"]
    assert construct.consumer is None and construct.state_machine is not None
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 0)


def test_four_steps_retry_only_retryable_errors_and_catch(templates):
    from mdlc_constructs.integration import RETRYABLE_ERRORS

    definition = _definition(templates["state_machine"])
    decide = definition["States"]["Decide"]
    states = decide["Branches"][0]["States"]
    order, name = [], decide["Branches"][0]["StartAt"]
    while name:
        order.append(name)
        name = states[name].get("Next")
    assert order == ["CollectFeatures", "RunInference", "ExecuteRules", "PerformAction"]
    for state_name, step in zip(order, RETRYABLE_ERRORS, strict=True):
        state = states[state_name]
        assert state["TimeoutSeconds"] <= 60
        # payload_response_only: the parameters are the function's event.
        assert state["Parameters"] == {"step": step, "state.$": "$"}
        assert state["ResultPath"] == "$"
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert set(RETRYABLE_ERRORS[step]) <= retried
        assert "MalformedEvent" not in retried and "States.ALL" not in retried
    catches = decide["Catch"]
    assert catches[0]["ErrorEquals"] == ["MalformedEvent", "UnconfirmedAction"]
    assert catches[0]["Next"] == "DeadLetter"
    assert catches[1]["ErrorEquals"] == ["States.ALL"]
    assert definition["States"]["DeadLetter"]["Next"] == "DeadLettered"
    assert definition["StartAt"] == "TakeRecord"


def test_pipe_starts_one_synchronous_execution_per_record(templates, fraud_spec):
    integration = fraud_spec.integration
    templates["state_machine"].has_resource_properties("AWS::Pipes::Pipe", {
        "SourceParameters": {"KinesisStreamParameters": {
            "BatchSize": 1,
            "StartingPosition": "TRIM_HORIZON",
            "MaximumRetryAttempts": integration.retry_attempts,
            "MaximumRecordAgeInSeconds": integration.max_record_age_seconds,
            "OnPartialBatchItemFailure": "AUTOMATIC_BISECT",
            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [
                Match.string_like_regexp("IntegrationDeadLetters"), "Arn"]}},
        }},
        "TargetParameters": {"StepFunctionStateMachineParameters": {
            "InvocationType": "REQUEST_RESPONSE"}},
        "KmsKeyIdentifier": Match.any_value(),
    })


def test_iterator_age_metric(templates):
    fused = templates["fused:construct"].metric_iterator_age()
    assert fused.metric_name == "IteratorAge" and fused.statistic == "Maximum"
    stream = templates["state_machine:construct"].metric_iterator_age()
    assert stream.metric_name == "GetRecords.IteratorAgeMilliseconds"


def test_missing_integration_is_rejected_naming_the_field(fraud_spec):
    from aws_cdk import Stack
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.integration import ClientIntegration
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    stack = Stack(make_app(compliance=False), "Bad")
    lake = DataLake(stack, "Lake")
    spec = fraud_spec.model_copy(update={"integration": None})
    with pytest.raises(ValueError, match="integration"):
        ClientIntegration(stack, "Integration", spec=spec, data_lake=lake,
                          topic=sns.Topic(stack, "T"), stream=kinesis.Stream(stack, "S"),
                          feature_table=dynamodb.Table(stack, "F", partition_key=dynamodb.Attribute(
                              name="pk", type=dynamodb.AttributeType.STRING)),
                          endpoint_name="mdlc-fraud")
