"""The data quality engine: the spec's ``quality.rules`` against one snapshot.

The same code runs in the quality Lambda, in the SageMaker Processing job
(the scale-out runner), in tests and in ``mdlc quality``::

    table = tabular.read_table(path, spec["data"]["columns"])
    report = check(table, spec, snapshot_date=date(2026, 11, 1))

Every rule is evaluated column-at-a-time with ``pyarrow.compute`` and NumPy;
Python only loops over rules and over the (bounded) sample of offending
keys, so a million rows take well under a second per handful of rules.

``check`` returns the JSON report described in docs/quality.md;
``suggest_baseline`` derives per-column statistics and a starting
``quality.rules`` list from a reference snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .tabular import ARROW_TYPES, DataError, parse_strings, unparseable

REPORT_VERSION = 1
Report = dict[str, Any]
RuleResult = dict[str, Any]


class RuleError(DataError):
    """A rule that cannot be evaluated on this data (e.g. a range on a text column)."""


def rule_id(rule: Mapping[str, Any]) -> str:
    """The rule's name in reports and metrics; the same default as the spec's ``rule_id``."""
    if rule.get("id"):
        return str(rule["id"])
    column = rule.get("column") or "_".join(rule.get("columns") or [])
    return f"{rule['kind']}_{column}" if column else str(rule["kind"])


def check(
    table: pa.Table,
    spec_config: Mapping[str, Any],
    *,
    snapshot_date: date,
    previous: pa.Table | None = None,
    previous_date: date | None = None,
    source: str | None = None,
    previous_source: str | None = None,
) -> Report:
    """Evaluate every rule of ``spec_config['quality']`` and return the report.

    ``previous`` is the earlier snapshot the ``consistency`` rules compare
    against (they are skipped without it); ``previous_date`` defaults to the
    day before ``snapshot_date``. Raises :class:`RuleError` when a rule does
    not fit the data; violations never raise, they are in the report.
    """
    if previous is not None and previous_date is None:
        previous_date = snapshot_date - timedelta(days=1)
    context = _Context(table, spec_config, snapshot_date, previous, previous_date)
    quality = spec_config["quality"]
    results = []
    for rule in quality["rules"]:
        require_columns(rule, table.column_names)
        results.append(_CHECKS[rule["kind"]](context, rule))
    return report(
        spec_config, results, rows=table.num_rows, snapshot_date=snapshot_date,
        previous_date=previous_date if previous is not None else None,
        source=source, previous_source=previous_source if previous is not None else None,
    )


def consistency_days(rule: Mapping[str, Any], snapshot_date: date,
                     previous_date: date | None) -> int:
    """Days between the previous snapshot and this one, for a consistency rule;
    a previous snapshot that is not older fails the rule's run (every engine)."""
    days = (snapshot_date - previous_date).days if previous_date else 0
    if days <= 0:
        raise RuleError(
            f"rule {rule_id(rule)}: the previous snapshot ({previous_date}) must be "
            f"older than this one ({snapshot_date})"
        )
    return days


def report(spec_config: Mapping[str, Any], results: list[dict[str, Any]], *, rows: int,
           snapshot_date: date, previous_date: date | None, source: str | None,
           previous_source: str | None) -> Report:
    """The report around the rule results: one format for every engine
    (``mdlc_core.sql.quality`` builds the same)."""
    failed = [r for r in results if r["status"] == "fail"]
    return {
        "report_version": REPORT_VERSION,
        "model": spec_config.get("name"),
        "snapshot_date": snapshot_date.isoformat(),
        "previous_date": previous_date.isoformat() if previous_date else None,
        "source": source,
        "previous_source": previous_source,
        "runner": spec_config["quality"].get("runner", "embedded"),
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": {
            "rows": rows,
            "rules": len(results),
            "failed": len(failed),
            "skipped": sum(r["status"] == "skipped" for r in results),
            "violations": sum(r["violations"] for r in results),
            "passed": not failed,
        },
        "rules": results,
    }


# --- evaluation ------------------------------------------------------------------


class _Context:
    def __init__(
        self,
        table: pa.Table,
        spec: Mapping[str, Any],
        snapshot_date: date,
        previous: pa.Table | None,
        previous_date: date | None,
    ) -> None:
        self.table = table
        self.rows = table.num_rows
        self.data = spec["data"]
        self.declared = {c["name"]: c["type"] for c in self.data["columns"]}
        self.units = {c["name"]: c.get("unit") for c in self.data["columns"]}
        self.key = self.data["event_id"]
        self.sample_size = int(spec["quality"].get("sample_size", 20))
        self.snapshot_date = snapshot_date
        self.previous = previous
        self.previous_date = previous_date
        self.unparseable = unparseable(table)

    def row_sample(
        self, mask: pa.ChunkedArray | pa.Array, column: str | None = None
    ) -> list[dict[str, Any]]:
        """The first ``sample_size`` rows where ``mask`` is true, named by the event id."""
        rows = _first_true(mask, self.sample_size)
        return self.rows_sample(rows, column)

    def rows_sample(self, rows: np.ndarray, column: str | None = None) -> list[dict[str, Any]]:
        if not len(rows):
            return []
        indices = pa.array(rows, type=pa.int64())
        keys = self.table.column(self.key).take(indices).to_pylist()
        values = (
            self.table.column(column).take(indices).to_pylist() if column else [None] * len(rows)
        )
        sample = []
        for row, key, value in zip(rows.tolist(), keys, values, strict=True):
            entry: dict[str, Any] = {self.key: _json(key), "row": row}
            if column:
                entry["value"] = _json(value)
            sample.append(entry)
        return sample


# --- what each rule kind reports ---------------------------------------------------
#
# Both engines (this one on pyarrow, ``mdlc_core.sql.rules`` on SQL) measure a
# rule their own way and hand the measurements to these functions, which are
# the one definition of each kind's verdict, expected/observed fields and
# message: the engines' reports agree by construction. ``sample`` is called
# only when the rule fails, so an engine fetches offending rows only then.

#: Offending rows or entities, fetched only for a failed rule.
Sample = Callable[[], list[dict[str, Any]]]


def _no_sample() -> list[dict[str, Any]]:
    return []


def rule_result(
    rule: Mapping[str, Any],
    *,
    expected: dict[str, Any],
    observed: dict[str, Any],
    passed: bool,
    violations: int,
    message: str,
    sample: Sample = _no_sample,
    skipped: str | None = None,
) -> RuleResult:
    """The report entry of one rule: its id, kind and columns, what was
    expected and observed, the status, and for a failed rule its violations
    and sample."""
    status = "skipped" if skipped else ("pass" if passed else "fail")
    return {
        "id": rule_id(rule),
        "kind": rule["kind"],
        "columns": _rule_columns(rule),
        "expected": expected,
        "observed": observed,
        "passed": status != "fail",
        "status": status,
        # Offending rows/entities when the rule failed, else 0: this is what
        # the QualityViolations metric and the exit code count.
        "violations": 0 if status != "fail" else max(int(violations), 1),
        "sample": sample() if status == "fail" else [],
        "message": skipped or message,
    }


def completeness_result(
    rule: Mapping[str, Any], *, rows: int, nulls: int, sample: Sample
) -> RuleResult:
    """``nulls`` of ``rows`` missing (values present but unparseable are the
    type rule's, not counted here)."""
    share = (rows - nulls) / rows if rows else 1.0
    minimum = float(rule.get("min", 1.0))
    return rule_result(
        rule,
        expected={"min_share": minimum},
        observed={"share": round(share, 6), "nulls": nulls},
        passed=share >= minimum - 1e-12, violations=nulls, sample=sample,
        message=f"non-null share {share:.4f} ({nulls} null), expected >= {minimum}",
    )


def type_result(
    rule: Mapping[str, Any], *, count: int, examples: list[Any], reason: str | None,
    unit: str | None, sample: Sample,
) -> RuleResult:
    """``count`` values that do not parse as the rule's type; ``reason``: the
    reader's why (an integer timestamp without its unit...), shown when any failed."""
    wanted = rule["type"]
    reason = reason if count else None
    observed: dict[str, Any] = {"unparseable": count, "examples": examples}
    if reason:
        observed["reason"] = reason
    return rule_result(
        rule,
        expected={"type": wanted, **({"unit": unit} if wanted == "timestamp" and unit else {})},
        observed=observed,
        passed=count == 0, violations=count, sample=sample,
        message=f"{count} value(s) do not parse as {wanted}" + (f": {reason}" if reason else ""),
    )


def range_result(
    rule: Mapping[str, Any], *, count: int, lowest: Any, highest: Any, sample: Sample
) -> RuleResult:
    """``count`` values outside the range; ``lowest``/``highest``: the column's
    observed extremes as pyarrow's ``min_max`` gives them."""
    low, high = rule.get("min"), rule.get("max")
    return rule_result(
        rule,
        expected={"min": low, "max": high},
        observed={"outside": count, "min": _json(lowest), "max": _json(highest)},
        passed=count == 0, violations=count, sample=sample,
        message=(
            f"{count} value(s) outside [{_fmt(low)}, {_fmt(high)}] "
            f"(observed min {_fmt(lowest)}, max {_fmt(highest)})"
        ),
    )


def allowed_values_result(
    rule: Mapping[str, Any], *, count: int, seen: list[Any], sample: Sample
) -> RuleResult:
    """``count`` values not allowed; ``seen``: the most frequent of them, at most 10."""
    return rule_result(
        rule,
        expected={"values": list(rule["values"])},
        observed={"unexpected": count, "unexpected_values": seen},
        passed=count == 0, violations=count, sample=sample,
        message=f"{count} value(s) not in {list(rule['values'])}"
        + (f", e.g. {', '.join(map(str, seen[:3]))}" if seen else ""),
    )


def unique_result(
    rule: Mapping[str, Any], *, duplicates: int, distinct: int, sample: Sample
) -> RuleResult:
    """``duplicates`` rows repeating a key of ``distinct`` (rows without a key left out)."""
    names = list(rule["columns"])
    return rule_result(
        rule,
        expected={"duplicates": 0},
        observed={"duplicates": duplicates, "distinct": distinct},
        passed=duplicates == 0, violations=duplicates, sample=sample,
        message=f"{duplicates} duplicate row(s) of ({', '.join(names)}), {distinct} distinct",
    )


def row_count_result(rule: Mapping[str, Any], *, rows: int) -> RuleResult:
    low, high = int(rule.get("min", 1)), rule.get("max")
    return rule_result(
        rule,
        expected={"min": low, "max": high},
        observed={"rows": rows},
        passed=rows >= low and (high is None or rows <= high), violations=1,
        message=f"{rows} rows, expected "
        + (f"at least {low}" if high is None else f"between {low} and {_fmt(high)}"),
    )


def freshness_as_of(snapshot_date: date) -> datetime:
    """The moment a snapshot's freshness is measured at: the end of its day, UTC."""
    return datetime.combine(snapshot_date + timedelta(days=1), time(), UTC)


def freshness_result(
    rule: Mapping[str, Any], *, newest: datetime | None, snapshot_date: date
) -> RuleResult:
    """``newest``: the column's latest timestamp (aware, UTC), None without values."""
    name, max_age = rule["column"], float(rule["max_age_hours"])
    as_of = freshness_as_of(snapshot_date)
    age = (as_of - newest).total_seconds() / 3600 if newest is not None else None
    return rule_result(
        rule,
        expected={"max_age_hours": max_age, "as_of": as_of.isoformat()},
        observed={"newest": _json(newest), "age_hours": None if age is None else round(age, 3)},
        passed=age is not None and age <= max_age, violations=1,
        message=(
            f"newest {name} {_json(newest)} is {age:.1f} h before {as_of:%Y-%m-%d %H:%M}Z, "
            f"expected <= {_fmt(max_age)} h" if age is not None else f"no {name} values"
        ),
    )


def _consistency_expected(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {"change": rule.get("change", "days"), "tolerance": float(rule.get("tolerance", 0.0))}


def consistency_skipped(rule: Mapping[str, Any]) -> RuleResult:
    """A consistency rule without a previous snapshot to compare with."""
    return rule_result(
        rule, expected=_consistency_expected(rule), observed={}, passed=True, violations=0,
        message="", skipped="skipped: no previous snapshot to compare with",
    )


def consistency_step(rule: Mapping[str, Any], snapshot_date: date,
                     previous_date: date | None) -> tuple[int, int]:
    """Days between the snapshots, and the change each entity's value must
    show over them (:func:`_step`)."""
    days = consistency_days(rule, snapshot_date, previous_date)
    return days, _step(rule, days)


def _step(rule: Mapping[str, Any], days: int) -> int:
    """``change: days``: the value grows by the days between the snapshots; else it stays."""
    return days if rule.get("change", "days") == "days" else 0


def consistency_result(
    rule: Mapping[str, Any], *, days: int, previous_date: date, compared: int, count: int,
    sample: Sample,
) -> RuleResult:
    """``count`` of the ``compared`` entities (in both snapshots) whose value
    did not change as the rule says; the sample names them."""
    name, entity = rule["column"], rule["entity"]
    change = rule.get("change", "days")
    offending = sample() if count else []
    named = ", ".join(str(s[entity]) for s in offending[:5])
    return rule_result(
        rule,
        expected={**_consistency_expected(rule), "days_between": days,
                  "step": _step(rule, days)},
        observed={"entities_compared": compared, "inconsistent": count},
        passed=count == 0, violations=count, sample=lambda: offending,
        message=(
            f"{count} of {compared} {entity}(s) where {name} did not "
            + ("grow by " + str(days) if change == "days" else "stay the same")
            + f" since {previous_date}" + (f": {named}" if named else "")
        ),
    )


# --- the embedded engine's measurements ------------------------------------------------


def _completeness(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name = rule["column"]
    column = context.table.column(name)
    bad = context.unparseable.get(name)
    # A value that was present but did not parse is not missing: the type
    # rule reports it, so it is not counted twice.
    nulls = column.null_count - (bad.count if bad else 0)

    def sample() -> list[dict[str, Any]]:
        mask = pc.is_null(column).to_numpy(zero_copy_only=False).copy()
        if bad:
            mask[np.asarray(bad.rows, dtype=np.int64)] = False
        return context.rows_sample(np.flatnonzero(mask)[: context.sample_size])

    return completeness_result(rule, rows=context.rows, nulls=nulls, sample=sample)


def _type(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name, wanted = rule["column"], rule["type"]
    column = context.table.column(name)
    recorded = context.unparseable.get(name)
    if column.type == ARROW_TYPES[wanted]:
        count = recorded.count if recorded else 0
        rows = np.asarray(recorded.rows if recorded else [], dtype=np.int64)
        raw = recorded.values if recorded else []
    else:
        # The rule asks for another type than the column was read as (say
        # digits in a string id): parse the text again as the rule's type.
        text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
        unit = context.units.get(name) if wanted == "timestamp" else None
        parsed = parse_strings(text, wanted, unit)
        mask = pc.and_(pc.is_valid(text), pc.is_null(parsed))
        count = int(pc.sum(mask).as_py() or 0) + (recorded.count if recorded else 0)
        rows = _first_true(mask, context.sample_size)
        raw = text.take(pa.array(rows, type=pa.int64())).to_pylist()
    rows = rows[: context.sample_size]

    def sample() -> list[dict[str, Any]]:
        entries = context.rows_sample(rows)
        for entry, value in zip(entries, raw, strict=False):
            entry["value"] = value
        return entries

    return type_result(
        rule, count=count, examples=list(dict.fromkeys(raw))[:5],
        reason=recorded.reason if recorded else None, unit=context.units.get(name),
        sample=sample,
    )


def _range(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name = rule["column"]
    column = context.table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise RuleError(f"rule {rule_id(rule)}: column {name!r} is {column.type}, not a number")
    low, high = rule.get("min"), rule.get("max")
    outside = pa.chunked_array([pa.array(np.zeros(context.rows, dtype=bool))])
    if low is not None:
        outside = pc.or_(outside, pc.less(column, low))
    if high is not None:
        outside = pc.or_(outside, pc.greater(column, high))
    if pa.types.is_floating(column.type):
        outside = pc.or_(outside, pc.is_nan(column))
    outside = pc.fill_null(outside, False)
    extremes = pc.min_max(column).as_py()
    return range_result(
        rule, count=int(pc.sum(outside).as_py() or 0), lowest=extremes["min"],
        highest=extremes["max"], sample=lambda: context.row_sample(outside, name),
    )


def _allowed_values(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name = rule["column"]
    column = context.table.column(name)
    allowed = _value_set(rule["values"], column.type, rule)
    unexpected = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=allowed)))
    count = int(pc.sum(unexpected).as_py() or 0)
    seen: list[Any] = []
    if count:
        counts = pc.value_counts(column.filter(unexpected))
        ordered = counts.take(pc.array_sort_indices(counts.field("counts"), order="descending"))
        seen = [_json(v) for v in ordered.field("values").to_pylist()[:10]]
    return allowed_values_result(
        rule, count=count, seen=seen, sample=lambda: context.row_sample(unexpected, name)
    )


def _unique(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    names = list(rule["columns"])
    keys = context.table.select(names)
    if any(keys.column(n).null_count for n in names):
        # Rows without a key are the completeness rule's business.
        valid = pc.and_(*[pc.is_valid(keys.column(n)) for n in names]) if len(names) > 1 \
            else pc.is_valid(keys.column(names[0]))
        keys = keys.filter(valid)
    if len(names) == 1:
        distinct = len(pc.unique(keys.column(0)))
    else:
        distinct = keys.group_by(names).aggregate([]).num_rows

    def sample() -> list[dict[str, Any]]:
        counts = keys.group_by(names, use_threads=False).aggregate([([], "count_all")])
        repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
        entries = []
        for row in repeated.slice(0, context.sample_size).to_pylist():
            count = row.pop("count_all")
            entries.append({**{k: _json(v) for k, v in row.items()}, "count": count})
        return entries

    return unique_result(
        rule, duplicates=keys.num_rows - distinct, distinct=distinct, sample=sample
    )


def _row_count(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    return row_count_result(rule, rows=context.rows)


def _freshness(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name = rule["column"]
    column = context.table.column(name)
    if not pa.types.is_timestamp(column.type):
        raise RuleError(f"rule {rule_id(rule)}: column {name!r} is {column.type}, not a timestamp")
    newest = pc.max(column).as_py()
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    return freshness_result(rule, newest=newest, snapshot_date=context.snapshot_date)


def _consistency(context: _Context, rule: Mapping[str, Any]) -> RuleResult:
    name, entity = rule["column"], rule["entity"]
    tolerance = float(rule.get("tolerance", 0.0))
    if context.previous is None or context.previous_date is None:
        return consistency_skipped(rule)
    for column in (name, entity):
        if column not in context.previous.column_names:
            raise RuleError(f"rule {rule_id(rule)}: the previous snapshot has no column {column!r}")
    days, step = consistency_step(rule, context.snapshot_date, context.previous_date)
    current = _per_entity(context.table, entity, name, "cur")
    before = _per_entity(context.previous, entity, name, "prev")
    joined = current.join(before, entity, join_type="inner")
    values = {
        c: joined.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        for c in ("cur_min", "cur_max", "prev_min", "prev_max")
    }
    # With several rows per entity in a snapshot every pairing must fit, so a
    # customer with 365 and 54 on the same day is caught too.
    worst = np.maximum(
        np.abs(values["cur_min"] - values["prev_max"] - step),
        np.abs(values["cur_max"] - values["prev_min"] - step),
    )
    bad = worst > tolerance + 1e-9

    def sample() -> list[dict[str, Any]]:
        offending = joined.filter(pa.array(bad)).sort_by(entity).slice(0, context.sample_size)
        return [
            {
                entity: _json(row[entity]),
                "previous": _one(row["prev_min"], row["prev_max"]),
                "current": _one(row["cur_min"], row["cur_max"]),
                "expected": _json(row["prev_max"] + step),
            }
            for row in offending.to_pylist()
        ]

    return consistency_result(
        rule, days=days, previous_date=context.previous_date, compared=joined.num_rows,
        count=int(bad.sum()), sample=sample,
    )


_CHECKS: dict[str, Callable[[_Context, Mapping[str, Any]], RuleResult]] = {
    "completeness": _completeness,
    "type": _type,
    "range": _range,
    "allowed_values": _allowed_values,
    "unique": _unique,
    "row_count": _row_count,
    "freshness": _freshness,
    "consistency": _consistency,
}


# --- baseline --------------------------------------------------------------------


def suggest_baseline(table: pa.Table, spec_config: Mapping[str, Any]) -> dict[str, Any]:
    """Per-column statistics of a reference snapshot and rules inferred from them.

    The rules are a starting point to paste into ``quality.rules`` and edit:
    completeness at the observed share (rounded down), the declared type,
    allowed values for low-cardinality columns, ranges rounded outwards,
    uniqueness of the event id when it holds, a row-count band around the
    observed count, freshness for the timestamp column, and the spec's
    existing consistency rules (one snapshot cannot suggest those).
    """
    data = spec_config["data"]
    rows = table.num_rows
    statistics: dict[str, Any] = {}
    rules: list[dict[str, Any]] = []
    for spec_column in data["columns"]:
        name, type_name = spec_column["name"], spec_column["type"]
        if name not in table.column_names:
            raise DataError(f"the data has no column {name!r}")
        column = table.column(name)
        stats = _column_statistics(column, rows)
        statistics[name] = {"type": type_name, **stats}
        share = 1.0 - stats["null_share"]
        rules.append({"kind": "completeness", "column": name, "min": math.floor(share * 100) / 100})
        rules.append({"kind": "type", "column": name, "type": type_name})
        roles = (data["event_id"], data["entity_key"], data["timestamp"])
        if name in roles:
            continue
        # Few values that repeat look like a category; otherwise a numeric range.
        repeats = 0 < stats["distinct"] <= min(10, (rows - column.null_count) // 2)
        if type_name in ("string", "int", "bool") and repeats:
            values = sorted(v["value"] for v in stats["top_values"])
            rules.append({"kind": "allowed_values", "column": name, "values": values})
        elif type_name in ("int", "float") and stats.get("min") is not None:
            low, high = stats["min"], stats["max"]
            rules.append({
                "kind": "range", "column": name,
                "min": 0 if low >= 0 else -_nice_ceil(-low),
                "max": _nice_ceil(high) if high > 0 else 0,
            })
    event_id = data["event_id"]
    if statistics[event_id]["distinct"] == rows - table.column(event_id).null_count:
        rules.append({"kind": "unique", "columns": [event_id]})
    rules.append({"kind": "row_count", "min": rows // 2, "max": max(rows * 2, 1)})
    # A daily snapshot plus half a day of slack for late files.
    rules.append({"kind": "freshness", "column": data["timestamp"], "max_age_hours": 36})
    existing = spec_config.get("quality", {}).get("rules", [])
    rules += [
        {k: v for k, v in rule.items() if v is not None}
        for rule in existing if rule["kind"] == "consistency"
    ]
    return {"rows": rows, "statistics": statistics, "quality": {"rules": rules}}


def _column_statistics(column: pa.ChunkedArray, rows: int) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "null_share": round(column.null_count / rows, 6) if rows else 0.0,
        "distinct": len(pc.unique(column.drop_null())),
    }
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        extremes = pc.min_max(column).as_py()
        mean = pc.mean(column).as_py()
        stats.update(
            min=_json(extremes["min"]), max=_json(extremes["max"]),
            mean=None if mean is None else round(mean, 6),
        )
    elif pa.types.is_timestamp(column.type):
        extremes = pc.min_max(column).as_py()
        stats.update(min=_json(extremes["min"]), max=_json(extremes["max"]))
    if not pa.types.is_floating(column.type) and not pa.types.is_timestamp(column.type):
        counts = pc.value_counts(column.drop_null())
        top = counts.take(pc.array_sort_indices(counts.field("counts"), order="descending")[:5])
        stats["top_values"] = [
            {"value": _json(v), "count": c}
            for v, c in zip(top.field("values").to_pylist(), top.field("counts").to_pylist(),
                            strict=True)
        ]
    return stats


# --- helpers ---------------------------------------------------------------------


def require_columns(rule: Mapping[str, Any], columns: Collection[str]) -> None:
    """Raise :class:`RuleError` naming the first column ``rule`` reads that the
    data (its ``columns``) lacks: every engine refuses such a rule in these words."""
    for name in _rule_columns(rule):
        if name not in columns:
            raise RuleError(f"rule {rule_id(rule)}: the data has no column {name!r}")


def _rule_columns(rule: Mapping[str, Any]) -> list[str]:
    columns = list(rule.get("columns") or [])
    for field in ("column", "entity"):
        if rule.get(field):
            columns.append(rule[field])
    return columns


def _first_true(mask: pa.ChunkedArray | pa.Array, limit: int) -> np.ndarray:
    mask = pc.fill_null(mask, False)
    chunks = mask.chunks if isinstance(mask, pa.ChunkedArray) else [mask]
    found: list[np.ndarray] = []
    offset, total = 0, 0
    # Stop at the first chunks that hold enough hits; a sample needs no more.
    for chunk in chunks:
        hits = np.flatnonzero(chunk.to_numpy(zero_copy_only=False)) + offset
        found.append(hits[: limit - total])
        total += len(found[-1])
        offset += len(chunk)
        if total >= limit:
            break
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _per_entity(table: pa.Table, entity: str, column: str, prefix: str) -> pa.Table:
    pair = table.select([entity, column])
    if pair.column(0).null_count or pair.column(1).null_count:
        pair = pair.filter(pc.and_(pc.is_valid(pair.column(0)), pc.is_valid(pair.column(1))))
    grouped = pair.group_by(entity).aggregate([(column, "min"), (column, "max")])
    return grouped.rename_columns(
        {f"{column}_min": f"{prefix}_min", f"{column}_max": f"{prefix}_max"}
    )


def _value_set(values: list[Any], type_: pa.DataType, rule: Mapping[str, Any]) -> pa.Array:
    if pa.types.is_string(type_):
        return pa.array([str(v).lower() if isinstance(v, bool) else str(v) for v in values])
    try:
        return pa.array(values).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise RuleError(
            f"rule {rule_id(rule)}: values {values} are not all of the column's type {type_}"
        ) from error


def _one(low: Any, high: Any) -> Any:
    return _json(low) if low == high else [_json(low), _json(high)]


def _nice_ceil(value: float) -> float | int:
    """Round up to two significant digits: 48712.3 -> 49000, 0.734 -> 0.74."""
    if value <= 0:
        return 0
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    rounded = math.ceil(value / scale) * scale
    return int(rounded) if scale >= 1 else round(rounded, 10)


def _json(value: Any) -> Any:
    """A JSON-safe value: timestamps as ISO 8601, NaN and infinities as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, np.generic):
        return _json(value.item())
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    return str(_json(value))
