"""What the scale-out runners share: the objects a job may touch, and starting its runs.

A stage whose ``runner`` is ``processing`` (SageMaker Processing,
:mod:`mdlc_constructs.processing`) or ``spark`` (EMR Serverless,
:mod:`mdlc_constructs.spark`) runs one kind of job of one model. Both give
the job's role the stage's reads and writes plus its own output prefix,
acknowledge the wildcards with the stage's reasons, and let a state machine
start runs and read their results back. That is written once here; each
runner adds what its service needs (image or application, logs, PassRole).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .compliance import acknowledge, iam5_resource, resource_token
from .grants import grant_statements
from .storage import grant_read_objects


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


class ScaleOutRunner(Construct):
    """The common part of :class:`~mdlc_constructs.processing.ProcessingRunner`
    and :class:`~mdlc_constructs.spark.SparkRunner`.

    A subclass sets ``output_bucket``, ``output_prefix`` and ``role``, and
    implements :meth:`start_statements` and :meth:`acknowledge_start_resources`.
    """

    output_bucket: s3.IBucket
    output_prefix: str
    #: What :meth:`grant_start`'s grant says it is for.
    start_intent = "start the jobs"

    def _grant_data(self, reads: Sequence[S3Access], writes: Sequence[S3Access],
                   outputs_reason: str) -> list[S3Access]:
        """The job role's reads, writes and its own output prefix; returns every
        access granted, for :func:`acknowledge_objects`."""
        role = self.role
        for access in reads:
            grant_read_objects(access.bucket, role, access.pattern)
        for access in writes:
            access.bucket.grant_put(role, access.pattern)
        outputs = S3Access(self.output_bucket, f"{self.output_prefix}*", outputs_reason)
        self.output_bucket.grant_put(role, outputs.pattern)
        return [*reads, *writes, outputs]

    def start_statements(self) -> list[iam.PolicyStatement]:
        raise NotImplementedError

    def acknowledge_start_resources(self, scope: Construct) -> None:
        """The wildcards of :meth:`start_statements` (job names or run ids)."""
        raise NotImplementedError

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


__all__ = ["S3Access", "ScaleOutRunner", "acknowledge_objects"]
