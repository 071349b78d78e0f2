"""Each quality rule kind as SQL: one definition, rendered per dialect by sqlglot.

A rule compiles to a :class:`CompiledRule`: named ``SELECT`` expressions
(sqlglot ASTs, so one definition renders for DuckDB and for Spark SQL) over
three relations every engine provides,

- ``snapshot``: the day's rows, the spec's columns typed as the shared reader
  (:mod:`mdlc_core.tabular`) types them, plus :data:`ROW` (the row's position
  in the snapshot as read, which samples are ordered by and report);
- ``previous``: the same for the earlier snapshot (consistency rules only);
- ``unparseable``: the reader's record of values that did not parse as their
  column's declared type (``column_name``, ``row_index``, ``raw_value``),

and a ``finish`` step that turns the result rows of those queries into the
rule's report entry through :mod:`mdlc_core.quality`'s one definition of
each kind's verdict, so DuckDB and Spark give the same ids, statuses,
counts, messages and samples. Samples are in an order every engine can
reproduce: the first offending rows by position; for ``unique`` the
repeated keys in order of first appearance; for ``consistency`` the
entities sorted by key; unexpected values by count, then first appearance
(the retired pyarrow engine's orders, kept).

Why the ``type`` rule reads the reader's record: a value that does not parse
as its declared type is null in the typed column, so its text is gone by the
time SQL sees the table; the reader (shared by every engine) keeps count,
positions and text. A rule that asks for *another* type than the column's
(digits in a string id) is compiled: the same regular expressions the reader
uses, evaluated in SQL. Re-parsing text as a timestamp, or a non-text column
as another type, is not compiled and raises :class:`RuleError` (the spec's
validation refuses such a rule first).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlglot import exp, select

from .. import quality as reports
from ..quality import RuleError, RuleResult, consistency_step, json_value, rule_id
from ..tabular import ARROW_TYPES, FALSE_TEXTS, FLOAT_PATTERN, INT_PATTERN, TRUE_TEXTS, Unparseable

#: The column holding each row's position in its snapshot as read.
ROW = "_mdlc_row"
SNAPSHOT, PREVIOUS, UNPARSEABLE = "snapshot", "previous", "unparseable"
DIALECTS = ("duckdb", "spark")
Rows = list[dict[str, Any]]

_TYPE_NAMES = {str(arrow): name for name, arrow in ARROW_TYPES.items()}


@dataclass(frozen=True)
class Inputs:
    """What a check knows besides the rules: the spec's data roles, the
    snapshot's column types, the reader's unparseable record and the days.

    Only the *shape* (:meth:`shape`: roles, types, sample size, whether a
    previous snapshot is compared) decides a rule's SQL; the record, the row
    count and the dates are read when its results are finished, so one
    compiled rule serves every day of the same shape (:func:`compile_rule`).
    """

    key: str
    units: Mapping[str, str | None]
    sample_size: int
    types: Mapping[str, pa.DataType]
    unparseable: Mapping[str, Unparseable]
    rows: int
    snapshot_date: date
    previous_types: Mapping[str, pa.DataType] | None = None
    previous_date: date | None = None
    #: Count a single key's distinct values with COUNT(DISTINCT) in the fused
    #: scan (fast), or by GROUP BY (spills past the memory limit where the
    #: engine's optimizers that would let COUNT(DISTINCT) spill are off).
    scan_distinct: bool = True

    def shape(self) -> Shape:
        """What of these inputs the rules' SQL depends on, hashable."""
        return Shape(
            key=self.key,
            units=tuple(sorted(self.units.items())),
            sample_size=self.sample_size,
            types=_frozen_types(self.types),
            previous_types=None if self.previous_types is None
            else _frozen_types(self.previous_types),
            compared=self.previous_types is not None and self.previous_date is not None,
            scan_distinct=self.scan_distinct,
        )


@dataclass(frozen=True)
class Shape:
    """The part of :class:`Inputs` a rule's SQL is compiled from: the cache key
    of :func:`compile_rule`, with the rule itself (and a consistency rule's step)."""

    key: str
    units: tuple[tuple[str, str | None], ...]
    sample_size: int
    types: tuple[tuple[str, pa.DataType], ...]
    previous_types: tuple[tuple[str, pa.DataType], ...] | None
    compared: bool
    scan_distinct: bool

    def type_of(self, name: str) -> pa.DataType:
        return dict(self.types)[name]

    def unit_of(self, name: str) -> str | None:
        return dict(self.units).get(name)


def _frozen_types(types: Mapping[str, pa.DataType]) -> tuple[tuple[str, pa.DataType], ...]:
    return tuple(types.items())


#: Runs one of a rule's detail queries by name, returning its rows.
Detail = Callable[[str], Rows]


@dataclass(frozen=True, eq=False)
class CompiledRule:
    """A rule's SQL and how its results become its report entry.

    ``scan``: aggregates over ``snapshot`` without grouping; an engine fuses
    every rule's into one ``SELECT`` (one pass over the day, as a hand-written
    query would do) and hands each rule its values as ``results["scan"]``.
    ``queries``: queries of their own (grouping, joins), run for every check,
    their rows in ``results[name]``. ``details``: queries that only a failed
    rule needs (the samples, the unexpected values); ``finish`` asks for them
    by name through its ``detail`` argument, so a passing rule costs no more
    than its aggregates. ``finish`` also gets the check's :class:`Inputs`
    (the unparseable record, the row count, the days), which the SQL does
    not depend on: a compiled rule is shared by every check of the same
    shape in a process (:func:`compile_rule` caches it), and never changed.
    """

    rule: Mapping[str, Any]
    finish: Callable[[Inputs, Mapping[str, Any], Detail], RuleResult]
    scan: Mapping[str, exp.Expression] = field(default_factory=dict)
    queries: Mapping[str, exp.Select] = field(default_factory=dict)
    details: Mapping[str, exp.Select] = field(default_factory=dict)
    #: Rendered text per (query name, dialect): rendering is a third of a
    #: small day's compile-and-run cost, paid once per process this way.
    _texts: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def sql(self, name: str, dialect: str) -> str:
        """The text of the query or detail query ``name`` in ``dialect``."""
        text = self._texts.get((name, dialect))
        if text is None:
            _check_dialect(dialect)
            query = self.queries[name] if name in self.queries else self.details[name]
            text = self._texts[(name, dialect)] = query.sql(dialect=dialect)
        return text

    def render(self, dialect: str) -> dict[str, str]:
        """Every query of the rule (its scan as a ``SELECT`` of its own) as SQL
        text of ``dialect`` (one of :data:`DIALECTS`)."""
        _check_dialect(dialect)
        texts = {}
        if self.scan:
            texts["scan"] = scan_query([self]).sql(dialect=dialect)
        for name in {**self.queries, **self.details}:
            texts[name] = self.sql(name, dialect)
        return texts


def scan_sql(rules: Sequence[CompiledRule], dialect: str) -> str:
    """:func:`scan_query`'s text in ``dialect``, rendered once per process for
    the same compiled rules (they are cached, so a warm process's next check
    of the same spec finds it)."""
    _check_dialect(dialect)
    return _scan_sql(tuple(rules), dialect)


@functools.lru_cache(maxsize=64)
def _scan_sql(rules: tuple[CompiledRule, ...], dialect: str) -> str:
    return scan_query(rules).sql(dialect=dialect)


def scan_query(rules: Sequence[CompiledRule]) -> exp.Select:
    """One ``SELECT`` over ``snapshot`` of every rule's scan aggregates, each
    aliased ``r<position>_<name>`` (:func:`scan_values` splits the row back)."""
    columns = [expression.as_(f"r{i}_{name}") for i, rule in enumerate(rules)
               for name, expression in rule.scan.items()]
    return select(*columns).from_(_table(SNAPSHOT), copy=False)


def scan_values(rules: Sequence[CompiledRule], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per rule, its scan aggregates' values out of :func:`scan_query`'s one row."""
    return [{name: row[f"r{i}_{name}"] for name in rule.scan} for i, rule in enumerate(rules)]


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")


def compile_rule(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    """The rule as SQL; raises :class:`RuleError` when it does not fit the data.

    Compiled once per process for each rule, shape of the inputs
    (:meth:`Inputs.shape`) and consistency step: building the sqlglot trees
    of the example spec's 19 rules took ~18 ms of a small day's ~50 ms
    check, which a warm Lambda paid on every invocation. Safe to share: the
    SQL depends on nothing else (the rest reaches ``finish`` per check), the
    cache holds its own copy of the rule, and nothing mutates a compiled rule.
    """
    reports.require_columns(rule, inputs.types)
    if rule.get("kind") not in _COMPILERS:
        raise RuleError(f"rule {rule_id(rule)}: unknown kind {rule.get('kind')!r}")
    step = None
    if rule["kind"] == "consistency" and inputs.previous_types is not None \
            and inputs.previous_date is not None:
        # The step is a literal of the SQL; an unusable previous date fails
        # here, on every check, before any cache.
        step = consistency_step(rule, inputs.snapshot_date, inputs.previous_date)[1]
    return _compiled(json.dumps(rule, sort_keys=True, default=str), inputs.shape(), step)


@functools.lru_cache(maxsize=512)
def _compiled(rule_text: str, shape: Shape, step: int | None) -> CompiledRule:
    rule = json.loads(rule_text)
    return _COMPILERS[rule["kind"]](rule, shape, step)


def cache_clear() -> None:
    """Forget every compiled rule and rendered scan (tests measure a cold start)."""
    _compiled.cache_clear()
    _scan_sql.cache_clear()


# --- building blocks --------------------------------------------------------------
#
# The builders below take ``copy=False``: each query is one fresh chain, so
# copying it at every step (sqlglot's default) only cost time, a third of a
# small day's check (the local simulation runs 28 of them).


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _table(name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def _count_if(condition: exp.Expression) -> exp.Expression:
    # SUM(CASE ...) rather than COUNT_IF / FILTER: the same in every dialect.
    return exp.func("COALESCE", exp.func("SUM", exp.case().when(condition, 1).else_(0)),
                    exp.Literal.number(0))


def _literal(value: Any) -> exp.Expression:
    return exp.convert(value)


def _first_rows(condition: exp.Expression, shape: Shape, value: str | None) -> exp.Select:
    """The first ``sample_size`` rows (by position) where ``condition`` holds."""
    columns: list[exp.Expression] = [_col(shape.key).as_("key"), _col(ROW).as_("row")]
    if value:
        columns.append(_col(value).as_("value"))
    return (select(*columns).from_(_table(SNAPSHOT), copy=False).where(condition, copy=False)
            .order_by(_col(ROW), copy=False).limit(shape.sample_size, copy=False))


def _sample(rows: Rows, key: str, with_value: bool) -> list[dict[str, Any]]:
    sample = []
    for row in rows:
        entry: dict[str, Any] = {key: json_value(row["key"]), "row": int(row["row"])}
        if with_value:
            entry["value"] = json_value(row["value"])
        sample.append(entry)
    return sample


def _bad_rows(column: str) -> exp.Select:
    return (select(_col("row_index")).from_(_table(UNPARSEABLE), copy=False)
            .where(_col("column_name").eq(_literal(column)), copy=False))


def _is_number(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


# --- the rule kinds ----------------------------------------------------------------


def _completeness(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name = rule["column"]
    column = _col(name)
    scan = {"rows": exp.func("COUNT", exp.Star()), "present": exp.func("COUNT", column)}
    details = {
        # A value that was present but did not parse is not missing: the type
        # rule reports it (so the reader's recorded rows are left out here).
        "sample": _first_rows(exp.and_(column.is_(exp.null()),
                                       exp.not_(_col(ROW).isin(query=_bad_rows(name)))),
                              shape, None),
    }

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"]
        rows = int(stats["rows"])
        bad = inputs.unparseable.get(name)
        return reports.completeness_result(
            rule, rows=rows, nulls=rows - int(stats["present"]) - (bad.count if bad else 0),
            sample=lambda: _sample(detail("sample"), shape.key, False),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


_TEXT_PATTERNS = {"int": INT_PATTERN, "float": "(?i)" + FLOAT_PATTERN}


def _type(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name, wanted = rule["column"], rule["type"]
    column = _col(name)
    declared = shape.type_of(name)
    same_type = declared == ARROW_TYPES[wanted]
    if same_type:
        # The reader parsed the column as this type: its record is the answer.
        bad = (select(_col(shape.key, "s").as_("key"), _col(ROW, "s").as_("row"),
                      _col("raw_value", "u").as_("value"))
               .from_(exp.alias_(_table(SNAPSHOT), "s"), copy=False)
               .join(exp.alias_(_table(UNPARSEABLE), "u"),
                     on=exp.and_(_col(ROW, "s").eq(_col("row_index", "u")),
                                 _col("column_name", "u").eq(_literal(name))), copy=False)
               .order_by(_col(ROW, "s"), copy=False).limit(shape.sample_size, copy=False))
        examples = (select(_col("raw_value").as_("value")).from_(_table(UNPARSEABLE), copy=False)
                    .where(_col("column_name").eq(_literal(name)), copy=False)
                    .group_by(_col("raw_value"), copy=False)
                    .order_by(exp.func("MIN", _col("row_index")), copy=False).limit(5, copy=False))
        scan: dict[str, exp.Expression] = {}
        details: dict[str, exp.Select] = {"sample": bad, "examples": examples}
    else:
        if not pa.types.is_string(declared) or wanted not in ("int", "float", "bool"):
            raise RuleError(
                f"rule {rule_id(rule)}: re-parsing column {name!r} ({declared}) as "
                f"{wanted} is not compiled to SQL; declare the column as {wanted} in "
                "data.columns, whose reader then records what does not parse")
        if wanted == "bool":
            lowered = exp.Lower(this=exp.Trim(this=column))
            parses: exp.Expression = lowered.isin(*[_literal(v) for v in TRUE_TEXTS + FALSE_TEXTS])
        else:
            parses = exp.RegexpLike(this=column, expression=_literal(_TEXT_PATTERNS[wanted]))
        mask = exp.and_(column.is_(exp.null()).not_(), exp.not_(exp.paren(parses)))
        scan = {"bad": _count_if(mask)}
        details = {"sample": _first_rows(mask, shape, name)}

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        recorded = inputs.unparseable.get(name)
        recorded_count = recorded.count if recorded else 0
        count = recorded_count + (0 if same_type else int(results["scan"]["bad"]))
        rows = detail("sample") if count else []
        if not count:
            examples = []
        elif same_type:
            examples = [row["value"] for row in detail("examples")]
        else:
            examples = list(dict.fromkeys(row["value"] for row in rows))[:5]
        return reports.type_result(
            rule, count=count, examples=examples,
            reason=recorded.reason if recorded else None, unit=shape.unit_of(name),
            sample=lambda: _sample(rows, shape.key, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _range(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name = rule["column"]
    type_ = shape.type_of(name)
    if not _is_number(type_):
        raise RuleError(f"rule {rule_id(rule)}: column {name!r} is {type_}, not a number")
    column = _col(name)
    low, high = rule.get("min"), rule.get("max")
    outside: list[exp.Expression] = []
    if low is not None:
        outside.append(column < _literal(low))
    if high is not None:
        outside.append(column > _literal(high))
    floating = pa.types.is_floating(type_)
    if floating:
        outside.append(exp.IsNan(this=column))
    condition = exp.and_(column.is_(exp.null()).not_(),
                         exp.paren(exp.or_(*outside)) if outside else exp.false())
    if floating:
        # pyarrow's min/max skip NaN unless every value is NaN; so do these.
        number = exp.case().when(exp.not_(exp.IsNan(this=column)), column)
        lowest = exp.func("COALESCE", exp.func("MIN", number), exp.func("MIN", column))
        highest = exp.func("COALESCE", exp.func("MAX", number), exp.func("MAX", column))
    else:
        lowest, highest = exp.func("MIN", column), exp.func("MAX", column)
    scan = {"outside": _count_if(condition), "low": lowest, "high": highest}
    details = {"sample": _first_rows(condition, shape, name)}

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"]
        count = int(stats["outside"])
        return reports.range_result(
            rule, count=count, lowest=_number(stats["low"], type_),
            highest=_number(stats["high"], type_),
            sample=lambda: _sample(detail("sample"), shape.key, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _allowed_values(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name = rule["column"]
    column = _col(name)
    # The spec's values as the column's type (text compares as text), or the
    # error the spec's validation gives first (mdlc_constructs.spec.rules).
    allowed = _value_set(rule["values"], shape.type_of(name), rule)
    condition = exp.and_(column.is_(exp.null()).not_(),
                         exp.not_(column.isin(*[_literal(v) for v in allowed])))
    scan = {"unexpected": _count_if(condition)}
    details = {
        "values": (select(column.as_("value")).from_(_table(SNAPSHOT), copy=False)
                   .where(condition, copy=False)
                   .group_by(column, copy=False)
                   .order_by(exp.func("COUNT", exp.Star()).desc(), exp.func("MIN", _col(ROW)),
                             copy=False)
                   .limit(10, copy=False)),
        "sample": _first_rows(condition, shape, name),
    }

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        count = int(results["scan"]["unexpected"])
        seen = [json_value(row["value"]) for row in detail("values")] if count else []
        return reports.allowed_values_result(
            rule, count=count, seen=seen,
            sample=lambda: _sample(detail("sample"), shape.key, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _unique(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    names = list(rule["columns"])
    keys = [_col(n) for n in names]
    # Rows without a key are the completeness rule's business.
    present = exp.and_(*[k.is_(exp.null()).not_() for k in keys])
    def groups(*extra: exp.Expression) -> exp.Select:
        return (select(*[k.as_(f"k{i}") for i, k in enumerate(keys)],
                       exp.func("COUNT", exp.Star()).as_("n"), *extra)
                .from_(_table(SNAPSHOT), copy=False).where(present, copy=False)
                .group_by(*keys, copy=False))

    scan: dict[str, exp.Expression] = {}
    queries: dict[str, exp.Select] = {}
    if len(keys) == 1 and shape.scan_distinct:
        # One key: a distinct count in the shared scan, as one would write it.
        scan = {"rows": exp.func("COUNT", keys[0]),
                "distinct_keys": exp.Count(this=exp.Distinct(expressions=[keys[0]]))}
    else:
        queries = {
            "stats": (select(exp.func("COALESCE", exp.func("SUM", _col("n")),
                                      exp.Literal.number(0)).as_("rows"),
                             exp.func("COUNT", exp.Star()).as_("distinct_keys"))
                      .from_(groups().subquery("g"), copy=False)),
        }
    details = {
        # Repeated keys in order of first appearance, as pyarrow's group_by
        # (single-threaded) lists them.
        "sample": (select(*[_col(f"k{i}") for i in range(len(names))], _col("n"))
                   .from_(groups(exp.func("MIN", _col(ROW)).as_("first")).subquery("g"), copy=False)
                   .where(_col("n") > 1, copy=False)
                   .order_by(_col("first"), copy=False).limit(shape.sample_size, copy=False)),
    }

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"] if scan else results["stats"][0]
        distinct = int(stats["distinct_keys"])
        return reports.unique_result(
            rule, duplicates=int(stats["rows"]) - distinct, distinct=distinct,
            sample=lambda: [
                {**{n: json_value(row[f"k{i}"]) for i, n in enumerate(names)},
                 "count": int(row["n"])}
                for row in detail("sample")
            ],
        )

    return CompiledRule(rule, finish, scan=scan, queries=queries, details=details)


def _row_count(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    scan = {"rows": exp.func("COUNT", exp.Star())}

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        return reports.row_count_result(rule, rows=int(results["scan"]["rows"]))

    return CompiledRule(rule, finish, scan=scan)


def _freshness(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name = rule["column"]
    if not pa.types.is_timestamp(shape.type_of(name)):
        raise RuleError(
            f"rule {rule_id(rule)}: column {name!r} is {shape.type_of(name)}, not a timestamp")
    # Microseconds since the epoch: an integer every engine returns the same
    # way, where a zoned timestamp comes back in the session's time zone.
    scan = {"newest": exp.UnixMicros(this=exp.func("MAX", _col(name)))}

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        micros = results["scan"]["newest"]
        newest = (None if micros is None
                  else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros)))
        return reports.freshness_result(rule, newest=newest,
                                         snapshot_date=inputs.snapshot_date)

    return CompiledRule(rule, finish, scan=scan)


def _consistency(rule: Mapping[str, Any], shape: Shape, step: int | None) -> CompiledRule:
    name, entity = rule["column"], rule["entity"]
    tolerance = float(rule.get("tolerance", 0.0))
    if not shape.compared or shape.previous_types is None or step is None:
        return CompiledRule(rule, lambda _inputs, _results, _detail:
                            reports.consistency_skipped(rule))
    before = dict(shape.previous_types)
    for column in (name, entity):
        if column not in before:
            raise RuleError(f"rule {rule_id(rule)}: the previous snapshot has no column {column!r}")
    for types in (dict(shape.types), before):
        # The values are compared as numbers; a text or time column would fail
        # inside the engine (a conversion error) instead of naming the rule.
        if not (_is_number(types[name]) or pa.types.is_boolean(types[name])):
            raise RuleError(f"rule {rule_id(rule)}: column {name!r} is {types[name]}, not a "
                            "number (a consistency rule compares numbers)")

    def per_entity(table: str) -> exp.Select:
        return (select(_col(entity).as_("entity"), exp.func("MIN", _col(name)).as_("lo"),
                       exp.func("MAX", _col(name)).as_("hi"))
                .from_(_table(table), copy=False)
                .where(exp.and_(_col(entity).is_(exp.null()).not_(),
                                _col(name).is_(exp.null()).not_()), copy=False)
                .group_by(_col(entity), copy=False))

    def as_double(column: exp.Expression) -> exp.Expression:
        return exp.cast(column, exp.DataType.build("DOUBLE"))

    # With several rows per entity in a snapshot every pairing must fit, so a
    # customer with 365 and 54 on the same day is caught too.
    worst = exp.Greatest(
        this=exp.Abs(this=as_double(_col("lo", "c")) - as_double(_col("hi", "p"))
                     - _literal(step)),
        expressions=[exp.Abs(this=as_double(_col("hi", "c")) - as_double(_col("lo", "p"))
                             - _literal(step))],
    )
    joined = (select(_col("entity", "c").as_("entity"), _col("lo", "c").as_("cur_min"),
                     _col("hi", "c").as_("cur_max"), _col("lo", "p").as_("prev_min"),
                     _col("hi", "p").as_("prev_max"),
                     exp.paren(worst > _literal(tolerance + 1e-9)).as_("bad"))
              .from_(per_entity(SNAPSHOT).subquery("c"), copy=False)
              .join(per_entity(PREVIOUS).subquery("p"),
                    on=_col("entity", "c").eq(_col("entity", "p")), join_type="inner", copy=False))
    queries = {
        "stats": select(exp.func("COUNT", exp.Star()).as_("compared"),
                        _count_if(_col("bad")).as_("inconsistent"))
        .from_(joined.subquery("j"), copy=False),
    }
    details = {
        "sample": (select(_col("entity"), _col("cur_min"), _col("cur_max"), _col("prev_min"),
                          _col("prev_max"))
                   .from_(joined.subquery("j"), copy=False).where(_col("bad"), copy=False)
                   .order_by(_col("entity"), copy=False).limit(shape.sample_size, copy=False)),
    }

    def finish(inputs: Inputs, results: Mapping[str, Any], detail: Detail) -> RuleResult:
        (stats,) = results["stats"]
        previous_date = inputs.previous_date
        assert previous_date is not None  # compiled only for a check with a previous snapshot
        days, _ = consistency_step(rule, inputs.snapshot_date, previous_date)
        return reports.consistency_result(
            rule, days=days, previous_date=previous_date, compared=int(stats["compared"]),
            count=int(stats["inconsistent"]),
            sample=lambda: [
                {
                    entity: json_value(row["entity"]),
                    "previous": reports.one_or_span(row["prev_min"], row["prev_max"]),
                    "current": reports.one_or_span(row["cur_min"], row["cur_max"]),
                    "expected": json_value(row["prev_max"] + step),
                }
                for row in detail("sample")
            ],
        )

    return CompiledRule(rule, finish, queries=queries, details=details)


def _value_set(values: list[Any], type_: pa.DataType, rule: Mapping[str, Any]) -> list[Any]:
    """``values`` as ``type_``'s Python values: text as text (``true`` for a
    boolean), anything else cast by pyarrow, whose cast the spec's
    validation also tries (a value that does not fit is refused there first)."""
    if pa.types.is_string(type_):
        return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    try:
        return pa.array(values).cast(type_).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise RuleError(
            f"rule {rule_id(rule)}: values {values} are not all of the column's type {type_}"
        ) from error


def _number(value: Any, type_: pa.DataType) -> Any:
    """A min/max as pyarrow returns it for the column's type (float for floats)."""
    if value is None:
        return None
    return float(value) if pa.types.is_floating(type_) else int(value)


#: Each rule kind's compiler: the rule, the inputs' shape, a consistency rule's step.
_COMPILERS: dict[str, Callable[[Mapping[str, Any], Shape, int | None], CompiledRule]] = {
    "completeness": _completeness,
    "type": _type,
    "range": _range,
    "allowed_values": _allowed_values,
    "unique": _unique,
    "row_count": _row_count,
    "freshness": _freshness,
    "consistency": _consistency,
}
#: Every rule kind ``quality.rules`` may hold: the one table of them.
RULE_KINDS = tuple(_COMPILERS)


def compile_rules(rules: Sequence[Mapping[str, Any]], inputs: Inputs) -> list[CompiledRule]:
    """Every rule of ``quality.rules``, in order."""
    return [compile_rule(rule, inputs) for rule in rules]
