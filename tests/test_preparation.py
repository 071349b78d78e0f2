"""Stages 1-3 in the example stack: functions, the daily workflow, the
quality gate and online features (the scale-out runners: test_processing.py)."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match, Template


def _definition(template: Template, comment_part: str) -> dict:
    for machine in template.find_resources("AWS::StepFunctions::StateMachine").values():
        body = machine["Properties"]["DefinitionString"]
        text = "".join(p if isinstance(p, str) else json.dumps(p) for p in body["Fn::Join"][1])
        if comment_part in text:
            return machine
    raise AssertionError(f"no state machine mentions {comment_part!r}")


def _states(machine: dict) -> str:
    body = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in body)


def _function_with_env(template: Template, variable: str, value_part: str = "") -> dict:
    for function in template.find_resources("AWS::Lambda::Function").values():
        env = function["Properties"].get("Environment", {}).get("Variables", {})
        if variable in env and value_part in json.dumps(env[variable]):
            return function["Properties"]
    raise AssertionError(f"no function with {variable}")


def test_daily_workflow_sources_checks_and_featurizes(fraud_template):
    machine = _definition(fraud_template, "source, check and featurize")
    text = _states(machine)
    for state in (
        "DailySourceSnapshot",
        "DailyCheckQuality",
        "DailyCheckQualityPassed",
        "DailyCheckQualityViolations",
        "DailyComputeFeatures",
        "DataPreparationNotify",
        "DataPreparationFailed",
    ):
        assert f'"{state}"' in text, state
    assert '"Error":"DataQualityViolations"' in text
    assert '"previous_prefix":"latest"' in text
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"


def test_every_task_has_a_timeout_and_the_machine_too(fraud_template):
    text = _states(_definition(fraud_template, "source, check and featurize"))
    definition_tasks = text.count('"Type":"Task"')
    assert definition_tasks >= 4
    assert text.count('"TimeoutSeconds"') >= definition_tasks + 1  # tasks + machine


def test_workflow_runs_on_the_spec_schedule(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(0 2 * * ? *)",
            "Targets": [Match.object_like({"Input": '{"trigger":"schedule"}'})],
        },
    )


def test_sourcing_function_reads_sources_and_writes_only_its_model(fraud_template):
    props = _function_with_env(fraud_template, "RAW_BUCKET")
    assert props["Environment"]["Variables"]["MODEL_NAME"] == "fraud"
    policies = json.dumps(fraud_template.find_resources("AWS::IAM::Policy"))
    assert "datasets/fraud/*" in policies
    assert "orders/*" in policies


def test_snapshots_reports_and_features_are_never_deleted(fraud_template):
    for name, policy in fraud_template.find_resources("AWS::IAM::Policy").items():
        if not name.startswith("Data"):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert not [a for a in actions if a.startswith("s3:Delete")], name


def test_quality_metrics_are_scoped_to_their_namespace(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "cloudwatch:PutMetricData",
                                "Condition": {
                                    "StringEquals": {"cloudwatch:namespace": "MDLC/DataQuality"}
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_online_feature_table_is_encrypted_recoverable_and_retained(fraud_template):
    fraud_template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "DeletionProtectionEnabled": True,
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )


def test_online_updater_bounds_retries_and_keeps_failures(fraud_template):
    fraud_template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 3,
            "MaximumRecordAgeInSeconds": 3600,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
            "StartingPosition": "TRIM_HORIZON",
        },
    )
    fraud_template.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value()})


def test_event_stream_is_encrypted_with_the_data_key(fraud_template):
    key_id = next(iter(fraud_template.find_resources("AWS::KMS::Key")))
    fraud_template.has_resource_properties(
        "AWS::Kinesis::Stream",
        {
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": {"Fn::GetAtt": [key_id, "Arn"]}},
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
        },
    )


# The scale-out runners (quality, features, monitoring as Processing jobs) are
# tested in tests/test_processing.py, on one stack with every runner switched.


def test_every_standard_workflow_reports_its_timeouts(fraud_template):
    # A timed-out execution cannot catch its own timeout; EventBridge reports it.
    machines = {
        logical_id
        for logical_id, machine in fraud_template.find_resources(
            "AWS::StepFunctions::StateMachine"
        ).items()
        if machine["Properties"].get("StateMachineType") != "EXPRESS"
    }
    topic = next(
        logical_id
        for logical_id, topic in fraud_template.find_resources("AWS::SNS::Topic").items()
        if "failures and approvals" in topic["Properties"].get("DisplayName", "")
    )
    watched = set()
    for rule in fraud_template.find_resources("AWS::Events::Rule").values():
        detail = rule["Properties"].get("EventPattern", {}).get("detail", {})
        if detail.get("status") == ["TIMED_OUT"]:
            watched.update(ref["Ref"] for ref in detail["stateMachineArn"])
            assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Ref": topic}]
    assert machines and machines <= watched, machines - watched
