"""The fused path's batch logic: many events, one feature read, one endpoint call.

``BatchScorer.score`` takes raw stream records and returns one ``Decision``
per well-formed record and one ``Rejected`` per malformed one:

1. parse each record (a JSON object with the spec's ``data.event_id`` and
   ``data.entity_key`` and numeric raw columns); anything else is
   ``Rejected`` with the reason and the full payload, and never affects the
   other records;
2. read the online features of every entity in the batch at once
   (``FeatureReader.read_many``; DynamoDB BatchGetItem in chunks of 100);
3. build each event's feature vector in the model's training order
   (``feature_columns``): stored features, overlaid by the event's own raw
   columns, then the spec's expression features computed from both;
4. score every vector in one ``invoke_endpoint`` call (CSV rows in, one
   score per line out);
5. evaluate the rules per event.

A failure of step 2 or 4 (throttling, an endpoint error) raises
``TransientError``: the caller reports the batch's records for retry.

Feature readers: the deployed handlers read the online table the
``feature_update`` function writes with ``mdlc_core.features.OnlineFeatureReader``
(day buckets per entity, window values computed as of today). A store of
precomputed features, one item per entity ``{"pk": "<entity id>",
"features": {"<feature name>": <number>}}``, is read by
``DynamoDBFeatureReader``; any other store implements ``FeatureReader``. A
missing item or feature is a missing value (an empty CSV field, which
XGBoost treats as missing), never an error.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mdlc_core import expressions
from mdlc_core.decisions import Decision, RuleSet
from mdlc_core.features import (
    DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    FeatureError,
    clock_skew_reason,
    to_micros,
)


class TransientError(RuntimeError):
    """A dependency failed in a way a retry may fix; the records are retried."""


class EndpointError(TransientError):
    """The endpoint call failed or answered something that is not one score per row."""


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be scored, kept whole for the dead-letter queue."""

    record_id: str
    reason: str
    payload: str


@dataclass(frozen=True)
class ScoringEvent:
    """A parsed record: its ids and the model inputs it carries itself."""

    record_id: str
    event_id: str
    entity_id: str
    fields: Mapping[str, float | None] = field(default_factory=dict)


@dataclass
class BatchOutcome:
    decisions: list[tuple[ScoringEvent, Decision]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: (record id, parsed event): events of the batch the online store does not
    #: count yet, which the caller records before the next batch
    #: (``mdlc_core.features.EventRows.unrecorded``); only with a reader that
    #: reads as of each event.
    unrecorded: list[tuple[str, Any]] = field(default_factory=list)
    #: record id -> why its features may differ from its training row.
    inexact: dict[str, str] = field(default_factory=dict)


# --- features ----------------------------------------------------------------------


class FeatureReader(Protocol):
    def read_many(self, entity_ids: Sequence[str]) -> dict[str, dict[str, float | None]]:
        """Stored features per entity id; entities without an item are left out."""
        ...


class EventFeatureReader(Protocol):
    """A reader of each event's features as of the event itself (its training
    row), the batch's own events folded in: ``OnlineFeatureReader.read_events``.
    ``BatchScorer`` uses it instead of ``read_many`` when the reader has it."""

    def read_events(self, events: Sequence[Mapping[str, Any] | None]) -> Any: ...


def _number(attribute: Mapping[str, Any]) -> float | None:
    if "N" in attribute:
        return float(attribute["N"])
    if "BOOL" in attribute:
        return float(attribute["BOOL"])
    return None


class DynamoDBFeatureReader:
    """BatchGetItem over the online feature table (see the module docstring)."""

    CHUNK = 100  # BatchGetItem's limit
    RETRIES = 4

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        key: str = "pk",
        attribute: str = "features",
        backoff_seconds: float = 0.05,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.key = key
        self.attribute = attribute
        self.backoff_seconds = backoff_seconds

    def read_many(self, entity_ids: Sequence[str]) -> dict[str, dict[str, float | None]]:
        # BatchGetItem rejects a request that names the same key twice.
        unique = list(dict.fromkeys(entity_ids))
        found: dict[str, dict[str, float | None]] = {}
        for start in range(0, len(unique), self.CHUNK):
            keys = [{self.key: {"S": e}} for e in unique[start : start + self.CHUNK]]
            self._read_chunk(keys, found)
        return found

    def _read_chunk(self, keys: list[dict[str, Any]], found: dict[str, Any]) -> None:
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": keys,
                "ProjectionExpression": "#k, #f",
                "ExpressionAttributeNames": {"#k": self.key, "#f": self.attribute},
                "ConsistentRead": False,
            }
        }
        for attempt in range(self.RETRIES):
            response = self.client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self.table_name, []):
                stored = item.get(self.attribute, {}).get("M", {})
                found[item[self.key]["S"]] = {n: _number(v) for n, v in stored.items()}
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return
            # Unprocessed keys mean the table throttled part of the read.
            time.sleep(self.backoff_seconds * 2**attempt)
        raise TransientError(f"feature table {self.table_name} left keys unprocessed")


class FeaturePlan:
    """How a spec's events become model inputs, compiled once per cold start.

    An event whose timestamp (``data.timestamp``, when present) is not a
    timestamp, or lies more than ``features.max_clock_skew_seconds`` ahead of
    ``clock`` (seconds since the epoch), is rejected, as ``feature_update``
    rejects it: its features could not be read as of its own time.
    """

    def __init__(self, config: Mapping[str, Any], *, clock: Any = time.time) -> None:
        data = config["data"]
        features = config.get("features") or {}
        self.event_id_field: str = data["event_id"]
        self.entity_field: str = data["entity_key"]
        self.timestamp_field: str = data["timestamp"]
        self.timestamp_unit: str | None = next(  # data.columns[].unit: s, ms, us, ns
            (c.get("unit") for c in data.get("columns") or [] if c["name"] == data["timestamp"]),
            None)
        self.max_clock_skew_seconds = int(
            features.get("max_clock_skew_seconds", DEFAULT_MAX_CLOCK_SKEW_SECONDS)
        )
        self.clock = clock
        self.columns = feature_columns(config)
        roles = {data["entity_key"], data["event_id"], data["timestamp"], data["label"]}
        types = {c["name"]: c["type"] for c in data["columns"]}
        self.raw = {n: t for n, t in types.items() if n not in roles and t != "string"}
        self.derived = [
            (f["name"], expressions.parse(f["expression"]))
            for f in features.get("expressions", [])
        ]
        self.stored = [n for n in self.columns if n not in dict(self.derived)]

    def parse(self, record_id: str, payload: str) -> ScoringEvent | Rejected:
        """A record's JSON payload as a ``ScoringEvent``, or why it cannot be one."""
        try:
            body = json.loads(payload)
        except ValueError as error:
            return Rejected(record_id, f"not JSON: {error}", payload)
        if not isinstance(body, dict):
            return Rejected(record_id, f"not a JSON object but {type(body).__name__}", payload)
        ids = []
        for name in (self.event_id_field, self.entity_field):
            value = body.get(name)
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                return Rejected(record_id, f"{name} is missing or not a string", payload)
            ids.append(str(value))
        if body.get(self.timestamp_field) is not None:
            try:
                micros = to_micros(body[self.timestamp_field], self.timestamp_unit)
            except FeatureError as error:
                return Rejected(record_id, f"{self.timestamp_field}: {error}", payload)
            reason = clock_skew_reason(micros, self.clock(), self.max_clock_skew_seconds,
                                       self.timestamp_field)
            if reason is not None:
                return Rejected(record_id, reason, payload)
        fields: dict[str, float | None] = {}
        for name, kind in self.raw.items():
            if name not in body:
                continue
            value = body[name]
            if value is None:
                fields[name] = None
            elif isinstance(value, bool) and kind == "bool":
                fields[name] = float(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if not math.isfinite(value):
                    return Rejected(record_id, f"{name} is not a finite number", payload)
                fields[name] = float(value)
            else:
                return Rejected(record_id, f"{name} must be a number, got {value!r}", payload)
        return ScoringEvent(record_id, ids[0], ids[1], fields)

    def vector(
        self, event: ScoringEvent, stored: Mapping[str, float | None] | None
    ) -> dict[str, float | None]:
        """The event's inputs in training order: stored, overlaid by the event, then derived."""
        stored = stored or {}
        values: dict[str, float | None] = {name: stored.get(name) for name in self.stored}
        values.update(event.fields)
        for name, expression in self.derived:
            # Always recomputed: a stored ratio would be stale for this event's amount.
            try:
                result = expression.evaluate(values)
            except (KeyError, expressions.ExpressionError):
                result = None
            values[name] = result if _finite(result) else None
        return {name: values.get(name) for name in self.columns}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def feature_columns(config: Mapping[str, Any]) -> list[str]:
    """``ModelSpec.feature_columns`` from the plain config (no pydantic in Lambda)."""
    data = config["data"]
    roles = {data["entity_key"], data["event_id"], data["timestamp"], data["label"]}
    raw = [c["name"] for c in data["columns"] if c["name"] not in roles and c["type"] != "string"]
    features = config.get("features") or {}
    derived = [f["name"] for f in features.get("aggregates", [])]
    derived += [f["name"] for f in features.get("expressions", [])]
    return raw + derived


def csv_row(vector: Mapping[str, float | None]) -> str:
    return ",".join("" if v is None else repr(float(v)) for v in vector.values())


# --- the endpoint --------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    values: list[float | None]
    variant: str | None


class EndpointScorer:
    """One ``invoke_endpoint`` call per ``max_rows`` rows (6 MB payload limit)."""

    def __init__(self, client: Any, endpoint_name: str, *, max_rows: int = 1000) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.max_rows = max_rows

    def score(self, rows: Sequence[str]) -> Scores:
        values: list[float | None] = []
        variant = None
        for start in range(0, len(rows), self.max_rows):
            chunk = rows[start : start + self.max_rows]
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                ContentType="text/csv",
                Accept="text/csv",
                Body="\n".join(chunk).encode(),
            )
            body = response["Body"]
            text = (body.read() if hasattr(body, "read") else body).decode()
            chunk_scores = parse_scores(text, len(chunk))
            values.extend(chunk_scores)
            variant = response.get("InvokedProductionVariant") or variant
        return Scores(values, variant)


def parse_scores(text: str, expected: int) -> list[float | None]:
    """One score per row from CSV lines, one CSV line, or a JSON list/predictions."""
    text = text.strip()
    raw: list[Any]
    if text and text[0] in "[{":
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("predictions", [])
        raw = [p.get("score") if isinstance(p, dict) else p for p in data]
    else:
        raw = text.splitlines() if text else []
        if len(raw) == 1 and expected > 1:
            raw = raw[0].split(",")
    if len(raw) != expected:
        raise EndpointError(f"endpoint returned {len(raw)} scores for {expected} rows")
    scores: list[float | None] = []
    for value in raw:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        scores.append(number if math.isfinite(number) else None)
    return scores


# --- the batch ------------------------------------------------------------------------


class BatchScorer:
    """Parse, read features once, score once, decide per event."""

    def __init__(
        self,
        plan: FeaturePlan,
        reader: FeatureReader,
        scorer: EndpointScorer,
        rules: RuleSet,
        model_version: str | None = None,
    ) -> None:
        self.plan = plan
        self.reader = reader
        self.scorer = scorer
        self.rules = rules
        self.model_version = model_version

    def score(self, records: Sequence[tuple[str, str]]) -> BatchOutcome:
        """``records`` are (record id, payload text) pairs, in stream order.

        Raises ``TransientError`` when the feature read or the endpoint fails;
        callers that must act on the rejected records first use ``parse`` and
        ``decide`` separately.
        """
        events, rejected = self.parse(records)
        outcome = self.decide(events, dict(records))
        outcome.rejected[:0] = rejected
        return outcome

    def parse(
        self, records: Sequence[tuple[str, str]]
    ) -> tuple[list[ScoringEvent], list[Rejected]]:
        events: list[ScoringEvent] = []
        rejected: list[Rejected] = []
        for record_id, payload in records:
            parsed = self.plan.parse(record_id, payload)
            if isinstance(parsed, Rejected):
                rejected.append(parsed)
            else:
                events.append(parsed)
        return events, rejected

    def decide(self, events: Sequence[ScoringEvent], payloads: Mapping[str, str]) -> BatchOutcome:
        """One feature read and one endpoint call for ``events``, then the rules per event."""
        outcome = BatchOutcome()
        if not events:
            return outcome
        try:
            if hasattr(self.reader, "read_events"):
                rows = self._rows_as_of_events(events, payloads, outcome)
                events = [e for e in events if e.record_id in rows]
            else:
                stored = self.reader.read_many([e.entity_id for e in events])
                rows = {e.record_id: stored.get(e.entity_id) for e in events}
        except TransientError:
            raise
        except Exception as error:
            raise TransientError(f"feature read failed: {error}") from error
        if not events:
            return outcome
        vectors = [self.plan.vector(e, rows[e.record_id]) for e in events]
        try:
            scores = self.scorer.score([csv_row(v) for v in vectors])
        except TransientError:
            raise
        except Exception as error:
            raise EndpointError(f"endpoint call failed: {error}") from error
        version = self.model_version or f"variant:{scores.variant or 'unknown'}"
        for event, vector, score in zip(events, vectors, scores.values, strict=True):
            if score is None:
                # The model's answer for this row, not a passing fault: retrying
                # would give the same, so it goes to the dead-letter queue.
                outcome.rejected.append(
                    Rejected(
                        event.record_id,
                        "the endpoint returned no numeric score",
                        payloads.get(event.record_id, ""),
                    )
                )
                continue
            decision = self.rules.decide(
                event.event_id,
                score,
                vector,
                version,
                entity_id=event.entity_id,
                variant=scores.variant,
            )
            outcome.decisions.append((event, decision))
        return outcome

    def _rows_as_of_events(self, events: Sequence[ScoringEvent], payloads: Mapping[str, str],
                           outcome: BatchOutcome) -> dict[str, dict[str, Any] | None]:
        """Each event's features as of itself, by record id. Every record of the
        batch (``payloads``, in stream order) is folded, the ones this plan
        rejects too, as the feature updater applies them; an event the feature
        engine rejects (no timestamp) is ``Rejected``: it could not be recorded."""
        order = list(payloads)
        bodies: list[Mapping[str, Any] | None] = []
        for record_id in order:
            try:
                body = json.loads(payloads[record_id])
            except ValueError:
                body = None
            bodies.append(body if isinstance(body, dict) else None)
        found = self.reader.read_events(bodies)  # type: ignore[attr-defined]
        index = {record_id: i for i, record_id in enumerate(order)}
        rows: dict[str, dict[str, Any] | None] = {}
        for event in events:
            at = index.get(event.record_id)
            if at is None:
                continue
            if at in found.rejected:
                outcome.rejected.append(Rejected(event.record_id, found.rejected[at],
                                                 payloads[event.record_id]))
                continue
            rows[event.record_id] = found.rows[at]
            reason = found.inexact.get(event.event_id)
            if reason is not None:
                outcome.inexact[event.record_id] = reason
        outcome.unrecorded = [(order[i], found.events[i]) for i in found.unrecorded]
        return rows
