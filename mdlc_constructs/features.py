"""Stage 3, feature engineering: batch for training and batch inference, and
the incremental form for online serving (running aggregates in DynamoDB)."""

from __future__ import annotations

from typing import Unpack

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mdlc_core.layout import Layout

from .compliance import acknowledge, acknowledge_objects
from .functions import DUCKDB_EPHEMERAL_STORAGE_MB
from .resources import encrypted_queue, encrypted_table
from .scale_out import S3Access
from .scale_out_stage import ScaleOutJob, ScaleOutStage
from .stage import DataStage, DataStageProps
from .storage import grant_list, grant_read_objects
from .tokens import minutes, seconds
from .workflow import invoke

#: The Spark job's flag for each variable of the Processing job's environment.
SPARK_FLAGS = {
    "DATASETS_BUCKET": "--datasets-bucket",
    "FEATURES_BUCKET": "--features-bucket",
    "MODEL_NAME": "--model",
}


def dead_letter_payloads(function: lambda_.Function, *, bucket: s3.IBucket, model: str,
                         name: str) -> str:
    """Let ``function`` keep the payloads of the records it dead-letters in ``bucket``.

    ``lambdas/mdlc_core/dead_letters.py`` writes each rejected record's payload
    and a copy of its queue message under ``dead-letters/<model>/<name>/`` (a
    queue message is bounded to 256 KiB; a record can be 1 MiB), and checks for
    that copy before sending, so a redelivered record is sent once. Exactly
    that is granted: ``s3:PutObject`` and ``s3:GetObject`` (the existence check)
    on the prefix's objects, ``s3:ListBucket`` under the prefix only (so a
    missing copy is "not found", not "access denied"), and ``kms:GenerateDataKey``
    on the bucket's key (S3 encrypting the objects). Sets DEAD_LETTER_BUCKET
    and DEAD_LETTER_PREFIX; returns the prefix.
    """
    prefix = Layout(model).dead_letters(name)
    pattern = Layout.everything(prefix)
    function.add_environment("DEAD_LETTER_BUCKET", bucket.bucket_name)
    function.add_environment("DEAD_LETTER_PREFIX", prefix)
    function.add_to_role_policy(iam.PolicyStatement(
        actions=["s3:PutObject", "s3:GetObject"], resources=[bucket.arn_for_objects(pattern)]))
    grant_list(bucket, function, pattern)
    if bucket.encryption_key is not None:
        bucket.encryption_key.grant(function, "kms:GenerateDataKey")
    reason = ("The payloads of this function's dead-lettered records, one object per "
              "record, named at run time by a hash of the record")
    acknowledge_objects(function, bucket, pattern, reason)
    return prefix


class FeatureEngineering(ScaleOutStage, DataStage):
    """Derived features from the spec, computed two ways with the same numbers.

    * Batch: a function that reads a day's snapshot (and the days its windows
      need) and writes ``features/<model>/dt=<date>/features.parquet`` (one row
      per event, its features as of itself: training data) and
      ``entities.parquet`` (one row per entity at the end of the day: batch
      inference) to the features bucket.
    * Online (when ``features.online`` and an event stream is given): each
      event on the stream updates its entity's running aggregates in a
      DynamoDB table, exactly once per event id, in constant work.

    Args:
        spec: the model spec.
        data_lake: snapshots are read from ``datasets``, written to ``features``.
        stream: the model's event stream; required for online features.
        table: an existing online feature table (partition key ``pk`` string,
            TTL attribute ``expires_at``). Default: a new one.

    ``features.runner: processing`` computes the batch features in a SageMaker
    Processing job instead (the same code, ``mdlc_core.feature_job``);
    ``features.runner: spark`` computes them as Spark SQL on EMR Serverless
    (the features compiled by ``mdlc_core.sql.features``, the job
    ``spark_job --kind features``). Either writes the same two files and puts
    the same result at ``$.data.features``; the function stays for backfills
    and small days.

    Attributes:
        batch_function, processing_runner (or None), spark_runner (or None),
        table (or None), update_function (or None), dead_letter_queue (or None).

    Extension points: :attr:`processing_runner_class`, :attr:`spark_runner_class`
    (:class:`~mdlc_constructs.scale_out_stage.ScaleOutStage`).
    """

    scale_out_kind = "features"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: kinesis.IStream | None = None,
        table: dynamodb.ITable | None = None,
        **stage: Unpack[DataStageProps],
    ) -> None:
        super().__init__(scope, construct_id, **stage)
        spec, data_lake = self.spec, self.data_lake
        self.batch_function: lambda_.Function = self.data_function(
            "Batch", handler="feature_batch",
            description=f"MDLC {spec.name}: compute the day's batch features",
            environment={"FEATURES_BUCKET": data_lake.features.bucket_name,
                         "MODEL_NAME": spec.name},
            memory_size=3008, timeout=minutes(15),
            ephemeral_storage_size=DUCKDB_EPHEMERAL_STORAGE_MB,
        )
        layout = Layout(spec.name)
        datasets, features = (layout.everything(layout.datasets),
                              layout.everything(layout.features))
        grant_read_objects(data_lake.datasets, self.batch_function, datasets)
        grant_read_objects(data_lake.features, self.batch_function, features)
        data_lake.features.grant_put(self.batch_function, features)
        for bucket, pattern in ((data_lake.datasets, datasets), (data_lake.features, features)):
            acknowledge_objects(
                self.batch_function,
                bucket,
                pattern,
                "Objects are named by date at run time; access is limited to this model",
            )
        self._create_scale_out_runner()
        self.table: dynamodb.ITable | None = None
        self.update_function: lambda_.Function | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        if spec.features.online and spec.features.aggregates:
            if stream is None:
                raise ValueError(
                    f"{spec.source or spec.name}: features.online needs the model's event "
                    "stream; pass stream= (MdlcModelStack creates one)"
                )
            self.table = table or self._create_table()
            self._create_updater(stream)

    def _scale_out_job(self) -> ScaleOutJob:
        """What a scale-out job of the features is given: this model's snapshots
        to read, its feature snapshots to write, the function's buckets and
        model name. No metrics namespace: the features job publishes none.

        With Processing, ``feature_job.run`` runs for windows of days that do
        not fit the function's memory or 15 minutes; with Spark, the features
        as Spark SQL on EMR Serverless (``spark_job --kind features``)."""
        spec, lake, layout = self.spec, self.data_lake, Layout(self.spec.name)
        reason = "Objects are named by date at run time; access is limited to this model"
        return ScaleOutJob(
            reads=[S3Access(lake.datasets, layout.everything(layout.datasets), reason)],
            writes=[S3Access(lake.features, layout.everything(layout.features), reason)],
            environment={
                "DATASETS_BUCKET": lake.datasets.bucket_name,
                "FEATURES_BUCKET": lake.features.bucket_name,
                "MODEL_NAME": spec.name,
            },
            spark_flags=SPARK_FLAGS,
        )

    def _create_table(self) -> dynamodb.Table:
        return encrypted_table(self, "OnlineFeatures", key=self.data_lake.key,
                               partition_key="pk", ttl_attribute="expires_at")

    def _create_updater(self, stream: kinesis.IStream) -> None:
        assert self.table is not None
        integration = self.spec.integration
        self.update_function = self.stage_function(
            "Update", handler="feature_update",
            description=f"MDLC {self.spec.name}: apply each event to the online aggregates",
            environment={"FEATURES_TABLE": self.table.table_name, "MODEL_NAME": self.spec.name},
            memory_size=512, timeout=seconds(60),
        )
        self.table.grant_read_write_data(self.update_function)
        self.dead_letter_queue = encrypted_queue(self, "UpdateFailures", key=self.data_lake.key)
        # Records a retry cannot fix (malformed, dated beyond the spec's clock
        # skew) are sent here by the function itself, with the reason.
        self.update_function.add_environment(
            "DEAD_LETTER_QUEUE_URL", self.dead_letter_queue.queue_url
        )
        self.dead_letter_queue.grant_send_messages(self.update_function)
        # Their payloads, whole, in the raw bucket (a queue message is bounded).
        dead_letter_payloads(self.update_function, bucket=self.data_lake.raw,
                             model=self.spec.name, name="feature-update")
        # A Kinesis mapping retries forever and keeps records a week unless
        # told otherwise: bound both, bisect poison batches, report partial
        # failures, and keep what still fails (the queue gets the shard and
        # sequence numbers to replay from the stream).
        self.update_function.add_event_source(
            sources.KinesisEventSource(
                stream,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=integration.batch_size if integration else 100,
                max_batching_window=seconds(
                    integration.max_batching_window_seconds if integration else 1
                ),
                bisect_batch_on_error=True,
                retry_attempts=integration.retry_attempts if integration else 3,
                max_record_age=seconds(
                    integration.max_record_age_seconds if integration else 3600
                ),
                report_batch_item_failures=True,
                on_failure=sources.SqsDlq(self.dead_letter_queue),
            )
        )
        acknowledge(
            self.update_function,
            "PCI.DSS.321-LambdaDLQ",
            "Failures go to the Kinesis event source mapping's on-failure SQS destination",
        )

    # -- use by other stages ---------------------------------------------------

    def grant_read_online(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the online features (the integration's first step)."""
        if self.table is None:
            raise ValueError(f"model {self.spec.name!r} has no online features (features.online)")
        return self.table.grant_read_data(grantee)

    def compute(self, scope: Construct, construct_id: str = "ComputeFeatures") -> sfn.IChainable:
        """A workflow step: features of ``$.data.snapshot.date`` into ``$.data.features``.

        ``features.runner: processing`` runs the same code as a SageMaker
        Processing job, ``spark`` the compiled features on EMR Serverless; the
        result at ``$.data.features`` is the same.
        """
        runner = self._scale_out_runner
        if runner is not None:
            return runner.run(
                scope,
                construct_id,
                arguments={"--date": "$.data.snapshot.date"},
                result_path="$.data.features",
                comment=f"Compute the batch features of the snapshot ({runner.runs_on})",
            )
        return invoke(
            scope,
            construct_id,
            self.batch_function,
            payload={"date.$": "$.data.snapshot.date"},
            result_path="$.data.features",
            timeout=minutes(16),
            comment="Compute the batch features of the snapshot",
        )

    def grant_processing(self, role: iam.IRole) -> iam.Grant:
        """What a state machine needs to run the Processing runner (the steps of
        :meth:`compute` already bring it to the state machine they are in)."""
        if self.processing_runner is None:
            raise ValueError(
                f"model {self.spec.name!r} has no Processing runner "
                f"(features.runner: {self.spec.features.runner})"
            )
        return self.processing_runner.grant_start(role)
