"""Synthetic datasets that fit a model spec: ``mdlc sample`` and the local lifecycle.

A local run of a model stack (``mdlc simulate``) and its tests need data
that looks like the model's: the spec's columns and types, every quality
rule satisfied day after day, and a label a model can actually learn, so
that training clears the evaluation threshold and the later stages
(inference, monitoring) see realistic scores. This module makes such data
for *any* valid spec from the spec alone::

    days = sample(spec, days=7, start=date(2026, 11, 1), seed=1)
    write_csv(spec, days, "orders.csv")

Everything here is hand-written: no library generates data from
quality rules. What it does, per column:

* the **event id** is unique (``order-20261101-000001``); the **entity
  key** draws from a population of entities that recur across days; the
  **timestamp** is a distinct second inside its day (ISO 8601, UTC ``Z``),
  the last one in the day's final minute so freshness rules pass;
* a column with a ``consistency`` rule belongs to its entity: with
  ``change: days`` it is the entity's base value plus the days since the
  start (account tenure grows by one a day), with ``change: constant``
  the base value;
* other columns draw from their ``allowed_values``, inside their ``range``
  (a float range that spans orders of magnitude, like an amount, is
  log-normal around a typical value), or from a small vocabulary;
* the **label** follows a logistic model of a few standardized numeric
  columns (about 10% positives for a binary label; a float label is a
  noisy linear function), strong enough that XGBoost reaches a validation
  AUC far above 0.8 on a single day's rows;
* values are complete (every completeness rule passes) and every
  ``unique`` rule holds per day, or :class:`SamplingError` says which rule
  cannot be met.

An :class:`Anomaly` makes one column break its rule from a given day on,
for one entity: the classic one is the consistency rule's, a customer's
tenure going 364, 54, 54, 54 (it jumps back and stops growing).

Output is deterministic for a seed: day ``d`` uses its own random stream,
so a longer run repeats a shorter one's days.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .spec import ModelSpec
from .spec.data import Column

#: Rows a day by default: one day trains XGBoost well above a 0.8 AUC gate.
DEFAULT_ROWS_PER_DAY = 500
#: Share of positive labels of a binary label.
POSITIVE_RATE = 0.10
#: Standard deviation of the label's logit: the strength of the learnable signal.
SIGNAL_STRENGTH = 6.0
#: A growing (``change: days``) column starts at most this far above its minimum.
TYPICAL_AGE_DAYS = 3650
_SECONDS_A_DAY = 86_400
# Random streams (the second element of the seed) so that days do not depend
# on how many days are generated.
_ENTITIES, _DAYS, _CALIBRATION, _ANOMALY = 0, 1, 2, 3


class SamplingError(ValueError):
    """The spec or the arguments admit no dataset. ``argument`` names the culprit
    ('days', 'rows_per_day', 'anomaly', 'start'), or is None for the spec itself."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        self.argument = argument
        super().__init__(message)


@dataclass(frozen=True)
class Anomaly:
    """``column`` breaks its quality rule from day index ``day`` on, for ``entities`` entities."""

    column: str
    day: int
    entities: int = 1


@dataclass
class SampleDay:
    """One day of rows, as typed Python values per column (None = missing)."""

    date: date
    columns: dict[str, list[Any]]
    #: Per anomaly column, the entity keys it affects on this day.
    affected: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()), []))


@dataclass(frozen=True)
class _Raw:
    """A value written to the CSV as is: text that does not parse as the column's type."""

    text: str


def parse_anomaly(text: str, *, start: date, days: int) -> Anomaly:
    """``COLUMN@DAY`` with DAY a day index (0 = ``start``) or a date (YYYY-MM-DD)."""
    column, at, day_text = text.partition("@")
    column, day_text = column.strip(), day_text.strip()
    if not at or not column or not day_text:
        raise SamplingError(
            f"expected COLUMN@DAY (DAY a day index from 0 or a YYYY-MM-DD date), got {text!r}",
            "anomaly",
        )
    if re.fullmatch(r"\d+", day_text):
        index = int(day_text)
    else:
        try:
            index = (date.fromisoformat(day_text) - start).days
        except ValueError:
            raise SamplingError(
                f"{text!r}: DAY must be a day index or a YYYY-MM-DD date, got {day_text!r}",
                "anomaly",
            ) from None
    if not 0 <= index < days:
        last = start + timedelta(days=days - 1)
        raise SamplingError(
            f"{text!r}: day {day_text} is outside the sampled days 0..{days - 1} "
            f"({start} to {last})",
            "anomaly",
        )
    return Anomaly(column, index)


# -- per-column plans ----------------------------------------------------------------


@dataclass
class _Numeric:
    """How a numeric column's values are drawn, and how to standardize them."""

    integer: bool
    low: float | None  # the rule's bounds, for clipping
    high: float | None
    kind: str  # 'uniform' or 'lognormal'
    a: float  # uniform: [a, b]; lognormal: mu, sigma of log(value - offset)
    b: float
    offset: float = 0.0
    sign: float = 1.0
    decimals: int = 2

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.kind == "uniform":
            if self.integer:
                values = rng.integers(int(self.a), int(self.b) + 1, size=size).astype(np.float64)
            else:
                values = rng.uniform(self.a, self.b, size=size)
        else:
            values = self.offset + self.sign * np.exp(rng.normal(self.a, self.b, size=size))
        return self.clip(values)

    def clip(self, values: np.ndarray) -> np.ndarray:
        values = np.round(values) if self.integer else np.round(values, self.decimals)
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        return np.clip(values, low, high)

    def standardize(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "uniform":
            spread = (self.b - self.a) / math.sqrt(12.0)
            return (values - (self.a + self.b) / 2.0) / (spread or 1.0)
        distance = np.maximum(self.sign * (values - self.offset), 1e-12)
        return (np.log(distance) - self.a) / (self.b or 1.0)


def _numeric_plan(name: str, integer: bool, low: float | None, high: float | None) -> _Numeric:
    """Values inside [low, high] at a typical scale: wide positive float ranges
    (amounts) log-normal, bounded ones uniform, half-bounded ones log-normal away
    from the bound."""
    if low is not None and high is not None:
        span = high - low
        wide = (not integer) and low >= 0 and span > 0 and (low == 0 or high / low >= 1000)
        if wide:
            median = max(span / 500.0, 1e-6)
            return _Numeric(integer, low, high, "lognormal", math.log(median), 1.0, offset=low,
                            decimals=_decimals(median))
        if integer and math.floor(high) < math.ceil(low):
            raise SamplingError(f"column {name!r}: no integer lies in [{low}, {high}]")
        a = math.ceil(low) if integer else low
        b = math.floor(high) if integer else high
        return _Numeric(integer, low, high, "uniform", a, b, decimals=_decimals(span / 10 or 1))
    if low is not None:
        return _Numeric(integer, low, None, "lognormal", math.log(100.0), 1.0, offset=low)
    if high is not None:
        return _Numeric(integer, None, high, "lognormal", math.log(100.0), 1.0, offset=high,
                        sign=-1.0)
    return _Numeric(integer, None, None, "lognormal", math.log(100.0), 1.0)


def _decimals(scale: float) -> int:
    """Cents for values in the tens and up, more digits for small ones."""
    return 2 if scale >= 1 else min(10, 2 + math.ceil(-math.log10(max(scale, 1e-10))))


@dataclass
class _ColumnPlan:
    column: Column
    allowed: list[Any] | None = None
    numeric: _Numeric | None = None
    vocabulary: list[str] | None = None
    unique_text: bool = False  # a free string column made unique for a unique rule


@dataclass
class _Growth:
    """A column bound to an entity by a consistency rule."""

    column: str
    entity: str
    change: str  # 'days' or 'constant'
    tolerance: float
    plan: _Numeric
    allowed: list[Any] | None


@dataclass
class _Label:
    kind: str  # 'binary', 'categorical', 'regression'
    classes: list[Any] = field(default_factory=list)  # binary: [negative, positive]
    numeric: _Numeric | None = None


class _Plan:
    """Everything the spec says about how to draw each column."""

    def __init__(self, spec: ModelSpec, *, days: int, rows_per_day: int,
                 entities: int | None) -> None:
        self.spec = spec
        data = spec.data
        self.days = days
        self.rows = rows_per_day
        self.columns = {c.name: c for c in data.columns}
        self.event_id, self.entity_key = data.event_id, data.entity_key
        self.timestamp, self.label_name = data.timestamp, data.label
        rules = spec.quality.rules
        self.ranges: dict[str, tuple[float | None, float | None]] = {}
        self.allowed: dict[str, list[Any]] = {}
        self.unique: list[list[str]] = []
        self.consistency: dict[str, Any] = {}
        row_low, row_high = 0, None
        for rule in rules:
            kind = rule.kind
            if kind == "range":
                low, high = self.ranges.get(rule.column, (None, None))
                low = rule.min if low is None else (low if rule.min is None else max(low, rule.min))
                high = rule.max if high is None else (
                    high if rule.max is None else min(high, rule.max))
                if low is not None and high is not None and low > high:
                    raise SamplingError(f"the range rules of {rule.column!r} leave no values")
                self.ranges[rule.column] = (low, high)
            elif kind == "allowed_values":
                values = [_typed(v, self.columns[rule.column]) for v in rule.values]
                if rule.column in self.allowed:
                    values = [v for v in self.allowed[rule.column] if v in values]
                self.allowed[rule.column] = values
            elif kind == "unique":
                self.unique.append(list(rule.columns))
            elif kind == "consistency":
                if rule.column in self.consistency:
                    raise SamplingError(
                        f"column {rule.column!r} has two consistency rules; one column can "
                        f"follow one rule"
                    )
                self.consistency[rule.column] = rule
            elif kind == "row_count":
                row_low = max(row_low, rule.min)
                if rule.max is not None:
                    row_high = rule.max if row_high is None else min(row_high, rule.max)
        if rows_per_day < row_low or (row_high is not None and rows_per_day > row_high):
            raise SamplingError(
                f"{rows_per_day} rows a day, but the spec's row_count rule wants between "
                f"{row_low} and {row_high if row_high is not None else 'any number of'} rows",
                "rows_per_day",
            )
        for name, values in self.allowed.items():
            low, high = self.ranges.get(name, (None, None))
            kept = [v for v in values if _within(v, low, high)]
            if not kept:
                raise SamplingError(f"column {name!r}: no allowed value is inside its range")
            self.allowed[name] = kept
        self._check_roles()
        self.growth = {name: self._growth(rule) for name, rule in self.consistency.items()}
        others = sorted({g.entity for g in self.growth.values()} - {self.entity_key})
        self.entity_columns = [self.entity_key, *others]
        self.without_replacement = self._unique_strategy()
        default = entities or max(1, rows_per_day // 2)
        self.population: dict[str, int] = {}
        for name in self.entity_columns:
            size = len(self.allowed[name]) if name in self.allowed else default
            if name in self.without_replacement:
                size = max(size, rows_per_day) if name not in self.allowed else size
                if size < rows_per_day:
                    raise SamplingError(
                        f"a unique rule allows each {name} once a day, but it has only {size} "
                        f"allowed values for {rows_per_day} rows",
                        "rows_per_day",
                    )
            self.population[name] = size
        roles = {self.event_id, self.timestamp, *self.entity_columns, *self.growth,
                 self.label_name}
        self.free = {name: self._free_plan(column) for name, column in self.columns.items()
                     if name not in roles}
        for columns in self.unique:
            self._mark_unique_text(columns)
        self.label = self._label_plan()

    # -- validation and strategies

    def _check_roles(self) -> None:
        if self.columns[self.event_id].type == "bool":
            raise SamplingError(f"the event id {self.event_id!r} is a bool; it cannot be unique")
        for role in (self.event_id, self.timestamp):
            if role in self.consistency:
                raise SamplingError(f"{role!r} cannot have a consistency rule")

    def _growth(self, rule: Any) -> _Growth:
        column = self.columns[rule.column]
        if column.type not in ("int", "float"):
            raise SamplingError(
                f"consistency rule {rule.rule_id}: column {rule.column!r} is {column.type}; "
                f"the rule compares numbers"
            )
        if rule.column in (self.entity_key, rule.entity, self.label_name):
            raise SamplingError(
                f"consistency rule {rule.rule_id}: {rule.column!r} cannot be its own entity "
                f"or the label"
            )
        low, high = self.ranges.get(rule.column, (None, None))
        allowed = self.allowed.get(rule.column)
        integer = column.type == "int"
        if rule.change == "days":
            if allowed is not None:
                raise SamplingError(
                    f"consistency rule {rule.rule_id}: {rule.column!r} must grow daily but "
                    f"has allowed_values"
                )
            start = 0.0 if low is None else float(low)
            top = start + TYPICAL_AGE_DAYS
            if high is not None:
                top = min(top, float(high) - (self.days - 1))
            if top < start:
                raise SamplingError(
                    f"column {rule.column!r} grows by one a day for {self.days} days, but its "
                    f"range [{low}, {high}] is narrower",
                    "days",
                )
            plan = _Numeric(integer, low, high, "uniform",
                            math.ceil(start) if integer else start,
                            math.floor(top) if integer else top)
        else:
            plan = _numeric_plan(rule.column, integer, low, high)
        return _Growth(rule.column, rule.entity, rule.change, rule.tolerance, plan, allowed)

    def _unique_strategy(self) -> set[str]:
        """Entity columns drawn without replacement within a day, for unique rules
        that only entity-determined columns can satisfy."""
        chosen: set[str] = set()
        for columns in self.unique:
            names = set(columns)
            if names & {self.event_id, self.timestamp}:
                continue
            if any(self._free_text(n) for n in names):
                continue
            entity_part = [n for n in self.entity_columns if n in names]
            if entity_part and names <= set(self.entity_columns) | set(self.growth):
                chosen.add(entity_part[0])
        return chosen

    def _free_text(self, name: str) -> bool:
        roles = {self.event_id, self.timestamp, self.entity_key, self.label_name}
        return (name not in roles and name not in self.growth
                and self.columns[name].type == "string" and name not in self.allowed
                and name not in {g.entity for g in self.growth.values()})

    def _mark_unique_text(self, columns: Sequence[str]) -> None:
        if set(columns) & {self.event_id, self.timestamp} or self.without_replacement & set(
                columns):
            return
        for name in columns:
            if self._free_text(name):
                self.free[name].unique_text = True
                return

    def _free_plan(self, column: Column) -> _ColumnPlan:
        plan = _ColumnPlan(column, allowed=self.allowed.get(column.name))
        if plan.allowed is None:
            if column.type in ("int", "float"):
                low, high = self.ranges.get(column.name, (None, None))
                plan.numeric = _numeric_plan(column.name, column.type == "int", low, high)
            elif column.type == "string":
                stem = column.name.removesuffix("_id")
                plan.vocabulary = [f"{stem}_{k}" for k in range(8)]
        return plan

    def _label_plan(self) -> _Label:
        column = self.columns[self.label_name]
        allowed = self.allowed.get(self.label_name)
        low, high = self.ranges.get(self.label_name, (None, None))
        if allowed is not None:
            if len(allowed) == 1:
                return _Label("binary", [allowed[0], allowed[0]])
            if len(allowed) == 2:
                ordered = allowed if column.type == "string" else sorted(allowed)
                return _Label("binary", list(ordered))
            return _Label("categorical", list(allowed))
        if column.type == "bool":
            return _Label("binary", [False, True])
        if column.type == "string":
            return _Label("binary", ["no", "yes"])
        if column.type == "int" and _within(0, low, high) and _within(1, low, high):
            return _Label("binary", [0, 1])
        if column.type in ("int", "float"):
            return _Label("regression",
                          numeric=_numeric_plan(self.label_name, column.type == "int", low, high))
        raise SamplingError(f"the label {self.label_name!r} is a {column.type}; it cannot be "
                            f"sampled as a target")

    @property
    def signal_columns(self) -> list[str]:
        """The numeric inputs the label depends on: the model's raw numeric features."""
        raw = [c for c in self.spec.feature_columns if c in self.columns]
        return [c for c in raw if self.columns[c].type in ("int", "float")
                and (c in self.growth or (c in self.free and self.free[c].numeric is not None))]


def _typed(value: Any, column: Column) -> Any:
    """A rule's value as the column's Python type (allowed values are written loosely)."""
    kind = column.type
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("true", "1")
    except (TypeError, ValueError):
        raise SamplingError(
            f"allowed value {value!r} of column {column.name!r} is not a {kind}") from None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _within(value: Any, low: float | None, high: float | None) -> bool:
    if isinstance(value, str):
        return True
    return (low is None or value >= low) and (high is None or value <= high)


# -- generation ---------------------------------------------------------------------


def sample(
    spec: ModelSpec,
    *,
    days: int,
    start: date,
    rows_per_day: int = DEFAULT_ROWS_PER_DAY,
    anomalies: Iterable[Anomaly] = (),
    seed: int = 0,
    entities: int | None = None,
) -> list[SampleDay]:
    """``days`` days of rows from ``start`` on, each satisfying the spec's quality rules
    (except what ``anomalies`` break).

    ``entities`` is the size of the entity population (default: half the
    rows a day, so entities recur within and across days).

    Raises:
        SamplingError: the spec or the arguments admit no such dataset.
    """
    if days < 1:
        raise SamplingError(f"expected at least 1 day, got {days}", "days")
    if rows_per_day < 1:
        raise SamplingError(f"expected at least 1 row a day, got {rows_per_day}", "rows_per_day")
    if entities is not None and entities < 1:
        raise SamplingError(f"expected at least 1 entity, got {entities}", "entities")
    plan = _Plan(spec, days=days, rows_per_day=rows_per_day, entities=entities)
    anomalies = list(anomalies)
    for anomaly in anomalies:
        _check_anomaly(plan, anomaly)
    generator = _Generator(plan, seed, anomalies)
    return [generator.day(index, start + timedelta(days=index)) for index in range(days)]


class _Generator:
    def __init__(self, plan: _Plan, seed: int, anomalies: Sequence[Anomaly]) -> None:
        self.plan = plan
        self.seed = seed
        self.anomalies = anomalies
        rng = np.random.default_rng([seed, _ENTITIES])
        self.entity_ids = {name: _entity_ids(plan, name) for name in plan.entity_columns}
        self.bases: dict[str, np.ndarray] = {}
        for name, growth in plan.growth.items():
            size = plan.population[growth.entity]
            if growth.allowed is not None:
                self.bases[name] = np.asarray(
                    [growth.allowed[i] for i in rng.integers(len(growth.allowed), size=size)],
                    dtype=np.float64)
            else:
                self.bases[name] = growth.plan.draw(rng, size)
        self.coefficients, self.intercept = self._calibrate()
        self.affected = {a.column: self._affected(a) for a in anomalies}

    # -- the label's signal

    def _calibrate(self) -> tuple[dict[str, float], float]:
        """Coefficients of the label's logit and the intercept giving POSITIVE_RATE."""
        names = self.plan.signal_columns
        raw = [2.0, -1.5, 1.0, -0.75, 0.5]
        weights = [raw[i % len(raw)] / (1 + i // len(raw)) for i in range(len(names))]
        norm = math.sqrt(sum(w * w for w in weights)) or 1.0
        coefficients = {n: SIGNAL_STRENGTH * w / norm for n, w in zip(names, weights, strict=True)}
        rng = np.random.default_rng([self.seed, _CALIBRATION])
        draws = 20_000
        logit = np.zeros(draws)
        for name, weight in coefficients.items():
            plan = self._numeric_of(name)
            values = (self.bases[name][rng.integers(len(self.bases[name]), size=draws)]
                      if name in self.plan.growth else plan.draw(rng, draws))
            logit += weight * plan.standardize(values)
        low, high = -50.0, 50.0
        for _ in range(60):  # bisection on the mean positive rate
            middle = (low + high) / 2
            if np.mean(_sigmoid(logit + middle)) > POSITIVE_RATE:
                high = middle
            else:
                low = middle
        return coefficients, (low + high) / 2

    def _numeric_of(self, name: str) -> _Numeric:
        if name in self.plan.growth:
            return self.plan.growth[name].plan
        numeric = self.plan.free[name].numeric
        assert numeric is not None
        return numeric

    # -- anomalies

    def _affected(self, anomaly: Anomaly) -> np.ndarray:
        entity = self._anomaly_entity(anomaly.column)
        size = self.plan.population[entity]
        digest = sum(ord(c) * (i + 1) for i, c in enumerate(anomaly.column))
        rng = np.random.default_rng([self.seed, _ANOMALY, digest])
        return rng.choice(size, size=min(anomaly.entities, size), replace=False)

    def _anomaly_entity(self, column: str) -> str:
        growth = self.plan.growth.get(column)
        return growth.entity if growth else self.plan.entity_key

    # -- one day

    def day(self, index: int, day: date) -> SampleDay:
        plan = self.plan
        rng = np.random.default_rng([self.seed, _DAYS, index])
        rows = plan.rows
        columns: dict[str, list[Any]] = {}
        seconds = _seconds(rng, rows)
        midnight = datetime.combine(day, time(), UTC)
        columns[plan.timestamp] = [midnight + timedelta(seconds=float(s)) for s in seconds]
        picks: dict[str, np.ndarray] = {}
        for name in plan.entity_columns:
            size = plan.population[name]
            if name in plan.without_replacement:
                picks[name] = rng.permutation(size)[:rows]
            else:
                picks[name] = rng.integers(size, size=rows)
        # An anomaly is visible only where its entity shows up: from the day
        # before the anomaly on, it gets at least one row each day.
        for anomaly in self.anomalies:
            if index >= anomaly.day - 1:
                entity = self._anomaly_entity(anomaly.column)
                _ensure_present(rng, picks[entity], self.affected[anomaly.column])
        for name in plan.entity_columns:
            ids = self.entity_ids[name]
            columns[name] = [ids[i] for i in picks[name]]
        columns[plan.event_id] = _event_ids(plan, index, day)
        values: dict[str, np.ndarray] = {}
        for name, growth in plan.growth.items():
            base = self.bases[name][picks[growth.entity]]
            values[name] = base + index if growth.change == "days" else base.copy()
        for name, column_plan in plan.free.items():
            columns[name] = self._free_values(rng, column_plan, rows, day)
            if column_plan.numeric is not None:
                values[name] = np.asarray(columns[name], dtype=np.float64)
        columns[plan.label_name] = self._labels(rng, values, rows)
        for name, column_values in values.items():
            if name in plan.growth:
                columns[name] = _as_type(column_values, plan.columns[name].type)
        sample_day = SampleDay(day, {c.name: columns[c.name] for c in plan.spec.data.columns})
        _check_unique(plan, sample_day)
        for anomaly in self.anomalies:
            if index >= anomaly.day:
                self._break(anomaly, index, sample_day, picks)
        return sample_day

    def _free_values(self, rng: np.random.Generator, column_plan: _ColumnPlan, rows: int,
                     day: date) -> list[Any]:
        column = column_plan.column
        if column_plan.allowed is not None:
            choice = rng.integers(len(column_plan.allowed), size=rows)
            return [column_plan.allowed[i] for i in choice]
        if column_plan.numeric is not None:
            return _as_type(column_plan.numeric.draw(rng, rows), column.type)
        if column.type == "bool":
            return [bool(v) for v in rng.integers(2, size=rows)]
        if column.type == "timestamp":
            midnight = datetime.combine(day, time(), UTC)
            offsets = rng.integers(0, 30 * _SECONDS_A_DAY, size=rows)
            return [midnight - timedelta(seconds=int(s)) for s in offsets]
        if column_plan.unique_text:
            return [f"{column.name}-{day:%Y%m%d}-{k + 1:06d}" for k in range(rows)]
        vocabulary = column_plan.vocabulary or ["value"]
        return [vocabulary[i] for i in rng.integers(len(vocabulary), size=rows)]

    def _labels(self, rng: np.random.Generator, values: Mapping[str, np.ndarray],
                rows: int) -> list[Any]:
        label = self.plan.label
        logit = np.full(rows, self.intercept)
        for name, weight in self.coefficients.items():
            logit += weight * self._numeric_of(name).standardize(values[name])
        if label.kind == "binary":
            positive = rng.random(rows) < _sigmoid(logit)
            negative_value, positive_value = label.classes
            return [positive_value if p else negative_value for p in positive]
        signal = (logit - self.intercept) / SIGNAL_STRENGTH
        if label.kind == "categorical":
            k = len(label.classes)
            centers = np.linspace(-1.5, 1.5, k)
            scores = -((signal[:, None] - centers[None, :]) ** 2) * 2.0
            scores += rng.gumbel(size=(rows, k))
            return [label.classes[i] for i in np.argmax(scores, axis=1)]
        numeric = label.numeric
        assert numeric is not None
        typical = numeric.draw(np.random.default_rng([self.seed, _CALIBRATION, 1]), 2000)
        center, spread = float(np.median(typical)), float(np.std(typical)) or 1.0
        target = center + spread * (0.8 * signal + 0.3 * rng.normal(size=rows))
        return _as_type(numeric.clip(target), self.plan.columns[self.plan.label_name].type)

    def _break(self, anomaly: Anomaly, index: int, sample_day: SampleDay,
               picks: Mapping[str, np.ndarray]) -> None:
        plan = self.plan
        name = anomaly.column
        column = plan.columns[name]
        values = sample_day.columns[name]
        entity = self._anomaly_entity(name)
        affected = self.affected[name]
        rows = np.flatnonzero(np.isin(picks[entity], affected))
        ids = self.entity_ids[entity]
        sample_day.affected[name] = sorted({ids[i] for i in picks[entity][rows]}, key=str)
        kind = _anomaly_rule(plan, name)
        if kind == "consistency":
            growth = plan.growth[name]
            for row in rows:
                base = float(self.bases[name][picks[entity][row]])
                values[row] = _cast(_broken_value(growth, base, anomaly.day, index), column.type)
        elif kind == "unique":
            if sample_day.rows < 2:
                raise SamplingError("a unique rule cannot be broken with one row a day",
                                    "rows_per_day")
            for column_values in sample_day.columns.values():
                column_values[1] = column_values[0]
            first = picks[plan.entity_key][0]
            sample_day.affected[name] = [self.entity_ids[plan.entity_key][first]]
        elif kind == "range":
            low, high = plan.ranges[name]
            if high is not None:
                outside = high + max(abs(high), 1.0)
            else:
                assert low is not None  # a range rule has a min, a max or both
                outside = low - max(abs(low), 1.0)
            for row in rows:
                values[row] = _cast(outside, column.type)
        elif kind == "allowed_values":
            outside = _outside_allowed(plan.allowed[name], column)
            for row in rows:
                values[row] = outside
        else:  # type
            for row in rows:
                values[row] = _Raw(f"not-a-{column.type}")


def _check_unique(plan: _Plan, sample_day: SampleDay) -> None:
    """Every unique rule holds on the clean day, or the spec cannot be sampled."""
    for columns in plan.unique:
        keys = list(zip(*(sample_day.columns[c] for c in columns), strict=True))
        if len(set(keys)) != len(keys):
            raise SamplingError(
                f"the unique rule on {columns} cannot be met by sampled values (add the event "
                f"id or the timestamp to it, or a free text column)"
            )


def _check_anomaly(plan: _Plan, anomaly: Anomaly) -> None:
    if anomaly.column not in plan.columns:
        raise SamplingError(
            f"{anomaly.column!r} is not one of the spec's columns {sorted(plan.columns)}",
            "anomaly",
        )
    if not 0 <= anomaly.day < plan.days:
        raise SamplingError(f"day {anomaly.day} is outside 0..{plan.days - 1}", "anomaly")
    if anomaly.entities < 1:
        raise SamplingError("an anomaly affects at least one entity", "anomaly")
    if _anomaly_rule(plan, anomaly.column) is None:
        raise SamplingError(
            f"column {anomaly.column!r} has no consistency, unique, range, allowed_values or "
            f"(non-string) type rule that an anomaly could break",
            "anomaly",
        )


def _anomaly_rule(plan: _Plan, name: str) -> str | None:
    """Which rule an anomaly of ``name`` breaks: the first of these the column has."""
    if name in plan.growth:
        return "consistency"
    if any(name in columns for columns in plan.unique):
        return "unique"
    if name in plan.ranges and plan.columns[name].type in ("int", "float"):
        return "range"
    column = plan.columns[name]
    if name in plan.allowed and _outside_allowed(plan.allowed[name], column) is not None:
        return "allowed_values"
    has_type_rule = any(r.kind == "type" and r.column == name for r in plan.spec.quality.rules)
    if has_type_rule and column.type != "string":
        return "type"
    return None


def _broken_value(growth: _Growth, base: float, start_day: int, index: int) -> float:
    """The classic broken tenure: on the anomaly's day it jumps back to about 15%
    of what it should be and stays there (364, 54, 54, 54). A constant column
    instead starts drifting by more than its tolerance every day."""
    expected = base + start_day if growth.change == "days" else base
    step = max(1.0, 2 * growth.tolerance + 1)
    low, high = growth.plan.low, growth.plan.high
    if growth.change == "days":
        value = math.floor(0.15 * expected)
        if low is not None:
            value = max(value, low)
        if abs(expected - value) <= growth.tolerance:
            value = expected + step + 30
        return value
    drift = step * (index - start_day + 1)
    value = expected + drift
    if high is not None and value > high:
        value = expected - drift
    return value


def _outside_allowed(allowed: Sequence[Any], column: Column) -> Any:
    if column.type in ("int", "float"):
        return _cast(max(allowed) + 1, column.type)
    if column.type == "string":
        return "unexpected-" + "-".join(sorted(map(str, allowed)))[:40]
    if column.type == "bool" and len(set(allowed)) == 1:
        return not allowed[0]
    return None


def _ensure_present(rng: np.random.Generator, picks: np.ndarray, wanted: np.ndarray) -> None:
    missing = [e for e in wanted.tolist() if e not in set(picks.tolist())]
    if not missing:
        return
    # Replace rows of entities that are not wanted (positions chosen at random);
    # a without-replacement day stays without repeats.
    free = [i for i in rng.permutation(len(picks)).tolist() if picks[i] not in set(wanted)]
    for position, entity in zip(free, missing, strict=False):
        picks[position] = entity


def _seconds(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Distinct, sorted offsets into the day; the last one in the final minute."""
    if rows > _SECONDS_A_DAY:
        micro = rng.choice(_SECONDS_A_DAY * 1_000_000, size=rows, replace=False)
        return np.sort(micro) / 1_000_000
    last = rng.integers(_SECONDS_A_DAY - 60, _SECONDS_A_DAY)
    others = rng.choice(_SECONDS_A_DAY - 60, size=rows - 1, replace=False)
    return np.sort(np.concatenate([others, [last]])).astype(np.float64)


def _entity_ids(plan: _Plan, name: str) -> list[Any]:
    if name in plan.allowed:
        return list(plan.allowed[name])
    size = plan.population[name]
    kind = plan.columns[name].type
    if kind == "string":
        stem = name.removesuffix("_id").removesuffix("_key").replace("_", "-")
        return [f"{stem}-{i + 1:05d}" for i in range(size)]
    if kind == "int":
        return list(range(1, size + 1))
    if kind == "float":
        return [float(i + 1) for i in range(size)]
    if kind == "bool":
        return [False, True][:size] if size <= 2 else [bool(i % 2) for i in range(size)]
    raise SamplingError(f"the entity column {name!r} is a {kind}; expected string or int")


def _event_ids(plan: _Plan, index: int, day: date) -> list[Any]:
    kind = plan.columns[plan.event_id].type
    rows = plan.rows
    if kind == "string":
        stem = plan.event_id.removesuffix("_id").replace("_", "-")
        return [f"{stem}-{day:%Y%m%d}-{k + 1:06d}" for k in range(rows)]
    first = index * rows + 1
    if kind == "int":
        return list(range(first, first + rows))
    if kind == "float":
        return [float(v) for v in range(first, first + rows)]
    midnight = datetime.combine(day, time(), UTC)  # a timestamp id: distinct microseconds
    return [midnight + timedelta(microseconds=k) for k in range(rows)]


def _as_type(values: np.ndarray, kind: str) -> list[Any]:
    return [_cast(v, kind) for v in values.tolist()]


def _cast(value: Any, kind: str) -> Any:
    if kind == "int":
        return round(value)
    if kind == "float":
        return float(value)
    return value


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# -- writing -------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as the CSV cell the data sourcing stage would receive."""
    if value is None:
        return ""
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        return text + "Z"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(spec: ModelSpec, days: Sequence[SampleDay]) -> str:
    """The days' rows as CSV with a header of the spec's column names."""
    names = spec.data.column_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for day in days:
        for row in range(day.rows):
            writer.writerow([format_value(day.columns[name][row]) for name in names])
    return buffer.getvalue()


def write_csv(spec: ModelSpec, days: Sequence[SampleDay], path: str | Path) -> int:
    """Write :func:`to_csv` to ``path`` (folders created); returns the rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_csv(spec, days), encoding="utf-8")
    return sum(day.rows for day in days)
