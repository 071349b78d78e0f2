"""Retraining: the trigger's cooldown and running checks (moto), and the rules it synthesizes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from tests.lambda_loader import load_handler

REGION = "eu-west-1"
WAIT = {"Type": "Wait", "Seconds": 600, "End": True}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="cooldown",
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="training",
            definition=json.dumps({"StartAt": "W", "States": {"W": WAIT}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        monkeypatch.setenv("STATE_MACHINE_ARN", machine)
        monkeypatch.setenv("COOLDOWN_TABLE", "cooldown")
        monkeypatch.setenv("MODEL_NAME", "fraud")
        monkeypatch.setenv("COOLDOWN_HOURS", "24")
        yield {"handler": load_handler("retraining_trigger"), "sfn": sfn, "ddb": ddb,
               "machine": machine}


REQUEST = {"detail-type": "MDLC Retrain Requested", "detail": {"model": "fraud", "reason": "x"}}
ALARM = {
    "detail-type": "CloudWatch Alarm State Change",
    "detail": {"alarmName": "fraud-auc", "state": {"value": "ALARM", "reason": "auc < 0.75"}},
}


def _stop_all(aws):
    for e in aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]:
        if e["status"] == "RUNNING":
            aws["sfn"].stop_execution(executionArn=e["executionArn"])


def test_starts_and_records(aws):
    result = aws["handler"].handler(REQUEST, None)
    assert result["started"] is True
    (execution,) = aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]
    described = aws["sfn"].describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["trigger"]["source"] == "event"
    item = aws["ddb"].get_item(TableName="cooldown", Key={"model": {"S": "fraud"}})["Item"]
    assert item["source"]["S"] == "event"


def test_never_while_running(aws):
    assert aws["handler"].handler(ALARM, None)["started"] is True
    aws["ddb"].delete_item(TableName="cooldown", Key={"model": {"S": "fraud"}})
    result = aws["handler"].handler({"source": "schedule"}, None)
    assert result["started"] is False and "running" in result["reason"]


def test_cooldown_blocks_a_flapping_alarm(aws):
    assert aws["handler"].handler(ALARM, None)["started"] is True
    _stop_all(aws)
    for _ in range(3):
        result = aws["handler"].handler(ALARM, None)
        assert result == {"started": False, "reason": "within the 24 h cooldown"}
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["machine"])["executions"]) == 1


def test_starts_again_after_the_cooldown(aws):
    old = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
    aws["ddb"].put_item(
        TableName="cooldown",
        Item={"model": {"S": "fraud"}, "started_at": {"S": old}, "token": {"S": "t"}},
    )
    assert aws["handler"].handler(REQUEST, None)["started"] is True


def test_two_claims_at_once_only_one_wins(aws):
    handler = aws["handler"]
    now = datetime.now(UTC)
    first = handler._claim("cooldown", "fraud", now, 24.0, "a", "alarm")
    second = handler._claim("cooldown", "fraud", now, 24.0, "b", "event")
    assert (first, second) == (True, False)


def test_a_failed_start_releases_the_claim(aws, monkeypatch):
    handler = aws["handler"]

    def broken(**kwargs):
        raise RuntimeError("StartExecution failed")

    monkeypatch.setattr(handler.sfn, "start_execution", broken)
    with pytest.raises(RuntimeError):
        handler.handler(REQUEST, None)
    assert "Item" not in aws["ddb"].get_item(TableName="cooldown", Key={"model": {"S": "fraud"}})


def test_unknown_event_is_rejected(aws):
    with pytest.raises(ValueError, match="not a re-training trigger"):
        aws["handler"].handler({"detail-type": "Something"}, None)


# -- the construct ----------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory, fraud_spec):
    from aws_cdk import aws_cloudwatch as cloudwatch
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template

    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.retraining import Retraining
    from mdlc_constructs.testing import make_app
    from mdlc_constructs.workflow import state_machine
    from tests.training_fixtures import TrainingTestStack

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = make_app(outdir=str(outdir))
    stack = TrainingTestStack(app, "Retraining")
    from aws_cdk import Duration

    machine = state_machine(stack, "Machine", definition=sfn.Pass(stack, "P"), key=stack.key,
                            timeout=Duration.hours(1), comment="stand-in training")
    retraining = Retraining(stack, "Retraining", spec=fraud_spec, state_machine=machine,
                            key=stack.key)
    alarm = cloudwatch.Alarm(stack, "Drift", metric=machine.metric_failed(), threshold=1,
                             evaluation_periods=1)
    retraining.trigger_on_alarm(alarm)
    try:
        app.synth()
    except Exception as error:
        pytest.fail(f"{error}\n" + "\n".join(map(str, read_findings(outdir))))
    return Template.from_stack(stack)


def test_rules(template):
    rules = template.find_resources("AWS::Events::Rule")
    by_kind = {}
    for rule in rules.values():
        props = rule["Properties"]
        if "ScheduleExpression" in props:
            by_kind["schedule"] = props
        elif props["EventPattern"].get("source") == ["aws.cloudwatch"]:
            by_kind["alarm"] = props
        else:
            by_kind["event"] = props
    assert by_kind["schedule"]["ScheduleExpression"] == "cron(0 4 ? * SUN *)"
    assert json.loads(by_kind["schedule"]["Targets"][0]["Input"]) == {"source": "schedule"}
    assert by_kind["event"]["EventPattern"] == {
        "detail-type": ["MDLC Retrain Requested"], "detail": {"model": ["fraud"]}}
    assert by_kind["alarm"]["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    for props in by_kind.values():
        target = props["Targets"][0]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
        assert "DeadLetterConfig" in target


def test_trigger_permissions(template):
    statements = [
        s for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {a for s in statements for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"states:ListExecutions", "states:StartExecution", "dynamodb:PutItem",
            "dynamodb:DeleteItem"} <= actions
    assert "states:DescribeExecution" not in actions


def test_cooldown_table(template):
    (table,) = template.find_resources("AWS::DynamoDB::Table").values()
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True}
