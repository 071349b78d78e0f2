"""Feature engineering: one definition, a batch engine and an incremental engine.

Windows are whole UTC days. An aggregate with ``window_days = N`` read *as of*
day ``D`` covers the events whose timestamp falls on one of the N days
``D-N+1 .. D`` (both ends included), i.e. timestamps in
``(end_of(D) - N days, end_of(D)]``. Both engines use this rule, so they
give the same numbers for the same events (see docs/features.md).

Three forms:

* :func:`compute_batch` - one row per entity (``data.entity_key``) as of a
  day: aggregates over the window ending that day, raw columns taken from
  the entity's latest event on or before that day, then expressions in
  declared order. Used by ``mdlc features``; :func:`entity_table` adds the
  model's raw inputs (``FeatureSet.inputs``) from the same latest event and
  is the per-entity table batch inference scores.
* :func:`compute_per_event` - every event's features as of the event
  itself: the window ending on the event's day, restricted to events at or
  before it in (timestamp, event id) order, the event included. Used for
  training rows, so no future event leaks into a row, and it is exactly
  what online serving reads for an event (:func:`rows_as_of_events`).
  :func:`training_table` adds the event's timestamp, label and raw model
  inputs (``FeatureSet.inputs``) and is the per-event table training reads.
* :class:`IncrementalEngine` - per-entity day buckets and the newest events
  in a small store (memory, or DynamoDB through :class:`DynamoDBStore`),
  updated in constant work per event and exactly once per event id; read
  as of a day (the :func:`compute_batch` row) or as of each event of a batch
  (:func:`rows_as_of_events`, the :func:`compute_per_event` row, which the
  stream consumer scores).

Null handling, the same everywhere: null or non-finite values do not
contribute to sum/mean/min/max; ``count`` without a column counts events,
with a column counts its non-null values; the sum of nothing is 0, the
mean/min/max of nothing is null; an expression that divides by zero or
reads a null is null.
"""

from __future__ import annotations

import bisect
import json
import math
import numbers
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from .expressions import Expression, parse
from .timestamps import TimestampError, epoch_micros


class _NumPy:
    """NumPy, imported on first use. The batch engines need it; the online
    path (:class:`IncrementalEngine`, :class:`OnlineFeatureReader`) is pure
    Python, so the stream functions run without the data layer and start fast."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        globals()["np"] = numpy  # later lookups skip this proxy
        return getattr(numpy, name)


np: Any = _NumPy()

EPOCH = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000


class FeatureError(ValueError):
    """Events or a spec the engines cannot use (missing column, bad timestamp)."""


class MalformedEvent(FeatureError):
    """One event that cannot be applied; the stream consumer reports it as failed."""


class FutureEvent(MalformedEvent):
    """An event dated further ahead of the processing clock than the spec's
    ``features.max_clock_skew_seconds``: never applied (it would move the
    watermark ahead and make every real event look late); dead-lettered."""


#: How many of an entity's newest events its online item keeps one by one (see
#: :func:`rows_as_of_events`): enough for the events a lagging consumer finds
#: after the one it scores on that day; about 50 bytes each in the item.
RECENT_EVENTS = 32

#: ``features.max_clock_skew_seconds`` when a config has none (15 minutes).
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 900


def clock_skew_reason(micros: int, now_seconds: float, max_skew_seconds: int,
                      column: str) -> str | None:
    """Why an event at ``micros`` is too far ahead of ``now_seconds``; None when it is not."""
    ahead = micros / 1_000_000 - now_seconds
    if ahead <= max_skew_seconds:
        return None
    try:
        moment = datetime.fromtimestamp(micros / 1_000_000, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # beyond year 9999
        moment = f"{micros} us since the epoch"
    now = datetime.fromtimestamp(now_seconds, UTC).isoformat()
    return (f"{column} {moment} is {ahead:.0f} s ahead of the processing clock ({now}); "
            f"at most {max_skew_seconds} s is accepted (features.max_clock_skew_seconds)")


# --- the definition --------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    name: str
    function: str
    column: str | None
    window_days: int
    entity: str


@dataclass(frozen=True)
class FeatureSet:
    """The feature part of a spec, resolved: defaults applied, expressions compiled."""

    model: str
    entity_key: str
    event_id: str
    timestamp: str
    aggregates: tuple[Aggregate, ...]
    expressions: tuple[tuple[str, Expression], ...]
    #: The model's raw inputs, in training order (the raw part of
    #: ``ModelSpec.feature_columns``: non-string columns that are not the entity
    #: key, event id, timestamp or label). Batch inference carries them into
    #: the per-entity table from each entity's latest event.
    inputs: tuple[str, ...] = ()
    #: The ground-truth column (``data.label``): training rows carry it.
    label: str | None = None
    #: ``features.max_clock_skew_seconds``: online events dated further ahead
    #: of the processing clock are rejected (:class:`FutureEvent`).
    max_clock_skew_seconds: int = DEFAULT_MAX_CLOCK_SKEW_SECONDS
    #: The timestamp column's ``unit`` (s, ms, us, ns): how an integer timestamp
    #: counts from the epoch. None: an integer is not a timestamp (rejected).
    timestamp_unit: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureSet:
        """From ``ModelSpec.as_config()`` (what handlers get from runtime_config)."""
        try:
            data = config["data"]
            features = config.get("features") or {}
            entity_key = data["entity_key"]
            aggregates = tuple(
                Aggregate(
                    name=a["name"],
                    function=a["function"],
                    column=a.get("column"),
                    window_days=int(a["window_days"]),
                    entity=a.get("entity") or entity_key,
                )
                for a in features.get("aggregates", [])
            )
            known = set(data.get("column_names") or [c["name"] for c in data["columns"]])
            known |= {a.name for a in aggregates}
            compiled = []
            for e in features.get("expressions", []):
                compiled.append((e["name"], parse(e["expression"], known=known)))
                known.add(e["name"])
            roles = {entity_key, data["event_id"], data["timestamp"], data.get("label")}
            inputs = tuple(c["name"] for c in data.get("columns") or []
                           if c["name"] not in roles and c.get("type") != "string")
            unit = next((c.get("unit") for c in data.get("columns") or []
                         if c["name"] == data["timestamp"]), None)
            return cls(
                model=config.get("name", "model"),
                entity_key=entity_key,
                event_id=data["event_id"],
                timestamp=data["timestamp"],
                aggregates=aggregates,
                expressions=tuple(compiled),
                inputs=inputs,
                label=data.get("label"),
                max_clock_skew_seconds=int(features.get("max_clock_skew_seconds",
                                                        DEFAULT_MAX_CLOCK_SKEW_SECONDS)),
                timestamp_unit=unit,
            )
        except (KeyError, TypeError) as error:
            raise FeatureError(f"the spec has no usable data/features section: {error}") from error

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.aggregates] + [name for name, _ in self.expressions]

    @property
    def entity_columns(self) -> list[str]:
        """Every column that keys a store item; ``entity_key`` first (it holds ``last``)."""
        columns = [self.entity_key]
        for a in self.aggregates:
            if a.entity not in columns:
                columns.append(a.entity)
        return columns

    def horizon(self, entity: str | None = None) -> int:
        """Days of history kept: the longest window (for one entity column, or overall)."""
        windows = [a.window_days for a in self.aggregates if entity in (None, a.entity)]
        return max(windows, default=0)

    @property
    def value_columns(self) -> list[str]:
        """Columns whose per-day statistics the buckets keep."""
        return sorted({a.column for a in self.aggregates if a.column is not None})

    @property
    def raw_columns(self) -> list[str]:
        """Raw columns that expressions read, from the entity's latest event."""
        features = set(self.names)
        names: set[str] = set()
        for _, expression in self.expressions:
            names |= expression.names - features
        return sorted(names)

    @property
    def last_columns(self) -> list[str]:
        """What the entity item remembers of the latest event: expression inputs and
        the keys of aggregates over other entities."""
        others = [c for c in self.entity_columns if c != self.entity_key]
        return sorted(set(self.raw_columns) | set(others))

    @property
    def required_columns(self) -> list[str]:
        columns = [self.event_id, self.timestamp, *self.entity_columns]
        columns += self.value_columns + self.raw_columns
        return list(dict.fromkeys(columns))

    @property
    def entity_table_columns(self) -> list[str]:
        """What :func:`entity_table` reads: ``required_columns`` and the model's raw inputs."""
        return list(dict.fromkeys([*self.required_columns, *self.inputs]))

    @property
    def entity_table_schema(self) -> list[str]:
        """The columns of :func:`entity_table`, in order: the entity key, the raw
        inputs, then the features (so every model input is present)."""
        return [self.entity_key, *self.inputs, *self.names]

    @property
    def training_table_schema(self) -> list[str]:
        """The columns of :func:`training_table`, in order: the event id, the entity
        key, the timestamp, the label, the raw inputs, then the features (the
        label only when the events have it)."""
        label = [self.label] if self.label else []
        return [self.event_id, self.entity_key, self.timestamp, *label, *self.inputs,
                *self.names]


# --- time helpers -----------------------------------------------------------------


def to_micros(value: Any, unit: str | None = None) -> int:
    """A timestamp (datetime, ISO string, or an integer count of ``unit`` since
    the epoch) as UTC microseconds.

    Naive timestamps are taken as UTC, as the spec's timestamp column is. An
    integer (or its digits as text, as CSV holds it) is a timestamp only with
    the column's ``unit`` and only inside ``mdlc_core.timestamps.PLAUSIBLE``;
    otherwise, and for a float, :class:`FeatureError` says why (epoch seconds
    read as microseconds would land in 1970 and be dropped as late).
    """
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("+-").isdigit():
            try:
                return epoch_micros(text, unit)
            except TimestampError as error:
                raise FeatureError(str(error)) from error
        try:
            return to_micros(datetime.fromisoformat(text))
        except ValueError as error:
            raise FeatureError(f"{value!r} is not an ISO 8601 timestamp") from error
    # numbers.Real covers NumPy integers and floats (and bools, which
    # epoch_micros rejects by name) without importing NumPy.
    if isinstance(value, numbers.Real):
        try:
            return epoch_micros(value, unit)
        except TimestampError as error:
            raise FeatureError(str(error)) from error
    raise FeatureError(f"{value!r} is not a timestamp")


def day_of(micros: int) -> int:
    return micros // _US_PER_DAY


def day_number(day: date | str) -> int:
    """Days since 1970-01-01 for a date or 'YYYY-MM-DD'."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError as error:
            raise FeatureError(f"{day!r} is not a date (YYYY-MM-DD)") from error
    if isinstance(day, datetime):
        day = day.date()
    return (day - EPOCH).days


def day_string(number: int) -> str:
    return (EPOCH + timedelta(days=number)).isoformat()


# --- events as columns --------------------------------------------------------------


@dataclass
class EventColumns:
    """Events as NumPy columns, deduplicated on the event id (first delivery wins)."""

    event_id: np.ndarray  # object (str)
    micros: np.ndarray  # int64
    day: np.ndarray  # int64
    keys: dict[str, np.ndarray]  # entity column -> object (str or None)
    values: dict[str, np.ndarray]  # numeric column -> float64, NaN for null
    positions: np.ndarray  # index of each kept row in the input

    def __len__(self) -> int:
        return len(self.event_id)

    def take(self, index: np.ndarray) -> EventColumns:
        return EventColumns(
            self.event_id[index], self.micros[index], self.day[index],
            {k: v[index] for k, v in self.keys.items()},
            {k: v[index] for k, v in self.values.items()},
            self.positions[index],
        )


def _column_list(events: Any, name: str) -> list[Any]:
    if hasattr(events, "column_names"):  # a pyarrow Table
        if name not in events.column_names:
            raise FeatureError(
                f"the events have no column {name!r}; they have {events.column_names}"
            )
        column = events.column(name)
        import pyarrow as pa  # only when given a Table

        if pa.types.is_timestamp(column.type):
            # A typed timestamp is a moment whatever its unit: as datetimes, so
            # to_micros does not take it for a unit-less integer.
            return column.cast(pa.timestamp("us", column.type.tz or "UTC")).to_pylist()
        return column.to_pylist()
    if isinstance(events, Mapping):  # columns: name -> list of values
        if name not in events:
            raise FeatureError(f"the events have no column {name!r}; they have {list(events)}")
        lengths = {len(values) for values in events.values()}
        if len(lengths) > 1:
            raise FeatureError(f"the event columns have different lengths: {sorted(lengths)}")
        return list(events[name])
    rows: Sequence[Mapping[str, Any]] = events
    missing = next((i for i, row in enumerate(rows) if name not in row), None)
    if missing is not None:
        raise FeatureError(f"event {missing} has no column {name!r}")
    return [row[name] for row in rows]


def _as_float(value: Any, column: str) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(value.strip().lower() == "true")  # a bool column read from CSV text
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise FeatureError(f"column {column!r}: {value!r} is not a number") from error
    return number if math.isfinite(number) else math.nan


def _as_key(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def event_columns(events: Any, features: FeatureSet,
                  extra: Sequence[str] = ()) -> EventColumns:
    """Columns the engines need from a pyarrow Table or a sequence of dict rows,
    plus the numeric columns ``extra`` (as floats, NaN for null)."""
    ids = [_as_key(v) for v in _column_list(events, features.event_id)]
    raw_ts = _column_list(events, features.timestamp)
    for index, (event_id, ts) in enumerate(zip(ids, raw_ts, strict=True)):
        if event_id is None:
            raise FeatureError(f"event {index} has no {features.event_id}")
        if ts is None:
            raise FeatureError(f"event {event_id!r} has no {features.timestamp}")
    try:
        unit = features.timestamp_unit
        micros = np.array([to_micros(v, unit) for v in raw_ts], dtype=np.int64)
    except FeatureError as error:
        raise FeatureError(f"column {features.timestamp!r}: {error}") from error
    keys = {c: np.array([_as_key(v) for v in _column_list(events, c)], dtype=object)
            for c in features.entity_columns}
    missing = np.flatnonzero(keys[features.entity_key] == None)  # noqa: E711 - elementwise
    if missing.size:
        raise FeatureError(f"event {ids[missing[0]]!r} has no {features.entity_key}")
    numeric = sorted(set(features.value_columns) | set(features.raw_columns) | set(extra))
    values = {c: np.array([_as_float(v, c) for v in _column_list(events, c)], dtype=np.float64)
              for c in numeric if c not in keys}
    for c in extra:
        if c in keys:  # a numeric input that also keys an aggregate
            values[c] = np.array([_as_float(v, c) for v in keys[c]], dtype=np.float64)
    id_array = np.array(ids, dtype=object)
    # Redelivered events count once: keep each id's first row.
    _, first = np.unique(id_array.astype(str), return_index=True)
    first.sort()
    columns = EventColumns(id_array, micros, micros // _US_PER_DAY, keys, values,
                           np.arange(len(ids)))
    return columns.take(first) if len(first) != len(ids) else columns


# --- expressions ------------------------------------------------------------------------


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_expressions(features: FeatureSet, scope: dict[str, Any]) -> dict[str, Any]:
    """Scalar form: ``scope`` holds raw values and aggregates; returns the expressions."""
    out: dict[str, Any] = {}
    for name, expression in features.expressions:
        value = _finite_or_none(expression.evaluate(scope))
        out[name] = value
        scope[name] = value
    return out


# min/max/log1p are Python scalar functions: expressions calling them run per row.
_SCALAR_ONLY = re.compile(r"\b(min|max|log1p)\s*\(")


def _evaluate_vector(expression: Expression, scope: dict[str, np.ndarray], n: int) -> np.ndarray:
    # NumPy gives inf/NaN where Python raises ZeroDivisionError; both become null
    # (NaN), so the vector and scalar forms agree.
    if _SCALAR_ONLY.search(expression.source):
        rows = [
            _finite_or_none(expression.evaluate({k: _py(scope[k][i]) for k in expression.names}))
            for i in range(n)
        ]
        return np.array([math.nan if v is None else v for v in rows], dtype=np.float64)
    with np.errstate(all="ignore"):
        result = np.asarray(expression.evaluate({k: scope[k] for k in expression.names}),
                            dtype=np.float64)
    result = np.broadcast_to(result, (n,)).copy()
    result[~np.isfinite(result)] = math.nan
    return result


def _py(value: Any) -> Any:
    # numbers.Real minus Integral: floats and NumPy floats, without importing NumPy.
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return None if math.isnan(value) else float(value)
    return value


# --- batch engine ---------------------------------------------------------------------------


def _null_float(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def _range_reduce(values: np.ndarray, start: np.ndarray, end: np.ndarray, op: Any,
                  identity: float) -> np.ndarray:
    """``op`` over ``values[start[i]:end[i]+1]`` for every i, vectorized.

    A table of power-of-two blocks (sparse table); each range is split into
    at most log2(n) blocks, so sums are pairwise-accurate and nothing loops
    per row in Python.
    """
    result = np.full(len(start), identity, dtype=np.float64)
    if len(values) == 0:
        return result
    length = end - start + 1
    levels = [values.astype(np.float64)]
    while (1 << len(levels)) <= int(length.max()):
        previous, width = levels[-1], 1 << (len(levels) - 1)
        levels.append(op(previous[:-width], previous[width:]))
    position = start.copy()
    for k in range(len(levels) - 1, -1, -1):
        selected = (length >> k) & 1 == 1
        if selected.any():
            result[selected] = op(result[selected], levels[k][position[selected]])
            position[selected] += 1 << k
    return result


def _window_bounds(keys: np.ndarray, day: np.ndarray, micros: np.ndarray, ids: np.ndarray,
                   window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (key, time, id); for each sorted row, the first row of its window."""
    order = np.lexsort((ids.astype(str), micros, keys.astype(str)))
    sorted_keys = keys[order].astype(str)
    _, group = np.unique(sorted_keys, return_inverse=True)
    # Keys are sorted, so (group, day) combined is non-decreasing: one searchsorted
    # finds every window start.
    sorted_day = day[order]
    offset = int(sorted_day.min()) - window - 1 if len(sorted_day) else 0
    span = int(sorted_day.max()) - offset + 1 if len(sorted_day) else 1
    combined = group.astype(np.int64) * span + (sorted_day - offset)
    first_day = group.astype(np.int64) * span + (sorted_day - window + 1 - offset)
    start = np.searchsorted(combined, first_day, side="left")
    return order, start, np.arange(len(order))


def _aggregate_ranges(agg: Aggregate, ev: EventColumns, order: np.ndarray, start: np.ndarray,
                      end: np.ndarray) -> np.ndarray:
    """The aggregate over sorted ranges [start, end]; NaN for null."""
    if agg.column is None:
        return (end - start + 1).astype(np.float64)
    raw = ev.values[agg.column][order]
    present = ~np.isnan(raw)
    counts = np.concatenate([[0], np.cumsum(present)])
    n = (counts[end + 1] - counts[start]).astype(np.float64)
    if agg.function == "count":
        return n
    if agg.function in ("sum", "mean"):
        total = _range_reduce(np.where(present, raw, 0.0), start, end, np.add, 0.0)
        if agg.function == "sum":
            return total
        with np.errstate(all="ignore"):
            return np.where(n > 0, total / np.where(n > 0, n, 1), math.nan)
    op, identity = (np.minimum, math.inf) if agg.function == "min" else (np.maximum, -math.inf)
    extreme = _range_reduce(np.where(present, raw, identity), start, end, op, identity)
    return np.where(n > 0, extreme, math.nan)


def compute_per_event(events: Any, features: FeatureSet, *,
                      inputs: Sequence[str] = ()) -> dict[str, list[Any]]:
    """Every event's features as of itself (training rows), in input order.

    Returns columns: the event id, the entity key, the ``inputs`` (raw
    numeric columns of the event itself, as floats, null where it has none;
    default none), then every feature. Duplicated event ids appear once
    (first delivery).
    """
    inputs = _checked_inputs(features, inputs)
    return _per_event(event_columns(events, features, extra=inputs), features, inputs)


def _checked_inputs(features: FeatureSet, inputs: Sequence[str]) -> list[str]:
    inputs = list(dict.fromkeys(inputs))
    clash = sorted(set(inputs) & {features.entity_key, *features.names})
    if clash:
        raise FeatureError(f"inputs {clash} are also the entity key or feature names")
    return inputs


def _per_event(ev: EventColumns, features: FeatureSet,
               inputs: Sequence[str]) -> dict[str, list[Any]]:
    n = len(ev)
    out: dict[str, Any] = {features.event_id: ev.event_id.tolist(),
                           features.entity_key: ev.keys[features.entity_key].tolist()}
    for c in inputs:
        out[c] = _null_float(ev.values[c])
    scope: dict[str, np.ndarray] = dict(ev.values)
    for agg in features.aggregates:
        keys = ev.keys[agg.entity]
        result = np.full(n, math.nan)
        has_key = np.flatnonzero(keys != None)  # noqa: E711 - elementwise
        if has_key.size:
            sub = ev.take(has_key)
            order, start, end = _window_bounds(sub.keys[agg.entity], sub.day, sub.micros,
                                               sub.event_id, agg.window_days)
            values = _aggregate_ranges(agg, sub, order, start, end)
            result[has_key[order]] = values
        if agg.function in ("sum", "count"):
            result[np.isnan(result)] = 0.0
        scope[agg.name] = result
        out[agg.name] = result
    for name, expression in features.expressions:
        scope[name] = _evaluate_vector(expression, scope, n)
        out[name] = scope[name]
    for agg in features.aggregates:
        out[agg.name] = _format_aggregate(agg, out[agg.name])
    for name, _ in features.expressions:
        out[name] = _null_float(out[name])
    return out


def training_table(events: Any, features: FeatureSet) -> dict[str, list[Any]]:
    """The per-event table training reads, as columns (``features.training_table_schema``).

    :func:`compute_per_event` with everything a training run needs from the
    event itself: its timestamp (UTC ``datetime``), its label as given (the
    column is left out when the events have none: scoring data has no
    label) and the model's raw inputs (``features.inputs``, as floats, the
    same values :func:`entity_table` gives batch inference), so that every
    column of ``ModelSpec.feature_columns`` is present, not only the derived
    features. One row per event id (first delivery), in input order.
    """
    inputs = _checked_inputs(features, features.inputs)
    ev = event_columns(events, features, extra=inputs)
    out = _per_event(ev, features, inputs)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    carried: dict[str, list[Any]] = {
        features.timestamp: [epoch + timedelta(microseconds=m) for m in ev.micros.tolist()],
    }
    label = features.label
    labels = _optional_column(events, label) if label else None
    if label and labels is not None:
        carried[label] = [labels[p] for p in ev.positions.tolist()]
    columns = {**out, **carried}
    return {name: columns[name] for name in features.training_table_schema if name in columns}


def _optional_column(events: Any, name: str) -> list[Any] | None:
    """The raw values of ``name``, or None when the events do not have the column
    (for dict rows: when no row has it; a row without it is null)."""
    if hasattr(events, "column_names") or isinstance(events, Mapping):
        present = name in (events.column_names if hasattr(events, "column_names") else events)
        return _column_list(events, name) if present else None
    rows: Sequence[Mapping[str, Any]] = events
    if not any(name in row for row in rows):
        return None
    return [row.get(name) for row in rows]


def _format_aggregate(agg: Aggregate, values: np.ndarray) -> list[Any]:
    if agg.function == "count":
        return [int(v) for v in values.tolist()]
    return _null_float(values)


def _latest_per_entity(ev: EventColumns, entity: str) -> tuple[np.ndarray, np.ndarray]:
    """(entity values, row index of each entity's latest event by (time, id))."""
    keys = ev.keys[entity].astype(str)
    order = np.lexsort((ev.event_id.astype(str), ev.micros, keys))
    sorted_keys = keys[order]
    last = np.flatnonzero(np.append(sorted_keys[1:] != sorted_keys[:-1], True))
    return sorted_keys[last], order[last]


def compute_batch(events: Any, features: FeatureSet, as_of: date | str, *,
                  inputs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per entity as of the end of day ``as_of``, sorted by entity.

    An entity appears when its latest event on or before ``as_of`` lies within
    the longest window (every entity, when there are no aggregates). Raw
    columns for expressions, and the keys of aggregates over other entities,
    come from that latest event. Events after ``as_of`` are ignored.

    ``inputs``: raw numeric columns to carry from that same latest event into
    the row, after the entity key (null where the event has none). Default:
    none, so the row is exactly what :meth:`IncrementalEngine.read` returns.
    """
    inputs = _checked_inputs(features, inputs)
    ev = event_columns(events, features, extra=inputs)
    today = day_number(as_of)
    ev = ev.take(np.flatnonzero(ev.day <= today))
    if len(ev) == 0:
        return []
    entities, latest = _latest_per_entity(ev, features.entity_key)
    horizon = features.horizon()
    if horizon:
        keep = ev.day[latest] > today - horizon
        entities, latest = entities[keep], latest[keep]
    n = len(entities)
    scope: dict[str, np.ndarray] = {c: v[latest] for c, v in ev.values.items()}
    for agg in features.aggregates:
        in_window = np.flatnonzero((ev.day > today - agg.window_days)
                                   & (ev.keys[agg.entity] != None))  # noqa: E711
        window = ev.take(in_window)
        wanted = ev.keys[agg.entity][latest]
        result = np.full(n, math.nan)
        if len(window):
            order, start, end = _group_ranges(window.keys[agg.entity].astype(str))
            values = _aggregate_ranges(agg, window, order, start, end)
            group_keys = window.keys[agg.entity].astype(str)[order][end]
            position = np.searchsorted(group_keys, wanted.astype(str))
            position = np.minimum(position, len(group_keys) - 1)
            found = (group_keys[position] == wanted.astype(str)) & (wanted != None)  # noqa: E711
            result[found] = values[position[found]]
        if agg.function in ("sum", "count"):
            result[np.isnan(result)] = 0.0
        scope[agg.name] = result
    for name, expression in features.expressions:
        scope[name] = _evaluate_vector(expression, scope, n)
    columns = {c: _null_float(ev.values[c][latest]) for c in inputs}
    columns |= {a.name: _format_aggregate(a, scope[a.name]) for a in features.aggregates}
    columns |= {name: _null_float(scope[name]) for name, _ in features.expressions}
    names = [*inputs, *features.names]
    return [
        {features.entity_key: entity, **{name: columns[name][i] for name in names}}
        for i, entity in enumerate(entities.tolist())
    ]


def entity_table(events: Any, features: FeatureSet, as_of: date | str) -> dict[str, list[Any]]:
    """The per-entity table batch inference scores, as columns
    (``features.entity_table_schema``): :func:`compute_batch` with the model's
    raw inputs (``features.inputs``) taken from each entity's latest event on
    or before ``as_of`` (the "as of its latest event" rule of the entity row
    :meth:`IncrementalEngine.read` gives online), so every model input is
    present, not only the derived features. ``events`` must have ``features.entity_table_columns``.
    Every column is present even when there are no rows.
    """
    rows = compute_batch(events, features, as_of, inputs=features.inputs)
    return {name: [row[name] for row in rows] for name in features.entity_table_schema}


def _group_ranges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by key; one (start, end) range per distinct key."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    start = np.concatenate([[0], boundary])
    end = np.concatenate([boundary - 1, [len(keys) - 1]])
    return order, start, end


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
        event_id = _as_key(event.get(fs.event_id))
        if event_id is None:
            raise MalformedEvent(f"no {fs.event_id}")
        if event.get(fs.timestamp) is None:
            raise MalformedEvent(f"event {event_id!r} has no {fs.timestamp}")
        micros = to_micros(event[fs.timestamp], fs.timestamp_unit)
        keys = {c: _as_key(event.get(c)) for c in fs.entity_columns}
        if keys[fs.entity_key] is None:
            raise MalformedEvent(f"event {event_id!r} has no {fs.entity_key}")
        values = {c: _as_float(event.get(c), c) for c in fs.value_columns}
        last = {}
        for c in fs.last_columns:
            last[c] = keys[c] if c in keys else _py(_as_float(event.get(c), c))
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
                             item["last"]["micros"] // _US_PER_DAY if item.get("last") else ev.day)
                item["expires_at"] = (newest + fs.horizon() + 2) * 86_400
                writes.append(Write(key, item, version))
        # Late for every window: nothing added (batch ignores it too); the
        # writes only remember the day as `dropped`.
        return writes, fed

    def read(self, entity_value: str, as_of: date | str) -> dict[str, Any] | None:
        """The entity's features as of the end of day ``as_of`` (same row as
        :func:`compute_batch`); None when the entity has no event in the
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
        keys = _event_item_keys(self.features, events)
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
    if horizon and last["micros"] // _US_PER_DAY <= today - horizon:
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
    return (day_number(day) + 1) * _US_PER_DAY - 1, _LAST_ID


def _bucket_add(days: dict[str, Any], micros: int, event_id: str, values: Sequence[Any],
                columns: Sequence[str]) -> None:
    """Add one event (``values`` in ``columns`` order, None or NaN for null) to its
    day's bucket, whose ``hi`` is the newest (micros, event id) it holds."""
    day = day_string(micros // _US_PER_DAY)
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
    values = [_py(ev.values[c]) for c in columns]
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
        kept = [e for e in recent["events"] if e[0] // _US_PER_DAY > cutoff]
        gone += [day_string(e[0] // _US_PER_DAY) for e in recent["events"]
                 if e[0] // _US_PER_DAY <= cutoff]
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
            if low < micros // _US_PER_DAY <= high and (until is None
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


def _event_item_keys(fs: FeatureSet, events: Sequence[ParsedEvent | None]) -> list[str]:
    """The store items a batch's rows read: each event's item per aggregated entity column."""
    keys = {item_key(fs.model, c, ev.keys[c]) for ev in events if ev is not None
            for c in fs.entity_columns if ev.keys[c] is not None and fs.horizon(c)}
    return sorted(keys)


def rows_as_of_events(fs: FeatureSet, events: Sequence[ParsedEvent | None],
                      items: Mapping[str, Mapping[str, Any] | None]) -> EventRows:
    """Each event's features as of itself, as :func:`compute_per_event` gives its
    training row, from the store items read once for the batch and the batch itself.

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
    key of :func:`_event_item_keys`, read after the batch's earlier events were
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
    """The :func:`compute_batch` table built by replaying events through a
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


# --- DynamoDB ------------------------------------------------------------------------------


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))  # repr round-trips the float exactly
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) \
            else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
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
        item = {k: _from_dynamo(self._deserialize(v)) for k, v in raw.items()}
        version = int(item.pop("version"))
        item.pop("pk")
        return item, version

    def _marshal(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._serialize(_to_dynamo(v)) for k, v in item.items()}

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
        keys = _event_item_keys(fs, parsed)
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
                    item = {k: _from_dynamo(self._deserialize(v)) for k, v in raw.items()}
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
