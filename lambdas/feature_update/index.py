"""Online features: apply each Kinesis event to its entities' running aggregates.

Each record's data is one event as JSON (the spec's columns). The update is
exactly once per producer event id (``data.event_id``), not per Kinesis
sequence number: a redelivered or re-produced event is recorded once (see
mdlc_core.features.DynamoDBStore). Environment: FEATURES_TABLE (partition key
``pk``, TTL attribute ``expires_at``), MODEL_NAME, DEAD_LETTER_QUEUE_URL.

Partial batch responses: a malformed record is reported as a failure with
its reason logged, and never fails its neighbours; the event source
mapping's on-failure destination keeps it. Duplicates and events older than
every window succeed (there is nothing to do for them).

An event dated more than ``features.max_clock_skew_seconds`` (default 900)
ahead of this function's clock is never applied (it would move the
watermark ahead and make every real event late): it is sent to
DEAD_LETTER_QUEUE_URL (the mapping's on-failure queue) with the reason, the
payload and its stream coordinates, and counted as handled, as the stream
consumer does with the records it rejects; retrying cannot make it valid.
If it cannot be sent (no queue configured, a failed send) it is reported
as failed, never dropped.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from mdlc_core.features import (
    DynamoDBStore,
    FeatureSet,
    FutureEvent,
    IncrementalEngine,
    MalformedEvent,
)
from mdlc_core.runtime_config import load_config

logger = Logger(service="feature_update")
dynamodb = boto3.client("dynamodb")
# An all-bad batch is reported record by record too, so the mapping's bisect and
# on-failure destination handle it like any other failure.
processor = BatchProcessor(event_type=EventType.KinesisDataStreams,
                           raise_on_entire_batch_failure=False)

_engine: IncrementalEngine | None = None
_sqs: Any = None
# SQS caps a message at 256 KiB; a longer payload is cut (the stream
# coordinates in the message are enough to replay the record).
MAX_DEAD_LETTER_PAYLOAD_BYTES = 200_000


def engine() -> IncrementalEngine:
    global _engine
    if _engine is None:
        config = load_config()
        features = FeatureSet.from_config(config)
        model = os.environ.get("MODEL_NAME", config["name"])
        store = DynamoDBStore(dynamodb, os.environ["FEATURES_TABLE"], model)
        _engine = IncrementalEngine(features, store)
    return _engine


def record_handler(record: KinesisStreamRecord) -> str:
    where = {"sequence_number": record.kinesis.sequence_number,
             "partition_key": record.kinesis.partition_key}
    try:
        text = record.kinesis.data_as_text()
        event = json.loads(text)
        if not isinstance(event, dict):
            raise MalformedEvent(f"expected a JSON object, got {type(event).__name__}")
        outcome = engine().apply(event)
    except FutureEvent as error:
        dead_letter(record, str(error), text)  # raises when it cannot be kept
        return "rejected"
    except (ValueError, UnicodeDecodeError) as error:  # MalformedEvent, JSON, base64
        logger.error("malformed record", extra={**where, "reason": str(error)})
        raise
    logger.debug("applied", extra={**where, "outcome": outcome.value})
    if outcome.value == "late":
        logger.info("late event ignored", extra=where)
    return outcome.value


def dead_letter(record: KinesisStreamRecord, reason: str, payload: str) -> None:
    """Keep a rejected record in DEAD_LETTER_QUEUE_URL with its reason; raises
    (so the record is reported as failed, not dropped) when that is not possible."""
    global _sqs
    where = {"sequence_number": record.kinesis.sequence_number,
             "partition_key": record.kinesis.partition_key}
    queue_url = os.environ.get("DEAD_LETTER_QUEUE_URL", "")
    if not queue_url:
        logger.error("no DEAD_LETTER_QUEUE_URL; keeping the record",
                     extra={**where, "reason": reason})
        raise FutureEvent(reason)
    raw = record.raw_event
    kinesis = raw.get("kinesis") or {}
    encoded = payload.encode("utf-8")
    truncated = len(encoded) > MAX_DEAD_LETTER_PAYLOAD_BYTES
    body = {
        "reason": reason,
        "model": os.environ.get("MODEL_NAME"),
        "payload": encoded[:MAX_DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", "ignore"),
        "payload_truncated": truncated,
        "rejected_at": datetime.now(UTC).isoformat(),
        "source": {
            "event_source_arn": raw.get("eventSourceARN"),
            "event_id": raw.get("eventID"),
            "partition_key": kinesis.get("partitionKey"),
            "sequence_number": kinesis.get("sequenceNumber"),
            "approximate_arrival_timestamp": kinesis.get("approximateArrivalTimestamp"),
        },
    }
    if _sqs is None:
        _sqs = boto3.client("sqs")
    try:
        _sqs.send_message(
            QueueUrl=queue_url,
            # ensure_ascii=False: the size bound above is the size sent.
            MessageBody=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256]}},
        )
    except Exception:
        logger.exception("dead-letter send failed", extra=where)
        raise
    logger.warning("record dead-lettered", extra={**where, "reason": reason})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
