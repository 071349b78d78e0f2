"""Online features: apply each Kinesis event to its entities' running aggregates.

Each record's data is one event as JSON (the spec's columns). The update is
exactly once per producer event id (``data.event_id``), not per Kinesis
sequence number: a redelivered or re-produced event is recorded once (see
mdlc_core.features.DynamoDBStore). Environment: FEATURES_TABLE (partition key
``pk``, TTL attribute ``expires_at``), MODEL_NAME.

Partial batch responses: a malformed record is reported as a failure with
its reason logged, and never fails its neighbours; the event source
mapping's on-failure destination keeps it. Duplicates and events older than
every window succeed (there is nothing to do for them).
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
from mdlc_core.features import DynamoDBStore, FeatureSet, IncrementalEngine, MalformedEvent
from mdlc_core.runtime_config import load_config

logger = Logger(service="feature_update")
dynamodb = boto3.client("dynamodb")
# An all-bad batch is reported record by record too, so the mapping's bisect and
# on-failure destination handle it like any other failure.
processor = BatchProcessor(event_type=EventType.KinesisDataStreams,
                           raise_on_entire_batch_failure=False)

_engine: IncrementalEngine | None = None


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
        event = json.loads(record.kinesis.data_as_text())
        if not isinstance(event, dict):
            raise MalformedEvent(f"expected a JSON object, got {type(event).__name__}")
        outcome = engine().apply(event)
    except (ValueError, UnicodeDecodeError) as error:  # MalformedEvent, JSON, base64
        logger.error("malformed record", extra={**where, "reason": str(error)})
        raise
    logger.debug("applied", extra={**where, "outcome": outcome.value})
    if outcome.value == "late":
        logger.info("late event ignored", extra=where)
    return outcome.value


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
