"""The talk's client-integration path: one Express workflow per event, four steps.

One function serves every step; ``event["step"]`` picks it. Each step takes
the previous step's output and returns it with its own keys added, so the
state machine passes the whole state along: the task's payload is
``{"step": <name>, "state.$": "$"}`` and its ``ResultPath`` is ``$``
(``ClientIntegration`` builds it; a flat ``{"step", ...state}`` works too):

``collect_features``
    in:  ``{"step", "event": <the producer's event, an object or JSON text>}``,
    or ``{"step", "record": <a Kinesis record as EventBridge Pipes sends it>}``
    out: ``{"event", "event_id", "entity_id", "features": {name: number|null}}``
    (features in the model's training order: the event's raw columns, its
    window values as of itself, the event included, from the online feature
    table, then the spec's expressions: its training row, as the fused
    consumer computes it with the same ``OnlineFeatureReader.read_events``).
    If the table does not count the event yet, this step records it (the
    updater's exactly-once ``IncrementalEngine.apply``) before it returns, so
    the next event's execution (the pipe runs them one at a time per shard)
    finds it, however far the updater lags.
``run_inference``
    in:  the above; out: adds ``"score"``, ``"model_version"``, ``"variant"``
``execute_rules``
    in:  the above; out: adds ``"decision"`` (``Decision.to_record()``)
``perform_action``
    in:  the above; out: adds ``"receipt"``; ``decision`` becomes the decision
    that was acted on (a redelivered event acts once and returns the first).
    The decision log is the action ledger (``mdlc_core.actions.ActionLedger``,
    the same items and key as the fused consumer's, so an event acts once on
    either path): the decision is claimed there before acting and completed
    after, so every performed action is logged exactly once whichever write
    fails. Then, with DECISIONS_BUCKET, a JSON copy, and with
    PREDICTIONS_BUCKET, monitoring's input (``mdlc_core.predictions``): one CSV
    per invocation, which here is one event,
    ``predictions/<model>/dt=<day of decided_at>/scored/event-<event id>.csv``;
    the name is the event's, so a redelivery overwrites it. A failed write
    raises ``TransientError`` (retried; the action does not run again).

Errors, by name, for the state machine's Retry and Catch:
``MalformedEvent`` (the event or the model's answer is unusable: do not
retry, send to the dead-letter destination), ``UnconfirmedAction`` (an
earlier attempt claimed the event and ended without recording whether it
acted: never acted on again, dead-lettered with that reason), and
``TransientError`` and ``EndpointError`` (retry with backoff; an action that
failed, or an event another attempt is acting on, is a ``TransientError``).

Environment: as the stream consumer (ENDPOINT_NAME, FEATURES_TABLE,
DECISIONS_TABLE, DECISIONS_BUCKET, PREDICTIONS_BUCKET, ACTION_TOPIC_ARN,
ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME, MODEL_PACKAGE_VERSION,
SERVING_VERSION_TTL_SECONDS), each read only by the step that needs it.
``run_inference`` names the model package the endpoint serves in
``model_version`` (``mdlc_core.serving``: looked up at most once per TTL by
a warm container) unless MODEL_PACKAGE_VERSION fixes it; without an answer,
the variant (``variant:<name>``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger
from mdlc_core.actions import ActionLedger, Clients, DecisionLog, Dispatcher
from mdlc_core.decisions import Decision, RuleSet
from mdlc_core.features import DynamoDBStore, FeatureSet, IncrementalEngine, OnlineFeatureReader
from mdlc_core.predictions import PredictionLog
from mdlc_core.runtime_config import load_config
from mdlc_core.scoring import (
    EndpointScorer,
    FeaturePlan,
    Rejected,
    TransientError,
    csv_row,
    feature_columns,
)
from mdlc_core.serving import ServingVersion

logger = Logger(service="mdlc-integration-step")


class MalformedEvent(Exception):
    """The event cannot be decided; retrying would not change that."""


class UnconfirmedAction(Exception):
    """An earlier attempt claimed the event's action and ended without recording
    it: whether it ran is unknown, so it is never performed again."""


#: The lease of a claim when there is no Lambda context (tests, scripts).
DEFAULT_LEASE_SECONDS = 900


CONFIG = load_config()
CLIENTS = Clients()
PLAN = FeaturePlan(CONFIG)
RULES = RuleSet.from_config(CONFIG)
#: The invocation's remaining time, for the ledger's lease (set by the handler).
_REMAINING: list[Callable[[], int]] = []


# Built on first use so that each step needs only its own environment.
@cache
def _reader() -> OnlineFeatureReader:
    # The table the feature_update function writes (day buckets per entity).
    return OnlineFeatureReader(
        CLIENTS.get("dynamodb"), os.environ["FEATURES_TABLE"], FeatureSet.from_config(CONFIG)
    )


@cache
def _recorder() -> IncrementalEngine:
    """Records an event the table does not count yet (the updater's engine)."""
    features = FeatureSet.from_config(CONFIG)
    return IncrementalEngine(features, DynamoDBStore(CLIENTS.get("dynamodb"),
                                                     os.environ["FEATURES_TABLE"],
                                                     features.model))


@cache
def _scorer() -> EndpointScorer:
    return EndpointScorer(CLIENTS.get("sagemaker-runtime"), os.environ["ENDPOINT_NAME"])


@cache
def _serving() -> ServingVersion | None:
    """The served package's lookup, kept by the warm container (None when
    MODEL_PACKAGE_VERSION fixes the version)."""
    return ServingVersion.from_env()


@cache
def _dispatcher() -> Dispatcher:
    return Dispatcher.from_config(CONFIG, CLIENTS)


@cache
def _ledger() -> ActionLedger:
    return ActionLedger(CLIENTS.get("dynamodb"), os.environ.get("DECISIONS_TABLE", ""))


@cache
def _decision_copies() -> DecisionLog | None:
    bucket = os.environ.get("DECISIONS_BUCKET")
    return DecisionLog(CLIENTS, bucket=bucket) if bucket else None


@cache
def _prediction_log() -> PredictionLog | None:
    return PredictionLog.from_env(CLIENTS, CONFIG, feature_columns(CONFIG))


def _from_kinesis(record: Any) -> tuple[str, str]:
    """(payload text, sequence number) of a Kinesis record as EventBridge Pipes sends it."""
    if not isinstance(record, dict) or "data" not in record:
        raise MalformedEvent("the record has no Kinesis data")
    try:
        text = base64.b64decode(record["data"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, TypeError) as error:
        raise MalformedEvent(f"not base64 UTF-8: {error}") from error
    return text, str(record.get("sequenceNumber", ""))


def collect_features(state: dict[str, Any]) -> dict[str, Any]:
    if "record" in state:  # from the pipe: the Kinesis record, its data base64
        payload, record_id = _from_kinesis(state.pop("record"))
        state = {**state, "record_id": record_id}
    else:
        raw = state.get("event")
        payload = raw if isinstance(raw, str) else json.dumps(raw)
    parsed = PLAN.parse(str(state.get("record_id", "")), payload)
    if isinstance(parsed, Rejected):
        raise MalformedEvent(parsed.reason)
    body = json.loads(payload)
    try:
        found = _reader().read_events([body])
    except TransientError:
        raise
    except Exception as error:
        raise TransientError(f"feature read failed: {error}") from error
    if 0 in found.rejected:
        raise MalformedEvent(found.rejected[0])
    if parsed.event_id in found.inexact:
        logger.warning("features may differ from the training row",
                       extra={"event_id": parsed.event_id,
                              "reason": found.inexact[parsed.event_id]})
    features = PLAN.vector(parsed, found.rows[0])
    if found.unrecorded:
        try:
            _recorder().apply(found.events[0])
        except Exception as error:
            raise TransientError(f"recording the event's features failed: {error}") from error
    return {**state, "event": body, "event_id": parsed.event_id,
            "entity_id": parsed.entity_id, "features": features}


def run_inference(state: dict[str, Any]) -> dict[str, Any]:
    features = _features(state)
    try:
        scores = _scorer().score([csv_row(features)])
    except TransientError:
        raise
    except Exception as error:
        raise TransientError(f"endpoint call failed: {error}") from error
    score = scores.values[0]
    if score is None:
        raise MalformedEvent(f"the endpoint returned no numeric score for {state['event_id']}")
    serving = _serving()
    version = (os.environ.get("MODEL_PACKAGE_VERSION") or (serving and serving.current())
               or f"variant:{scores.variant or 'unknown'}")
    return {**state, "score": score, "model_version": version, "variant": scores.variant}


def execute_rules(state: dict[str, Any]) -> dict[str, Any]:
    try:
        decision = RULES.decide(
            state["event_id"], state["score"], _features(state), state["model_version"],
            entity_id=state.get("entity_id"), variant=state.get("variant"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedEvent(f"cannot decide: {error!r}") from error
    return {**state, "decision": decision.to_record()}


def perform_action(state: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(state.get("decision"), dict):
        raise MalformedEvent("perform_action needs the decision from execute_rules")
    proposed = Decision.from_record(state["decision"])
    lease = _REMAINING[-1]() / 1000 + 10 if _REMAINING else DEFAULT_LEASE_SECONDS
    outcome = _ledger().perform_once(proposed.event_id, proposed.to_record(),
                                     lambda: _dispatcher().perform(proposed),
                                     lease_seconds=lease)
    if outcome.status == "unconfirmed":
        raise UnconfirmedAction(outcome.reason)
    if outcome.status not in ("acted", "already") or outcome.record is None:
        # Failed, or another attempt is acting on it: the retry finds out.
        raise TransientError(outcome.reason or f"{proposed.event_id}: {outcome.status}")
    # The stored decision, on a redelivery too, so the log matches what was done.
    decision = Decision.from_record(outcome.record)
    result = {"decision": outcome.record, "receipt": outcome.receipt or {}}
    copies = _decision_copies()
    if copies is not None and copies.write_many([decision]):
        raise TransientError(f"the decision copy of {decision.event_id} was not written to "
                             f"s3://{copies.bucket}/; retrying does not act again")
    predictions = _prediction_log()
    # Monitoring's input, from the same decision; named by the event, so a retry overwrites.
    if predictions is not None and predictions.write_many(
        [decision], f"event-{quote(decision.event_id, safe='')}"
    ):
        raise TransientError(f"the prediction of {decision.event_id} was not written to "
                             f"s3://{predictions.bucket}/; retrying does not act again")
    return {**state, "decision": result["decision"], "receipt": result["receipt"]}


def _features(state: dict[str, Any]) -> dict[str, Any]:
    features = state.get("features")
    if not isinstance(features, dict):
        raise MalformedEvent("the state has no features; run collect_features first")
    return features


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "collect_features": collect_features,
    "run_inference": run_inference,
    "execute_rules": execute_rules,
    "perform_action": perform_action,
}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _REMAINING[:] = [context.get_remaining_time_in_millis] if hasattr(
        context, "get_remaining_time_in_millis") else []
    step = STEPS.get(event.get("step", ""))
    if step is None:
        raise MalformedEvent(f"unknown step {event.get('step')!r}; expected one of {list(STEPS)}")
    # The workflow sends {"step", "state": <the whole state>}; a flat event works too.
    if isinstance(event.get("state"), dict):
        state = dict(event["state"])
    else:
        state = {k: v for k, v in event.items() if k != "step"}
    result = step(state)
    logger.info("step done", extra={"step": event["step"], "event_id": result.get("event_id")})
    return result

