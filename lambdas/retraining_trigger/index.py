"""Start a re-training of the model, unless one is running or the cooldown has not passed.

Invoked by EventBridge: the spec's schedule (constant input
``{"source": "schedule"}``), a ``MDLC Retrain Requested`` event for this
model, or a CloudWatch alarm going to ALARM.

Environment: STATE_MACHINE_ARN, COOLDOWN_TABLE, MODEL_NAME, COOLDOWN_HOURS.
Returns ``{"started": bool, "reason": str, "execution_arn"?: str}``.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from mdlc_core.cooldown import cooldown_cutoff, execution_name, parse_trigger

logger = Logger(service="retraining_trigger")
sfn = boto3.client("stepfunctions")
dynamodb = boto3.client("dynamodb")


def _running(state_machine: str) -> str | None:
    page = sfn.list_executions(stateMachineArn=state_machine, statusFilter="RUNNING", maxResults=1)
    executions = page.get("executions") or []
    return executions[0]["executionArn"] if executions else None


def _claim(table: str, model: str, now: datetime, hours: float, token: str, source: str) -> bool:
    """Record this start unless one happened within the cooldown; True when recorded."""
    try:
        dynamodb.put_item(
            TableName=table,
            Item={
                "model": {"S": model},
                "started_at": {"S": now.isoformat()},
                "token": {"S": token},
                "source": {"S": source},
            },
            ConditionExpression="attribute_not_exists(started_at) OR started_at <= :cutoff",
            ExpressionAttributeValues={":cutoff": {"S": cooldown_cutoff(now, hours)}},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _release(table: str, model: str, token: str) -> None:
    """Undo our claim (the start failed), only if it is still ours."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"model": {"S": model}},
            ConditionExpression="#t = :token",
            ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":token": {"S": token}},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state_machine = os.environ["STATE_MACHINE_ARN"]
    table, model = os.environ["COOLDOWN_TABLE"], os.environ["MODEL_NAME"]
    hours = float(os.environ.get("COOLDOWN_HOURS", "24"))
    now = datetime.now(UTC)
    trigger = parse_trigger(event, now)
    running = _running(state_machine)
    if running:
        logger.info("training already running", extra={"execution": running})
        return {"started": False, "reason": f"a training is running: {running}"}
    token = uuid.uuid4().hex
    if not _claim(table, model, now, hours, token, trigger.source):
        logger.info("within cooldown", extra={"cooldown_hours": hours})
        return {"started": False, "reason": f"within the {hours:g} h cooldown"}
    try:
        execution = sfn.start_execution(
            stateMachineArn=state_machine,
            name=execution_name(trigger),
            input=json.dumps({"trigger": trigger.as_input()}),
        )
    except Exception:
        _release(table, model, token)
        raise
    logger.info("re-training started", extra={"execution": execution["executionArn"]})
    return {"started": True, "reason": trigger.reason, "execution_arn": execution["executionArn"]}
