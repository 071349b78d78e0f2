"""What the scale-out runners share: their props, the objects a job may touch, and its runs.

A stage whose ``runner`` is ``processing`` (SageMaker Processing,
:mod:`mdlc_constructs.processing`) or ``spark`` (EMR Serverless,
:mod:`mdlc_constructs.spark`) runs one kind of job of one model. Both take
the same props (:class:`ScaleOutProps`), give the job's role the stage's
reads and writes plus its own output prefix and the stage's metrics
namespace, acknowledge the wildcards with the stage's reasons, and run a job
as the same three steps: a unique name, the job, its small JSON result read
back where the Lambda runner's step puts its return value. That is written
once here (:class:`ScaleOutRunner`); each runner adds what its service needs
(image or application, logs, PassRole, the job's state). Which runner a stage
builds, and with what, is written once too:
:class:`~mdlc_constructs.scale_out_stage.ScaleOutStage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict, Unpack

from aws_cdk import Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from .compliance import (
    acknowledge,
    acknowledge_all,
    acknowledge_grant_actions,
    iam5_resource,
    resource_token,
)
from .grants import grant_statements
from .spec import ModelSpec
from .storage import grant_read_objects
from .tokens import minutes, task_timeout
from .workflow import retry_transient


@dataclass(frozen=True)
class S3Access:
    """Objects a job reads or writes: ``pattern`` (e.g. ``datasets/fraud/*``) in ``bucket``.

    ``reason`` is the cdk-nag acknowledgment of the wildcard: why the job
    needs every object under the prefix.
    """

    bucket: s3.IBucket
    pattern: str
    reason: str


def acknowledge_objects(scope: Construct, access: S3Access) -> None:
    """Acknowledge the wildcard of ``access`` on ``scope`` as cdk-nag prints it."""
    if not access.pattern.endswith("*"):
        return  # one named object: no wildcard
    bucket = access.bucket
    if bucket.node.default_child is not None:
        target = f"{resource_token(bucket)}/{access.pattern}"
    elif not Token.is_unresolved(bucket.bucket_name):
        target = f"arn:<AWS::Partition>:s3:::{bucket.bucket_name}/{access.pattern}"
    else:
        return  # an imported bucket named by a token: the caller acknowledges it
    acknowledge(scope, iam5_resource(target), access.reason)


class _RequiredProps(TypedDict):
    spec: ModelSpec
    kind: str
    key: kms.IKey
    output_bucket: s3.IBucket


class ScaleOutProps(_RequiredProps, total=False):
    """The props every scale-out runner takes, besides its own.

    - ``spec``: the model spec (``name`` prefixes job and run names; the spec
      ships with the job's code as ``mdlc_config.json``).
    - ``kind``: the job's kind, one of the runner's :attr:`~ScaleOutRunner.kinds`
      (its entry point's ``--kind``).
    - ``key``: the data key; the job may use it (each runner says what it
      encrypts with it).
    - ``output_bucket``: where the job's result lands
      (``<output_root>/<model>/<kind>/<name>/result.json``) and is read back.
    - ``reads``: objects the job reads (``s3:GetObject*``, and ``s3:ListBucket``
      under the pattern's prefix: :func:`~mdlc_constructs.storage.grant_read_objects`).
      Default: none.
    - ``writes``: objects the job writes (``s3:PutObject`` via ``grant_put``).
      Default: none.
    - ``metrics_namespace``: the CloudWatch namespace the job may publish to.
      Default: none (no ``cloudwatch:PutMetricData``).
    """

    reads: Sequence[S3Access]
    writes: Sequence[S3Access]
    metrics_namespace: str | None


#: Why the job role's ``cloudwatch:PutMetricData`` names no resource.
METRICS_REASON = ("cloudwatch:PutMetricData has no resource-level permission; it is limited "
                  "by a namespace condition")


def require_overrides(cls: type, base: type, hooks: Sequence[str], *, marker: str) -> None:
    """Refuse, when ``cls`` is defined, a concrete subclass of ``base`` (one that
    sets the class attribute ``marker``) that leaves one of ``hooks`` as
    ``base`` wrote it: the mistake shows where the class is written, not deep
    in a synthesis. (No ``abc``: jsii's metaclass of ``Construct`` does not mix
    with ``ABCMeta``.)"""
    if not hasattr(cls, marker):
        return
    missing = [hook for hook in hooks if getattr(cls, hook) is getattr(base, hook)]
    if missing:
        raise TypeError(f"{cls.__qualname__} sets {marker} but does not implement "
                        f"{', '.join(missing)} ({base.__name__}'s hooks)")


class ScaleOutRunner(Construct):
    """The common part of :class:`~mdlc_constructs.processing.ProcessingRunner`
    and :class:`~mdlc_constructs.spark.SparkRunner`: one kind of job of one
    model, its role's data grants, and the steps that run it (:meth:`run`).

    Takes :class:`ScaleOutProps` and ``resources`` (default: the field
    :attr:`resources_field` of the spec section ``kind`` names). A subclass
    sets the class attributes below, creates its resources and ``role``, then
    calls :meth:`_grant_job`; it implements :meth:`_grant_service`,
    :meth:`_job_state`, :meth:`start_statements` and
    :meth:`acknowledge_start_resources`.

    Attributes:
        spec, kind, key, output_bucket, metrics_namespace, resources: as given.
        name_prefix: ``<model>-<kind>-``; every job (run) name starts with it.
        output_prefix: ``<output_root>/<model>/<kind>/``.
    """

    #: The kinds the runner's entry point runs (``--kind``).
    kinds: ClassVar[tuple[str, ...]]
    #: The results' top folder in the output bucket.
    output_root: ClassVar[str]
    #: The field of the stage's spec section that holds the runner's resources.
    resources_field: ClassVar[str]
    #: Where the jobs run, as the first step's comment says it ("... on Spark").
    runs_on: ClassVar[str]
    #: What one execution of a job is called in the read-back step's comment.
    run_noun: ClassVar[str] = "job"
    #: Why the role may write anything under :attr:`output_prefix`.
    outputs_reason: ClassVar[str]
    #: What :meth:`grant_start`'s grant says it is for.
    start_intent: ClassVar[str] = "start the jobs"

    role: iam.Role

    #: What a concrete runner (one that sets :attr:`kinds`) must implement.
    HOOKS: ClassVar[tuple[str, ...]] = (
        "_grant_service", "_job_state", "start_statements", "acknowledge_start_resources")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        require_overrides(cls, ScaleOutRunner, cls.HOOKS, marker="kinds")

    def __init__(self, scope: Construct, construct_id: str, *, resources: Any = None,
                 **props: Unpack[ScaleOutProps]) -> None:
        super().__init__(scope, construct_id)
        name = type(self).__name__
        unknown = sorted(set(props) - set(ScaleOutProps.__annotations__))
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword arguments {unknown}")
        missing = sorted(ScaleOutProps.__required_keys__ - set(props))
        if missing:
            raise TypeError(f"{name}() missing keyword arguments {missing}")
        spec, kind = props["spec"], props["kind"]
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        self.spec = spec
        self.kind = kind
        self.key = props["key"]
        self.output_bucket = props["output_bucket"]
        self.metrics_namespace = props.get("metrics_namespace")
        self.resources = resources or getattr(getattr(spec, kind), self.resources_field)
        self.name_prefix = f"{spec.name}-{kind}-"
        self.output_prefix = f"{self.output_root}/{spec.name}/{kind}/"
        self._reads = list(props.get("reads", ()))
        self._writes = list(props.get("writes", ()))

    # -- the job's role ---------------------------------------------------------------

    def _grant_job(self) -> None:
        """The job role's grants, each wildcard acknowledged: the stage's reads
        and writes, the runner's own output prefix, what the service needs
        (:meth:`_grant_service`) and publishing in the stage's namespace."""
        role = self.role
        for access in self._reads:
            grant_read_objects(access.bucket, role, access.pattern)
        for access in self._writes:
            access.bucket.grant_put(role, access.pattern)
        outputs = S3Access(self.output_bucket, f"{self.output_prefix}*", self.outputs_reason)
        self.output_bucket.grant_put(role, outputs.pattern)
        reasons = dict(self._grant_service(role))
        if self.metrics_namespace:
            role.add_to_principal_policy(iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"], resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": self.metrics_namespace}},
            ))
            reasons[iam5_resource("*")] = METRICS_REASON
        acknowledge_all(role, reasons)
        acknowledge_grant_actions(role)
        for access in [*self._reads, *self._writes, outputs]:
            acknowledge_objects(role, access)

    def _grant_service(self, role: iam.Role) -> Mapping[str, str]:
        """The service's own grants to the job role (code, logs, keys); returns
        the acknowledgments of their wildcards, ``{rule: reason}``. Abstract:
        a concrete runner is refused at its definition without it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _grant_service")

    # -- the workflow side ------------------------------------------------------------

    def start_statements(self) -> list[iam.PolicyStatement]:
        """What a state machine needs to start a job and wait for it (abstract)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement start_statements")

    def acknowledge_start_resources(self, scope: Construct) -> None:
        """The wildcards of :meth:`start_statements` (job names or run ids; abstract)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement acknowledge_start_resources")

    def grant_start(self, role: iam.IRole) -> iam.Grant:
        """Let ``role`` (a state machine's) start the jobs and read their results
        back (:meth:`start_statements`, and ``s3:GetObject`` under the output
        prefix). The steps from ``run`` carry the same to the state machine they
        are part of; this is for a role that starts jobs otherwise."""
        grant = grant_statements(role, [
            *self.start_statements(),
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.output_bucket.arn_for_objects(f"{self.output_prefix}*")],
            ),
        ], self.start_intent)
        if isinstance(role, Construct):
            self._acknowledge_start(role)
        return grant

    def _acknowledge_start(self, scope: Construct) -> None:
        self.acknowledge_start_resources(scope)
        acknowledge_objects(scope, S3Access(
            self.output_bucket, f"{self.output_prefix}*",
            "Reads back the result the job wrote under its own name, below this prefix"))

    @staticmethod
    def run_arguments(arguments: Mapping[str, str]) -> list[str]:
        """``States.Array`` items of a run's entry-point ``arguments``: each flag,
        then its value, a JSONPath (``$.data.snapshot.date``) or intrinsic
        (``States.JsonToString($.event)``) as it is, any other value a literal."""
        items: list[str] = []
        for flag, value in arguments.items():
            items += [f"'{flag}'", value if value.startswith(("$", "States.")) else f"'{value}'"]
        return items

    def _job_state(self, scope: Construct, state_id: str, *, arguments: Mapping[str, str],
                   job_name: str, result_key: str, result_path: str) -> sfn.State:
        """The task that starts the job named at ``job_name`` (a JSONPath) with
        the run's ``arguments`` and waits for it; its result, at
        ``<result_path>.job``, is not used. ``result_key`` is the intrinsic of
        the result object's key (abstract)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _job_state")

    def run(
        self,
        scope: Construct,
        construct_id: str,
        *,
        arguments: Mapping[str, str],
        result_path: str,
        comment: str | None = None,
    ) -> sfn.Chain:
        """The steps that run one job and put its result at ``result_path``.

        1. ``<id>`` (Pass): a name, ``<model>-<kind>-<12 hex digits>``, unique
           per run, kept at ``<result_path>.job_name`` until step 3.
        2. ``<id>Job`` (:meth:`_job_state`): the job with ``--kind <kind>`` and
           ``arguments`` (flag -> a JSONPath such as ``$.data.snapshot.date``,
           an intrinsic such as ``States.JsonToString($.event)``, or a
           literal); it waits for the job and fails when the job fails.
        3. ``<id>ReadResult``: the job's ``result.json`` (s3:GetObject), then
           ``<id>Result`` puts it at ``result_path``, exactly where the Lambda
           runner's step puts its return value.

        The state machine that contains these steps gets the statements of
        :meth:`start_statements` with them.
        """
        if not result_path.startswith("$.") or result_path.endswith("."):
            raise ValueError(
                f"result_path must be a JSONPath such as '$.data.x', got {result_path!r}"
            )
        job_name = f"{result_path}.job_name"
        name = sfn.Pass(
            scope,
            construct_id,
            comment=comment or f"Run the {self.kind} job of {self.spec.name} on {self.runs_on}",
            parameters={
                # The last group of a UUID is 48 random bits: unique enough for
                # a daily job, short enough for SageMaker's 63 characters.
                "job_name.$": f"States.Format('{self.name_prefix}{{}}', States.ArrayGetItem("
                "States.StringSplit(States.UUID(), '-'), 4))"
            },
            result_path=result_path,
        )
        result_key = f"States.Format('{self.output_prefix}{{}}/result.json', {job_name})"
        job = self._job_state(scope, f"{construct_id}Job", arguments=arguments,
                              job_name=job_name, result_key=result_key, result_path=result_path)
        read = tasks.CallAwsService(
            scope,
            f"{construct_id}ReadResult",
            service="s3",
            action="getObject",
            parameters={"Bucket": self.output_bucket.bucket_name, "Key.$": result_key},
            iam_resources=[self.output_bucket.arn_for_objects(f"{self.output_prefix}*")],
            # Whatever state machine these steps end up in can run the job.
            additional_iam_statements=self.start_statements(),
            result_selector={"result.$": "States.StringToJson($.Body)"},
            result_path=result_path,
            task_timeout=task_timeout(minutes(1)),
            comment=f"The {self.run_noun}'s result: what the Lambda runner would have returned",
        )
        retry_transient(read, errors=("S3.SdkClientException", "S3.InternalErrorException",
                                      "ThrottlingException"))  # fmt: skip
        result = sfn.Pass(
            scope,
            f"{construct_id}Result",
            input_path=f"{result_path}.result",
            result_path=result_path,
        )
        self._acknowledge_start(Stack.of(scope))
        return sfn.Chain.start(name).next(job).next(read).next(result)


__all__ = ["METRICS_REASON", "S3Access", "ScaleOutProps", "ScaleOutRunner", "acknowledge_objects"]
