"""Re-training: start the training workflow on a schedule, on request, or on an alarm.

Every trigger goes through one small Lambda function
(``lambdas/retraining_trigger``) that admits a start only when

* no execution of the model's training state machine is RUNNING, and
* no training was started within ``spec.training.cooldown_hours``: a
  conditional write to a DynamoDB table, so two triggers at the same moment
  cannot both pass, and a flapping alarm cannot start a storm of trainings.

The schedule obeys the cooldown too: a model retrained by an alarm an hour
ago is not retrained again by the weekly schedule.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .functions import python_function
from .key_grants import grant_send_key, grant_table_key
from .resources import encrypted_queue, encrypted_table, schedule_of
from .spec import ModelSpec
from .tokens import hours, seconds

#: The custom event that requests a re-training (``detail.model`` names the model).
RETRAIN_DETAIL_TYPE = "MDLC Retrain Requested"


class Retraining(Construct):
    """Schedule, event and alarm triggers for a model's training workflow, with a cooldown.

    Args:
        spec: the model spec (``training.schedule``, ``training.cooldown_hours``).
        state_machine: the training workflow's state machine.
        key: encrypts the cooldown table, the dead-letter queue and the logs.
        event_bus: where ``MDLC Retrain Requested`` events arrive. Default: the
            account's default bus.
        removal_policy: for the cooldown table. Default: RETAIN.

    Attributes:
        function, table, dead_letter_queue, schedule_rule (None without a
        schedule), request_rule.

    Request a re-training::

        aws events put-events --entries '[{"Source": "my.team",
          "DetailType": "MDLC Retrain Requested",
          "Detail": "{\\"model\\": \\"fraud\\", \\"reason\\": \\"new labels\\"}"}]'
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: ModelSpec,
        state_machine: sfn.IStateMachine,
        key: kms.IKey,
        event_bus: events.IEventBus | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.state_machine = state_machine
        self.table = encrypted_table(self, "Cooldown", key=key, partition_key="model",
                                     deletion_protection=False, removal_policy=removal_policy)
        # Asynchronous invocations (EventBridge) that still fail after Lambda's
        # retries land here with the event, so a request is never lost silently.
        self.dead_letter_queue = encrypted_queue(
            self, "DeadLetters", key=key,
            dead_letter_reason="This queue is the trigger function's dead-letter queue")
        self.function = python_function(
            self,
            "Trigger",
            handler="retraining_trigger",
            description=f"Starts a re-training of {spec.name} unless one runs or cooling down",
            key=key,
            environment={
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                "COOLDOWN_TABLE": self.table.table_name,
                "MODEL_NAME": spec.name,
                "COOLDOWN_HOURS": repr(float(spec.training.cooldown_hours)),
            },
            timeout=seconds(30),
            dead_letter_queue=self.dead_letter_queue,
        )
        self.table.grant(self.function, "dynamodb:PutItem", "dynamodb:DeleteItem")
        grant_table_key(self.table, key, self.function)
        grant_send_key(self.dead_letter_queue, self.function)
        state_machine.grant_start_execution(self.function)
        # ListExecutions is authorized on the state machine itself; grant_read
        # would add DescribeExecution on every execution, which we do not need.
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]
            )
        )
        self._target_kwargs = {
            "retry_attempts": 2,
            "max_event_age": hours(1),
            "dead_letter_queue": self.dead_letter_queue,
        }
        self.schedule_rule: events.Rule | None = None
        if spec.training.schedule:
            schedule = schedule_of(spec.training.schedule)
            self.schedule_rule = events.Rule(
                self,
                "Schedule",
                description=f"Scheduled re-training of {spec.name}",
                schedule=schedule,
                targets=[
                    targets.LambdaFunction(
                        self.function,
                        event=events.RuleTargetInput.from_object({"source": "schedule"}),
                        **self._target_kwargs,
                    )
                ],
            )
        self.request_rule = events.Rule(
            self,
            "Requested",
            description=f"{RETRAIN_DETAIL_TYPE} events for {spec.name}",
            event_bus=event_bus,
            event_pattern=events.EventPattern(
                detail_type=[RETRAIN_DETAIL_TYPE], detail={"model": [spec.name]}
            ),
            targets=[targets.LambdaFunction(self.function, **self._target_kwargs)],
        )

    def trigger_on_alarm(self, alarm: cloudwatch.IAlarm) -> events.Rule:
        """Start a re-training (cooldown applies) when ``alarm`` goes to ALARM."""
        # The id follows the alarm's own id, so adding an alarm never renames
        # (replaces) the rules of the others.
        return events.Rule(
            self,
            f"On{alarm.node.id}",
            description=f"Re-train {self.spec.name} when an alarm fires",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[alarm.alarm_arn],
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[targets.LambdaFunction(self.function, **self._target_kwargs)],
        )
