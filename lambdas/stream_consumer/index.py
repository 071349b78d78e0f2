"""The fused client-integration path: a Kinesis consumer that batches.

For a batch of Kinesis records it makes one feature read (DynamoDB
BatchGetItem, 100 keys a call, strongly consistent, on the online table the
``feature_update`` function writes, read by
``mdlc_core.features.OnlineFeatureReader.read_events``) and one endpoint call
for all of them, then evaluates the rules and performs each event's action
(``mdlc_core``).

Features as of each event, equal to its training row whatever the updater
did: each event is scored on its window as of itself, the event included,
from the stored items plus the batch's own events the store does not count
yet (the items say which: docs/features.md, "Online rows equal training
rows"). Before a record is reported done, every event of the batch the store
did not count is recorded by this function itself (the same exactly-once
``IncrementalEngine.apply`` as the updater's; whichever comes second finds
the event's marker), so no event before the next batch is missing from the
store, however far the updater lags or whatever it failed. A record that
could not be recorded is reported as failed and redelivered.

Input: the Kinesis event (``Records[].kinesis.data`` is base64 JSON with
the spec's ``data.event_id`` and ``data.entity_key`` and numeric raw
columns). Output: ``{"batchItemFailures": [{"itemIdentifier": <sequence
number>}, ...]}`` (the event source mapping must enable
``ReportBatchItemFailures``).

Failure handling:

- malformed record (not base64 UTF-8 JSON, missing ids, non-numeric
  columns, a timestamp beyond the clock skew, no numeric score from the
  model): dead-lettered (``mdlc_core.dead_letters``: the payload byte for
  byte in S3 under DEAD_LETTER_BUCKET/DEAD_LETTER_PREFIX, a message bounded
  to SQS's size in DEAD_LETTER_QUEUE_URL with the reason and the payload's
  location), once per record however often it is delivered, then counted as
  handled, so it never blocks or fails its neighbours. If it cannot be
  dead-lettered it is reported as failed, never dropped;
- transient failure of the feature read or the endpoint: every record of
  the batch that was not dead-lettered is reported as failed, and the event
  source mapping retries (bisecting, bounded retries and record age, then its
  on-failure destination);
- failure of one event's action, of a decision-log write or of recording its
  event in the online store: that record alone;
- failure of the predictions write (below): the records of that file, so
  that the stream redelivers them and monitoring does not silently miss
  real-time decisions. Their actions do not run again.

Exactly once (``mdlc_core.actions.ActionLedger``, on the decision log):
each event's decision is put into the decision log, conditional on its
event id (the producer's ``data.event_id``) being absent, *before* acting,
then the action runs, then the item is completed with the action's receipt.
A redelivered event finds its item done and does not act again; the log
always holds the decision that was acted on, once. An item still being acted
on (its lease, the claiming invocation's remaining time, not past) fails the
record, which is retried; one whose claimant ended without recording the
outcome is never acted on again: it is marked ``unconfirmed`` and
dead-lettered with that reason (docs/integration.md, Exactly once).

Predictions for model monitoring (``mdlc_core.predictions``): after the
actions, the batch's logged decisions are written as ONE CSV per
invocation (one per UTC day of the decisions, in practice one) to
``predictions/<model>/dt=<day of decided_at>/scored/stream-<shard>-<first
sequence number>-<last sequence number>.csv`` in PREDICTIONS_BUCKET, from
the same stored decisions. The name is the batch's, so a redelivery of the
same batch (a timeout, a crash) overwrites the file; a batch retried from
another sequence number (partial failure, bisection) writes the events
after the failed one into a second file with identical rows, and the
monitor counts each event id of a day once. Without PREDICTIONS_BUCKET
nothing is written.

Environment: ENDPOINT_NAME, FEATURES_TABLE, DECISIONS_TABLE (the decision
log and the action ledger), DECISIONS_BUCKET (optional JSON copies),
PREDICTIONS_BUCKET (monitoring's input), DEAD_LETTER_QUEUE_URL,
DEAD_LETTER_BUCKET, DEAD_LETTER_PREFIX, ACTION_TOPIC_ARN,
ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME (for the kinds the spec uses),
MODEL_PACKAGE_VERSION (optional: a fixed version to write into decisions),
SERVING_VERSION_TTL_SECONDS (default 60), MDLC_CONFIG_FILE (tests only).

Which version scored a decision (``model_version``): MODEL_PACKAGE_VERSION
when set; otherwise the model package ARN the endpoint serves, looked up
(DescribeEndpoint -> DescribeEndpointConfig -> DescribeModel: the model's
``ModelPackageName``) at most once per SERVING_VERSION_TTL_SECONDS. Caveats:
for up to the TTL after a deployment, and while a blue/green update shifts
traffic (both fleets answer, with the same variant name), a decision may
name the version being replaced; if the lookup fails, the last version
found is kept, and without one the decision names the variant
(``variant:AllTraffic``), never failing the batch (docs/lineage.md).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger
from botocore.config import Config
from mdlc_core.actions import ActionLedger, Clients, DecisionLog, Dispatcher
from mdlc_core.dead_letters import (
    DeadLetterError,
    DeadLetters,
    Rejection,
    kinesis_payload,
    kinesis_source,
)
from mdlc_core.decisions import Decision, RuleSet
from mdlc_core.features import DynamoDBStore, FeatureSet, IncrementalEngine, OnlineFeatureReader
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
from mdlc_core.serving import ServingVersion

logger = Logger(service="mdlc-stream-consumer")

#: Names this function's dead letters: dead-letters/<model>/stream-consumer/.
FUNCTION = "stream-consumer"
#: The lease of a claim when there is no Lambda context (tests, scripts).
DEFAULT_LEASE_SECONDS = 900


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
# The decision log is the action ledger: one item per event id, claimed before acting.
LEDGER = ActionLedger(CLIENTS.get("dynamodb"), os.environ.get("DECISIONS_TABLE", ""))
# Optional JSON copies of the decisions in S3 (DECISIONS_BUCKET).
DECISION_COPIES = (DecisionLog(CLIENTS, bucket=os.environ["DECISIONS_BUCKET"])
                   if os.environ.get("DECISIONS_BUCKET") else None)
PREDICTION_LOG = PredictionLog.from_env(CLIENTS, CONFIG, feature_columns(CONFIG))
FEATURES = FeatureSet.from_config(CONFIG)
SCORER = BatchScorer(
    FeaturePlan(CONFIG),
    # The table the feature_update function writes: one BatchGetItem per 100
    # items, each event's window values computed here as of the event itself.
    OnlineFeatureReader(CLIENTS.get("dynamodb"), os.environ["FEATURES_TABLE"], FEATURES),
    EndpointScorer(CLIENTS.get("sagemaker-runtime"), os.environ["ENDPOINT_NAME"]),
    RULES,
    model_version=os.environ.get("MODEL_PACKAGE_VERSION") or None,
)


#: The served version's lookup; none when MODEL_PACKAGE_VERSION fixes the version.
SERVING = ServingVersion.from_env()

#: Records the batch's events the store does not count yet (the updater's engine).
RECORDER = IncrementalEngine(FEATURES, DynamoDBStore(CLIENTS.get("dynamodb"),
                                                     os.environ["FEATURES_TABLE"],
                                                     FEATURES.model))
_dead_letters: DeadLetters | None = None


def dead_letters() -> DeadLetters:
    """The dead-letter destination, from the environment (raises ValueError when unset)."""
    global _dead_letters
    if _dead_letters is None:
        _dead_letters = DeadLetters.from_env(sqs=CLIENTS.get("sqs"), s3=CLIENTS.get("s3"),
                                             model=str(CONFIG.get("name", "model")),
                                             function=FUNCTION)
    return _dead_letters


def lease_seconds(context: Any) -> float:
    """How long a claim is held: until this invocation must have ended (plus a margin)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return DEFAULT_LEASE_SECONDS
    return remaining() / 1000 + 10


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
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

    if SERVING is not None and events:
        SCORER.model_version = SERVING.current()
    try:
        outcome = SCORER.decide(events, dict(pairs))
    except TransientError as error:
        logger.warning("batch not scored, retrying", extra={"reason": str(error)})
        failures += [e.record_id for e in events]
        return _response(failures, by_id)
    failures += dead_letter(outcome.rejected, by_id)

    payloads = dict(pairs)
    lease = lease_seconds(context)
    logged: list[tuple[str, Decision]] = []
    unconfirmed: list[Rejected] = []
    for scored, decision in outcome.decisions:
        result = LEDGER.perform_once(decision.event_id, decision.to_record(),
                                     lambda d=decision: DISPATCHER.perform(d),
                                     lease_seconds=lease)
        if result.status in ("acted", "already"):
            assert result.record is not None
            logged.append((scored.record_id, Decision.from_record(result.record)))
        elif result.status == "unconfirmed":
            unconfirmed.append(Rejected(scored.record_id, result.reason or "unconfirmed",
                                        payloads.get(scored.record_id, "")))
        else:
            logger.warning("event not acted on yet; retried",
                           extra={"event_id": decision.event_id, "status": result.status,
                                  "reason": result.reason})
            failures.append(scored.record_id)
    failures += dead_letter(unconfirmed, by_id)

    if DECISION_COPIES is not None and logged:
        uncopied = set(DECISION_COPIES.write_many(d for _, d in logged))
        failures += [record_id for record_id, d in logged if d.event_id in uncopied]

    # Monitoring's input, last, from the same stored decisions: one file per batch.
    if PREDICTION_LOG is not None and logged:
        unwritten = set(PREDICTION_LOG.write_many((d for _, d in logged), batch_name(records)))
        if unwritten:
            logger.error("predictions not written; the records are retried",
                         extra={"events": len(unwritten)})
        failures += [record_id for record_id, d in logged if d.event_id in unwritten]
    for record_id, reason in outcome.inexact.items():
        logger.warning("features may differ from the training row",
                       extra={"record_id": record_id, "reason": reason})
    failures += record_features(outcome.unrecorded)
    logger.info(
        "batch done",
        extra={"records": len(records), "decided": len(logged), "failed": len(set(failures)),
               "recorded": len(outcome.unrecorded), "inexact": len(outcome.inexact)},
    )
    return _response(failures, by_id)


def record_features(unrecorded: Sequence[tuple[str, Any]]) -> list[str]:
    """Apply to the online store the batch's events it did not count yet (in stream
    order; a duplicate or late event changes nothing); returns the records that
    could not be, which are retried, so the next batch finds every earlier event."""
    failed: list[str] = []
    for record_id, event in unrecorded:
        try:
            RECORDER.apply(event)
        except Exception as error:  # any failure: the record is redelivered
            logger.warning("event not recorded in the online store; retried",
                           extra={"record_id": record_id, "error": str(error)})
            failed.append(record_id)
    return failed


def batch_name(records: Sequence[dict[str, Any]]) -> str:
    """``stream-<shard>-<first>-<last sequence number>``: the same for a redelivery
    of the same batch, so its predictions file is overwritten, not duplicated."""
    first, last = records[0], records[-1]
    shard = str(first.get("eventID", "")).partition(":")[0] or "shard"
    return (f"stream-{shard}-{first['kinesis']['sequenceNumber']}-"
            f"{last['kinesis']['sequenceNumber']}")


def dead_letter(rejected: Sequence[Rejected], records: dict[str, dict[str, Any]]) -> list[str]:
    """Dead-letter each rejected record (once per record); returns those that could not go."""
    failed: list[str] = []
    for item in rejected:
        record = records.get(item.record_id)
        payload = kinesis_payload(record) if record else item.payload.encode()
        source = kinesis_source(record) if record else {"sequence_number": item.record_id}
        try:
            sent = dead_letters().send(Rejection(item.reason, payload, source))
        except (DeadLetterError, ValueError) as error:
            logger.error("record not dead-lettered; reported as failed",
                         extra={"record_id": item.record_id, "reason": item.reason,
                                "error": str(error)})
            failed.append(item.record_id)
        else:
            logger.warning("record dead-lettered", extra={"record_id": item.record_id,
                                                          "reason": item.reason, **sent})
    return failed


def _response(failures: list[str], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # Stream order, once each: Lambda restarts the shard at the lowest reported number.
    wanted = set(failures)
    ordered = [sequence for sequence in records if sequence in wanted]
    return {"batchItemFailures": [{"itemIdentifier": s} for s in ordered]}
