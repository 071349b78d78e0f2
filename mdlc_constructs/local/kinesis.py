"""Kinesis event source mappings, polled as Lambda polls them.

For each mapping of the template: records are read from every shard of the
stream (moto) from ``StartingPosition``, in batches of ``BatchSize``, and the
function is invoked with the event Lambda builds. What Lambda does on
failure is reproduced, because the library's consumers depend on it:

* with ``ReportBatchItemFailures``, the batch is retried from the first
  reported ``itemIdentifier``; an empty list means success;
* a function error with ``BisectBatchOnFunctionError`` splits the batch in
  two and retries each half;
* after ``MaximumRetryAttempts`` (or past ``MaximumRecordAgeInSeconds``),
  the records are skipped and the on-failure destination (SQS or SNS)
  receives Lambda's invocation record: metadata only, the shard and the
  sequence numbers, not the data.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .assembly import ACCOUNT, REGION
from .functions import LambdaRuntime
from .hooks import ServiceError, ServiceHooks
from .resources import raw_client


@dataclass
class EventSourceMapping:
    uuid: str
    function: str
    stream_arn: str
    batch_size: int = 100
    bisect: bool = False
    max_retries: int = -1
    max_age_seconds: int = -1
    report_failures: bool = False
    on_failure: str | None = None
    starting_position: str = "TRIM_HORIZON"
    enabled: bool = True
    iterators: dict[str, str] = field(default_factory=dict)
    #: shard -> the sequence number the mapping has read up to (its checkpoint).
    positions: dict[str, int] = field(default_factory=dict)
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invocations: int = 0
    records: int = 0
    dead_lettered: int = 0
    #: Why the function's role may not read the stream (the mapping then stays idle).
    denied: str | None = None


def _event(records: list[dict[str, Any]], mapping: EventSourceMapping, shard: str
           ) -> dict[str, Any]:
    return {"Records": [{
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r["PartitionKey"],
            "sequenceNumber": r["SequenceNumber"],
            "data": base64.b64encode(r["Data"]).decode(),
            "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{r['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "",
        "awsRegion": REGION,
        "eventSourceARN": mapping.stream_arn,
    } for r in records]}


class StreamPoller:
    """Runs every event source mapping until the streams have nothing new."""

    #: What Lambda's poller calls on a stream, as the function's role.
    READ_OPERATIONS = ("DescribeStream", "GetShardIterator", "GetRecords", "ListShards")

    def __init__(self, lambdas: LambdaRuntime,
                 authorize: Callable[..., None] | None = None) -> None:
        self.lambdas = lambdas
        self.authorize = authorize
        self.mappings: list[EventSourceMapping] = []
        self._kinesis = raw_client("kinesis")
        self.failures: list[dict[str, Any]] = []
        # Streams written since they were last drained: a poll reads only
        # those, as most polls (one per settle) find nothing new.
        self._dirty: set[str] | None = None

    def install(self, hooks: ServiceHooks) -> None:
        """Note each write to a stream, so polls skip the streams with nothing new."""
        self._dirty = set()

        def put(operation: str) -> Any:
            def forward(params: dict[str, Any]) -> dict[str, Any]:
                response = getattr(self._kinesis, operation)(**params)
                self._dirty.add(params.get("StreamARN") or params.get("StreamName", ""))
                response.pop("ResponseMetadata", None)
                return response
            return forward

        hooks.add("kinesis", "PutRecord", put("put_record"))
        hooks.add("kinesis", "PutRecords", put("put_records"))

    def add(self, mapping: EventSourceMapping) -> None:
        self.mappings.append(mapping)

    def _shards(self, mapping: EventSourceMapping) -> list[str]:
        shards = self._kinesis.list_shards(StreamARN=mapping.stream_arn)["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in mapping.iterators:
                mapping.iterators[shard_id] = self._kinesis.get_shard_iterator(
                    StreamARN=mapping.stream_arn, ShardId=shard_id,
                    ShardIteratorType=mapping.starting_position,
                )["ShardIterator"]
                mapping.pending[shard_id] = []
        return [s["ShardId"] for s in shards]

    def poll(self) -> int:
        """Deliver everything on the streams; returns the number of records delivered."""
        delivered = 0
        dirty = None if self._dirty is None else set(self._dirty)
        for mapping in self.mappings:
            if not mapping.enabled or not self._permitted(mapping):
                continue
            name = mapping.stream_arn.rsplit("/", 1)[-1]
            if dirty is not None and mapping.stream_arn not in dirty and name not in dirty \
                    and not any(mapping.pending.values()):
                continue
            for shard in self._shards(mapping):
                while True:
                    pending = mapping.pending[shard]
                    if len(pending) < mapping.batch_size:
                        pending.extend(self._read(mapping, shard))
                    if not pending:
                        break
                    batch = pending[: mapping.batch_size]
                    del pending[: mapping.batch_size]
                    self._deliver(mapping, shard, batch, mapping.max_retries)
                    delivered += len(batch)
        if self._dirty is not None and dirty is not None:
            self._dirty -= dirty
        return delivered

    def _read(self, mapping: EventSourceMapping, shard: str) -> list[dict[str, Any]]:
        """The shard's records after the mapping's checkpoint, as GetRecords returns them.

        Read from moto's shard in process, as Lambda's poller reads the stream for
        the function: moto's GetRecords walks the whole shard from its first record
        on every call, which over a simulation costs seconds. The first read starts
        where the mapping's shard iterator (its starting position) points.
        """
        from moto.kinesis.models import kinesis_backends
        from moto.kinesis.utils import decompose_shard_iterator

        if shard not in mapping.positions:
            mapping.positions[shard] = int(decompose_shard_iterator(
                mapping.iterators[shard])[2])
        stream = kinesis_backends[ACCOUNT][REGION].describe_stream(
            stream_arn=mapping.stream_arn, stream_name=None)
        records = stream.get_shard(shard).records
        # The records after the checkpoint, from the newest back (moto numbers a
        # shard's records in increasing order): a poll costs what it delivers,
        # not the whole shard's length.
        position = mapping.positions[shard]
        newer = list(itertools.takewhile(lambda number: number > position, reversed(records)))
        chosen = newer[::-1][:10000]
        if chosen:
            mapping.positions[shard] = chosen[-1]
        return [records[number].to_json() for number in chosen]

    def _role(self, mapping: EventSourceMapping) -> str | None:
        try:
            return self.lambdas.get(mapping.function).role_arn
        except KeyError:
            return None

    def _permitted(self, mapping: EventSourceMapping) -> bool:
        """Lambda polls the stream with the function's role: without the read
        permissions (and the stream key's Decrypt) the mapping delivers nothing."""
        if mapping.denied is not None:
            return False
        if self.authorize is None:
            return True
        try:
            for operation in self.READ_OPERATIONS:
                self.authorize(self._role(mapping), "kinesis", operation,
                               {"StreamARN": mapping.stream_arn})
        except ServiceError as error:
            mapping.denied = error.message
            return False
        return True

    def _invoke(self, mapping: EventSourceMapping, shard: str, batch: list[dict[str, Any]]
                ) -> tuple[bool, str | None]:
        """(function error?, first failed sequence number or None)."""
        mapping.invocations += 1
        mapping.records += len(batch)
        payload = json.dumps(_event(batch, mapping, shard)).encode()
        invocation = self.lambdas.invoke(mapping.function, payload)
        if invocation.error:
            return True, batch[0]["SequenceNumber"]
        if not mapping.report_failures:
            return False, None
        try:
            response = json.loads(invocation.payload or b"null") or {}
            failures = response.get("batchItemFailures") or []
        except (ValueError, AttributeError):
            return True, batch[0]["SequenceNumber"]
        if not failures:
            return False, None
        known = {r["SequenceNumber"] for r in batch}
        identifiers = [f.get("itemIdentifier") for f in failures]
        if any(not i or i not in known for i in identifiers):
            # Lambda treats an invalid identifier as a failure of the whole batch.
            return True, batch[0]["SequenceNumber"]
        return False, min(identifiers, key=lambda s: int(s))

    def _deliver(self, mapping: EventSourceMapping, shard: str, batch: list[dict[str, Any]],
                 retries_left: int) -> None:
        attempts = 0
        while batch:
            function_error, first_failed = self._invoke(mapping, shard, batch)
            if first_failed is None:
                return
            position = next(i for i, r in enumerate(batch) if r["SequenceNumber"] == first_failed)
            batch = batch[position:]
            attempts += 1
            too_old = mapping.max_age_seconds > 0 and (
                datetime.now(UTC) - batch[0]["ApproximateArrivalTimestamp"].astimezone(UTC)
            ).total_seconds() > mapping.max_age_seconds
            if (retries_left >= 0 and attempts > retries_left) or too_old:
                self._on_failure(mapping, shard, batch,
                                 "MaximumRecordAgeExceeded" if too_old else
                                 "RetryAttemptsExhausted")
                return
            if function_error and mapping.bisect and len(batch) > 1:
                half = len(batch) // 2
                remaining = retries_left - attempts if retries_left >= 0 else -1
                self._deliver(mapping, shard, batch[:half], remaining)
                self._deliver(mapping, shard, batch[half:], remaining)
                return

    def _on_failure(self, mapping: EventSourceMapping, shard: str,
                    batch: list[dict[str, Any]], condition: str) -> None:
        mapping.dead_lettered += len(batch)
        record = {
            "requestContext": {"requestId": "local", "functionArn": mapping.function,
                               "condition": condition, "approximateInvokeCount": 1},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "KinesisBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": batch[0]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord":
                    batch[0]["ApproximateArrivalTimestamp"].isoformat(),
                "approximateArrivalOfLastRecord":
                    batch[-1]["ApproximateArrivalTimestamp"].isoformat(),
                "batchSize": len(batch),
                "streamArn": mapping.stream_arn,
            },
        }
        self.failures.append(record)
        if mapping.on_failure and self.authorize is not None:
            # The destination is written with the function's role; a denial loses the
            # record's metadata, as on AWS (it stays in failures and denied_calls).
            service, operation, params = (
                ("sqs", "SendMessage", {"QueueUrl": mapping.on_failure})
                if ":sqs:" in mapping.on_failure
                else ("sns", "Publish", {"TopicArn": mapping.on_failure}))
            try:
                self.authorize(self._role(mapping), service, operation, params)
            except ServiceError:
                return
        if mapping.on_failure and ":sqs:" in mapping.on_failure:
            name = mapping.on_failure.rsplit(":", 1)[1]
            sqs = raw_client("sqs")
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        elif mapping.on_failure and ":sns:" in mapping.on_failure:
            raw_client("sns").publish(TopicArn=mapping.on_failure, Message=json.dumps(record))
