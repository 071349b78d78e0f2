"""The incremental feature engine: per-entity day buckets and newest events.

Split from :mod:`mdlc_core.features` (issue #17), which keeps the definition
and the batch engine and re-exports every name here. An item per entity
value holds day buckets of the window's aggregates and its newest events one
by one; :class:`IncrementalEngine` updates it in constant work per event,
exactly once per event id, and :func:`rows_as_of_events` reads it as of each
event of a batch (the training row, :func:`mdlc_core.sql.features.per_event`'s,
that the stream consumer scores). The store is a :class:`FeatureStore`: memory here,
DynamoDB in :mod:`mdlc_core.feature_store`.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from .batch_features import (
    RECENT_EVENTS,
    US_PER_DAY,
    Aggregate,
    FeatureError,
    FeatureSet,
    FutureEvent,
    MalformedEvent,
    as_float,
    as_key,
    clock_skew_reason,
    day_number,
    day_of,
    day_string,
    evaluate_expressions,
    plain_value,
    to_micros,
)

# --- incremental engine ------------------------------------------------------------------------


class DuplicateEvent(Exception):
    """The event id was already recorded: the update must not be applied again."""


class WriteConflict(Exception):
    """An item changed since it was read; read again and retry."""


@dataclass
class Write:
    key: str
    item: dict[str, Any]
    version: int  # the version read; 0 when the item did not exist


class FeatureStore(Protocol):
    """What the incremental engine needs from storage.

    ``commit`` is atomic: it records ``event_id`` (failing with
    :class:`DuplicateEvent` when already recorded) and writes every item only
    if each is still at the version that was read (else :class:`WriteConflict`).
    Nothing is written when either check fails.
    """

    def get(self, key: str) -> tuple[dict[str, Any] | None, int]: ...

    def commit(self, event_id: str, writes: list[Write], marker_expires_at: int) -> None: ...


class MemoryStore:
    """The store for tests, benchmarks and the command line."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, int]] = {}
        self.markers: dict[str, int] = {}

    def get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        item, version = self.items.get(key, (None, 0))
        # Items are kept as JSON text, like a real store: callers get their own
        # copy, and the cost scales with the item size as it does in DynamoDB.
        return (json.loads(item) if item is not None else None), version

    def commit(self, event_id: str, writes: list[Write], marker_expires_at: int) -> None:
        if event_id in self.markers:
            raise DuplicateEvent(event_id)
        for write in writes:
            if self.items.get(write.key, (None, 0))[1] != write.version:
                raise WriteConflict(write.key)
        self.markers[event_id] = marker_expires_at
        for write in writes:
            self.items[write.key] = (json.dumps(write.item), write.version + 1)


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"  # older than every window the event feeds: ignored, as batch does


@dataclass
class ParsedEvent:
    event_id: str
    micros: int
    day: int
    keys: dict[str, str | None]
    values: dict[str, float]  # NaN for null
    last: dict[str, Any]


def parse_event(fs: FeatureSet, event: Mapping[str, Any]) -> ParsedEvent:
    """One event as the online engines use it; :class:`MalformedEvent` says what is wrong."""
    try:
        event_id = as_key(event.get(fs.event_id))
        if event_id is None:
            raise MalformedEvent(f"no {fs.event_id}")
        if event.get(fs.timestamp) is None:
            raise MalformedEvent(f"event {event_id!r} has no {fs.timestamp}")
        micros = to_micros(event[fs.timestamp], fs.timestamp_unit)
        keys = {c: as_key(event.get(c)) for c in fs.entity_columns}
        if keys[fs.entity_key] is None:
            raise MalformedEvent(f"event {event_id!r} has no {fs.entity_key}")
        values = {c: as_float(event.get(c), c) for c in fs.value_columns}
        last = {}
        for c in fs.last_columns:
            last[c] = keys[c] if c in keys else plain_value(as_float(event.get(c), c))
    except MalformedEvent:
        raise
    except FeatureError as error:
        raise MalformedEvent(str(error)) from error
    return ParsedEvent(event_id, micros, day_of(micros), keys, values, last)


@dataclass
class IncrementalEngine:
    """Running per-day aggregates per entity, one small item per entity value.

    Item (see docs/features.md): ``recent`` keeps the newest
    ``recent_events`` events one by one (time, id, the values the item
    aggregates); ``days`` maps 'YYYY-MM-DD' to ``{"n": events, "v": {column:
    [sum, count, min, max]}, "hi": [micros, id]}`` for the older events of at
    most the longest window of that entity column (``hi``: the bucket's newest
    event; every bucket event is older than every recent one); ``watermark`` is
    the newest day seen; ``dropped`` the newest day whose events were dropped
    or refused as late; the ``data.entity_key`` item also keeps ``last`` (the
    latest event's time, id and the columns expressions read). Work per event
    is bounded by the window length and ``recent_events``, never by history.
    """

    features: FeatureSet
    store: FeatureStore
    max_attempts: int = 8
    marker_days: int = 8
    clock: Any = field(default=time.time)
    #: How many of an entity's newest events its item keeps one by one
    #: (``recent``), so that a read as of one of them can leave out the later
    #: ones (:func:`rows_as_of_events`). Bounds the item: about 50 bytes each.
    recent_events: int = RECENT_EVENTS

    def key(self, entity: str, value: str) -> str:
        return item_key(self.features.model, entity, value)

    def parse(self, event: Mapping[str, Any]) -> ParsedEvent:
        return parse_event(self.features, event)

    def apply(self, event: Mapping[str, Any] | ParsedEvent) -> Outcome:
        """Add one event; a redelivered event id changes nothing.

        Raises :class:`FutureEvent` (and writes nothing) for an event dated more
        than ``features.max_clock_skew_seconds`` ahead of ``clock``: applied, it
        would move the watermark ahead, drop the real days from the buckets and
        make every later real event late.
        """
        parsed = event if isinstance(event, ParsedEvent) else self.parse(event)
        reason = clock_skew_reason(parsed.micros, self.clock(),
                                   self.features.max_clock_skew_seconds, self.features.timestamp)
        if reason is not None:
            raise FutureEvent(f"event {parsed.event_id!r}: {reason}")
        for _ in range(self.max_attempts):
            writes, fed = self._writes(parsed)
            if not writes:
                return Outcome.LATE
            # Markers outlive the longest window past the event's day, so a
            # redelivery is caught as long as it could still change a window,
            # and at least `marker_days` (longer than the stream keeps records).
            expires = max(int(self.clock()) + self.marker_days * 86_400,
                          (parsed.day + self.features.horizon() + 2) * 86_400)
            try:
                self.store.commit(parsed.event_id, writes, expires)
            except DuplicateEvent:
                return Outcome.DUPLICATE
            except WriteConflict:
                continue
            return Outcome.APPLIED if fed else Outcome.LATE
        raise WriteConflict(f"event {parsed.event_id!r}: items kept changing, gave up")

    def _writes(self, ev: ParsedEvent) -> tuple[list[Write], bool]:
        fs = self.features
        writes: list[Write] = []
        fed = not fs.aggregates
        for entity in fs.entity_columns:
            value = ev.keys[entity]
            if value is None:
                continue
            key = self.key(entity, value)
            item, version = self.store.get(key)
            item = item or {"days": {}, "watermark": None}
            horizon = fs.horizon(entity)
            changed = False
            if horizon:
                watermark = max(ev.day, day_number(item["watermark"]) if item["watermark"]
                                else ev.day)
                if ev.day > watermark - horizon:
                    _record_in_item(item, ev, _bucket_columns(fs, entity), self.recent_events)
                    fed = changed = True
                    item["watermark"] = day_string(watermark)
                    _drop_before(item, watermark - horizon)
                elif not item.get("dropped") or day_string(ev.day) > item["dropped"]:
                    # Late for every window of this item: not added, but remembered,
                    # so a read as of an event whose window reaches that day knows
                    # the item lacks it (rows_as_of_events).
                    item["dropped"] = day_string(ev.day)
                    changed = True
            if entity == fs.entity_key:
                last = item.get("last")
                if last is None or (ev.micros, ev.event_id) > (last["micros"], last["event_id"]):
                    item["last"] = {"micros": ev.micros, "event_id": ev.event_id,
                                    "values": ev.last}
                    changed = True
            if changed:
                newest = max(day_number(item["watermark"]) if item.get("watermark") else ev.day,
                             item["last"]["micros"] // US_PER_DAY if item.get("last") else ev.day)
                item["expires_at"] = (newest + fs.horizon() + 2) * 86_400
                writes.append(Write(key, item, version))
        # Late for every window: nothing added (batch ignores it too); the
        # writes only remember the day as `dropped`.
        return writes, fed

    def read(self, entity_value: str, as_of: date | str) -> dict[str, Any] | None:
        """The entity's features as of the end of day ``as_of`` (same row as
        :func:`mdlc_core.sql.features.as_of`); None when the entity has no event in the
        longest window. ``as_of`` must not be before the entity's newest event
        day (older days may already have been dropped)."""
        fs = self.features
        item, _ = self.store.get(self.key(fs.entity_key, entity_value))
        return features_as_of(
            fs, entity_value, item, day_number(as_of),
            lambda entity, value: self.store.get(self.key(entity, value))[0],
        )

    def read_events(self, events: Sequence[ParsedEvent | None]) -> EventRows:
        """Each event's features as of itself (:func:`rows_as_of_events`) from this
        engine's store: what :meth:`OnlineFeatureReader.read_events` computes from
        DynamoDB, for the in-memory store."""
        keys = event_item_keys(self.features, events)
        return rows_as_of_events(self.features, events,
                                 {key: self.store.get(key)[0] for key in keys})


def item_key(model: str, entity: str, value: str) -> str:
    """The store key of an entity item: ``<model>#<entity column>#<value>``."""
    return f"{model}#{entity}#{value}"


def features_as_of(
    fs: FeatureSet,
    entity_value: str,
    item: Mapping[str, Any] | None,
    today: int,
    other_item: Any,
) -> dict[str, Any] | None:
    """One entity's row as of the end of day number ``today``, from its store item.

    ``other_item(entity column, value)`` returns the item of an aggregate over
    another entity column (or None). Shared by :meth:`IncrementalEngine.read`
    and :class:`OnlineFeatureReader`, so both read the same numbers.
    """
    if item is None or item.get("last") is None:
        return None
    last = item["last"]
    horizon = fs.horizon()
    if horizon and last["micros"] // US_PER_DAY <= today - horizon:
        return None
    scope: dict[str, Any] = dict(last["values"])
    items: dict[str, Mapping[str, Any]] = {fs.entity_key: item}
    row: dict[str, Any] = {fs.entity_key: entity_value}
    for agg in fs.aggregates:
        value = entity_value if agg.entity == fs.entity_key else last["values"].get(agg.entity)
        if agg.entity not in items:
            other = other_item(agg.entity, value) if value else None
            items[agg.entity] = other or {"days": {}}
        if value:
            window = _Window()
            _ItemView(items[agg.entity]).add(window, agg, today - agg.window_days, today)
            result = window.result(agg)
        else:
            result = _empty(agg)
        scope[agg.name] = result
        row[agg.name] = result
    row |= evaluate_expressions(fs, scope)
    return {k: row[k] for k in [fs.entity_key, *fs.names]}


# --- item layout: day buckets and the newest events one by one --------------------------------


def _bucket_columns(fs: FeatureSet, entity: str) -> list[str]:
    """The value columns an entity column's item keeps statistics of, in order."""
    return sorted({a.column for a in fs.aggregates if a.entity == entity and a.column})


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


#: Sorts after every event id: the upper bound of a day's events.
_LAST_ID = "\U0010ffff"


def _bucket_hi(day: str, bucket: Mapping[str, Any]) -> tuple[int, str]:
    """The newest (micros, event id) a day bucket holds. A bucket written before
    ``hi`` existed may hold any event of its day: the day's end stands for it."""
    hi = bucket.get("hi")
    if hi:
        return int(hi[0]), str(hi[1])
    return (day_number(day) + 1) * US_PER_DAY - 1, _LAST_ID


def _bucket_add(days: dict[str, Any], micros: int, event_id: str, values: Sequence[Any],
                columns: Sequence[str]) -> None:
    """Add one event (``values`` in ``columns`` order, None or NaN for null) to its
    day's bucket, whose ``hi`` is the newest (micros, event id) it holds."""
    day = day_string(micros // US_PER_DAY)
    bucket = days.get(day)
    if bucket is None:
        bucket = days[day] = {"n": 0, "v": {}, "hi": [micros, event_id]}
    elif (micros, event_id) > _bucket_hi(day, bucket):
        bucket["hi"] = [micros, event_id]
    elif "hi" not in bucket:
        bucket["hi"] = list(_bucket_hi(day, bucket))
    bucket["n"] += 1
    for column, value in zip(columns, values, strict=True):
        if not _present(value):
            continue
        stats = bucket["v"].get(column)
        if stats is None:
            bucket["v"][column] = [value, 1, value, value]
        else:
            stats[0] += value
            stats[1] += 1
            stats[2] = min(stats[2], value)
            stats[3] = max(stats[3], value)


def _recent_of(item: Mapping[str, Any], columns: Sequence[str]) -> list[list[Any]]:
    """The item's ``recent`` events as ``[micros, event id, values in columns order]``,
    ascending; re-ordered when the spec's columns changed (a new column is null)."""
    recent = _recent_field(item)
    stored = list(recent.get("columns") or [])
    events = recent.get("events") or []
    if stored == list(columns):
        return [[e[0], e[1], list(e[2])] for e in events]
    index = {c: j for j, c in enumerate(stored)}
    return [[e[0], e[1], [e[2][index[c]] if c in index else None for c in columns]]
            for e in events]


def _recent_field(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's ``recent`` attribute, decoded: ``{"columns", "events"}``."""
    recent = item.get("recent")
    if not recent:
        return {}
    return json.loads(recent) if isinstance(recent, str) else dict(recent)


def _recent_text(columns: Sequence[str], events: Sequence[Sequence[Any]]) -> str:
    """``recent`` as one compact JSON string attribute: a few KB the store reads and
    writes as one value (a DynamoDB list of lists costs a type tag per number to
    marshal, on every update). Floats keep their exact value (``repr``)."""
    return json.dumps({"columns": list(columns), "events": [list(e) for e in events]},
                      separators=(",", ":"), allow_nan=False)


def _record_in_item(item: dict[str, Any], ev: ParsedEvent, columns: list[str],
                    limit: int) -> None:
    """Add ``ev``: into ``recent`` when it is among the ``limit`` newest events of the
    item (the oldest then moves to its day bucket), else into its day bucket, so
    every bucket event is older than every ``recent`` one."""
    days = item.setdefault("days", {})
    recent = _recent_of(item, columns)
    values = [plain_value(ev.values[c]) for c in columns]
    position = (ev.micros, ev.event_id)
    newer_bucket = any(_bucket_hi(day, bucket) > position for day, bucket in days.items())
    if limit > 0 and not newer_bucket and (len(recent) < limit
                                           or position > (recent[0][0], recent[0][1])):
        at = bisect.bisect_left([(e[0], e[1]) for e in recent], position)
        recent.insert(at, [ev.micros, ev.event_id, values])
        if len(recent) > limit:
            micros, event_id, old = recent.pop(0)
            _bucket_add(days, micros, event_id, old, columns)
    else:
        _bucket_add(days, ev.micros, ev.event_id, values, columns)
    item["recent"] = _recent_text(columns, recent)


def _drop_before(item: dict[str, Any], cutoff: int) -> None:
    """Drop the days (buckets and recent events) on or before day ``cutoff``: they
    left every window."""
    cut = day_string(cutoff)
    # ISO dates sort as strings.
    gone = [d for d in item.get("days", {}) if d <= cut]
    for day in gone:
        del item["days"][day]
    recent = _recent_field(item)
    if recent.get("events"):
        kept = [e for e in recent["events"] if e[0] // US_PER_DAY > cutoff]
        gone += [day_string(e[0] // US_PER_DAY) for e in recent["events"]
                 if e[0] // US_PER_DAY <= cutoff]
        if len(kept) < len(recent["events"]):
            item["recent"] = _recent_text(list(recent.get("columns") or []), kept)
    if gone:
        # The newest day whose events were dropped: a late event's window that
        # reaches it can no longer be read exactly.
        item["dropped"] = max([*gone, *([item["dropped"]] if item.get("dropped") else [])])


class _Window:
    """Running sum, count, events, min and max of one aggregate's window."""

    __slots__ = ("count", "events", "highest", "lowest", "total")

    def __init__(self) -> None:
        self.total, self.count, self.events = 0.0, 0, 0
        self.lowest, self.highest = math.inf, -math.inf

    def bucket(self, bucket: Mapping[str, Any], column: str | None) -> None:
        self.events += int(bucket["n"])
        stats = bucket["v"].get(column) if column is not None else None
        if stats:
            self.total += float(stats[0])
            self.count += int(stats[1])
            self.lowest = min(self.lowest, float(stats[2]))
            self.highest = max(self.highest, float(stats[3]))

    def event(self, value: Any) -> None:
        self.events += 1
        if _present(value):
            value = float(value)
            self.total += value
            self.count += 1
            self.lowest = min(self.lowest, value)
            self.highest = max(self.highest, value)

    def result(self, agg: Aggregate) -> Any:
        if agg.function == "count":
            return self.events if agg.column is None else self.count
        if agg.function == "sum":
            return self.total
        if self.count == 0:
            return None
        return {"mean": self.total / self.count, "min": self.lowest,
                "max": self.highest}[agg.function]


def _empty(agg: Aggregate) -> Any:
    return 0 if agg.function == "count" else 0.0 if agg.function == "sum" else None


class _ItemView:
    """An entity item as the readers use it: its buckets, its recent events, the
    ids it keeps one by one, and ``floor``, the newest event its buckets hold."""

    def __init__(self, item: Mapping[str, Any] | None) -> None:
        item = item or {}
        self.days: Mapping[str, Any] = item.get("days") or {}
        recent = _recent_field(item)
        self.columns = {c: j for j, c in enumerate(recent.get("columns") or [])}
        self.recent = [(int(e[0]), str(e[1]), e[2]) for e in recent.get("events") or []]
        self.ids = {e[1] for e in self.recent}
        self.dropped = day_number(item["dropped"]) if item.get("dropped") else None
        self.floor: tuple[int, str] | None = max(
            (_bucket_hi(day, bucket) for day, bucket in self.days.items()), default=None)

    def add(self, window: _Window, agg: Aggregate, low: int, high: int,
            until: tuple[int, str] | None = None) -> str | None:
        """Add the events of days ``low+1 .. high`` (and at or before ``until``, when
        given) to ``window``; returns why that may be inexact, or None."""
        reason = None
        low_day, high_day = day_string(low), day_string(high)
        for day, bucket in self.days.items():
            if not low_day < day <= high_day:
                continue
            if until is not None and day == high_day and _bucket_hi(day, bucket) > until:
                reason = (f"the store counts events of {day} after it only in aggregate "
                          f"(it keeps the newest {len(self.recent)} one by one)")
            window.bucket(bucket, agg.column)
        column = self.columns.get(agg.column) if agg.column is not None else None
        for micros, event_id, values in self.recent:
            if low < micros // US_PER_DAY <= high and (until is None
                                                        or (micros, event_id) <= until):
                window.event(values[column] if column is not None else None)
        return reason


@dataclass
class EventRows:
    """What :func:`rows_as_of_events` found for a batch of events."""

    #: Per event (in the order given): its features as of itself, the entity key
    #: first; None where the event was None (not parsed).
    rows: list[dict[str, Any] | None]
    #: The events as parsed (None where not an event, or rejected).
    events: list[ParsedEvent | None]
    #: Indexes of the first deliveries the store does not count yet (or may not),
    #: in the order given: record them (``IncrementalEngine.apply``, idempotent)
    #: before the next batch is read.
    unrecorded: list[int]
    #: event id -> why its row may differ from its training row (the store no
    #: longer tells exactly which of its events precede it).
    inexact: dict[str, str]
    #: index -> why the event was not read (malformed, from the future).
    rejected: dict[int, str] = field(default_factory=dict)


def event_item_keys(fs: FeatureSet, events: Sequence[ParsedEvent | None]) -> list[str]:
    """The store items a batch's rows read: each event's item per aggregated entity column."""
    keys = {item_key(fs.model, c, ev.keys[c]) for ev in events if ev is not None
            for c in fs.entity_columns if ev.keys[c] is not None and fs.horizon(c)}
    return sorted(keys)


def rows_as_of_events(fs: FeatureSet, events: Sequence[ParsedEvent | None],
                      items: Mapping[str, Mapping[str, Any] | None]) -> EventRows:
    """Each event's features as of itself, as :func:`mdlc_core.sql.features.per_event`
    gives its training row, from the store items read once for the batch and the batch itself.

    For an event ``e`` and an aggregate over entity column ``c``: the store's
    events of ``e``'s window (the days ``day(e)-N+1 .. day(e)``) at or before
    ``e`` in (timestamp, event id) order, plus the batch's events of the same
    ``c`` value that the store does not count yet, at or before ``e`` (``e``
    included). Which events the store counts is read from the item itself:
    the newest ``IncrementalEngine.recent_events`` by id, and every bucket
    event is older than those (``floor``), so a batch event newer than the
    buckets and not among the recent ids is not counted. A redelivery counts
    once: its first delivery in the batch, or the store's copy. Events after
    ``e`` in the store are left out: on ``e``'s own day they are among the
    recent ones unless ``e`` is older than all of those, which ``inexact``
    reports (as it reports a window older than the store keeps). Raw columns
    of expressions are ``e``'s own, as in a training row.

    ``items`` maps :func:`item_key` to the item (or None); it must hold every
    key of :func:`event_item_keys`, read after the batch's earlier events were
    recorded (the consumer records what ``unrecorded`` names before its next
    batch, so nothing before a batch is missing from the store).
    """
    first: dict[str, int] = {}
    for index, ev in enumerate(events):
        if ev is not None:
            first.setdefault(ev.event_id, index)
    firsts = [events[i] for i in first.values()]
    views: dict[str, _ItemView] = {}
    members: dict[str, list[ParsedEvent]] = {}
    counted: set[str] = set()
    unsure: set[str] = set()
    for ev in firsts:
        assert ev is not None
        for column in fs.entity_columns:
            value = ev.keys[column]
            if value is None or not fs.horizon(column):
                continue
            key = item_key(fs.model, column, value)
            view = views.get(key)
            if view is None:
                view = views[key] = _ItemView(items.get(key))
                members[key] = []
            members[key].append(ev)
            if ev.event_id in view.ids:
                counted.add(ev.event_id)
            elif view.floor is not None and (ev.micros, ev.event_id) <= view.floor:
                unsure.add(ev.event_id)
    # One transaction writes an event into all its items: counted by one is counted.
    unsure -= counted
    folded = {ev.event_id for ev in firsts if ev is not None} - counted - unsure
    computed: dict[str, dict[str, Any]] = {}
    inexact: dict[str, str] = {}
    for ev in firsts:
        assert ev is not None
        position = (ev.micros, ev.event_id)
        scope: dict[str, Any] = dict(ev.last)
        row: dict[str, Any] = {fs.entity_key: ev.keys[fs.entity_key]}
        for agg in fs.aggregates:
            value = ev.keys[agg.entity]
            if value is None:
                result = _empty(agg)
            else:
                key = item_key(fs.model, agg.entity, value)
                view = views[key]
                low, high = ev.day - agg.window_days, ev.day
                window = _Window()
                reason = view.add(window, agg, low, high, position)
                if view.dropped is not None and view.dropped > low:
                    reason = (f"its window reaches {day_string(view.dropped)}, whose events "
                              "the store dropped as older than every window")
                for other in members[key]:
                    if not (low < other.day <= high and (other.micros, other.event_id)
                            <= position):
                        continue
                    if other.event_id in folded:
                        window.event(other.values[agg.column] if agg.column else None)
                    elif other.event_id in unsure:
                        reason = (f"cannot tell whether the store counts event "
                                  f"{other.event_id!r} (older than the events it keeps one "
                                  "by one)")
                if reason is not None:
                    inexact[ev.event_id] = reason
                result = window.result(agg)
            scope[agg.name] = result
            row[agg.name] = result
        row |= evaluate_expressions(fs, scope)
        computed[ev.event_id] = {k: row[k] for k in [fs.entity_key, *fs.names]}
    rows = [None if ev is None else dict(computed[ev.event_id]) for ev in events]
    unrecorded = [index for event_id, index in first.items() if event_id not in counted]
    return EventRows(rows, list(events), unrecorded, inexact)


def window_value(days: Mapping[str, Any], agg: Aggregate, today: int) -> Any:
    """One aggregate from day buckets alone, over the window ending on day ``today``."""
    window = _Window()
    _ItemView({"days": days}).add(window, agg, today - agg.window_days, today)
    return window.result(agg)


def replay(engine: IncrementalEngine, events: Iterable[Mapping[str, Any]]) -> dict[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for event in events:
        counts[engine.apply(event)] += 1
    return counts


def incremental_table(events: Sequence[Mapping[str, Any]] | Any, features: FeatureSet,
                      as_of: date | str) -> list[dict[str, Any]]:
    """The :func:`mdlc_core.sql.features.as_of` table built by replaying events through a
    fresh in-memory incremental engine (events after ``as_of`` are not fed)."""
    rows = events.to_pylist() if hasattr(events, "to_pylist") else list(events)
    today = day_number(as_of)
    # The replay's clock is the end of `as_of`: later events are not fed anyway.
    engine = IncrementalEngine(features, MemoryStore(), clock=lambda: (today + 1) * 86_400)
    entities: set[str] = set()
    for row in rows:
        try:
            parsed = engine.parse(row)
        except MalformedEvent as error:
            raise FeatureError(str(error)) from error
        if parsed.day <= today:
            engine.apply(parsed)
            entities.add(str(parsed.keys[features.entity_key]))
    table = [engine.read(entity, as_of) for entity in sorted(entities)]
    return [row for row in table if row is not None]
