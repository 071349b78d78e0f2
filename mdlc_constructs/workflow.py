"""Step Functions building blocks every workflow in the library shares.

A workflow here always has: logging at ALL level without execution data (the
data can hold features of real customers), X-Ray tracing, a timeout on the
machine and on every task, retries with backoff only where a step is
idempotent, and a catch that notifies the model's topic with the reason and
then fails the execution.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .compliance import acknowledge, acknowledge_all, iam5_resource, resource_token
from .key_grants import grant_publish_key
from .resources import schedule_of
from .tokens import minutes, seconds, stack_of, string_at, task_timeout

#: Step Functions' limit on a state machine's name.
MAX_STATE_MACHINE_NAME = 80

#: Errors worth retrying on any AWS service integration: throttling and
#: transient service faults, never validation or permission errors.
TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "ThrottlingException",
    "SageMaker.AmazonSageMakerException",
)


def retry_transient(
    state: sfn.TaskStateBase | sfn.CustomState,
    *,
    errors: Sequence[str] = TRANSIENT_ERRORS,
    attempts: int = 4,
    interval: Duration | None = None,
) -> None:
    """Retry ``state`` with exponential backoff (rate 2) and full jitter on
    ``errors`` only, at most ``attempts`` times, the first after ``interval``
    (default 2 seconds; longer for calls that start jobs, whose throttling
    lasts).

    Call this only for idempotent steps: a retried step runs again.
    """
    state.add_retry(
        errors=list(errors),
        interval=interval or seconds(2),
        backoff_rate=2.0,
        max_attempts=attempts,
        jitter_strategy=sfn.JitterType.FULL,
    )


def invoke(
    scope: Construct,
    construct_id: str,
    function: lambda_.IFunction,
    *,
    payload: Mapping[str, Any] | None = None,
    result_path: str | None = None,
    timeout: Duration = Duration.minutes(5),
    idempotent: bool = True,
    comment: str | None = None,
) -> tasks.LambdaInvoke:
    """A Lambda task that keeps the state and puts the function's result at ``result_path``.

    Args:
        payload: the event, with ``sfn.JsonPath`` references. Default: the state.
        result_path: where the result goes. Default: ``$.<construct_id>``.
        timeout: the task's timeout. Default 5 minutes.
        idempotent: retry transient errors with backoff. Default True.
    """
    task = tasks.LambdaInvoke(
        scope,
        construct_id,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(dict(payload)) if payload is not None else None,
        payload_response_only=True,
        result_path=result_path or f"$.{construct_id}",
        task_timeout=task_timeout(timeout),
        retry_on_service_exceptions=False,
        comment=comment,
    )
    if idempotent:
        retry_transient(task)
    if isinstance(function, lambda_.Function):
        # LambdaInvoke grants the function and its versions (<arn>:*).
        acknowledge(
            stack_of(scope),
            iam5_resource(f"{resource_token(function)}:*"),
            "Step Functions may invoke any version of this one function (LambdaInvoke grant)",
        )
    return task


#: SNS errors worth retrying a publish on. A retried publish may deliver a
#: notification twice, which a notification tolerates.
SNS_TRANSIENT = ("SNS.ThrottledException", "SNS.InternalErrorException")


def publish(
    scope: Construct,
    construct_id: str,
    *,
    topic: sns.ITopic,
    subject: str,
    message: Mapping[str, Any],
    retry: Sequence[str] = SNS_TRANSIENT,
) -> tasks.SnsPublish:
    """A task that publishes ``message`` (JSON, with ``sfn.JsonPath`` references)
    to ``topic`` and keeps the state as it was.

    ``subject`` is cut to SNS's 100 characters; the task times out after a
    minute and retries ``retry`` (default :data:`SNS_TRANSIENT`; empty: none)
    with backoff (:func:`retry_transient`).
    """
    task = tasks.SnsPublish(
        scope,
        construct_id,
        topic=topic,
        subject=subject[:100],
        message=sfn.TaskInput.from_object(dict(message)),
        result_path=sfn.JsonPath.DISCARD,
        task_timeout=task_timeout(minutes(1)),
    )
    if retry:
        retry_transient(task, errors=retry)
    return task


def notify_and_fail(
    scope: Construct, construct_id: str, *, topic: sns.ITopic, subject: str, cause: str
) -> sfn.Chain:
    """Publish the error of the failed step to ``topic``, then fail with ``cause``.

    Catches put the error at ``$.error``; the message carries it and the
    execution's name, so the notification is enough to find the run.
    """
    failed = publish(
        scope,
        f"{construct_id}Notify",
        topic=topic,
        subject=subject,
        message={
            "subject": subject,
            "execution": sfn.JsonPath.execution_id,
            "error": string_at("$.error.Error"),
            "cause": string_at("$.error.Cause"),
        },
        retry=("SNS.SdkClientException", *SNS_TRANSIENT),
    )
    return failed.next(
        sfn.Fail(scope, f"{construct_id}Failed", cause=cause, error=f"{construct_id}Failed")
    )


def state_machine_name(scope: Construct, construct_id: str) -> str:
    """The physical name of the state machine ``construct_id`` in ``scope``:
    the stack's name, then the construct path below the stack, joined by ``-``
    (``Mdlc-fraud-Data-Workflow``).

    Unique per account and region, because stack names are; deterministic, so
    the role's KMS condition can name the machine's ARN before it exists. Over
    80 characters (Step Functions' limit), the name is cut and ends with a
    hash of the whole name instead.
    """
    stack = stack_of(scope)
    if Token.is_unresolved(stack.stack_name):
        raise ValueError(
            f"{scope.node.path}/{construct_id}: the stack name must be known at synthesis "
            f"to name the state machine, got the token {stack.stack_name!r}"
        )
    below = scope.node.path[len(stack.node.path):].strip("/")
    parts = [stack.stack_name, *(p for p in below.split("/") if p), construct_id]
    name = "-".join(re.sub(r"[^A-Za-z0-9_-]", "", part) for part in parts)
    if len(name) <= MAX_STATE_MACHINE_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_STATE_MACHINE_NAME - 9]}-{digest}"


#: Where the library's state machines log (see :func:`state_machine`).
VENDED_LOGS_PREFIX = "/aws/vendedlogs/states/"


def state_machine(
    scope: Construct,
    construct_id: str,
    *,
    definition: sfn.IChainable,
    key: kms.IKey,
    timeout: Duration,
    comment: str,
    express: bool = False,
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
    name: str | None = None,
    notifies: Sequence[sns.ITopic] = (),
    timed_out: str | None = None,
    timed_out_id: str = "TimedOut",
) -> sfn.StateMachine:
    """A state machine with the library's logging, tracing, timeout and encryption.

    The machine is encrypted with ``key``. Its role may use the key only for
    this machine: ``kms:Decrypt`` and ``kms:GenerateDataKey`` under the
    encryption context ``aws:states:stateMachineArn`` equal to the machine's
    own ARN (what Step Functions sends, per its data at rest encryption
    documentation). aws-cdk-lib builds that ARN from the physical name, so
    the machine always has one: ``name``, default :func:`state_machine_name`
    (an unnamed machine would get ``arn:...:stateMachine:``, a condition that
    never matches, and could not start). Log delivery to the encrypted log
    group is allowed by ``kms:GenerateDataKey`` under AWS's documented
    ``kms:EncryptionContext:SourceArn`` condition, and the key policy lets
    ``delivery.logs.amazonaws.com`` decrypt (both added by aws-cdk-lib).

    Whoever starts an execution needs no key permission (``StartExecution``;
    ``StartSyncExecution`` of an Express machine needs ``kms:Decrypt``);
    reading executions back needs ``kms:Decrypt`` (docs/permissions.md).

    ``notifies``: the encrypted topics the definition publishes to; the role may
    use their keys for that (:func:`~mdlc_constructs.key_grants.grant_publish_key`).
    ``timed_out``: when given, the description of an EventBridge rule
    (``timed_out_id``) that publishes the machine's timeouts to those topics
    too (:func:`notify_timeouts`): the definition's catches, which report a
    failed step, cannot see the machine's own timeout.

    The log group is named ``/aws/vendedlogs/states/<machine name>`` so that
    hundreds of machines fit in one account (issue #12).
    """
    name = name or state_machine_name(scope, construct_id)
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        # Step Functions adds every log group it delivers to into the account's
        # one CloudWatch Logs resource policy (5,120 characters: about ten
        # models' machines), except those under /aws/vendedlogs/ (its
        # documented best practice, bp-cwl).
        log_group_name=f"{VENDED_LOGS_PREFIX}{name}",
        retention=log_retention,
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN,
    )
    machine = sfn.StateMachine(
        scope,
        construct_id,
        state_machine_name=name,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        state_machine_type=sfn.StateMachineType.EXPRESS
        if express
        else sfn.StateMachineType.STANDARD,
        timeout=timeout,
        comment=comment,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
        ),
        encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(key),
    )
    for topic in notifies:
        grant_publish_key(topic, machine)
    if timed_out is not None:
        _timeout_rule(scope, timed_out_id, machine=machine, topics=notifies,
                      description=timed_out)
    acknowledge_all(
        machine,
        {
            iam5_resource("*"): "CloudWatch Logs delivery and X-Ray actions "
            "(logs:CreateLogDelivery, xray:PutTraceSegments, ...) do not support "
            "resource-level permissions",
        },
    )
    return machine


def notify_timeouts(
    scope: Construct,
    construct_id: str,
    *,
    machine: sfn.IStateMachine,
    topic: sns.ITopic,
    description: str,
) -> events.Rule:
    """Publish to ``topic`` when an execution of ``machine`` times out.

    A timed-out execution cannot catch its own timeout, so its error boundary
    never runs; EventBridge sees the status change and reports it.
    """
    return _timeout_rule(scope, construct_id, machine=machine, topics=[topic],
                         description=description)


def _timeout_rule(
    scope: Construct,
    construct_id: str,
    *,
    machine: sfn.IStateMachine,
    topics: Sequence[sns.ITopic],
    description: str,
) -> events.Rule:
    return events.Rule(
        scope,
        construct_id,
        description=description,
        event_pattern=events.EventPattern(
            source=["aws.states"],
            detail_type=["Step Functions Execution Status Change"],
            detail={"stateMachineArn": [machine.state_machine_arn], "status": ["TIMED_OUT"]},
        ),
        targets=[targets.SnsTopic(topic) for topic in topics],
    )


def error_boundary(
    scope: Construct,
    construct_id: str,
    *,
    steps: sfn.IChainable,
    topic: sns.ITopic,
    failure_id: str,
    subject: str,
    cause: str,
    result_path: str,
    result_selector: Mapping[str, Any] | None = None,
) -> sfn.Parallel:
    """``steps`` in a one-branch ``Parallel`` whose catch notifies ``topic`` and
    fails (:func:`notify_and_fail` with ``failure_id``, ``subject`` and ``cause``).

    One catch covers every state of ``steps``, so a step added later is covered
    without a catch of its own; the error is at ``$.error`` for the message.
    """
    boundary = sfn.Parallel(
        scope,
        construct_id,
        result_path=result_path,
        result_selector=dict(result_selector) if result_selector is not None else None,
        comment="Error boundary: any failure notifies the topic",
    )
    boundary.branch(steps)
    boundary.add_catch(
        notify_and_fail(scope, failure_id, topic=topic, subject=subject, cause=cause),
        result_path="$.error",
    )
    return boundary


def scheduled_start(
    scope: Construct,
    construct_id: str,
    *,
    machine: sfn.IStateMachine,
    schedule: str,
    description: str,
) -> events.Rule:
    """An EventBridge rule that starts ``machine`` on ``schedule`` (a spec's
    validated expression) with the input ``{"trigger": "schedule"}``.

    No date in the input: the workflow's first step takes yesterday's, so a
    scheduled run and a backfill (``{"date": ...}``) are the same workflow.
    """
    return events.Rule(
        scope,
        construct_id,
        schedule=schedule_of(schedule),
        description=description,
        targets=[
            targets.SfnStateMachine(
                machine, input=events.RuleTargetInput.from_object({"trigger": "schedule"})
            )
        ],
    )
