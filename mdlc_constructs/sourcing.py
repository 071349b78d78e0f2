"""Stage 1, data sourcing: immutable dated snapshots with a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mdlc_core.layout import Layout

from .compliance import acknowledge_objects
from .grants import combine
from .stage import DataStage, DataStageProps
from .storage import grant_read_objects
from .tokens import minutes
from .workflow import invoke


class DataSourcing(DataStage):
    """The function that writes ``datasets/<model>/dt=YYYY-MM-DD/`` and its
    ``_manifest.json`` (row count, schema, content hash, source object
    versions, creation time). A committed snapshot is never overwritten: a
    re-run for a date returns the existing one; ``{"new_version": true}``
    writes ``v=N``. Every source object is parsed before anything is
    written, so a bad one fails the run naming it and leaves nothing; a
    re-run after fixing the source completes the day (docs/sourcing.md).

    Source kinds: ``s3`` prefixes. A team adds a kind by registering a
    ``mdlc_core.sourcing.Source`` subclass in its own handler folder and
    overriding :meth:`grant_sources` to grant access to what it reads.

    Args:
        spec: the model spec.
        data_lake: where raw data is read and snapshots are written.
        handler: the library's handler folder by name, or the Path of a team's
            own (with an ``index.py`` defining ``handler``; see
            :func:`~mdlc_constructs.functions.python_function`). Default
            ``data_sourcing``.

    Attributes:
        function: the sourcing function (input ``{"date"?, "new_version"?}``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str | Path = "data_sourcing",
        **stage: Unpack[DataStageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake = self.spec, self.data_lake
        self.function: lambda_.Function = self.data_function(
            "Function", handler=handler,
            description=f"MDLC {spec.name}: build the dated dataset snapshot",
            environment={"RAW_BUCKET": data_lake.raw.bucket_name, "MODEL_NAME": spec.name},
            memory_size=1024, timeout=minutes(10),
        )
        # Snapshots of this model only: earlier days' manifests are read to
        # find the latest version, new snapshots are written once each.
        snapshots = Layout.everything(Layout(spec.name).datasets)
        grant_read_objects(data_lake.datasets, self.function, snapshots)
        data_lake.datasets.grant_put(self.function, snapshots)
        acknowledge_objects(
            self.function,
            data_lake.datasets,
            snapshots,
            "Snapshot objects are named by date and version at run time; access is "
            "limited to this model's prefix",
        )
        self.grant_sources(self.function)

    def grant_sources(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read access to every source in the spec (an extension point)."""
        grants = []
        for source in self.spec.data.sources:
            bucket: s3.IBucket = (
                s3.Bucket.from_bucket_name(self, f"Source{source.name}", source.bucket)
                if source.bucket
                else self.data_lake.raw
            )
            grants.append(grant_read_objects(bucket, grantee, f"{source.prefix}*"))
            if not source.bucket:
                acknowledge_objects(
                    self.function,
                    bucket,
                    f"{source.prefix}*",
                    f"Source {source.name!r} delivers objects under its prefix with "
                    "names unknown at synthesis; read access is limited to that prefix",
                )
        return combine(grantee, grants, "the spec names no source")

    def task(self, scope: Construct, construct_id: str = "SourceSnapshot") -> sfn.TaskStateBase:
        """A workflow step: source the snapshot of ``$.date`` into ``$.data.snapshot``.

        The whole state is the function's event, so an execution without a
        ``date`` (a scheduled run) takes yesterday's snapshot.
        """
        return invoke(
            scope,
            construct_id,
            self.function,
            result_path="$.data.snapshot",
            timeout=minutes(11),
            comment="Build (or return) the immutable snapshot of the day",
        )
