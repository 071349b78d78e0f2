"""The feature definition and the batch engine (split from :mod:`mdlc_core.features`).

:class:`FeatureSet` (the spec's ``features`` section), the time, column and
expression helpers both engines share, and the batch engine:
:func:`compute_batch` / :func:`entity_table` (one row per entity as of a day)
and :func:`compute_per_event` / :func:`training_table` (every event as of
itself). :mod:`mdlc_core.incremental_features` and
:mod:`mdlc_core.feature_store` build on it; :mod:`mdlc_core.features`
re-exports all three. The rules both engines follow are in that module's
docstring.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
