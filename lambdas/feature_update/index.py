"""Online features: apply each Kinesis event to its entities' running aggregates.

Each record's data is one event as JSON (the spec's columns). The update is
exactly once per producer event id (``data.event_id``), not per Kinesis
sequence number: a redelivered or re-produced event is recorded once (see
mdlc_core.features.DynamoDBStore). Environment: FEATURES_TABLE (partition key
``pk``, TTL attribute ``expires_at``), MODEL_NAME, DEAD_LETTER_QUEUE_URL.

Partial batch responses. A record that retrying cannot fix (not base64
UTF-8 JSON, not an object, missing ids or columns of the wrong type, an event
dated more than ``features.max_clock_skew_seconds``, default 900, ahead of
this function's clock, which would move the watermark ahead and make every
real event late) is never applied: it is dead-lettered
(``mdlc_core.dead_letters``: its payload byte for byte in
DEAD_LETTER_BUCKET under DEAD_LETTER_PREFIX, a message with the reason, the
payload's location and its stream coordinates, bounded to SQS's size, in
DEAD_LETTER_QUEUE_URL, the mapping's on-failure queue), once per record
however often it is delivered, and counted as handled, as the stream
consumer does with the records it rejects. If it cannot be kept (no queue or
bucket configured, a failed call) it is reported as failed, never dropped.
A failed DynamoDB call fails its record alone, which the mapping retries.
Duplicates and events older than every window succeed (there is nothing to
do for them).
"""

from __future__ import annotations

import json
import os
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
from mdlc_core.dead_letters import (
    DeadLetterError,
    DeadLetters,
    Rejection,
    kinesis_payload,
    kinesis_source,
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
_dead_letters: DeadLetters | None = None
#: Names this function's dead letters: dead-letters/<model>/feature-update/.
FUNCTION = "feature-update"


def engine() -> IncrementalEngine:
    global _engine
    if _engine is None:
        config = load_config()
        features = FeatureSet.from_config(config)
        model = os.environ.get("MODEL_NAME", config["name"])
        store = DynamoDBStore(dynamodb, os.environ["FEATURES_TABLE"], model)
        _engine = IncrementalEngine(features, store)
    return _engine


def dead_letters() -> DeadLetters:
    """The dead-letter destination, from the environment (raises ValueError when unset)."""
    global _dead_letters
    if _dead_letters is None:
        model = os.environ.get("MODEL_NAME") or str(load_config().get("name", "model"))
        _dead_letters = DeadLetters.from_env(sqs=boto3.client("sqs"), s3=boto3.client("s3"),
                                             model=model, function=FUNCTION)
    return _dead_letters


class NotKept(RuntimeError):
    """A rejected record that could not be dead-lettered: reported as failed."""


def record_handler(record: KinesisStreamRecord) -> str:
    where = {"sequence_number": record.kinesis.sequence_number,
             "partition_key": record.kinesis.partition_key}
    try:
        event = json.loads(record.kinesis.data_as_text())
        if not isinstance(event, dict):
            raise MalformedEvent(f"expected a JSON object, got {type(event).__name__}")
        outcome = engine().apply(event)
    except FutureEvent as error:
        dead_letter(record, str(error))  # raises when it cannot be kept
        return "rejected"
    except (ValueError, UnicodeDecodeError) as error:  # MalformedEvent, JSON, base64
        dead_letter(record, f"malformed record: {error}")
        return "rejected"
    logger.debug("applied", extra={**where, "outcome": outcome.value})
    if outcome.value == "late":
        logger.info("late event ignored", extra=where)
    return outcome.value


def dead_letter(record: KinesisStreamRecord, reason: str) -> None:
    """Keep a rejected record with its reason; raises NotKept (so the record is
    reported as failed, not dropped) when that is not possible."""
    where = {"sequence_number": record.kinesis.sequence_number,
             "partition_key": record.kinesis.partition_key, "reason": reason}
    raw = record.raw_event
    try:
        sent = dead_letters().send(Rejection(reason, kinesis_payload(raw), kinesis_source(raw)))
    except (DeadLetterError, ValueError) as error:
        logger.error("record not dead-lettered; reported as failed",
                     extra={**where, "error": str(error)})
        raise NotKept(f"{reason}; not dead-lettered: {error}") from error
    logger.warning("record dead-lettered", extra={**where, **sent})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
