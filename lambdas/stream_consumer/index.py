"""The fused client-integration path: a Kinesis consumer that batches.

For a batch of Kinesis records it makes one feature read (DynamoDB
BatchGetItem, 100 keys a call, on the online table the ``feature_update``
function writes, read by ``mdlc_core.features.OnlineFeatureReader``) and one
endpoint call for all of them, then evaluates the rules and performs each
event's action (``mdlc_core``).

Input: the Kinesis event (``Records[].kinesis.data`` is base64 JSON with
the spec's ``data.event_id`` and ``data.entity_key`` and numeric raw
columns). Output: ``{"batchItemFailures": [{"itemIdentifier": <sequence
number>}, ...]}`` (the event source mapping must enable
``ReportBatchItemFailures``).

Failure handling:

- malformed record (not base64 UTF-8 JSON, missing ids, non-numeric
  columns, no numeric score from the model): sent to the dead-letter queue
  with the full payload and the reason, then counted as handled, so it never
  blocks or fails its neighbours. If it cannot be dead-lettered it is
  reported as failed, never dropped;
- transient failure of the feature read or the endpoint: every record of
  the batch that was not dead-lettered is reported as failed, and the event
  source mapping retries (bisecting, bounded retries and record age, then its
  on-failure destination);
- failure of one event's action or decision-log write: that record alone;
- failure of the predictions write (below): the records of that file, so
  that the stream redelivers them and monitoring does not silently miss
  real-time decisions. Their actions do not run again (idempotency) and the
  decision log is overwritten with the same records.

Actions are idempotent on the producer's event id (Powertools idempotency,
DynamoDB persistence): the action is the only work inside the idempotent
function, so a raise there releases the lock and the retry acts; a
redelivered event returns the stored decision and does not act again. The
decision log is written after the actions, from those stored decisions, so
it always records the decision that was acted on.

Predictions for model monitoring (``mdlc_core.predictions``): after the
decision log, the batch's logged decisions are written as ONE CSV per
invocation (one per UTC day of the decisions, in practice one) to
``predictions/<model>/dt=<day of decided_at>/scored/stream-<shard>-<first
sequence number>-<last sequence number>.csv`` in PREDICTIONS_BUCKET, from
the same stored decisions. The name is the batch's, so a redelivery of the
same batch (a timeout, a crash) overwrites the file; a batch retried from
another sequence number (partial failure, bisection) writes the events
after the failed one into a second file with identical rows, and the
monitor counts each event id of a day once. Without PREDICTIONS_BUCKET
nothing is written.

Environment: ENDPOINT_NAME, FEATURES_TABLE, DECISIONS_TABLE and/or
DECISIONS_BUCKET, PREDICTIONS_BUCKET (monitoring's input), IDEMPOTENCY_TABLE,
DEAD_LETTER_QUEUE_URL, ACTION_TOPIC_ARN,
ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME (for the kinds the spec uses),
MODEL_PACKAGE_VERSION (optional; without it decisions name the endpoint
variant that scored them), MDLC_CONFIG_FILE (tests only).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.config import Config
from mdlc_core.actions import Clients, DecisionLog, Dispatcher
from mdlc_core.decisions import Decision, RuleSet, utc_now
from mdlc_core.features import FeatureSet, OnlineFeatureReader
from mdlc_core.predictions import PredictionLog
from mdlc_core.runtime_config import load_config
from mdlc_core.scoring import (
    BatchScorer,
    EndpointScorer,
    FeaturePlan,
    Rejected,
    TransientError,
    feature_columns,
)

logger = Logger(service="mdlc-stream-consumer")

# SQS caps a message at 256 KiB and a Kinesis record can be 1 MiB: above
# this the payload is cut and the record's stream coordinates kept for replay.
MAX_DEAD_LETTER_PAYLOAD = 200_000


def _client(service: str) -> Any:
    import boto3

    # The endpoint is the one slow dependency: fail fast and let the event
    # source mapping retry rather than wait out the Lambda timeout.
    if service == "sagemaker-runtime":
        config = Config(connect_timeout=2, read_timeout=20, retries={"mode": "standard"})
        return boto3.client(service, config=config)
    return boto3.client(service, config=Config(retries={"mode": "standard"}))


CONFIG = load_config()
CLIENTS = Clients(factory=_client)
RULES = RuleSet.from_config(CONFIG)
DISPATCHER = Dispatcher.from_config(CONFIG, CLIENTS)
DECISION_LOG = DecisionLog.from_env(CLIENTS)
PREDICTION_LOG = PredictionLog.from_env(CLIENTS, CONFIG, feature_columns(CONFIG))
SCORER = BatchScorer(
    FeaturePlan(CONFIG),
    # The table the feature_update function writes: one BatchGetItem per 100
    # entities, window values computed here as of today (UTC).
    OnlineFeatureReader(
        CLIENTS.get("dynamodb"), os.environ["FEATURES_TABLE"], FeatureSet.from_config(CONFIG)
    ),
    EndpointScorer(CLIENTS.get("sagemaker-runtime"), os.environ["ENDPOINT_NAME"]),
    RULES,
    model_version=os.environ.get("MODEL_PACKAGE_VERSION") or None,
)
DEAD_LETTER_QUEUE_URL = os.environ.get("DEAD_LETTER_QUEUE_URL", "")

_integration = CONFIG.get("integration") or {}
IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="event_id",
    # Longer than the stream can redeliver a record, so a late retry still
    # finds the first decision.
    expires_after_seconds=int(_integration.get("max_record_age_seconds", 3600)) + 3600,
)
PERSISTENCE = DynamoDBPersistenceLayer(
    table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=CLIENTS.get("dynamodb")
)


# The key prefix is shared with the state-machine path, so an event acts once
# whichever path handles it.
@idempotent_function(
    data_keyword_argument="decision",
    persistence_store=PERSISTENCE,
    config=IDEMPOTENCY,
    key_prefix=f"mdlc-action-{CONFIG.get('name', 'model')}",
)
def act(decision: dict[str, Any]) -> dict[str, Any]:
    """The side effect, alone: performed once per producer event id."""
    receipt = DISPATCHER.perform(Decision.from_record(decision))
    return {"decision": decision, "receipt": receipt}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if context is not None:
        IDEMPOTENCY.register_lambda_context(context)
    records = event.get("Records") or []
    by_id = {r["kinesis"]["sequenceNumber"]: r for r in records}
    failures: list[str] = []

    pairs: list[tuple[str, str]] = []
    undecodable: list[Rejected] = []
    for record in records:
        sequence, data = record["kinesis"]["sequenceNumber"], record["kinesis"].get("data", "")
        try:
            pairs.append((sequence, base64.b64decode(data, validate=True).decode("utf-8")))
        except (binascii.Error, UnicodeDecodeError, TypeError) as error:
            undecodable.append(Rejected(sequence, f"not base64 UTF-8: {error}", str(data)))

    events, rejected = SCORER.parse(pairs)
    failures += dead_letter(undecodable + rejected, by_id)

    try:
        outcome = SCORER.decide(events, dict(pairs))
    except TransientError as error:
        logger.warning("batch not scored, retrying", extra={"reason": str(error)})
        failures += [e.record_id for e in events]
        return _response(failures, by_id)
    failures += dead_letter(outcome.rejected, by_id)

    acted: list[tuple[str, Decision]] = []
    for scored, decision in outcome.decisions:
        try:
            result = act(decision=decision.to_record())
        except Exception:
            logger.exception("action failed", extra={"event_id": decision.event_id})
            failures.append(scored.record_id)
            continue
        acted.append((scored.record_id, Decision.from_record(result["decision"])))

    unlogged = set(DECISION_LOG.write_many(d for _, d in acted))
    logged: list[tuple[str, Decision]] = []
    for record_id, decision in acted:
        if decision.event_id in unlogged:
            logger.error("decision not logged", extra={"event_id": decision.event_id})
            failures.append(record_id)
        else:
            logged.append((record_id, decision))

    # Monitoring's input, last, from the same stored decisions: one file per batch.
    if PREDICTION_LOG is not None and logged:
        unwritten = set(PREDICTION_LOG.write_many((d for _, d in logged), batch_name(records)))
        if unwritten:
            logger.error("predictions not written; the records are retried",
                         extra={"events": len(unwritten)})
        failures += [record_id for record_id, d in logged if d.event_id in unwritten]
    logger.info(
        "batch done",
        extra={"records": len(records), "decided": len(acted), "failed": len(set(failures))},
    )
    return _response(failures, by_id)


def batch_name(records: Sequence[dict[str, Any]]) -> str:
    """``stream-<shard>-<first>-<last sequence number>``: the same for a redelivery
    of the same batch, so its predictions file is overwritten, not duplicated."""
    first, last = records[0], records[-1]
    shard = str(first.get("eventID", "")).partition(":")[0] or "shard"
    return (f"stream-{shard}-{first['kinesis']['sequenceNumber']}-"
            f"{last['kinesis']['sequenceNumber']}")


def dead_letter(rejected: Sequence[Rejected], records: dict[str, dict[str, Any]]) -> list[str]:
    """Send each rejected record to the dead-letter queue; returns those that could not go."""
    failed: list[str] = []
    for item in rejected:
        record = records.get(item.record_id, {})
        kinesis = record.get("kinesis", {})
        truncated = len(item.payload) > MAX_DEAD_LETTER_PAYLOAD
        body = {
            "reason": item.reason,
            "model": CONFIG.get("name"),
            "payload": item.payload[:MAX_DEAD_LETTER_PAYLOAD],
            "payload_truncated": truncated,
            "rejected_at": utc_now(),
            "source": {
                "event_source_arn": record.get("eventSourceARN"),
                "event_id": record.get("eventID"),
                "partition_key": kinesis.get("partitionKey"),
                "sequence_number": item.record_id,
                "approximate_arrival_timestamp": kinesis.get("approximateArrivalTimestamp"),
            },
        }
        if not DEAD_LETTER_QUEUE_URL:
            logger.error("no DEAD_LETTER_QUEUE_URL; keeping the record", extra=body)
            failed.append(item.record_id)
            continue
        try:
            CLIENTS.get("sqs").send_message(
                QueueUrl=DEAD_LETTER_QUEUE_URL,
                MessageBody=json.dumps(body, separators=(",", ":"), default=str),
                MessageAttributes={
                    "reason": {"DataType": "String", "StringValue": item.reason[:256]}
                },
            )
        except Exception:
            logger.exception("dead-letter send failed", extra={"record_id": item.record_id})
            failed.append(item.record_id)
        else:
            logger.warning("record dead-lettered", extra={"record_id": item.record_id,
                                                          "reason": item.reason})
    return failed


def _response(failures: list[str], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # Stream order, once each: Lambda restarts the shard at the lowest reported number.
    wanted = set(failures)
    ordered = [sequence for sequence in records if sequence in wanted]
    return {"batchItemFailures": [{"itemIdentifier": s} for s in ordered]}
