"""``mdlc quality SPEC DATA``: check a dataset against the spec's quality rules.

DATA is a CSV or Parquet file or a snapshot folder (``dt=YYYY-MM-DD/``),
with the spec's columns (a header of their names for CSV). The snapshot's
date, which the freshness rules compare with, is --date, else the dt= in
DATA's path, else today (UTC): give --date for older data.
The engine is --engine, else the spec's quality.engine: duckdb (the rules
compiled to SQL, on DuckDB in process) or spark (the same SQL on PySpark in
local mode, which needs pyspark and a Java runtime); both give the same
report.
Prints one line per rule, writes the JSON report with ``--report``, and
exits 0 when every rule passes, 1 on any violation, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from mdlc_core import spark_job, tabular
from mdlc_core.quality_job import ENGINES
from mdlc_core.sql import quality as sql_quality

from mdlc_constructs.spec import ModelSpec, SpecError, load_spec

from . import EXIT_OK, EXIT_VIOLATIONS, UsageError
from .spark_session import local_spark

_LABELS = {"pass": "PASS", "fail": "FAIL", "skipped": "SKIP"}
_SNAPSHOT_DATE = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quality",
        help="check a dataset against the spec's data quality rules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument("data", metavar="DATA", help="CSV or Parquet file, or a snapshot folder")
    parser.add_argument(
        "--previous",
        metavar="DATA",
        help="the earlier snapshot the consistency rules compare with (skipped without it)",
    )
    parser.add_argument("--report", metavar="FILE", help="write the JSON report here")
    parser.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        type=_parse_date,
        help="the snapshot's date; default: the dt= in DATA's path, else today (UTC)",
    )
    parser.add_argument(
        "--previous-date",
        metavar="YYYY-MM-DD",
        type=_parse_date,
        help="the previous snapshot's date; default: the dt= in its path, else the day before",
    )
    parser.add_argument(
        "--engine",
        choices=(*ENGINES, "spark"),
        help="duckdb (SQL on DuckDB, Parquet scanned from disk) or spark (the same SQL "
        "on local PySpark, as the Spark runner runs it); default: the spec's quality.engine",
    )
    parser.add_argument(
        "--memory-limit",
        metavar="SIZE",
        default=sql_quality.DEFAULT_MEMORY_LIMIT,
        help="DuckDB's memory limit, past which it spills to a temporary folder "
        f"(e.g. 512MB, 4GB); default {sql_quality.DEFAULT_MEMORY_LIMIT}",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec_or_fail(args.spec)
    config = spec.as_config()
    engine = args.engine or spec.quality.engine
    dated = args.date or snapshot_date_of(args.data)
    snapshot_date = dated or datetime.now(UTC).date()
    previous_date = None
    if args.previous:
        previous_date = (
            args.previous_date
            or snapshot_date_of(args.previous)
            or snapshot_date - timedelta(days=1)
        )
    # What every engine is told about the days and where they came from.
    days = {"snapshot_date": snapshot_date, "previous_date": previous_date,
            "source": str(args.data),
            "previous_source": str(args.previous) if args.previous else None}
    try:
        if engine == "spark":
            report = spark_job.check(local_spark("mdlc-quality"), config, args.data,
                                     args.previous, **days)
        else:
            # DuckDB scans typed Parquet itself and reads the rest through the
            # same reader; a bad file is the same DataError either way.
            report = sql_quality.check(
                config,
                args.data,
                args.previous,
                **days,
                memory_limit=args.memory_limit,
            )
    except tabular.DataError as error:
        raise UsageError(str(error)) from error
    except ValueError as error:  # DuckDB refused its configuration (--memory-limit)
        raise UsageError(str(error)) from error
    if args.report:
        write_report(report, args.report)
    print(format_report(report))
    stale = [r["id"] for r in report["rules"] if r["kind"] == "freshness" and r["status"] == "fail"]
    if stale and dated is None:
        print(
            f"mdlc quality: {', '.join(stale)} compared the data with today ({snapshot_date}, "
            "UTC): DATA's path has no dt=YYYY-MM-DD folder and no --date was given; for "
            "older data pass the day it is of, e.g. --date "
            f"{_newest_day(report, stale[0]) or 'YYYY-MM-DD'}",
            file=sys.stderr,
        )
    return EXIT_OK if report["summary"]["passed"] else EXIT_VIOLATIONS


def _newest_day(report: dict[str, Any], rule_id: str) -> str | None:
    """The day of the newest timestamp a freshness rule saw, for the hint."""
    rule = next(r for r in report["rules"] if r["id"] == rule_id)
    newest = (rule.get("observed") or {}).get("newest")
    return str(newest)[:10] if isinstance(newest, str) and len(newest) >= 10 else None


def format_report(report: dict[str, Any]) -> str:
    """The report as the readable summary ``mdlc quality`` prints."""
    summary = report["summary"]
    lines = [
        f"{report['model']}: {summary['rows']} rows from {report['source']} "
        f"(snapshot {report['snapshot_date']}"
        + (f", previous {report['previous_date']}" if report["previous_date"] else "")
        + f"), {summary['rules']} rules"
    ]
    width = max((len(rule["id"]) for rule in report["rules"]), default=0)
    for rule in report["rules"]:
        line = f"{_LABELS[rule['status']]}  {rule['id']:<{width}}  {rule['message']}"
        if rule["status"] == "fail" and rule["sample"]:
            line += f"\n      e.g. {_sample_text(rule['sample'][:3])}"
        lines.append(line)
    if summary["passed"]:
        lines.append(
            f"PASSED: {summary['rules'] - summary['skipped']} rules passed"
            + (f", {summary['skipped']} skipped" if summary["skipped"] else "")
        )
    else:
        lines.append(
            f"FAILED: {summary['failed']} of {summary['rules']} rules, "
            f"{summary['violations']} violation(s)"
        )
    return "\n".join(lines)


def load_spec_or_fail(path: str) -> ModelSpec:
    try:
        return load_spec(path)
    except SpecError as error:
        raise UsageError("\n".join(error.problems) or str(error)) from error


def read_or_fail(path: str, spec: ModelSpec) -> Any:
    try:
        return tabular.read_table(path, spec.data.columns)
    except tabular.DataError as error:
        raise UsageError(str(error)) from error


def snapshot_date_of(path: str | Path) -> date | None:
    """The date in a ``dt=YYYY-MM-DD`` folder of ``path``, if there is one."""
    match = _SNAPSHOT_DATE.search(Path(path).as_posix())
    return _parse_date(match.group(1)) if match else None


def write_report(report: dict[str, Any], path: str) -> None:
    try:
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write the report to {path}: {error.strerror}") from error


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from error


def _sample_text(sample: list[dict[str, Any]]) -> str:
    return "; ".join(
        ", ".join(f"{key}={value}" for key, value in entry.items() if key != "row")
        for entry in sample
    )
