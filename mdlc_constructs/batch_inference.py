"""Stage 6, offline inference: the day's batch transform with the latest approved model.

:class:`BatchInferenceWorkflow` is one scheduled Standard state machine::

    Prepare (error boundary: any failure notifies the topic)
      [DataPreparation.chain]  source, quality gate, features of the day
      PrepareTransformInput    Lambda: entities.parquet -> CSV parts (feature order)
      FindApprovedModel        sagemaker:ListModelPackages, Approved, newest first
      ModelFound?              none -> NoApprovedModel (notify, fail)
      CreateModel              sagemaker:CreateModel from the package, named per run
      Transform                CreateTransformJob.sync, KMS on volume and output
      DecideParts              Distributed Map over the output objects: Lambda
                               batch_decisions joins each score with its entity
                               and input row, applies the rules and performs the
                               actions (idempotent per date, entity and model
                               version), then writes the decisions and
                               monitoring's predictions
      NotifyDone               SNS summary

The transform reads ``batch-input/<model>/dt=<date>/transform/part-NNNNN.csv``
(the input prefix holds only those parts: a transform job reads every object
under its S3Prefix); the entity ids of each part are beside it, in
``batch-input/<model>/dt=<date>/ids/``. The transform's raw output lands
in ``predictions/<model>/dt=<date>/transform/part-NNNNN.csv.out`` (the
folder the Distributed Map lists), decisions in
``predictions/<model>/dt=<date>/decisions/`` and monitoring's input (the
same decisions as predictions, ``mdlc_core.predictions``) in
``predictions/<model>/dt=<date>/scored/`` of the predictions bucket.
The execution input may carry ``{"date": "YYYY-MM-DD"}`` (default:
yesterday, as data preparation does). Without an enabled ``integration``
section there are no rules: the run ends after the transform (predictions
only).

Actions go to the same targets as the client integration when given them
(``action_targets=ActionTargets.of(integration)``); otherwise the workflow
creates its own target per built-in kind the spec uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import jsii
from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct
from mdlc_core.layout import Layout

from .action_targets import ActionTargets
from .compliance import (
    acknowledge_all,
    acknowledge_grant_actions,
    iam5_action,
    iam5_resource,
    printed_arn,
    resource_token,
)
from .deprecation import renamed
from .network import ModelNetwork
from .preparation import PreparationSteps
from .resources import encrypted_table
from .sagemaker_access import (
    SAGEMAKER_TRANSIENT,
    WILDCARD_REASON,
    grant_image_pull,
    grant_job_logs,
    pass_role_statement,
    sagemaker_role,
)
from .stage import ModelStage, StageProps
from .storage import grant_read_objects, grant_read_write_objects, list_statement
from .tokens import hours, minutes, seconds, string_at, task_timeout
from .workflow import (
    error_boundary,
    invoke,
    notify_and_fail,
    publish,
    retry_transient,
    scheduled_start,
)

if TYPE_CHECKING:
    pass


#: What ``lambdas/batch_decisions`` raises when some actions of a part failed
#: (the others acted); retrying the part is safe, acted entities are skipped.
ACTIONS_INCOMPLETE = "ActionsIncomplete"


@jsii.implements(sfn.IItemReader)
class PrefixedObjectsReader:
    """A Distributed Map reader of the objects under a prefix, like
    ``sfn.S3ObjectsItemReader``, whose ``s3:ListBucket`` is limited to
    ``allowed`` (an ``s3:prefix`` condition) instead of the whole bucket.

    ``prefix`` may be a JSONPath (resolved per execution); ``allowed`` is the
    pattern every prefix it resolves to lies under (``predictions/<model>/*``).
    """

    def __init__(self, *, bucket: s3.IBucket, prefix: str, allowed: str) -> None:
        self._reader = sfn.S3ObjectsItemReader(bucket=bucket, prefix=prefix)
        self._bucket = bucket
        self._allowed = allowed

    @property
    def bucket(self) -> s3.IBucket:
        return self._bucket

    @property
    def bucket_name_path(self) -> str | None:
        return None

    @property
    def resource(self) -> str:
        return self._reader.resource

    @property
    def max_items(self) -> int | None:
        return None

    def render(self, query_language: sfn.QueryLanguage | None = None) -> Any:
        return self._reader.render(query_language)

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [list_statement(self._bucket, [self._allowed])]

    def validate_item_reader(self) -> list[str]:
        return list(self._reader.validate_item_reader())


class BatchInferenceWorkflow(ModelStage):
    """The daily batch inference of one model (see the module docstring).

    Args:
        spec: the model spec (``inference.batch``: schedule, instance type and count).
        data_lake: features are read from ``features``, predictions and
            decisions written to ``predictions``, models read from ``artifacts``.
        topic: failures, "no approved model" and the run summary are published here.
        model_package_group_name: the group whose newest Approved version is used
            (``TrainingWorkflow.model_package_group_name``).
        preparation: the model's data preparation; its chain runs first.
        max_concurrency: Distributed Map child executions at once. Default 50.
        schedule: run on ``inference.batch.schedule``. Default True.
        action_targets: where actions send (``ActionTargets.of(integration)``).
            Default: a new encrypted target per built-in kind the spec's
            ``integration.actions`` use (``build_action_targets``).
        idempotency_table: the Powertools idempotency table (string key ``id``,
            TTL ``expiration``), e.g. ``ClientIntegration.idempotency_table``
            (batch keys have their own prefix). Default: a new table (KMS,
            PITR, retained) when an action has a side effect, else none.
        action_concurrency: actions in flight per part (threads in one
            invocation; times ``max_concurrency`` parts). Default 16.
        action_idempotency: how long an acted (date, entity, model version)
            stays recorded, so a rerun of that day does not act again.
            Default 8 days.
        action_code: files or packages bundled with the decisions function,
            for custom action kinds. Default: none.
        image_repositories: ECR repositories the model's image may come from
            (a custom algorithm's, ``TrainingAlgorithm.resources.repository``);
            the model role may pull from these only. Default: none (SageMaker's
            built-in algorithm images).

    Attributes:
        state_machine, function (prepare input and decide; grant custom
        actions' permissions to it), model_role, schedule_rule (or None),
        action_targets (``ActionTargets``), idempotency_table (or None),
        model_prefix (``mdlc-<model>-b-``, of every model and job name),
        decides (False without an enabled ``integration``: predictions only).

    Extension point (a plain method called from the constructor):
    ``build_action_targets``.
    """

    #: Deprecated: :attr:`schedule_rule`.
    rule = renamed("schedule_rule")

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model_package_group_name: str,
        preparation: PreparationSteps,
        max_concurrency: int = 50,
        schedule: bool = True,
        action_targets: ActionTargets | None = None,
        idempotency_table: dynamodb.ITable | None = None,
        action_concurrency: int = 16,
        action_idempotency: Duration = Duration.days(8),
        action_code: Sequence[Path] = (),
        image_repositories: Sequence[ecr.IRepository] = (),
        **stage: Unpack[StageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake, topic = self.spec, self.data_lake, self.topic
        self._image_repositories = tuple(image_repositories)
        if len(spec.name) > 20:
            raise ValueError(f"{spec.source or spec.name}: name {spec.name!r} is longer than 20 "
                             "characters; SageMaker model and job names (63) would not fit")
        #: Every model and transform job of this workflow is named <prefix><uuid>.
        self.model_prefix = f"mdlc-{spec.name}-b-"
        self.batch = spec.inference.batch
        self.model_package_group_name = model_package_group_name
        if max_concurrency < 1 or action_concurrency < 1:
            raise ValueError(f"{spec.source or spec.name}: max_concurrency and "
                             f"action_concurrency must be at least 1, got {max_concurrency} "
                             f"and {action_concurrency}")
        self.max_concurrency = max_concurrency
        stack = Stack.of(self)
        model = spec.name
        integration = spec.integration
        self.decides = integration is not None and integration.enabled
        kinds = {t.kind for t in integration.actions.values()} if integration else set()
        self.action_targets = ActionTargets()
        self.idempotency_table: dynamodb.ITable | None = None
        if self.decides:
            self.action_targets = action_targets or self.build_action_targets()
            # A named action without a declared kind is ``log``: no side effect.
            if kinds - {"log"}:
                self.idempotency_table = idempotency_table or self._idempotency_table()
        environment = {
            "FEATURES_BUCKET": data_lake.features.bucket_name,
            "PREDICTIONS_BUCKET": data_lake.predictions.bucket_name,
            "MODEL_NAME": model,
            "ACTION_CONCURRENCY": str(action_concurrency),
            "ACTION_IDEMPOTENCY_SECONDS": str(int(action_idempotency.to_seconds())),
        }
        if self.idempotency_table is not None:
            environment["IDEMPOTENCY_TABLE"] = self.idempotency_table.table_name
        environment.update(self.action_targets.environment())
        self.function = self.stage_function(
            "Decisions", handler="batch_decisions",
            description=f"MDLC {model}: batch transform input, and rules over its output",
            environment=environment, memory_size=3008, timeout=minutes(10), data_layer=True,
            extra_code=action_code,
        )
        layout = Layout(model)
        grant_read_objects(data_lake.features, self.function, layout.everything(layout.features))
        grant_read_objects(data_lake.predictions, self.function,
                           layout.everything(layout.predictions))
        grant_read_write_objects(data_lake.predictions, self.function,
                                 layout.everything(layout.batch_input))
        data_lake.predictions.grant_put(self.function, layout.everything(layout.predictions))
        self._grant_actions()
        self.model_role = self._model_role()

        body = error_boundary(
            self, "Run", steps=self._chain(preparation), topic=topic,
            failure_id="BatchInference", subject=f"MDLC {model}: batch inference failed",
            cause="A step of the batch inference workflow failed", result_path="$.run",
        )
        self.state_machine = self.stage_workflow(
            "StateMachine", definition=body, timeout=hours(12),
            comment=f"MDLC {model}: daily batch inference with the latest approved model",
            run="batch inference",
        )
        preparation.grant_to(self.state_machine)
        self._grant_workflow(stack)
        self.schedule_rule: events.Rule | None = None
        if schedule and self.batch.enabled:
            self.schedule_rule = scheduled_start(
                self, "Schedule", machine=self.state_machine, schedule=self.batch.schedule,
                description=f"MDLC {model}: daily batch inference",
            )

    def grant_start_execution(self, grantee: iam.IGrantable) -> iam.Grant:
        """Start a run (for example a backfill with ``{"date": ...}``)."""
        return self.state_machine.grant_start_execution(grantee)

    # -- extension point ---------------------------------------------------------------

    def build_action_targets(self) -> ActionTargets:
        """The targets when none are given: one per built-in kind the spec uses
        (an encrypted SNS topic, an encrypted SQS queue with its own redrive
        queue, an encrypted EventBridge bus), like ``ClientIntegration``'s.
        ``custom`` kinds get none: grant what they call on :attr:`function`."""
        assert self.spec.integration is not None
        return ActionTargets.create(
            self, kinds=(t.kind for t in self.spec.integration.actions.values()), key=self.key,
            purpose=f"MDLC {self.spec.name}: batch decisions")

    def _idempotency_table(self) -> dynamodb.Table:
        return encrypted_table(self, "Idempotency", key=self.key, partition_key="id",
                               ttl_attribute="expiration")

    def _grant_actions(self) -> None:
        """Each target's one send action, and the idempotency records."""
        sends = self.action_targets
        if self.idempotency_table is not None:
            self.idempotency_table.grant_read_write_data(self.function)
        sends.grant_send(self.function)

    # -- the chain -------------------------------------------------------------------

    def _chain(self, preparation: PreparationSteps) -> sfn.IChainable:
        model = self.spec.name
        prepared = preparation.chain(self, "Batch")
        prepare_input = invoke(
            self, "PrepareTransformInput", self.function,
            payload={"step": "prepare_input", "date.$": "$.data.snapshot.date",
                     "entities_key.$": "$.data.features.entities_key"},
            result_path="$.batch", timeout=minutes(11),
            comment="entities.parquet -> CSV parts in the model's feature order",
        )
        find = tasks.CallAwsService(
            self, "FindApprovedModel",
            service="sagemaker", action="listModelPackages",
            parameters={"ModelPackageGroupName": self.model_package_group_name,
                        "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
                        "SortOrder": "Descending", "MaxResults": 1},
            iam_resources=["*"],
            result_selector={"packages.$": "$.ModelPackageSummaryList"},
            result_path="$.approved",
            task_timeout=task_timeout(minutes(1)),
        )
        retry_transient(find, errors=SAGEMAKER_TRANSIENT)
        none = sfn.Pass(
            self, "NoApprovedModel",
            parameters={"Error": "NoApprovedModel",
                        "Cause": f"No Approved version in {self.model_package_group_name}; "
                        "approve one in the model registry"},
            result_path="$.error",
        ).next(notify_and_fail(self, "NoModel", topic=self.topic,
                               subject=f"MDLC {model}: no approved model for batch inference",
                               cause="No approved model package"))
        name = sfn.JsonPath.format(f"{self.model_prefix}{{}}", sfn.JsonPath.uuid())
        network = ModelNetwork.of(self)
        create = tasks.CallAwsService(
            self, "CreateModel",
            service="sagemaker", action="createModel",
            parameters={
                "ModelName": name,
                "ExecutionRoleArn": self.model_role.role_arn,
                "PrimaryContainer": {"ModelPackageName": string_at(
                    "$.approved.packages[0].ModelPackageArn")},
                "EnableNetworkIsolation": True,
                **({"VpcConfig": network.vpc_config()} if network is not None else {}),
                "Tags": [{"Key": "mdlc:model", "Value": model}],
            },
            iam_resources=[Stack.of(self).format_arn(
                service="sagemaker", resource="model", resource_name=f"{self.model_prefix}*")],
            additional_iam_statements=[pass_role_statement(self.model_role)],
            result_selector={"name.$": "States.ArrayGetItem(States.StringSplit("
                             "$.ModelArn, '/'), 1)"},
            result_path="$.model",
            task_timeout=task_timeout(minutes(2)),
        )
        retry_transient(create, errors=("SageMaker.ThrottlingException", "ThrottlingException"))
        transform = tasks.SageMakerCreateTransformJob(
            self, "Transform",
            transform_job_name=string_at("$.model.name"),
            model_name=string_at("$.model.name"),
            role=self.model_role,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            batch_strategy=tasks.BatchStrategy.MULTI_RECORD,
            max_payload=Size.mebibytes(6),
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(
                        s3_uri=string_at("$.batch.input_prefix"),
                        s3_data_type=tasks.S3DataType.S3_PREFIX)),
                content_type="text/csv", split_type=tasks.SplitType.LINE),
            transform_output=tasks.TransformOutput(
                s3_output_path=string_at("$.batch.output_prefix"),
                encryption_key=self.key, accept="text/csv", assemble_with=tasks.AssembleWith.LINE),
            transform_resources=tasks.TransformResources(
                instance_count=self.batch.instance_count,
                instance_type=_instance_type(self.batch.instance_type),
                volume_encryption_key=self.key),
            tags={"mdlc:model": model},
            result_path="$.transform",
            task_timeout=task_timeout(hours(6)),
        )
        retry_transient(transform, errors=SAGEMAKER_TRANSIENT, attempts=3, interval=seconds(15))
        decide_parts = sfn.DistributedMap(
            self, "DecideParts",
            # Lists predictions/<model>/dt=<date>/transform/ (the function's
            # output_key_prefix), and may list nothing outside the model's prefix.
            item_reader=PrefixedObjectsReader(
                bucket=self.data_lake.predictions,
                prefix=string_at("$.batch.output_key_prefix"),
                allowed=Layout.everything(Layout(model).predictions)),
            item_selector={"step": "decide", "Key.$": "$$.Map.Item.Value.Key",
                           "date.$": "$.data.snapshot.date", "model.$": "$.model.name",
                           # Every decision names the package version that scored it.
                           "model_version.$": "$.approved.packages[0].ModelPackageArn"},
            max_concurrency=self.max_concurrency,
            tolerated_failure_percentage=0,
            result_path="$.decisions",
            result_selector={"parts.$": "States.ArrayLength($)"},
        )
        decide_one = invoke(self, "DecidePart", self.function, result_path="$.result",
                            timeout=minutes(11),
                            comment="Rules and actions over one output part")
        # Safe to retry: actions are idempotent per (date, entity, model version),
        # so only the ones that failed act on the retry.
        retry_transient(decide_one, errors=(ACTIONS_INCOMPLETE,), attempts=3,
                        interval=seconds(30))
        decide_part = sfn.Choice(self, "IsTodaysOutput").when(
            sfn.Condition.string_matches("$.Key", f"{Layout(model).predictions}dt=*.csv.out"),
            decide_one,
        ).otherwise(sfn.Pass(self, "SkipObject"))
        decide_parts.item_processor(decide_part)
        done = publish(
            self, "NotifyDone", topic=self.topic, subject=f"MDLC {model}: batch inference done",
            message={"date": string_at("$.data.snapshot.date"),
                     "model": string_at("$.approved.packages[0].ModelPackageArn"),
                     "predictions": string_at("$.batch.output_prefix"),
                     "rows": sfn.JsonPath.number_at("$.batch.rows")},
        )
        scored = sfn.Chain.start(create).next(transform)
        # Without rules (no enabled integration section) a run writes predictions only.
        scored = scored.next(decide_parts).next(done) if self.decides else scored.next(done)
        found = sfn.Choice(self, "ModelFound").when(
            sfn.Condition.is_present("$.approved.packages[0]"), scored,
        ).otherwise(none)
        # A day on which no entity had an event in the window has nothing to
        # score: a transform over an empty prefix would fail and page someone.
        has_rows = sfn.Choice(self, "HasRows").when(
            sfn.Condition.number_equals("$.batch.rows", 0),
            sfn.Succeed(self, "NothingToScore", comment="No entity to score on this day"),
        ).otherwise(sfn.Chain.start(find).next(found))
        return sfn.Chain.start(prepared).next(prepare_input).next(has_rows)

    # -- roles and grants ----------------------------------------------------------------

    def _model_role(self) -> iam.Role:
        role = sagemaker_role(
            self, "ModelRole",
            description=f"MDLC {self.spec.name}: batch transform of the approved model",
        )
        # The approved versions' artifacts, written by this model's training.
        layout = Layout(self.spec.name)
        grant_read_objects(self.data_lake.artifacts, role,
                           layout.everything(layout.training_output))
        grant_read_objects(self.data_lake.predictions, role, layout.everything(layout.batch_input))
        self.data_lake.predictions.grant_put(role, layout.everything(layout.predictions))
        # The transform job is named after its model (mdlc-<model>-b-<uuid>);
        # SageMaker names its log streams <job name>/<instance>.
        grant_job_logs(role, log_group="TransformJobs", stream_pattern=f"{self.model_prefix}*")
        grant_image_pull(role, self._image_repositories)
        acknowledge_grant_actions(role)
        acknowledge_all(role, {
            iam5_resource("*"): WILDCARD_REASON,
            iam5_resource(printed_arn(
                "logs", f"log-group:/aws/sagemaker/TransformJobs:log-stream:{self.model_prefix}*")):
            "Log streams of this model's transform jobs only "
            "(named per run)",
            iam5_resource(f"{resource_token(self.data_lake.artifacts)}/"
                          f"{Layout.everything(Layout(self.spec.name).training_output)}"):
            "Model artifacts of any registered version of this model's group",
            iam5_resource(f"{resource_token(self.data_lake.predictions)}/batch-input/"
                          f"{self.spec.name}/*"): "This model's transform input, named by date",
            iam5_resource(f"{resource_token(self.data_lake.predictions)}/predictions/"
                          f"{self.spec.name}/*"): "This model's predictions, named by date",
        })
        return role

    def _grant_workflow(self, stack: Stack) -> None:
        machine = self.state_machine
        # The Distributed Map lists the output objects and starts child executions.
        grant_read_objects(self.data_lake.predictions, machine,
                           Layout.everything(Layout(self.spec.name).predictions))
        acknowledge_grant_actions(machine)
        predictions = resource_token(self.data_lake.predictions)
        logical = stack.get_logical_id(machine.node.default_child)
        executions = printed_arn(
            "states", 'execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"' + logical + '"}]}]}')
        for pattern in (":*", "/*:*"):
            acknowledge_all(machine, {
                iam5_resource(f"{executions}{pattern}"): "The Distributed Map "
                "manages the child executions of this state machine only (aws-cdk-lib policy)",
            })
        acknowledge_all(machine, {
            iam5_resource("*"): "sagemaker:ListModelPackages has no resource-level "
            "permission; CloudWatch Logs delivery and X-Ray neither",
            iam5_resource(f"{predictions}/predictions/{self.spec.name}/*"):
            "The Distributed Map reads this model's transform output, named by date",
            iam5_resource(printed_arn("sagemaker", f"model/{self.model_prefix}*")):
            "Models this workflow creates, "
            "one per run, named by a UUID",
            iam5_resource(printed_arn("sagemaker", "transform-job/*")):
            "The transform job is named per run; the "
            "aws-cdk-lib task grants its job actions on transform-job/*",
        })
        acknowledge_all(self.function, {
            iam5_resource(f"{resource_token(self.data_lake.features)}/features/"
                          f"{self.spec.name}/*"): "This model's feature snapshots, named by date",
            iam5_resource(f"{resource_token(self.data_lake.predictions)}/predictions/"
                          f"{self.spec.name}/*"):
            "This model's predictions and decisions, named by date",
            iam5_resource(f"{resource_token(self.data_lake.predictions)}/batch-input/"
                          f"{self.spec.name}/*"): "This model's transform input, named by date",
            iam5_action("s3:DeleteObject*"): "grant_read_write on this model's "
            "transform input only, which a rerun replaces",
        })


def _instance_type(name: str):
    from aws_cdk import aws_ec2 as ec2

    return ec2.InstanceType(name.removeprefix("ml."))
