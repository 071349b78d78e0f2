"""The online feature store on DynamoDB, and the reader both integration paths use.

Split from :mod:`mdlc_core.features` (issue #17), which re-exports every name
here: :class:`DynamoDBStore` (the incremental engine's store, conditional
transactional writes) and :class:`OnlineFeatureReader` (one BatchGetItem per
100 entities, rows as of each event).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from .batch_features import (
    FeatureSet,
    MalformedEvent,
    clock_skew_reason,
    day_number,
)
from .incremental_features import (
    DuplicateEvent,
    EventRows,
    ParsedEvent,
    Write,
    WriteConflict,
    event_item_keys,
    features_as_of,
    item_key,
    parse_event,
    rows_as_of_events,
)

# --- DynamoDB ------------------------------------------------------------------------------


def to_dynamo(value: Any) -> Any:
    """A value as DynamoDB's serializer takes it: floats as exact Decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))  # repr round-trips the float exactly
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """A value read from DynamoDB as written: Decimals back to int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) \
            else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


class DynamoDBStore:
    """:class:`FeatureStore` on a DynamoDB table with partition key ``pk`` (string).

    Each commit is one TransactWriteItems: a put of the marker item
    ``<model>#event#<event id>`` on ``attribute_not_exists(pk)``, and a put of
    every changed aggregate item on its ``version`` (optimistic lock). Both
    carry ``expires_at`` for the table's TTL.
    """

    def __init__(self, client: Any, table_name: str, model: str) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self.client, self.table_name, self.model = client, table_name, model
        self._serialize = TypeSerializer().serialize
        self._deserialize = TypeDeserializer().deserialize

    def get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        response = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": key}},
                                        ConsistentRead=True)
        raw = response.get("Item")
        if raw is None:
            return None, 0
        item = {k: from_dynamo(self._deserialize(v)) for k, v in raw.items()}
        version = int(item.pop("version"))
        item.pop("pk")
        return item, version

    def _marshal(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._serialize(to_dynamo(v)) for k, v in item.items()}

    def commit(self, event_id: str, writes: list[Write], marker_expires_at: int) -> None:
        marker = {"pk": f"{self.model}#event#{event_id}", "expires_at": marker_expires_at,
                  "recorded_at": int(time.time())}
        actions: list[dict[str, Any]] = [{"Put": {
            "TableName": self.table_name, "Item": self._marshal(marker),
            "ConditionExpression": "attribute_not_exists(pk)",
        }}]
        for write in writes:
            put: dict[str, Any] = {
                "TableName": self.table_name,
                "Item": self._marshal({**write.item, "pk": write.key,
                                       "version": write.version + 1}),
            }
            if write.version == 0:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                put["ConditionExpression"] = "version = :v"
                put["ExpressionAttributeValues"] = {":v": {"N": str(write.version)}}
            actions.append({"Put": put})
        try:
            self.client.transact_write_items(TransactItems=actions)
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise DuplicateEvent(event_id) from error
            if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                raise WriteConflict(event_id) from error
            raise


class TransientReadError(RuntimeError):
    """The table throttled part of a read and kept doing so; retry later."""


class OnlineFeatureReader:
    """Many entities' online features in one DynamoDB BatchGetItem per 100 keys.

    Reads the items :class:`DynamoDBStore` writes (``<model>#<entity
    column>#<value>``, day buckets, ``last``) and computes each entity's
    window values as of a day, exactly as :meth:`IncrementalEngine.read`
    does. This is the integration's "collect features" step: the fused
    consumer calls it once per batch. Aggregates keyed by another entity
    column (``aggregates[].entity``) need their items, named by each entity's
    latest event, in a second BatchGetItem round; the example spec has none.

    Args:
        client: a boto3 DynamoDB client.
        table_name: the online feature table.
        features: the spec's feature set (``FeatureSet.from_config``).
        clock: seconds since the epoch, for the default ``as_of`` (today, UTC).
    """

    CHUNK = 100  # BatchGetItem's limit
    RETRIES = 4

    def __init__(self, client: Any, table_name: str, features: FeatureSet, *,
                 backoff_seconds: float = 0.05, clock: Any = time.time) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self.client, self.table_name, self.features = client, table_name, features
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self._deserialize = TypeDeserializer().deserialize

    def read_many(self, entity_ids: Sequence[str],
                  as_of: date | str | None = None) -> dict[str, dict[str, Any]]:
        """``{entity id: {feature name: value}}`` as of the end of day ``as_of``
        (default: today in UTC). Entities without an event in the longest
        window are left out (they score with missing values)."""
        fs = self.features
        today = day_number(as_of) if as_of is not None else int(self.clock()) // 86_400
        unique = list(dict.fromkeys(str(e) for e in entity_ids))
        items = self._get_many([item_key(fs.model, fs.entity_key, e) for e in unique])
        others = {
            item_key(fs.model, a.entity, str(value))
            for e in unique
            if (item := items.get(item_key(fs.model, fs.entity_key, e))) and item.get("last")
            for a in fs.aggregates
            if a.entity != fs.entity_key and (value := item["last"]["values"].get(a.entity))
        }
        if others:
            items |= self._get_many(sorted(others))
        found: dict[str, dict[str, Any]] = {}
        for entity in unique:
            row = features_as_of(
                fs, entity, items.get(item_key(fs.model, fs.entity_key, entity)), today,
                lambda column, value: items.get(item_key(fs.model, column, str(value))),
            )
            if row is not None:
                row.pop(fs.entity_key, None)
                found[entity] = row
        return found

    def read_events(self, events: Sequence[Mapping[str, Any] | None]) -> EventRows:
        """Each event's features as of itself (its training row,
        :func:`rows_as_of_events`), for a batch of events in stream order: one
        strongly consistent BatchGetItem per 100 items, so every event recorded
        before the call is counted. ``None`` stands for a record that is not an
        event (it keeps its place). An event the engine cannot parse, or dated
        beyond the clock skew, is left out (``rejected``, with the reason): it is
        never recorded, so it counts for no other event either."""
        fs = self.features
        parsed: list[ParsedEvent | None] = []
        rejected: dict[int, str] = {}
        now = self.clock()
        for index, event in enumerate(events):
            if event is None:
                parsed.append(None)
                continue
            try:
                ev = parse_event(fs, event)
            except MalformedEvent as error:
                rejected[index] = str(error)
                parsed.append(None)
                continue
            reason = clock_skew_reason(ev.micros, now, fs.max_clock_skew_seconds, fs.timestamp)
            if reason is not None:
                rejected[index] = f"event {ev.event_id!r}: {reason}"
                parsed.append(None)
                continue
            parsed.append(ev)
        keys = event_item_keys(fs, parsed)
        items = self._get_many(keys, consistent=True) if keys else {}
        found = rows_as_of_events(fs, parsed, {key: items.get(key) for key in keys})
        found.rejected = rejected
        return found

    def _get_many(self, keys: Sequence[str], *,
                  consistent: bool = False) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), self.CHUNK):
            request: dict[str, Any] = {self.table_name: {
                "Keys": [{"pk": {"S": k}} for k in keys[start : start + self.CHUNK]],
                "ProjectionExpression": "pk, #d, #l, #r, #x",
                "ExpressionAttributeNames": {"#d": "days", "#l": "last", "#r": "recent",
                                             "#x": "dropped"},
                "ConsistentRead": consistent,
            }}
            for attempt in range(self.RETRIES):
                response = self.client.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.table_name, []):
                    item = {k: from_dynamo(self._deserialize(v)) for k, v in raw.items()}
                    items[item.pop("pk")] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                # Unprocessed keys mean the table throttled part of the read.
                time.sleep(self.backoff_seconds * 2**attempt)
            else:
                raise TransientReadError(
                    f"feature table {self.table_name} left keys unprocessed after "
                    f"{self.RETRIES} attempts"
                )
        return items
