"""The data quality report: one definition of what each rule kind reports.

The spec's ``quality.rules`` are evaluated as SQL (:mod:`mdlc_core.sql.rules`
compiles them; :mod:`mdlc_core.sql.quality` runs them on DuckDB in the quality
Lambda, the Processing job, ``mdlc quality`` and the local execution,
:mod:`mdlc_core.spark_job` on Spark). Each engine measures a rule its own way
and hands the measurements to the ``*_result`` functions here, which decide
the verdict and write the expected/observed fields and the message, so every
engine's report is the same by construction. :func:`report` is the envelope
around the rule results (docs/quality.md describes the JSON);
:class:`RuleError` is how every engine refuses a rule that does not fit the
data.

The hand-written pyarrow engine that lived here was retired by issue #18:
its answers are kept as the recorded reports of tests/test_sql_quality.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np

from .tabular import DataError

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


# --- what each rule kind reports ---------------------------------------------------
#
# Every engine (DuckDB and Spark, through ``mdlc_core.sql.rules``) measures a
# rule and hands the measurements to these functions, which are the one
# definition of each kind's verdict, expected/observed fields and message.
# ``sample`` is called only when the rule fails, so an engine fetches
# offending rows only then.

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
        "columns": rule_columns(rule),
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
        observed={"outside": count, "min": json_value(lowest), "max": json_value(highest)},
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
    """``rows`` against the rule's band (``min`` 1 by default, no ``max``)."""
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
        observed={"newest": json_value(newest),
                  "age_hours": None if age is None else round(age, 3)},
        passed=age is not None and age <= max_age, violations=1,
        message=(
            f"newest {name} {json_value(newest)} is {age:.1f} h before {as_of:%Y-%m-%d %H:%M}Z, "
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


# --- helpers ---------------------------------------------------------------------


def require_columns(rule: Mapping[str, Any], columns: Collection[str]) -> None:
    """Raise :class:`RuleError` naming the first column ``rule`` reads that the
    data (its ``columns``) lacks: every engine refuses such a rule in these words."""
    for name in rule_columns(rule):
        if name not in columns:
            raise RuleError(f"rule {rule_id(rule)}: the data has no column {name!r}")


def rule_columns(rule: Mapping[str, Any]) -> list[str]:
    """The columns ``rule`` reads, as its report entry lists them."""
    columns = list(rule.get("columns") or [])
    for field in ("column", "entity"):
        if rule.get(field):
            columns.append(rule[field])
    return columns


def one_or_span(low: Any, high: Any) -> Any:
    """An entity's value in a snapshot: one value, or ``[lowest, highest]`` when it had several."""
    return json_value(low) if low == high else [json_value(low), json_value(high)]


def json_value(value: Any) -> Any:
    """A JSON-safe value: timestamps as ISO 8601, NaN and infinities as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, np.generic):
        return json_value(value.item())
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    return str(json_value(value))
