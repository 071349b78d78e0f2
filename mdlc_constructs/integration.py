"""Stage 8, client integration: the talk's four steps for every event on the stream.

**Collect features** (the online feature table) → **run inference** (the
real-time endpoint) → **execute rules** → **perform action**, for the
events on the model's encrypted Kinesis stream, in the spec's
``integration.mode``:

``fused`` (default)
    One Lambda function (``lambdas/stream_consumer``) consumes the stream in
    batches: one feature read and one endpoint call per batch. The event
    source mapping bisects on error, bounds retries and record age (spec),
    reports partial batch failures and sends what still fails to the
    dead-letter queue (metadata: shard and sequence numbers, enough to
    replay). Malformed records go to the same queue from the function, with
    the reason, their payload whole in the data lake's raw bucket under
    ``dead-letters/<model>/stream-consumer/`` (a queue message is bounded
    to 256 KiB) and its location in the message, once per record.
``state_machine``
    The talk's drawing: one Express workflow per event, its four steps as
    Lambda tasks (``lambdas/integration_step``). An EventBridge pipe reads
    the stream one record at a time and starts the workflow synchronously,
    so a failed execution is retried by the pipe (bisect, bounded retries
    and record age, then the dead-letter queue). A pipe needs no code of
    ours, keeps the stream's ordering per shard, and has the same failure
    bounds as an event source mapping; a starter function would add a hop
    and its own failure handling. Malformed events are caught in the
    workflow and sent to the dead-letter queue with the reason; anything
    else that fails after its retries notifies the topic and fails the
    execution, so the pipe retries it.

Both paths write every decision to the decision log table and act once per
producer event id, through the decision log itself: a conditional put claims
the event before acting and a conditional update completes it
(``mdlc_core.actions.ActionLedger``, docs/integration.md, Exactly once). The
same item and key serve both paths, so an event acts once on either.
Both also write the decisions as model monitoring's input, one predictions
file per invocation under ``predictions/<model>/dt=<day>/scored/`` of the
data lake's predictions bucket (``PREDICTIONS_BUCKET``; ``s3:PutObject`` on
that pattern only), so the monitor sees every real-time decision with the
producer's event id, which the labels join on.

Action targets: one per kind the spec's ``integration.actions`` use (an
encrypted SNS topic, an encrypted SQS queue with its own dead-letter queue,
an encrypted EventBridge bus), each granted to the function that acts with
its one send action. ``custom`` kinds get no target and no permission: the
construct cannot know what a team's action calls, so the team grants it on
:attr:`ClientIntegration.function` (``function.add_to_role_policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

from aws_cdk import RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .action_targets import ActionTargets
from .compliance import (
    acknowledge,
    acknowledge_all,
    acknowledge_grant_actions,
    acknowledge_objects,
    iam5_action,
    iam5_resource,
    printed_arn,
)
from .features import dead_letter_payloads
from .resources import encrypted_queue, encrypted_table
from .stage import ModelStage, StageProps
from .storage import scored_predictions_pattern
from .tokens import minutes, seconds, string_at, task_timeout
from .workflow import invoke, notify_and_fail, retry_transient, state_machine

#: The four steps, in order, as ``lambdas/integration_step`` names them.
STEPS = ("collect_features", "run_inference", "execute_rules", "perform_action")

#: Errors each step raises that a retry can fix (``lambdas/integration_step``).
#: ``MalformedEvent`` is never retried: it is caught and dead-lettered.
RETRYABLE_ERRORS: dict[str, tuple[str, ...]] = {
    "collect_features": ("TransientError",),
    "run_inference": ("TransientError", "EndpointError"),
    "execute_rules": (),
    # Safe to retry: the action ledger acts once per producer's event id.
    "perform_action": ("TransientError",),
}
MALFORMED_ERROR = "MalformedEvent"
#: An earlier attempt claimed the action and ended without recording it: never
#: performed again, dead-lettered with the reason (mdlc_core.actions.ActionLedger).
UNCONFIRMED_ERROR = "UnconfirmedAction"

#: Built-in action kinds with a target this construct creates.
TARGET_KINDS = ("sns", "sqs", "eventbridge")


class ClientIntegration(ModelStage):
    """Decide and act on every event of the model's stream (see the module docstring).

    Args:
        spec: the model spec; ``integration`` must be present and enabled.
        data_lake: the model's data lake (its key is the default key); the
            acting function puts monitoring's input (predictions) under
            ``predictions/<model>/dt=*/scored/`` of its predictions bucket.
        key: encrypts the tables, queues, targets, logs and function
            environments. Default: ``data_lake.key``.
        topic: the model's notification topic; failed workflow executions
            (``state_machine`` mode) are published here.
        stream: the encrypted Kinesis stream client events arrive on.
        feature_table: the online feature table (``FeatureEngineering.table``,
            written by ``feature_update``); read here, and written only to
            record an event the updater has not applied yet
            (``dynamodb:PutItem``, docs/integration.md "Online features").
        endpoint_name: the real-time endpoint (``RealtimeEndpoint.endpoint_name``);
            only ``sagemaker:InvokeEndpoint`` on this endpoint is granted.
        model_package_version: written into every decision. Default: none;
            decisions name the model package ARN the endpoint serves (looked
            up at most once a minute: DescribeEndpoint, DescribeEndpointConfig
            and DescribeModel on this endpoint's resources only, granted here;
            docs/lineage.md for its caveat during a deployment), or the
            variant that scored them (``variant:<name>``) when no lookup answered.
        decision_table: an existing decision log (string partition key
            ``event_id``). Default: a new table (KMS, PITR, retained).
        starting_position: where a new mapping or pipe starts reading. Default:
            TRIM_HORIZON, so nothing on the stream is skipped; the spec's
            ``max_record_age_seconds`` bounds how old an event may be acted on.
        action_code: files or packages bundled with the acting function, for
            custom action kinds (``{kind: custom, handler: "module:Class"}``).
            Default: none.

    Attributes:
        consumer: the fused consumer function (None in ``state_machine`` mode).
        step_function: the workflow's step function (None in ``fused`` mode).
        function: the function that acts (either of the above); grant custom
            actions' permissions to it.
        state_machine: the Express workflow (None in ``fused`` mode).
        pipe: the EventBridge pipe (None in ``fused`` mode).
        decision_table, idempotency_table, dead_letter_queue.
        action_targets: the topic, queue and bus actions send to
            (:class:`~mdlc_constructs.action_targets.ActionTargets`, the same
            type batch inference takes and builds).
        topic_target, queue_target, event_bus_target: each or None (the
            fields of ``action_targets``).

    Extension points (plain methods called from the constructor):
    ``build_action_targets``, ``build_consumer``, ``build_state_machine``,
    ``environment``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: kinesis.IStream,
        feature_table: dynamodb.ITable,
        endpoint_name: str,
        key: kms.IKey | None = None,
        model_package_version: str | None = None,
        decision_table: dynamodb.ITable | None = None,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        action_code: Sequence[Path] = (),
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake = self.spec, self.data_lake
        self.action_code = tuple(action_code)
        where = spec.source or spec.name
        if spec.integration is None or not spec.integration.enabled:
            raise ValueError(
                f"{where}: integration is missing or disabled; ClientIntegration needs "
                "integration.rules and integration.default_action"
            )
        if not endpoint_name:
            raise ValueError(f"{where}: ClientIntegration needs endpoint_name (the real-time "
                             "endpoint, RealtimeEndpoint.endpoint_name)")
        self.integration = spec.integration
        self.key: kms.IKey = key or data_lake.key
        self.stream = stream
        self.feature_table = feature_table
        self.endpoint_name = endpoint_name
        self.model_package_version = model_package_version
        self.starting_position = starting_position
        stack = Stack.of(self)
        # SageMaker writes endpoint names in lower case in its ARNs.
        name = endpoint_name if Token.is_unresolved(endpoint_name) else endpoint_name.lower()
        self.endpoint_arn = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=name
        )

        self.decision_table: dynamodb.ITable = decision_table or self._table(
            "Decisions", "event_id", ttl=None
        )
        # Not used by the stream paths (both act through the decision log): it is
        # batch inference's action ledger when the model stack shares it
        # (MdlcModelStack.build_batch_inference), so both paths' subscribers
        # and records stay in one place.
        self.idempotency_table: dynamodb.ITable = self._table(
            "Idempotency", "id", ttl="expiration"
        )
        self.dead_letter_queue: sqs.Queue = encrypted_queue(self, "DeadLetters", key=self.key)
        self.action_targets: ActionTargets = self.build_action_targets()
        self.topic_target: sns.ITopic | None = self.action_targets.topic
        self.queue_target: sqs.IQueue | None = self.action_targets.queue
        self.event_bus_target: events.IEventBus | None = self.action_targets.event_bus

        self.consumer: lambda_.Function | None = None
        self.step_function: lambda_.Function | None = None
        self.state_machine: sfn.StateMachine | None = None
        self.pipe: pipes.CfnPipe | None = None
        if self.integration.mode == "fused":
            self.consumer = self.build_consumer()
            self.function: lambda_.Function = self.consumer
        else:
            self.step_function = self._step_function()
            self.function = self.step_function
            self.state_machine = self.build_state_machine(self.step_function)
            self.pipe = self._pipe(self.state_machine)
        self._grant(self.function)

    # -- extension points ---------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """What both handlers read (docs/integration.md, Environment)."""
        env = {
            "ENDPOINT_NAME": self.endpoint_name,
            "FEATURES_TABLE": self.feature_table.table_name,
            "DECISIONS_TABLE": self.decision_table.table_name,
            "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue.queue_url,
            # Monitoring's input: predictions/<model>/dt=<day>/scored/ there.
            "PREDICTIONS_BUCKET": self.data_lake.predictions.bucket_name,
        }
        env.update(self.action_targets.environment())
        if self.model_package_version:
            env["MODEL_PACKAGE_VERSION"] = self.model_package_version
        return env

    def build_action_targets(self) -> ActionTargets:
        """One target per built-in kind the spec uses (as batch inference's
        hook of the same name).

        The handlers send every action of a kind to the same target, with the
        action and rule as message attributes (SNS) or fields, so subscribers
        filter by action.
        """
        kinds = [target.kind for target in self.integration.actions.values()]
        return ActionTargets.create(self, kinds=kinds, key=self.key,
                                    purpose=f"MDLC {self.spec.name}: decisions")

    def build_consumer(self) -> lambda_.Function:
        """The fused path: the batching consumer and its Kinesis event source."""
        integration = self.integration
        consumer = self.stage_function(
            "Consumer", handler="stream_consumer",
            description=f"MDLC {self.spec.name}: features, inference, rules and actions "
            "per batch of stream events",
            environment=self.environment(), extra_code=self.action_code,
            memory_size=1024,
            # The endpoint client fails after 20 s (x3 attempts); the batch's
            # reads, actions and log writes fit well within the rest.
            timeout=minutes(2),
        )
        # A Kinesis mapping retries forever and keeps records for the stream's
        # retention unless told otherwise: bound both, bisect poison batches,
        # report partial failures and keep what still fails.
        consumer.add_event_source(
            sources.KinesisEventSource(
                self.stream,
                starting_position=self.starting_position,
                batch_size=integration.batch_size,
                max_batching_window=seconds(integration.max_batching_window_seconds),
                bisect_batch_on_error=True,
                retry_attempts=integration.retry_attempts,
                max_record_age=seconds(integration.max_record_age_seconds),
                report_batch_item_failures=True,
                on_failure=sources.SqsDlq(self.dead_letter_queue),
            )
        )
        # The payloads of the records it dead-letters, whole, in the raw bucket.
        dead_letter_payloads(consumer, bucket=self.data_lake.raw, model=self.spec.name,
                             name="stream-consumer")
        acknowledge(
            consumer,
            "PCI.DSS.321-LambdaDLQ",
            "A stream consumer's failures go to its event source mapping's on-failure "
            "destination (the encrypted DeadLetters queue), not to a function DLQ, "
            "which only serves asynchronous invocations",
        )
        return consumer

    def build_state_machine(self, function: lambda_.IFunction) -> sfn.StateMachine:
        """The talk's path: collect features → run inference → execute rules → perform action.

        Input: the pipe's batch of one Kinesis record (``[record]``). Malformed
        events go to the dead-letter queue (the execution succeeds: retrying
        cannot help); other failures, after their retries, notify the topic
        and fail the execution, so the pipe retries the record.
        """
        take = sfn.Pass(
            self,
            "TakeRecord",
            comment="The pipe sends a batch of one record",
            parameters={"record.$": "$[0]"},
        )
        chain: sfn.Chain | None = None
        for step in STEPS:
            task = invoke(
                self,
                _state_id(step),
                function,
                payload={"step": step, "state.$": "$"},
                result_path="$",
                timeout=seconds(30),
                comment=f"Client integration step {step}",
            )
            if RETRYABLE_ERRORS[step]:
                retry_transient(task, errors=RETRYABLE_ERRORS[step], attempts=3,
                                interval=seconds(1))
            chain = sfn.Chain.start(task) if chain is None else chain.next(task)
        decide = sfn.Parallel(
            self,
            "Decide",
            comment="Error boundary: malformed events are dead-lettered, failures notify",
            result_selector={"decision.$": "$[0].decision", "receipt.$": "$[0].receipt"},
        )
        assert chain is not None
        decide.branch(chain)
        dead_letter = tasks.SqsSendMessage(
            self,
            "DeadLetter",
            queue=self.dead_letter_queue,
            message_body=sfn.TaskInput.from_object(
                {
                    "reason": string_at("$.error.Cause"),
                    "model": self.spec.name,
                    "execution": sfn.JsonPath.execution_id,
                    "record": sfn.JsonPath.object_at("$.record"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=task_timeout(seconds(20)),
        )
        retry_transient(dead_letter, errors=("SQS.SdkClientException", "SQS.AmazonSQSException"),
                        attempts=3, interval=seconds(1))
        decide.add_catch(
            dead_letter.next(sfn.Succeed(self, "DeadLettered")),
            errors=[MALFORMED_ERROR, UNCONFIRMED_ERROR],
            result_path="$.error",
        )
        decide.add_catch(
            notify_and_fail(
                self,
                "Integration",
                topic=self.topic,
                subject=f"MDLC {self.spec.name}: an event could not be decided",
                cause="A client-integration step failed after its retries",
            ),
            errors=["States.ALL"],
            result_path="$.error",
        )
        machine = state_machine(
            self,
            "Workflow",
            definition=sfn.Chain.start(take).next(decide),
            key=self.key,
            express=True,
            # Pipes wait up to 5 minutes for a synchronous Express execution.
            timeout=minutes(4),
            comment=f"MDLC {self.spec.name}: decide and act on one event",
            notifies=[self.topic],
        )
        # Sending to the encrypted dead-letter queue: the queue's key actions.
        acknowledge_grant_actions(machine)
        return machine

    # -- resources -------------------------------------------------------------------

    def _table(self, construct_id: str, key_name: str, *, ttl: str | None) -> dynamodb.Table:
        return encrypted_table(self, construct_id, key=self.key, partition_key=key_name,
                               ttl_attribute=ttl)

    def _step_function(self) -> lambda_.Function:
        return self.stage_function(
            "Steps", handler="integration_step",
            description=f"MDLC {self.spec.name}: one client-integration step per invocation",
            environment=self.environment(), extra_code=self.action_code,
            memory_size=512, timeout=seconds(25),
        )

    def _pipe(self, machine: sfn.StateMachine) -> pipes.CfnPipe:
        integration = self.integration
        role = iam.Role(
            self,
            "PipeRole",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description=f"MDLC {self.spec.name}: read the event stream, start the workflow",
        )
        self.stream.grant_read(role)
        machine.grant(role, "states:StartSyncExecution")
        self.dead_letter_queue.grant_send_messages(role)
        self.key.grant_encrypt_decrypt(role)
        log_group = logs.LogGroup(
            self,
            "PipeLogs",
            retention=logs.RetentionDays.ONE_YEAR,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        log_group.grant_write(role)
        acknowledge_grant_actions(role)
        acknowledge_all(
            role,
            {
                iam5_action("kms:Encrypt*"): "grant_encrypt_decrypt's key "
                "actions, on the model's key only",
                iam5_action("kms:Decrypt*"): "grant_encrypt_decrypt's key "
                "actions, on the model's key only",
            },
        )
        starting = self.starting_position.name
        pipe = pipes.CfnPipe(
            self,
            "Pipe",
            description=f"MDLC {self.spec.name}: one workflow execution per stream event",
            role_arn=role.role_arn,
            source=self.stream.stream_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                kinesis_stream_parameters=pipes.CfnPipe.PipeSourceKinesisStreamParametersProperty(
                    starting_position=starting,
                    batch_size=1,
                    maximum_retry_attempts=integration.retry_attempts,
                    maximum_record_age_in_seconds=integration.max_record_age_seconds,
                    on_partial_batch_item_failure="AUTOMATIC_BISECT",
                    dead_letter_config=pipes.CfnPipe.DeadLetterConfigProperty(
                        arn=self.dead_letter_queue.queue_arn
                    ),
                )
            ),
            target=machine.state_machine_arn,
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                step_function_state_machine_parameters=pipes.CfnPipe.PipeTargetStateMachineParametersProperty(
                    # Synchronous: a failed execution fails the record, and the pipe
                    # retries it, then dead-letters it.
                    invocation_type="REQUEST_RESPONSE"
                )
            ),
            kms_key_identifier=self.key.key_arn,
            log_configuration=pipes.CfnPipe.PipeLogConfigurationProperty(
                level="ERROR",
                include_execution_data=None,
                cloudwatch_logs_log_destination=pipes.CfnPipe.CloudwatchLogsLogDestinationProperty(
                    log_group_arn=log_group.log_group_arn
                ),
            ),
        )
        pipe.node.add_dependency(role)
        return pipe

    def _grant_serving_lookup(self, function: lambda_.Function) -> None:
        """Read which model package the endpoint serves, for the decisions'
        ``model_version``: this endpoint, and its configurations and models
        only (named ``<endpoint>-v<version>-<random>`` by the deployment)."""
        stack = Stack.of(self)
        name = self.endpoint_name if Token.is_unresolved(self.endpoint_name) \
            else self.endpoint_name.lower()
        prefix = f"{name}-v"
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeEndpoint"], resources=[self.endpoint_arn]))
        # Configurations and models: one of each per deployed version, so
        # their names are known by prefix only.
        versioned = (("DescribeEndpointConfig", "endpoint-config", "configurations"),
                     ("DescribeModel", "model", "models"))
        for action, resource, _ in versioned:
            function.add_to_role_policy(iam.PolicyStatement(
                actions=[f"sagemaker:{action}"],
                resources=[stack.format_arn(service="sagemaker", resource=resource,
                                            resource_name=f"{prefix}*")]))
        acknowledge_all(function, {
            iam5_resource(printed_arn("sagemaker", f"{resource}/{prefix}*")):
            f"Describe only, on this endpoint's {what}: one per deployed version, named per "
            "deployment"
            for _, resource, what in versioned
        })

    def _grant(self, function: lambda_.Function) -> None:
        """Least privilege for the function that decides and acts."""
        if not self.model_package_version:
            self._grant_serving_lookup(function)
        self.feature_table.grant_read_data(function)
        # It records the events the feature updater has not applied yet (one
        # TransactWriteItems of conditional puts each), so that every event is
        # scored on its training row however far the updater lags.
        self.feature_table.grant(function, "dynamodb:PutItem")
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:InvokeEndpoint"], resources=[self.endpoint_arn]
            )
        )
        self.decision_table.grant_write_data(function)
        # The action ledger reads an event's item back when its claim finds one.
        self.decision_table.grant(function, "dynamodb:GetItem")
        self._grant_predictions(function)
        self.dead_letter_queue.grant_send_messages(function)
        self.action_targets.grant_send(function)

    def _grant_predictions(self, function: lambda_.Function) -> None:
        """Put-only on this model's monitoring input (and encrypt with its key)."""
        bucket = self.data_lake.predictions
        pattern = scored_predictions_pattern(self.spec.name)
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:PutObject"],
                                resources=[bucket.arn_for_objects(pattern)])
        )
        if bucket.encryption_key is not None:
            bucket.encryption_key.grant_encrypt(function)
        reason = ("This model's monitoring input, one folder per day; objects are named by "
                  "date and stream batch at run time")
        acknowledge_objects(function, bucket, pattern, reason)

    # -- metrics ------------------------------------------------------------------

    def metric_iterator_age(self, **props: Any) -> cloudwatch.Metric:
        """How far behind the stream the integration is (maximum, milliseconds).

        Fused: the consumer's ``IteratorAge``. State machine: the stream's
        ``GetRecords.IteratorAgeMilliseconds``, which covers every
        shared-throughput reader of the stream (the pipe and the feature
        updater), so it is an upper bound for the pipe.
        """
        props.setdefault("statistic", "Maximum")
        if self.consumer is not None:
            return self.consumer.metric("IteratorAge", **props)
        return self.stream.metric_get_records_iterator_age_milliseconds(**props)


def _state_id(step: str) -> str:
    """collect_features -> CollectFeatures (construct ids are a public contract)."""
    return "".join(part.capitalize() for part in step.split("_"))


