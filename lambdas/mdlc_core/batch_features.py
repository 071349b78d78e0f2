"""The feature definition and what every feature engine shares (split from
:mod:`mdlc_core.features`).

:class:`FeatureSet` (the spec's ``features`` section) and the time, column,
value and expression helpers shared by the batch engines (the features
compiled to SQL, :mod:`mdlc_core.sql.features`, on DuckDB or Spark) and the
incremental online engine (:mod:`mdlc_core.incremental_features`,
:mod:`mdlc_core.feature_store`): the converters here are the one definition
of how an id, a key, a timestamp or a number is read, so every engine
accepts and refuses the same values with the same :class:`FeatureError`.
:mod:`mdlc_core.features` re-exports them; the rules every engine follows
are in that module's docstring.

The hand-written NumPy batch engine (``compute_batch``, ``entity_table``,
``compute_per_event``, ``training_table``) was retired (issue #18): its
answers are recorded in the tests (``tests/feature_answers.py``), which hold
the SQL engines to them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .expressions import Expression, parse
from .timestamps import TimestampError, epoch_micros

EPOCH = date(1970, 1, 1)
US_PER_DAY = 86_400_000_000


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
        """What :func:`mdlc_core.sql.features.entity_table` reads: ``required_columns``
        and the model's raw inputs."""
        return list(dict.fromkeys([*self.required_columns, *self.inputs]))

    @property
    def entity_table_schema(self) -> list[str]:
        """The columns of :func:`mdlc_core.sql.features.entity_table`, in order:
        the entity key, the raw inputs, then the features (so every model input
        is present)."""
        return [self.entity_key, *self.inputs, *self.names]

    @property
    def training_table_schema(self) -> list[str]:
        """The columns of :func:`mdlc_core.sql.features.training_table`, in order:
        the event id, the entity key, the timestamp, the label, the raw inputs,
        then the features (the label only when the events have it)."""
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
    return micros // US_PER_DAY


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


def column_list(events: Any, name: str) -> list[Any]:
    """The values of column ``name`` of the events (a pyarrow Table or dict rows),
    typed timestamps as UTC datetimes; a missing column is a :class:`FeatureError`."""
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


def as_float(value: Any, column: str) -> float:
    """A feature input as a float: null, empty and non-finite are NaN, booleans
    (and their CSV text) 0/1; anything else that is not a number is a
    :class:`FeatureError` naming ``column``."""
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


def as_key(value: Any) -> str | None:
    """An entity key as text (a float read for an integer id loses its ``.0``);
    null or empty is None."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


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


def plain_value(value: Any) -> Any:
    """A computed value as JSON has it: floats as ``float``, NaN as None."""
    # numbers.Real minus Integral: floats and NumPy floats, without importing NumPy.
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return None if math.isnan(value) else float(value)
    return value


def checked_inputs(features: FeatureSet, inputs: Sequence[str]) -> list[str]:
    """``inputs`` without repeats; one named like the entity key or a feature is a
    :class:`FeatureError` (it would be written twice to a row)."""
    inputs = list(dict.fromkeys(inputs))
    clash = sorted(set(inputs) & {features.entity_key, *features.names})
    if clash:
        raise FeatureError(f"inputs {clash} are also the entity key or feature names")
    return inputs


def optional_column(events: Any, name: str) -> list[Any] | None:
    """The raw values of ``name``, or None when the events do not have the column
    (for dict rows: when no row has it; a row without it is null)."""
    if hasattr(events, "column_names") or isinstance(events, Mapping):
        present = name in (events.column_names if hasattr(events, "column_names") else events)
        return column_list(events, name) if present else None
    rows: Sequence[Mapping[str, Any]] = events
    if not any(name in row for row in rows):
        return None
    return [row.get(name) for row in rows]
