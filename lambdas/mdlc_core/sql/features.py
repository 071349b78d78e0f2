"""The spec's features compiled to SQL: one definition, DuckDB in process, Spark beyond.

Two queries, built once as sqlglot syntax trees from a :class:`FeatureSet`
and rendered for DuckDB or Spark SQL (:data:`DIALECTS`), are the batch
feature engines: the same columns in the same order, the same types (counts
as integers, everything else floats), the same nulls and row order in both
dialects, and what the retired hand-written NumPy engine gave for the same
events (its answers are recorded in the tests, ``tests/feature_answers.py``).

* :func:`per_event_query` (:func:`per_event`, :func:`training_table`):
  each event's features as of itself, in input order. An aggregate with an
  ``N``-day window covers the entity's events of the days ``D-N+1 .. D`` at
  or before the event in (timestamp, event id) order, the event included.
  Whole UTC days make the frame's lower bound the start of a day, not a
  fixed distance from the event's instant, so one frame cannot say it with
  the constant offsets Spark requires: each aggregate is two window
  functions over the same rows, the earlier days of the window
  (``PARTITION BY entity ORDER BY day RANGE BETWEEN N-1 PRECEDING AND 1
  PRECEDING``) and the event's own day up to the event (``PARTITION BY
  entity, day ORDER BY timestamp, id ROWS BETWEEN UNBOUNDED PRECEDING AND
  CURRENT ROW``), combined (sums and counts added, the mean divided, min/max
  the least/greatest). Exact, also for min and max, and the same in both
  dialects.
* :func:`as_of_query` (:func:`as_of`, :func:`entity_table`):
  one row per entity whose latest event on or before the day lies inside
  the longest window, sorted by entity; raw columns from that latest event
  (by timestamp, then id, as the ``MAX`` of a struct led by both); one
  ``GROUP BY`` per entity column with each aggregate's window as a
  condition, the other entity columns' joined on the latest event's value.

Both read one relation, ``events`` (:data:`EVENTS`), built by
:func:`events_relation` from events in memory, or by DuckDB itself from the
feature job's snapshot objects (:mod:`mdlc_core.sql.feature_window`: the
same typing, a :class:`Relation` without a table): the event id and entity
columns as text, each
event's UTC microseconds (:data:`MICROS`) and day number (:data:`DAY`),
the numeric columns as doubles (null where null or not finite), and the
input position (:data:`ROW`). A redelivered event id counts once, its first
delivery in input order (the rows whose position is their id's lowest). Typing is
one definition shared with the online engine: columns already of the
right Arrow type (typed Parquet, the shared reader's tables) are converted
column-wise, anything else (CSV text, dict rows) value by value through the
converters of :mod:`mdlc_core.batch_features`, so a bad timestamp or number
fails with the same :class:`~mdlc_core.batch_features.FeatureError` in both.

Expressions (:mod:`mdlc_core.expressions`) compile to SQL arithmetic with
the null rules every engine follows (:mod:`mdlc_core.features`): a null
operand gives null, a division by zero gives null (``NULLIF``), a result
that is not finite is null, and ``min``/``max``/``abs`` of a null are null
(SQL's ``LEAST`` would skip it);
``%`` and ``//`` round as Python and NumPy do (the sign of the divisor, the
floor), spelled out from SQL's truncated remainder; ``log1p`` keeps its
precision near zero (Goldberg's form, :func:`_log1p`: DuckDB has no
``log1p``) and is null at and below -1. What does not compile (a constant
beyond any double, ``min`` of one argument) raises :class:`NotCompiled`
naming the feature.

Floats may differ from the incremental engine's (and the retired NumPy
engine's) in the last bits (another summation order): compare with a
relative tolerance of 1e-9.
"""

from __future__ import annotations

import ast
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp, select

from .. import batch_features as shared
from ..batch_features import Aggregate, FeatureError, FeatureSet

#: The relation both queries read (:func:`events_relation`).
EVENTS = "events"
#: Internal columns of :data:`EVENTS`: input position, UTC microseconds, day number.
ROW, MICROS, DAY = "_mdlc_row", "_mdlc_us", "_mdlc_day"
#: The as-of query's CTE: the deduplicated events on or before the day.
UPTO = "_mdlc_upto"
DIALECTS = ("duckdb", "spark")
_US_PER_DAY = 86_400_000_000
#: The largest finite double: ``x BETWEEN -MAX AND MAX`` is false for
#: infinities and NaN in DuckDB and in Spark (both order NaN above every number).
MAX_DOUBLE = 1.7976931348623157e308


class NotCompiled(FeatureError):
    """A feature expression the SQL engines cannot compute (yet): rewrite it."""


# --- the relation -------------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    """:data:`EVENTS` as an Arrow table, and the SQL names of its columns.

    ``values`` maps each numeric column the features read to its column in
    the table: its own name, or ``_mdlc_value_<name>`` when the same column
    also keys an aggregate (it is then text in ``keys`` and a number here).
    ``table`` is None for a relation the engine already has (the feature
    job's window, :mod:`mdlc_core.sql.feature_window`); ``columns`` then
    names its columns. ``unique``: it holds each event id once already (its
    first delivery), so the queries do not deduplicate it again.
    """

    table: pa.Table | None
    values: Mapping[str, str]
    columns: tuple[str, ...] = ()
    unique: bool = False

    @property
    def column_names(self) -> list[str]:
        return list(self.table.column_names) if self.table is not None else list(self.columns)


def events_relation(events: Any, features: FeatureSet, extra: Sequence[str] = ()) -> Relation:
    """The events typed as both queries read them (see the module docstring).

    ``events``: a pyarrow Table, a
    mapping of column lists, or a sequence of dict rows. ``extra``: more
    numeric columns (the model's raw inputs). Raises the shared converters'
    :class:`FeatureError` (the online engine's messages) for missing columns, ids,
    timestamps or entity keys and for values that do not parse.
    """
    numeric = sorted(set(features.value_columns) | set(features.raw_columns) | set(extra))
    clash = sorted({ROW, MICROS, DAY} & {features.event_id, *features.entity_columns, *numeric})
    if clash:
        raise FeatureError(f"the columns {clash} are reserved by the SQL feature engine")
    column = _Columns(events)
    n = column.length(features.event_id)
    ids = column.key(features.event_id)
    missing = _first_null(ids)
    if missing is not None:
        raise FeatureError(f"event {missing} has no {features.event_id}")
    micros_in = column.raw(features.timestamp)
    missing = _first_null(micros_in)
    if missing is not None:
        raise FeatureError(f"event {ids[missing].as_py()!r} has no {features.timestamp}")
    micros = column.micros(features.timestamp, features.timestamp_unit)
    keys = {c: column.key(c) for c in features.entity_columns}
    missing = _first_null(keys[features.entity_key])
    if missing is not None:
        raise FeatureError(f"event {ids[missing].as_py()!r} has no {features.entity_key}")
    arrays: dict[str, pa.Array] = {
        ROW: pa.array(np.arange(n, dtype=np.int64)),
        features.event_id: ids,
        MICROS: micros,
        DAY: pa.array(np.floor_divide(micros.to_numpy(zero_copy_only=False), _US_PER_DAY)),
    }
    for c, array in keys.items():
        if c != features.event_id:
            arrays[c] = array
    values: dict[str, str] = {}
    for c in numeric:
        name = f"_mdlc_value_{c}" if c in arrays else c
        arrays[name] = column.number(c)
        values[c] = name
    return Relation(pa.table(arrays), values)


class _Columns:
    """One column at a time, column-wise when it is already typed, else value
    by value through the shared converters (the same errors)."""

    def __init__(self, events: Any) -> None:
        self.events = events
        self.table = events if isinstance(events, pa.Table) else None

    def length(self, name: str) -> int:
        if self.table is not None:
            return self.table.num_rows
        return len(shared.column_list(self.events, name))

    def arrow(self, name: str) -> pa.ChunkedArray | None:
        if self.table is None:
            return None
        if name not in self.table.column_names:
            shared.column_list(self.events, name)  # raises the engine's error
        return self.table.column(name)

    def values(self, name: str) -> list[Any]:
        return shared.column_list(self.events, name)

    def raw(self, name: str) -> pa.Array:
        """Only for null checks: the column as given (None stays None)."""
        typed = self.arrow(name)
        if typed is not None:
            return typed.combine_chunks()
        return pa.array([None if v is None else True for v in self.values(name)], pa.bool_())

    def key(self, name: str) -> pa.Array:
        typed = self.arrow(name)
        if typed is not None:
            if pa.types.is_string(typed.type) or pa.types.is_large_string(typed.type):
                text = typed.combine_chunks().cast(pa.string())
                empty = pc.equal(text, "")
                if not pc.any(empty).as_py():
                    return text  # the usual case: no copy
                return pc.if_else(empty, pa.scalar(None, pa.string()), text)
            if pa.types.is_integer(typed.type):
                return typed.combine_chunks().cast(pa.string())
        return pa.array([shared.as_key(v) for v in self.values(name)], pa.string())

    def micros(self, name: str, unit: str | None) -> pa.Array:
        typed = self.arrow(name)
        if typed is not None and pa.types.is_timestamp(typed.type):
            # The shared reader's cast (a moment whatever its unit).
            moments = typed.cast(pa.timestamp("us", typed.type.tz or "UTC")).combine_chunks()
            return moments.cast(pa.int64())
        values = typed.to_pylist() if typed is not None else self.values(name)
        try:
            return pa.array([shared.to_micros(v, unit) for v in values], pa.int64())
        except FeatureError as error:
            raise FeatureError(f"column {name!r}: {error}") from error

    def number(self, name: str) -> pa.Array:
        typed = self.arrow(name)
        if typed is not None and (pa.types.is_floating(typed.type)
                                  or pa.types.is_integer(typed.type)
                                  or pa.types.is_boolean(typed.type)):
            numbers = typed.combine_chunks().cast(pa.float64())
        else:
            numbers = pa.array([shared.as_float(v, name) for v in self.values(name)],
                               pa.float64())
        finite = pc.is_finite(numbers)
        if numbers.null_count == 0 and pc.all(finite).as_py():
            return numbers
        return pc.if_else(finite, numbers, pa.scalar(None, pa.float64()))


def _first_null(array: pa.Array) -> int | None:
    if array.null_count == 0:
        return None
    return int(pc.index(pc.is_null(array), True).as_py())


# --- building blocks ------------------------------------------------------------------


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _table(name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def _double(value: float) -> exp.Expression:
    return exp.cast(exp.Literal.number(repr(float(value))), "DOUBLE")


def _int(value: int) -> exp.Expression:
    return exp.Literal.number(int(value))


def _window(function: exp.Expression, partition: Sequence[exp.Expression],
            order: Sequence[exp.Expression], kind: str, start: Any, start_side: str | None,
            end: Any, end_side: str | None) -> exp.Window:
    return exp.Window(
        this=function,
        partition_by=list(partition),
        order=exp.Order(expressions=[exp.Ordered(this=o, nulls_first=False) for o in order]),
        spec=exp.WindowSpec(kind=kind, start=start, start_side=start_side, end=end,
                            end_side=end_side),
        over="OVER",
    )


def _row_number(partition: Sequence[exp.Expression], order: Sequence[exp.Ordered]
                ) -> exp.Window:
    return exp.Window(this=exp.RowNumber(), partition_by=list(partition),
                      order=exp.Order(expressions=list(order)), over="OVER")


def _null_if(condition: exp.Expression, value: exp.Expression) -> exp.Expression:
    return exp.case().when(condition, exp.null()).else_(value)


def _finite(value: exp.Expression) -> exp.Expression:
    """``value`` when it is a finite number, else null (every engine's rule)."""
    inside = exp.Between(this=value, low=_double(-MAX_DOUBLE), high=_double(MAX_DOUBLE))
    return exp.case().when(inside, value.copy())


def _deduplicated(relation: Relation, features: FeatureSet) -> exp.Select:
    """Every event id once, its first delivery (lowest input position).

    A semi-join on each id's first position (one hash aggregate), not
    ``ROW_NUMBER() OVER (PARTITION BY id ...)``, which sorts every id: 0.44 s
    against 0.74 s for 1M events on DuckDB; the same in Spark.
    """
    columns = [_col(name) for name in relation.column_names]
    if relation.unique:
        return select(*columns).from_(_table(EVENTS), copy=False)
    first = (select(exp.Min(this=_col(ROW))).from_(_table(EVENTS), copy=False)
             .group_by(_col(features.event_id), copy=False))
    return (select(*columns).from_(_table(EVENTS), copy=False)
            .where(exp.In(this=_col(ROW), query=first.subquery(copy=False)), copy=False))


def _subquery(query: exp.Select, alias: str) -> exp.Subquery:
    return query.subquery(exp.to_identifier(alias, quoted=True), copy=False)


# --- expressions -------------------------------------------------------------------


def _truncated(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """``a % b`` with the sign of ``a`` (C's fmod): SQL's ``%`` on doubles in
    DuckDB and in Spark (Java's remainder)."""
    return exp.paren(exp.Mod(this=exp.paren(a.copy()), expression=exp.paren(b.copy())))


def _python_mod(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """Python's and NumPy's float ``a % b`` (the sign of ``b``), null for ``b == 0``:
    the truncated remainder, plus ``b`` when their signs differ (``npy_divmod``)."""
    r = _truncated(a, b)
    differ = exp.and_(r.copy().neq(_double(0.0)),
                      exp.paren(r.copy() < _double(0.0)).neq(exp.paren(b.copy() < _double(0.0))))
    return (exp.case().when(b.copy().eq(_double(0.0)), exp.null())
            .when(differ, exp.Add(this=r.copy(), expression=exp.paren(b.copy()))).else_(r))


def _python_floordiv(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    """Python's and NumPy's float ``a // b``, null for ``b == 0``.

    ``npy_divmod``: ``div = (a - fmod(a, b)) / b``, less one when the
    remainder's sign differs from ``b``'s, is within rounding of an integer,
    and the answer is ``floor(div)``, plus one when ``div - floor(div) >
    0.5``: that is ``CEIL(div - 0.5)`` wherever ``div - 0.5`` is exact
    (``|div| < 2**52``; above it ``div`` is already an integer). Each operand
    appears a few times, not nested per step: Spark plans a query in time
    that grows with the expression's size (``1 // 0.1`` is 9.0, not 10).
    """
    r = _truncated(a, b)
    differ = exp.and_(r.copy().neq(_double(0.0)),
                      exp.paren(r.copy() < _double(0.0)).neq(exp.paren(b.copy() < _double(0.0))))
    quotient = exp.Div(this=exp.paren(exp.Sub(this=exp.paren(a.copy()), expression=r.copy())),
                       expression=exp.paren(b.copy()), typed=False, safe=False)
    div = exp.paren(exp.Sub(this=exp.paren(quotient),
                            expression=exp.case().when(differ, _double(1.0)).else_(_double(0.0))))
    # CEIL is a BIGINT in Spark: only below 2**52, cast back to a double.
    rounded = exp.cast(exp.func("CEIL", exp.Sub(this=div.copy(), expression=_double(0.5))),
                       "DOUBLE")
    integral = exp.Abs(this=div.copy()) >= _double(2.0**52)
    return (exp.case().when(b.copy().eq(_double(0.0)), exp.null())
            .when(integral, div.copy()).else_(rounded))


def _log1p(x: exp.Expression) -> exp.Expression:
    """``log1p(x)`` to a few ulps, in both dialects: Goldberg's form
    ``LN(u) * (x / (u - 1))`` with ``u = 1 + x``, or ``x`` itself where ``u``
    rounds to 1 (``|x|`` under 2**-53, where ``log1p(x) = x`` in doubles).

    ``u - 1`` is exact, and the rounding error of ``u`` cancels in
    ``LN(u) / (u - 1)``, which varies slowly (Goldberg, "What every computer
    scientist should know about floating-point arithmetic", theorem 4), where
    ``LN(1 + x)`` loses every digit near 0 (1e-18 gives 0). DuckDB 2.0.1 has no
    ``log1p``; Spark's ``LOG1P`` is Java's, which this matches to 1e-15, and
    one spelling gives both dialects the same bits. ``x / (u - 1)`` is taken
    first, so a large ``x`` does not overflow ``LN(u) * x``. ``x <= -1`` is
    null, as ``log1p`` there is -inf or NaN (not finite: every
    engine's null), and so is a null ``x``; NaN and infinities come out NaN,
    which the expression's layer nulls.
    """
    u = exp.paren(exp.Add(this=_double(1.0), expression=exp.paren(x.copy())))
    ratio = exp.Div(this=exp.paren(x.copy()),
                    expression=exp.paren(exp.Sub(this=u.copy(), expression=_double(1.0))),
                    typed=False, safe=False)
    goldberg = exp.Mul(this=exp.Ln(this=u.copy()), expression=exp.paren(ratio))
    return (exp.case()
            .when(exp.paren(x.copy()) <= _double(-1.0), exp.null())
            .when(u.copy().eq(_double(1.0)), x.copy())
            .else_(goldberg))


def _expression(name: str, source: str, scope: Mapping[str, exp.Expression]) -> exp.Expression:
    """One feature expression as SQL over ``scope`` (its names' SQL values)."""
    tree = ast.parse(source.strip(), mode="eval").body

    def fail(what: str) -> NotCompiled:
        return NotCompiled(f"feature {name!r}: {source!r} uses {what}, which is not compiled "
                           "to SQL; rewrite the expression in features.expressions (min and "
                           "max take two arguments or more, constants fit a double)")

    def build(node: ast.AST) -> exp.Expression:
        if isinstance(node, ast.Constant):  # a number or a bool (True is 1.0)
            try:
                value = float(node.value)
            except OverflowError:  # an integer beyond any double
                value = math.inf
            if not math.isfinite(value):
                raise fail(f"the constant {node.value!r}, which is not a finite double")
            return _double(value)
        if isinstance(node, ast.Name):
            return scope[node.id].copy()
        if isinstance(node, ast.UnaryOp):
            operand = build(node.operand)
            return exp.Neg(this=exp.paren(operand)) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left, right = exp.paren(build(node.left)), exp.paren(build(node.right))
            if isinstance(node.op, ast.Add):
                return exp.Add(this=left, expression=right)
            if isinstance(node.op, ast.Sub):
                return exp.Sub(this=left, expression=right)
            if isinstance(node.op, ast.Mult):
                return exp.Mul(this=left, expression=right)
            if isinstance(node.op, ast.Div):
                # x / 0 is null (the online engine's ZeroDivisionError), never
                # Spark's ANSI error or DuckDB's inf.
                return exp.Div(this=left, expression=exp.func("NULLIF", right, _double(0.0)),
                               typed=False, safe=False)
            if isinstance(node.op, ast.Mod):
                return _python_mod(left, right)
            if isinstance(node.op, ast.FloorDiv):
                return _python_floordiv(left, right)
            return exp.Pow(this=left, expression=right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function = node.func.id
            args = [build(a) for a in node.args]
            if function == "abs" and len(args) == 1:
                return exp.Abs(this=args[0])
            if function == "log1p" and len(args) == 1:
                return _log1p(args[0])
            if function in ("min", "max") and len(args) >= 2:
                # LEAST/GREATEST skip nulls; Python's min(None, 1) is a null feature.
                combined = (exp.Least if function == "min" else exp.Greatest)(
                    this=args[0], expressions=args[1:], ignore_nulls=True)
                any_null = exp.or_(*[a.copy().is_(exp.null()) for a in args])
                return _null_if(any_null, combined)
            raise fail(f"{function}() with {len(args)} argument(s)")
        raise fail(type(node).__name__)

    return build(tree)


# --- the per-event query ------------------------------------------------------------


def _empty(agg: Aggregate) -> exp.Expression:
    """The aggregate of no events: 0 for sum and count, null otherwise."""
    if agg.function == "count":
        return _int(0)
    return _double(0.0) if agg.function == "sum" else exp.null()


def _windowed(agg: Aggregate, values: Mapping[str, str], features: FeatureSet) -> exp.Expression:
    """The aggregate of the event's window, as of the event (the event included)."""
    key = _col(agg.entity)
    value = _col(values[agg.column]) if agg.column else None
    # The event's own day up to it, in (timestamp, id) order.
    def today(function: exp.Expression) -> exp.Expression:
        return _window(function, [key, _col(DAY)], [_col(MICROS), _col(features.event_id)],
                       "ROWS", "UNBOUNDED", "PRECEDING", "CURRENT ROW", None)

    # The window's earlier days, whole (none for a one-day window).
    def before(function: exp.Expression) -> exp.Expression | None:
        if agg.window_days == 1:
            return None
        return _window(function, [key], [_col(DAY)], "RANGE",
                       _int(agg.window_days - 1), "PRECEDING", _int(1), "PRECEDING")

    def both(make: Callable[[], exp.Expression], combine: str) -> exp.Expression:
        now, earlier = today(make()), before(make())
        if earlier is None:
            return now
        if combine == "add":
            return exp.Add(this=exp.func("COALESCE", earlier, _int(0)),
                           expression=exp.func("COALESCE", now, _int(0)))
        cls = exp.Least if combine == "least" else exp.Greatest
        # A side without values is null and skipped (ignore_nulls: sqlglot
        # renders LEAST as is, where DuckDB and Spark both skip nulls).
        return cls(this=earlier, expressions=[now], ignore_nulls=True)

    def count() -> exp.Expression:
        return exp.Count(this=value.copy() if value is not None else exp.Star())

    if agg.function == "count":
        result: exp.Expression = exp.cast(both(count, "add"), "BIGINT")
    elif agg.function == "sum":
        total = both(lambda: exp.Sum(this=value.copy()), "add")
        result = exp.cast(exp.func("COALESCE", total, _double(0.0)), "DOUBLE")
    elif agg.function == "mean":
        total = both(lambda: exp.Sum(this=value.copy()), "add")
        n = both(count, "add")
        result = exp.cast(exp.Div(this=exp.paren(total), expression=exp.func("NULLIF", n, _int(0)),
                                  typed=False, safe=False), "DOUBLE")
    else:
        cls = exp.Min if agg.function == "min" else exp.Max
        result = exp.cast(both(lambda: cls(this=value.copy()),
                               "least" if agg.function == "min" else "greatest"), "DOUBLE")
    if agg.entity == features.entity_key:
        return result  # never null: events without it are rejected
    return exp.case().when(key.copy().is_(exp.null()), _empty(agg)).else_(result)


def _with_expressions(query: exp.Select, carried: Sequence[str], features: FeatureSet,
                      scope: dict[str, exp.Expression]) -> tuple[exp.Select, list[str]]:
    """One layer per expression over ``query``: each reads the columns before it."""
    names = list(carried)
    for index, (name, expression) in enumerate(features.expressions):
        value = _expression(name, expression.source, scope)
        alias = f"_mdlc_e{index}"
        query = select(*[_col(c) for c in names], _finite(value).as_(alias, quoted=True)) \
            .from_(_subquery(query, f"_mdlc_l{index}"), copy=False)
        names.append(alias)
        scope[name] = _col(alias)
    return query, names


def per_event_query(features: FeatureSet, relation: Relation,
                    inputs: Sequence[str] = (), *, positions: bool = False,
                    carry: Sequence[str] = (), since_row: int | None = None) -> exp.Select:
    """:func:`per_event` as one query over
    :data:`EVENTS`: the event id, the entity key, ``inputs``, then every
    feature, in input order of first deliveries; with ``positions``, first
    ``ROW`` and ``MICROS`` (what the training table takes its labels and
    timestamps from; the sort carries them, so only when asked).

    ``carry``: more columns of the relation, as they are, after the
    positions (the feature job's label). ``since_row``: only the events
    whose first delivery is at or after that position (the day's own
    objects), every event still counted in the windows."""
    values = relation.values
    events = _subquery(_deduplicated(relation, features), "_mdlc_events")
    carried = [ROW, *([MICROS] if positions else []), *carry, features.event_id,
               features.entity_key,
               *[values[c] for c in dict.fromkeys([*inputs, *features.raw_columns])]]
    carried = list(dict.fromkeys(carried))
    aggregates = [_windowed(a, values, features).as_(f"_mdlc_a{i}", quoted=True)
                  for i, a in enumerate(features.aggregates)]
    query = select(*[_col(c) for c in carried], *aggregates).from_(events, copy=False)
    scope: dict[str, exp.Expression] = {c: _col(values[c]) for c in values}
    scope |= {a.name: _col(f"_mdlc_a{i}") for i, a in enumerate(features.aggregates)}
    carried += [f"_mdlc_a{i}" for i in range(len(features.aggregates))]
    query, _ = _with_expressions(query, carried, features, scope)
    out = [*([_col(ROW), _col(MICROS)] if positions else []), *[_col(c) for c in carry],
           _col(features.event_id), _col(features.entity_key),
           *[_col(values[c]).as_(c, quoted=True) for c in inputs],
           *[scope[name].copy().as_(name, quoted=True) for name in features.names]]
    query = select(*out).from_(_subquery(query, "_mdlc_features"), copy=False)
    if since_row is not None:
        query = query.where(_col(ROW) >= _int(since_row), copy=False)
    return query.order_by(_col(ROW), copy=False)


# --- the per-entity query, as of a day ----------------------------------------------


def as_of_query(features: FeatureSet, relation: Relation, as_of: date | str,
                inputs: Sequence[str] = ()) -> exp.Select:
    """:func:`as_of` as one query over
    :data:`EVENTS`: the entity key, ``inputs`` (from the entity's latest event
    on or before ``as_of``), then every feature; sorted by entity.

    One ``GROUP BY`` of the entity key over the longest window's days: the
    latest event's columns as the ``MAX`` of a struct led by (timestamp, id),
    which are unique, so the struct is that event's row (an entity whose
    latest event is older than the window has no event there, so no row);
    its aggregates conditioned on their windows. Aggregates over another
    entity column are a ``GROUP BY`` of that column, joined on the latest
    event's value of it.
    """
    today = shared.day_number(as_of)
    values = relation.values
    upto = _deduplicated(relation, features)
    upto = select(*[_col(c) for c in relation.column_names]) \
        .from_(_subquery(upto, "_mdlc_first"), copy=False) \
        .where(_col(DAY) <= _int(today), copy=False)
    carried = list(dict.fromkeys([*[values[c] for c in dict.fromkeys(
        [*inputs, *features.raw_columns])],
        *[c for c in features.entity_columns if c != features.entity_key]]))
    last = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier(name, quoted=True), expression=_col(name))
        for name in [MICROS, features.event_id, *carried]])
    horizon = features.horizon()
    mine = [(i, a) for i, a in enumerate(features.aggregates) if a.entity == features.entity_key]
    entities = select(
        _col(features.entity_key),
        exp.Max(this=last).as_("_mdlc_last", quoted=True),
        *[_grouped(a, values, today, horizon).as_(f"_mdlc_a{i}", quoted=True) for i, a in mine],
        copy=False).from_(_table(UPTO), copy=False).group_by(_col(features.entity_key),
                                                             copy=False)
    if horizon:
        entities = entities.where(_col(DAY) > _int(today - horizon), copy=False)
    # The latest event's columns, out of the struct (a column of the subquery).
    def latest(name: str) -> exp.Expression:
        return exp.column(name, table="_mdlc_last", quoted=True)

    query = select().from_(_subquery(entities, "_mdlc_entities"), copy=False)
    columns: list[exp.Expression] = [
        _col(features.entity_key, "_mdlc_entities").as_(features.entity_key, quoted=True),
        *[latest(values[c]).as_(values[c], quoted=True)
          for c in dict.fromkeys([*inputs, *features.raw_columns])]]
    found: dict[int, exp.Expression] = {i: _col(f"_mdlc_a{i}", "_mdlc_entities") for i, _ in mine}
    others = [e for e in dict.fromkeys(a.entity for a in features.aggregates)
              if e != features.entity_key]
    for g, entity in enumerate(others):
        group = f"_mdlc_g{g}"
        theirs = [(i, a) for i, a in enumerate(features.aggregates) if a.entity == entity]
        longest = max(a.window_days for _, a in theirs)
        key = _col(entity)
        grouped = select(key.copy().as_("_mdlc_key", quoted=True),
                         *[_grouped(a, values, today, longest).as_(f"_mdlc_a{i}", quoted=True)
                           for i, a in theirs], copy=False) \
            .from_(_table(UPTO), copy=False) \
            .where(exp.and_(key.copy().is_(exp.null()).not_(),
                            _col(DAY) > _int(today - longest)), copy=False) \
            .group_by(key.copy(), copy=False)
        query = query.join(_subquery(grouped, group),
                           on=latest(entity).eq(_col("_mdlc_key", group)),
                           join_type="LEFT", copy=False)
        found |= {i: _col(f"_mdlc_a{i}", group) for i, _ in theirs}
    for i, a in enumerate(features.aggregates):
        value = found[i]
        if a.function in ("sum", "count"):
            value = exp.func("COALESCE", value, _empty(a))
        cast = "BIGINT" if a.function == "count" else "DOUBLE"
        columns.append(exp.cast(value, cast).as_(f"_mdlc_a{i}", quoted=True))
    query = query.select(*columns, copy=False)
    names = [c.alias_or_name for c in columns]
    scope = {c: _col(values[c]) for c in values}
    scope |= {a.name: _col(f"_mdlc_a{i}") for i, a in enumerate(features.aggregates)}
    query, _ = _with_expressions(query, names, features, scope)
    out = [_col(features.entity_key), *[_col(values[c]).as_(c, quoted=True) for c in inputs],
           *[scope[name].copy().as_(name, quoted=True) for name in features.names]]
    return (select(*out).from_(_subquery(query, "_mdlc_rows"), copy=False)
            .order_by(_col(features.entity_key), copy=False)
            .with_(exp.to_identifier(UPTO, quoted=True), as_=upto, copy=False))


def _grouped(agg: Aggregate, values: Mapping[str, str], today: int,
             longest: int) -> exp.Expression:
    """The aggregate over an entity's events of its window, in a ``GROUP BY``
    entity over the days of the entity column's ``longest`` window."""
    value: exp.Expression = _col(values[agg.column]) if agg.column else _int(1)
    if agg.window_days < longest:
        value = exp.case().when(_col(DAY) > _int(today - agg.window_days), value)
    if agg.function == "count":
        return exp.Count(this=value) if agg.column or agg.window_days < longest \
            else exp.Count(this=exp.Star())
    if agg.function == "sum":
        return exp.Sum(this=value)
    if agg.function == "mean":
        return exp.Div(this=exp.Sum(this=value),
                       expression=exp.func("NULLIF", exp.Count(this=value.copy()), _int(0)),
                       typed=False, safe=False)
    return (exp.Min if agg.function == "min" else exp.Max)(this=value)


# --- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A compiled feature query and the relation it reads: what any SQL engine runs.

    Register :attr:`relation`'s table as :data:`EVENTS`, run
    ``plan.sql(dialect)`` and hand the result (an Arrow table) to
    :meth:`finish`, or to :meth:`columns` for the raw columns.
    """

    features: FeatureSet
    relation: Relation
    query: exp.Select
    kind: str  # "per_event" or "as_of"
    inputs: tuple[str, ...]

    def sql(self, dialect: str) -> str:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
        return self.query.sql(dialect=dialect)

    @property
    def names(self) -> list[str]:
        """The result's columns, in order."""
        f = self.features
        if self.kind == "per_event":
            return [f.event_id, f.entity_key, *self.inputs, *f.names]
        return [f.entity_key, *self.inputs, *f.names]

    def columns(self, result: pa.Table) -> dict[str, list[Any]]:
        """The result as Python columns of :attr:`names` (counts as ints,
        the rest as floats or None), any engine's Arrow result alike."""
        counts = {a.name for a in self.features.aggregates if a.function == "count"}
        out = {}
        for name in self.names:
            column = result.column(name)
            if name in counts:
                column = column.cast(pa.int64())
            elif name in (self.features.event_id, self.features.entity_key):
                column = column.cast(pa.string())
            else:
                column = column.cast(pa.float64())
            out[name] = column.to_pylist()
        return out

    def finish(self, result: pa.Table) -> dict[str, list[Any]] | list[dict[str, Any]]:
        """Columns (per event) or rows (as of a day), Python values."""
        columns = self.columns(result)
        if self.kind == "per_event":
            return columns
        names = self.names
        return [dict(zip(names, row, strict=True))
                for row in zip(*(columns[n] for n in names), strict=True)]


def prepare_per_event(events: Any, features: FeatureSet, *,
                      inputs: Sequence[str] = (), positions: bool = False) -> Plan:
    """The plan of :func:`per_event`; raises :class:`FeatureError` / :class:`NotCompiled`.
    ``positions``: the result also has :data:`ROW` and :data:`MICROS`."""
    inputs = tuple(shared.checked_inputs(features, inputs))
    relation = events_relation(events, features, extra=inputs)
    query = per_event_query(features, relation, inputs, positions=positions)
    return Plan(features, relation, query, "per_event", inputs)


def prepare_as_of(events: Any, features: FeatureSet, as_of: date | str, *,
                  inputs: Sequence[str] = ()) -> Plan:
    """The plan of :func:`as_of`; raises :class:`FeatureError` / :class:`NotCompiled`."""
    inputs = tuple(shared.checked_inputs(features, inputs))
    shared.day_number(as_of)  # a bad date fails before any reading
    relation = events_relation(events, features, extra=inputs)
    return Plan(features, relation, as_of_query(features, relation, as_of, inputs), "as_of",
                inputs)


@dataclass(frozen=True)
class DuckDB:
    """How :func:`run` opens DuckDB: its memory limit, spill folder and threads."""

    memory_limit: str = "1GB"
    temp_directory: str | os.PathLike[str] | None = None
    max_temp_directory_size: str | None = None
    threads: int | None = None


def run(plan: Plan, duckdb_options: DuckDB | None = None) -> pa.Table:
    """The plan's query on an in-memory DuckDB, as an Arrow table (with the
    internal :data:`ROW` and :data:`MICROS` columns of a per-event plan
    prepared with ``positions``)."""
    from .quality import connect

    options = duckdb_options or DuckDB()
    with tempfile.TemporaryDirectory(prefix="mdlc-duckdb-") as scratch:
        spill = Path(options.temp_directory) if options.temp_directory is not None \
            else Path(scratch)
        with connect(memory_limit=options.memory_limit, temp_directory=spill,
                     threads=options.threads,
                     max_temp_directory_size=options.max_temp_directory_size) as con:
            con.register(EVENTS, plan.relation.table)
            result = con.sql(plan.sql("duckdb"))
            # duckdb 2 names it to_arrow_table; 1.x arrow().
            fetch = getattr(result, "to_arrow_table", None) or result.arrow
            return fetch()


def run_spark(plan: Plan, spark: Any) -> pa.Table:
    """The plan's Spark SQL on ``spark`` (a SparkSession, 4.x: it takes and
    gives Arrow tables), as an Arrow table for :meth:`Plan.finish`."""
    spark.createDataFrame(plan.relation.table).createOrReplaceTempView(EVENTS)
    return spark.sql(plan.sql("spark")).toArrow()


def per_event(events: Any, features: FeatureSet, *, inputs: Sequence[str] = (),
              duckdb_options: DuckDB | None = None) -> dict[str, list[Any]]:
    """Every event's features as of itself (training rows), in input order,
    computed by DuckDB: the event id, the entity key, the ``inputs`` (raw
    numeric columns of the event itself, as floats, null where it has none),
    then every feature. A redelivered event id appears once (first delivery)."""
    plan = prepare_per_event(events, features, inputs=inputs)
    return plan.columns(run(plan, duckdb_options))


def as_of(events: Any, features: FeatureSet, day: date | str, *, inputs: Sequence[str] = (),
          duckdb_options: DuckDB | None = None) -> list[dict[str, Any]]:
    """One row per entity as of the end of day ``day``, sorted by entity,
    computed by DuckDB: an entity appears when its latest event on or before
    the day lies within the longest window (every entity, when there are no
    aggregates); raw columns for expressions, the keys of aggregates over
    other entities and the ``inputs`` come from that latest event; events
    after the day are ignored. Without ``inputs`` the row is exactly what
    :meth:`~mdlc_core.features.IncrementalEngine.read` returns."""
    plan = prepare_as_of(events, features, day, inputs=inputs)
    rows = plan.finish(run(plan, duckdb_options))
    assert isinstance(rows, list)
    return rows


def training_table(events: Any, features: FeatureSet, *,
                   duckdb_options: DuckDB | None = None,
                   engine: Callable[[Plan], pa.Table] | None = None) -> dict[str, list[Any]]:
    """The per-event table training reads (``features.training_table_schema``):
    :func:`per_event` with the event's timestamp (UTC ``datetime``), its label
    as given (left out when the events have no label column: scoring data)
    and the model's raw inputs (``features.inputs``), so every column of
    ``ModelSpec.feature_columns`` is present; computed by DuckDB.
    ``engine``: runs the plan instead of DuckDB (e.g. on Spark,
    :func:`mdlc_core.spark_features.run_plan`), returning its Arrow result."""
    plan = prepare_per_event(events, features, inputs=features.inputs, positions=True)
    result = engine(plan) if engine is not None else run(plan, duckdb_options)
    out = plan.columns(result)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    out[features.timestamp] = [epoch + timedelta(microseconds=m)
                               for m in result.column(MICROS).to_pylist()]
    label = features.label
    labels = shared.optional_column(events, label) if label else None
    if label and labels is not None:
        out[label] = [labels[p] for p in result.column(ROW).to_pylist()]
    return {name: out[name] for name in features.training_table_schema if name in out}


def entity_table(events: Any, features: FeatureSet, day: date | str, *,
                 duckdb_options: DuckDB | None = None,
                 engine: Callable[[Plan], pa.Table] | None = None) -> dict[str, list[Any]]:
    """The per-entity table batch inference scores (``features.entity_table_schema``):
    :func:`as_of` with the model's raw inputs (``features.inputs``) from each
    entity's latest event on or before ``day``; every column present even
    without rows. Computed by DuckDB (or by ``engine``, as in :func:`training_table`)."""
    plan = prepare_as_of(events, features, day, inputs=features.inputs)
    columns = plan.columns(engine(plan) if engine is not None else run(plan, duckdb_options))
    return {name: columns[name] for name in features.entity_table_schema}


__all__ = ["DIALECTS", "EVENTS", "DuckDB", "NotCompiled", "Plan", "Relation", "as_of",
           "as_of_query", "entity_table", "events_relation", "per_event", "per_event_query",
           "prepare_as_of", "prepare_per_event", "run", "run_spark", "training_table"]
