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
report entry :mod:`mdlc_core.quality` produces for the same rule on the same
data: the same ids, statuses, counts, messages and samples. Samples follow
the embedded engine's order, made explicit: the first offending rows by
position; for ``unique`` the repeated keys in order of first appearance; for
``consistency`` the entities sorted by key; unexpected values by count, then
first appearance.

Why the ``type`` rule reads the reader's record: a value that does not parse
as its declared type is null in the typed column, so its text is gone by the
time SQL sees the table; the reader (shared by every engine) keeps count,
positions and text. A rule that asks for *another* type than the column's
(digits in a string id) is compiled: the same regular expressions the reader
uses, evaluated in SQL. Re-parsing text as a timestamp, or a non-text column
as another type, is not compiled yet and raises :class:`RuleError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlglot import exp, select

from .. import quality as embedded
from ..quality import RuleError, RuleResult, consistency_step, rule_id
from ..tabular import _FALSE, _FLOAT, _INT, _TRUE, ARROW_TYPES, Unparseable

#: The column holding each row's position in its snapshot as read.
ROW = "_mdlc_row"
SNAPSHOT, PREVIOUS, UNPARSEABLE = "snapshot", "previous", "unparseable"
DIALECTS = ("duckdb", "spark")
Rows = list[dict[str, Any]]

_TYPE_NAMES = {str(arrow): name for name, arrow in ARROW_TYPES.items()}


@dataclass(frozen=True)
class Inputs:
    """What compiling needs to know besides the rule: the spec's data roles,
    the snapshot's column types and the reader's unparseable record."""

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


#: Runs one of a rule's detail queries by name, returning its rows.
Detail = Callable[[str], Rows]


@dataclass(frozen=True)
class CompiledRule:
    """A rule's SQL and how its results become its report entry.

    ``scan``: aggregates over ``snapshot`` without grouping; an engine fuses
    every rule's into one ``SELECT`` (one pass over the day, as a hand-written
    query would do) and hands each rule its values as ``results["scan"]``.
    ``queries``: queries of their own (grouping, joins), run for every check,
    their rows in ``results[name]``. ``details``: queries that only a failed
    rule needs (the samples, the unexpected values); ``finish`` asks for them
    by name through its ``detail`` argument, so a passing rule costs no more
    than its aggregates.
    """

    rule: Mapping[str, Any]
    finish: Callable[[Mapping[str, Any], Detail], RuleResult]
    scan: Mapping[str, exp.Expression] = field(default_factory=dict)
    queries: Mapping[str, exp.Select] = field(default_factory=dict)
    details: Mapping[str, exp.Select] = field(default_factory=dict)

    def render(self, dialect: str) -> dict[str, str]:
        """Every query of the rule (its scan as a ``SELECT`` of its own) as SQL
        text of ``dialect`` (one of :data:`DIALECTS`)."""
        _check_dialect(dialect)
        texts = {}
        if self.scan:
            texts["scan"] = scan_query([self]).sql(dialect=dialect)
        for name, query in {**self.queries, **self.details}.items():
            texts[name] = query.sql(dialect=dialect)
        return texts


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
    """The rule as SQL; raises :class:`RuleError` when it does not fit the data."""
    embedded.require_columns(rule, inputs.types)
    try:
        compiler = _COMPILERS[rule["kind"]]
    except KeyError:
        raise RuleError(f"rule {rule_id(rule)}: unknown kind {rule['kind']!r}") from None
    return compiler(rule, inputs)


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


def _first_rows(condition: exp.Expression, inputs: Inputs, value: str | None) -> exp.Select:
    """The first ``sample_size`` rows (by position) where ``condition`` holds."""
    columns: list[exp.Expression] = [_col(inputs.key).as_("key"), _col(ROW).as_("row")]
    if value:
        columns.append(_col(value).as_("value"))
    return (select(*columns).from_(_table(SNAPSHOT), copy=False).where(condition, copy=False)
            .order_by(_col(ROW), copy=False).limit(inputs.sample_size, copy=False))


def _sample(rows: Rows, inputs: Inputs, with_value: bool) -> list[dict[str, Any]]:
    sample = []
    for row in rows:
        entry: dict[str, Any] = {inputs.key: embedded._json(row["key"]), "row": int(row["row"])}
        if with_value:
            entry["value"] = embedded._json(row["value"])
        sample.append(entry)
    return sample


def _bad_rows(column: str) -> exp.Select:
    return (select(_col("row_index")).from_(_table(UNPARSEABLE), copy=False)
            .where(_col("column_name").eq(_literal(column)), copy=False))


def _is_number(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_)


# --- the rule kinds ----------------------------------------------------------------


def _completeness(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name = rule["column"]
    column = _col(name)
    bad = inputs.unparseable.get(name)
    scan = {"rows": exp.func("COUNT", exp.Star()), "present": exp.func("COUNT", column)}
    details = {
        # A value that was present but did not parse is not missing: the type
        # rule reports it (so the reader's recorded rows are left out here).
        "sample": _first_rows(exp.and_(column.is_(exp.null()),
                                       exp.not_(_col(ROW).isin(query=_bad_rows(name)))),
                              inputs, None),
    }

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"]
        rows = int(stats["rows"])
        return embedded.completeness_result(
            rule, rows=rows, nulls=rows - int(stats["present"]) - (bad.count if bad else 0),
            sample=lambda: _sample(detail("sample"), inputs, False),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


_TEXT_PATTERNS = {"int": _INT, "float": "(?i)" + _FLOAT}


def _type(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name, wanted = rule["column"], rule["type"]
    column = _col(name)
    recorded = inputs.unparseable.get(name)
    same_type = inputs.types[name] == ARROW_TYPES[wanted]
    if same_type:
        # The reader parsed the column as this type: its record is the answer.
        bad = (select(_col(inputs.key, "s").as_("key"), _col(ROW, "s").as_("row"),
                      _col("raw_value", "u").as_("value"))
               .from_(exp.alias_(_table(SNAPSHOT), "s"), copy=False)
               .join(exp.alias_(_table(UNPARSEABLE), "u"),
                     on=exp.and_(_col(ROW, "s").eq(_col("row_index", "u")),
                                 _col("column_name", "u").eq(_literal(name))), copy=False)
               .order_by(_col(ROW, "s"), copy=False).limit(inputs.sample_size, copy=False))
        examples = (select(_col("raw_value").as_("value")).from_(_table(UNPARSEABLE), copy=False)
                    .where(_col("column_name").eq(_literal(name)), copy=False)
                    .group_by(_col("raw_value"), copy=False)
                    .order_by(exp.func("MIN", _col("row_index")), copy=False).limit(5, copy=False))
        scan: dict[str, exp.Expression] = {}
        details: dict[str, exp.Select] = {"sample": bad, "examples": examples}
    else:
        if not pa.types.is_string(inputs.types[name]) or wanted not in ("int", "float", "bool"):
            raise RuleError(
                f"rule {rule_id(rule)}: re-parsing column {name!r} ({inputs.types[name]}) as "
                f"{wanted} is not compiled to SQL yet; run it on the embedded engine")
        if wanted == "bool":
            lowered = exp.Lower(this=exp.Trim(this=column))
            parses: exp.Expression = lowered.isin(*[_literal(v) for v in _TRUE + _FALSE])
        else:
            parses = exp.RegexpLike(this=column, expression=_literal(_TEXT_PATTERNS[wanted]))
        mask = exp.and_(column.is_(exp.null()).not_(), exp.not_(exp.paren(parses)))
        scan = {"bad": _count_if(mask)}
        details = {"sample": _first_rows(mask, inputs, name)}

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        recorded_count = recorded.count if recorded else 0
        count = recorded_count + (0 if same_type else int(results["scan"]["bad"]))
        rows = detail("sample") if count else []
        if not count:
            examples = []
        elif same_type:
            examples = [row["value"] for row in detail("examples")]
        else:
            examples = list(dict.fromkeys(row["value"] for row in rows))[:5]
        return embedded.type_result(
            rule, count=count, examples=examples,
            reason=recorded.reason if recorded else None, unit=inputs.units.get(name),
            sample=lambda: _sample(rows, inputs, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _range(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name = rule["column"]
    type_ = inputs.types[name]
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
    details = {"sample": _first_rows(condition, inputs, name)}

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"]
        count = int(stats["outside"])
        return embedded.range_result(
            rule, count=count, lowest=_number(stats["low"], type_),
            highest=_number(stats["high"], type_),
            sample=lambda: _sample(detail("sample"), inputs, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _allowed_values(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name = rule["column"]
    column = _col(name)
    # The same coercion of the spec's values to the column's type as the
    # embedded engine (and the same error when they do not fit).
    allowed = embedded._value_set(rule["values"], inputs.types[name], rule).to_pylist()
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
        "sample": _first_rows(condition, inputs, name),
    }

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        count = int(results["scan"]["unexpected"])
        seen = [embedded._json(row["value"]) for row in detail("values")] if count else []
        return embedded.allowed_values_result(
            rule, count=count, seen=seen,
            sample=lambda: _sample(detail("sample"), inputs, True),
        )

    return CompiledRule(rule, finish, scan=scan, details=details)


def _unique(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
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
    if len(keys) == 1 and inputs.scan_distinct:
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
                   .order_by(_col("first"), copy=False).limit(inputs.sample_size, copy=False)),
    }

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        stats = results["scan"] if scan else results["stats"][0]
        distinct = int(stats["distinct_keys"])
        return embedded.unique_result(
            rule, duplicates=int(stats["rows"]) - distinct, distinct=distinct,
            sample=lambda: [
                {**{n: embedded._json(row[f"k{i}"]) for i, n in enumerate(names)},
                 "count": int(row["n"])}
                for row in detail("sample")
            ],
        )

    return CompiledRule(rule, finish, scan=scan, queries=queries, details=details)


def _row_count(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    scan = {"rows": exp.func("COUNT", exp.Star())}

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        return embedded.row_count_result(rule, rows=int(results["scan"]["rows"]))

    return CompiledRule(rule, finish, scan=scan)


def _freshness(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name = rule["column"]
    if not pa.types.is_timestamp(inputs.types[name]):
        raise RuleError(
            f"rule {rule_id(rule)}: column {name!r} is {inputs.types[name]}, not a timestamp")
    # Microseconds since the epoch: an integer every engine returns the same
    # way, where a zoned timestamp comes back in the session's time zone.
    scan = {"newest": exp.UnixMicros(this=exp.func("MAX", _col(name)))}

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        micros = results["scan"]["newest"]
        newest = (None if micros is None
                  else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros)))
        return embedded.freshness_result(rule, newest=newest,
                                         snapshot_date=inputs.snapshot_date)

    return CompiledRule(rule, finish, scan=scan)


def _consistency(rule: Mapping[str, Any], inputs: Inputs) -> CompiledRule:
    name, entity = rule["column"], rule["entity"]
    tolerance = float(rule.get("tolerance", 0.0))
    if inputs.previous_types is None or inputs.previous_date is None:
        skipped = embedded.consistency_skipped(rule)
        return CompiledRule(rule, lambda _results, _detail: skipped)
    for column in (name, entity):
        if column not in inputs.previous_types:
            raise RuleError(f"rule {rule_id(rule)}: the previous snapshot has no column {column!r}")
    days, step = consistency_step(rule, inputs.snapshot_date, inputs.previous_date)
    previous_date = inputs.previous_date

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
                   .order_by(_col("entity"), copy=False).limit(inputs.sample_size, copy=False)),
    }

    def finish(results: Mapping[str, Any], detail: Detail) -> RuleResult:
        (stats,) = results["stats"]
        return embedded.consistency_result(
            rule, days=days, previous_date=previous_date, compared=int(stats["compared"]),
            count=int(stats["inconsistent"]),
            sample=lambda: [
                {
                    entity: embedded._json(row["entity"]),
                    "previous": embedded._one(row["prev_min"], row["prev_max"]),
                    "current": embedded._one(row["cur_min"], row["cur_max"]),
                    "expected": embedded._json(row["prev_max"] + step),
                }
                for row in detail("sample")
            ],
        )

    return CompiledRule(rule, finish, queries=queries, details=details)


def _number(value: Any, type_: pa.DataType) -> Any:
    """A min/max as pyarrow returns it for the column's type (float for floats)."""
    if value is None:
        return None
    return float(value) if pa.types.is_floating(type_) else int(value)


_COMPILERS: dict[str, Callable[[Mapping[str, Any], Inputs], CompiledRule]] = {
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
