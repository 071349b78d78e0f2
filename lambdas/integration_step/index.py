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
    (features in the model's training order: the online feature table,
    overlaid by the event's raw columns, then the spec's expressions)
``run_inference``
    in:  the above; out: adds ``"score"``, ``"model_version"``, ``"variant"``
``execute_rules``
    in:  the above; out: adds ``"decision"`` (``Decision.to_record()``)
``perform_action``
    in:  the above; out: adds ``"receipt"``; ``decision`` becomes the decision
    that was acted on (a redelivered event acts once and returns the first).
    After the action it writes that decision to the decision log and, when
    PREDICTIONS_BUCKET is set, as monitoring's input (``mdlc_core.predictions``):
    one CSV per invocation, which here is one event,
    ``predictions/<model>/dt=<day of decided_at>/scored/event-<event id>.csv``;
    the name is the event's, so a redelivery overwrites it. A failed write
    raises ``TransientError`` (retried; the action does not run again).

Errors, by name, for the state machine's Retry and Catch:
``MalformedEvent`` (the event or the model's answer is unusable: do not
retry, send to the dead-letter destination), ``TransientError`` and
``EndpointError`` (retry with backoff), ``ActionError`` and Powertools'
``IdempotencyAlreadyInProgressError`` (retry: the action is idempotent).

Environment: as the stream consumer (ENDPOINT_NAME, FEATURES_TABLE,
DECISIONS_TABLE and/or DECISIONS_BUCKET, PREDICTIONS_BUCKET, IDEMPOTENCY_TABLE, ACTION_TOPIC_ARN,
ACTION_QUEUE_URL, ACTION_EVENT_BUS_NAME, MODEL_PACKAGE_VERSION), each read
only by the step that needs it.
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
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from mdlc_core.actions import Clients, DecisionLog, Dispatcher
from mdlc_core.decisions import Decision, RuleSet
from mdlc_core.features import FeatureSet, OnlineFeatureReader
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

logger = Logger(service="mdlc-integration-step")


class MalformedEvent(Exception):
    """The event cannot be decided; retrying would not change that."""


CONFIG = load_config()
CLIENTS = Clients()
PLAN = FeaturePlan(CONFIG)
RULES = RuleSet.from_config(CONFIG)
IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="event_id",
    expires_after_seconds=int(
        (CONFIG.get("integration") or {}).get("max_record_age_seconds", 3600)
    ) + 3600,
)


# Built on first use so that each step needs only its own environment.
@cache
def _reader() -> OnlineFeatureReader:
    # The table the feature_update function writes (day buckets per entity).
    return OnlineFeatureReader(
        CLIENTS.get("dynamodb"), os.environ["FEATURES_TABLE"], FeatureSet.from_config(CONFIG)
    )


@cache
def _scorer() -> EndpointScorer:
    return EndpointScorer(CLIENTS.get("sagemaker-runtime"), os.environ["ENDPOINT_NAME"])


@cache
def _dispatcher() -> Dispatcher:
    return Dispatcher.from_config(CONFIG, CLIENTS)


@cache
def _decision_log() -> DecisionLog:
    return DecisionLog.from_env(CLIENTS)


@cache
def _prediction_log() -> PredictionLog | None:
    return PredictionLog.from_env(CLIENTS, CONFIG, feature_columns(CONFIG))


@cache
def _act() -> Callable[..., dict[str, Any]]:
    persistence = DynamoDBPersistenceLayer(
        table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=CLIENTS.get("dynamodb")
    )

    # Same key prefix as the stream consumer: an event acts once on either path.
    @idempotent_function(
        data_keyword_argument="decision",
        persistence_store=persistence,
        config=IDEMPOTENCY,
        key_prefix=f"mdlc-action-{CONFIG.get('name', 'model')}",
    )
    def act(decision: dict[str, Any]) -> dict[str, Any]:
        receipt = _dispatcher().perform(Decision.from_record(decision))
        return {"decision": decision, "receipt": receipt}

    return act


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
    try:
        stored = _reader().read_many([parsed.entity_id])
    except TransientError:
        raise
    except Exception as error:
        raise TransientError(f"feature read failed: {error}") from error
    features = PLAN.vector(parsed, stored.get(parsed.entity_id))
    return {**state, "event": json.loads(payload), "event_id": parsed.event_id,
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
    version = os.environ.get("MODEL_PACKAGE_VERSION") or f"variant:{scores.variant or 'unknown'}"
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
    result = _act()(decision=state["decision"])
    # The stored decision, on a redelivery too, so the log matches what was done.
    decision = Decision.from_record(result["decision"])
    _decision_log().write(decision)
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
    if context is not None:
        IDEMPOTENCY.register_lambda_context(context)
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

