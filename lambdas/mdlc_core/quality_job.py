"""Data quality check of one dated snapshot: S3 in, report and metrics out.

The S3 and CloudWatch side of stage 2 for the scale-out runner
(``processing_job --kind quality``), written to behave exactly like the
``quality_check`` Lambda handler: the same snapshot files (exactly the
objects its committed manifest lists, at the versions it names, checked
against their SHA-256: never whatever else lies under the prefix, such as
the leftovers of an attempt that failed), the same previous
snapshot for the consistency rules (the newest one in the
:data:`LOOKBACK_DAYS` before the date that passed its own check, found by
its report: :func:`latest_passed_before`), the same report at
``quality-reports/<model>/dt=<date>/report.json`` and the same
``QualityViolations`` metrics. ``tests/test_processing.py`` runs both on the
same snapshot and compares.

The engine is DuckDB (``quality.engine: duckdb``, the only one since the
pyarrow engine was retired): the rules compiled to SQL
(:mod:`mdlc_core.sql.quality`). Parquet objects that store the declared
types stay on disk for DuckDB to scan, so memory is DuckDB's limit (from the
runner's memory, :func:`~mdlc_core.sql.quality.memory_limit_for`) and it
spills next to them, within the runner's disk
(:func:`~mdlc_core.sql.quality.temp_size_for`); anything else is read by the
shared reader (:func:`snapshot_relation`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from . import tabular
from .layout import Layout
from .sourcing import committed_manifest, download_snapshot_object, object_format

logger = logging.getLogger("mdlc.quality_job")

METRIC_NAME = "QualityViolations"
#: Reports are ``<REPORT_PREFIX>/<model>/dt=<date>/report.json`` in the report bucket.
REPORT_PREFIX = "quality-reports"
#: How far back the previous snapshot is looked for (as the Lambda runner).
LOOKBACK_DAYS = 31
#: ``quality.engine`` values; a config without one (synthesized before there
#: was a choice) gets the default.
ENGINES = ("duckdb",)
DEFAULT_ENGINE = "duckdb"
_BATCH = 200


def run(
    config: Mapping[str, Any],
    day: date,
    *,
    s3: Any,
    cloudwatch: Any,
    bucket: str,
    snapshot_prefix: str,
    report_bucket: str,
    namespace: str,
    scratch: str | Path | None = None,
    previous_prefix: str | None = "latest",
    previous_date: date | None = None,
    engine: str | None = None,
    memory_mb: int | None = None,
    storage_mb: int | None = None,
) -> dict[str, Any]:
    """Check the snapshot under ``snapshot_prefix`` of ``day``; returns
    ``{"passed", "violations", "rows", "failed_rules", "report_uri"}``.

    ``previous_prefix`` is the snapshot the consistency rules compare with:
    ``"latest"`` (the newest of the LOOKBACK_DAYS before ``day`` that passed
    quality, :func:`latest_passed_before`), a prefix (``previous_date``
    defaults to the day before), or None (no comparison).

    ``engine`` overrides ``quality.engine``. ``memory_mb`` and ``storage_mb``:
    the runner's memory and the disk under ``scratch`` (default: the
    system's temporary folder), which bound DuckDB's memory limit and spill;
    without them DuckDB gets its default limit and 90% of the free disk.
    """
    model = config["name"]
    engine = engine or config["quality"].get("engine") or DEFAULT_ENGINE
    if engine not in ENGINES:
        # A configuration synthesized for the retired pyarrow engine: the spec
        # now refuses it, so only an old deployed function can carry one.
        raise ValueError(f"quality.engine must be one of {ENGINES}, got {engine!r}: the "
                         "embedded (pyarrow) engine was retired; synthesize and deploy the "
                         "stack again with quality.engine removed or set to duckdb")
    if previous_prefix == "latest":
        found = latest_passed_before(s3, bucket, report_bucket, model, day)
        previous_prefix, previous_date = (
            (found[0], date.fromisoformat(found[1])) if found else (None, None)
        )
    elif previous_prefix and previous_date is None:
        previous_date = day - timedelta(days=1)
    source = f"s3://{bucket}/{snapshot_prefix}"
    previous_source = f"s3://{bucket}/{previous_prefix}" if previous_prefix else None
    with tempfile.TemporaryDirectory(prefix="mdlc-quality-", dir=scratch) as folder:
        report = _check_sql(config, day, s3, bucket, snapshot_prefix, previous_prefix,
                            previous_date, Path(folder), source, previous_source,
                            memory_mb, storage_mb)
    report_key = report_key_of(model, day)
    s3.put_object(
        Bucket=report_bucket, Key=report_key, ContentType="application/json",
        Body=json.dumps(report, indent=2).encode("utf-8"),
    )
    publish(cloudwatch, namespace, model, report)
    summary = report["summary"]
    failed = [rule["id"] for rule in report["rules"] if rule["status"] == "fail"]
    logger.info("quality check finished: passed=%s violations=%s failed=%s rows=%s",
                summary["passed"], summary["violations"], failed, summary["rows"])
    return {
        "passed": summary["passed"],
        "violations": summary["violations"],
        "rows": summary["rows"],
        "failed_rules": failed,
        "report_uri": f"s3://{report_bucket}/{report_key}",
    }


def report_key_of(model: str, day: date) -> str:
    """Where the check of ``day``'s snapshot writes its report (in the report bucket)."""
    return Layout(model).quality_report(day.isoformat())


def read_report(s3: Any, report_bucket: str, model: str, day: date) -> dict[str, Any] | None:
    """The report of ``day``'s check, or None when that day was never checked."""
    try:
        body = s3.get_object(Bucket=report_bucket, Key=report_key_of(model, day))["Body"].read()
    except Exception as error:
        code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(body)


def latest_passed_before(
    s3: Any, bucket: str, report_bucket: str, model: str, day: date
) -> tuple[str, str] | None:
    """The newest snapshot in the LOOKBACK_DAYS before ``day`` that passed its own
    quality check: (prefix, date), or None.

    A day counts by its report: one without a report (never checked, or its
    check could not read it) or whose report failed is skipped, because the
    gate stopped that data; judging today's growth against values already
    found wrong would flag good data, or pass bad data that merely continues
    the bad day. The prefix is the snapshot that report checked (its
    ``source``), so a later, unchecked version of that day is not used in
    its place.
    """
    expected = f"s3://{bucket}/"
    for back in range(1, LOOKBACK_DAYS + 1):
        earlier = day - timedelta(days=back)
        report = read_report(s3, report_bucket, model, earlier)
        if report is None:
            logger.info("no quality report of %s: not a previous snapshot", earlier)
            continue
        if not (report.get("summary") or {}).get("passed"):
            logger.info("the snapshot of %s failed quality: not a previous snapshot", earlier)
            continue
        source = str(report.get("source") or "")
        if not source.startswith(expected):
            logger.warning("the report of %s checked %r, not a snapshot in %s: skipped",
                           earlier, source, bucket)
            continue
        return source[len(expected):], earlier.isoformat()
    return None


def _check_sql(config: Mapping[str, Any], day: date, s3: Any, bucket: str, prefix: str,
               previous_prefix: str | None, previous_date: date | None, folder: Path,
               source: str, previous_source: str | None, memory_mb: int | None,
               storage_mb: int | None) -> dict[str, Any]:
    from .sql import quality as sql_quality

    columns = config["data"]["columns"]
    current = snapshot_relation(s3, bucket, prefix, folder / "current", columns)
    previous = None
    if previous_prefix:
        previous = snapshot_relation(s3, bucket, previous_prefix, folder / "previous", columns)
    relations = [r for r in (current, previous) if r is not None]
    loaded = sum(r.nbytes for r in relations if not isinstance(r, sql_quality.ParquetFiles))
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    limits: dict[str, Any] = {}
    if memory_mb:
        limits["memory_limit"] = sql_quality.memory_limit_for(memory_mb, loaded)
    if storage_mb:
        limits["max_temp_directory_size"] = sql_quality.temp_size_for(storage_mb, on_disk)
    logger.info("DuckDB: %s, spilling to %s; %d bytes of Parquet scanned from disk, %d in "
                "Arrow", limits or "its defaults", folder / "spill", on_disk, loaded)
    (folder / "spill").mkdir()
    return sql_quality.check(config, current, previous, snapshot_date=day,
                             previous_date=previous_date, source=source,
                             previous_source=previous_source,
                             temp_directory=folder / "spill", **limits)


def snapshot_relation(s3: Any, bucket: str, prefix: str, into: Path, columns: Any) -> Any:
    """The snapshot at ``prefix`` for the SQL engine: exactly the objects its
    committed manifest lists, each checked against its SHA-256 and named by its
    ``s3://`` URI in any error. Its Parquet objects are left on disk in
    manifest order (``ParquetFiles``, which DuckDB scans without loading them)
    when every object stores the declared types; else every object is read by
    the shared reader into one typed table, each removed from disk once read.

    Raises ``sourcing.SnapshotError`` when the prefix has no committed manifest
    or an object is not what the manifest recorded, ``tabular.DataError`` when
    an object cannot be read as the spec declares.
    """
    from .sql import quality as sql_quality

    manifest = committed_manifest(s3, bucket, prefix)
    into.mkdir(parents=True)
    kept: list[tuple[Path, str | None, str]] = []
    tables: list[Any] = []
    for index, entry in enumerate(manifest["objects"]):
        name = f"s3://{bucket}/{entry['key']}"
        suffix = "".join(Path(entry["key"]).suffixes[-2:])
        path = download_snapshot_object(s3, bucket, entry, into / f"{index:06d}{suffix}")
        declared = object_format(entry)
        if not tables and sql_quality.parquet_files_of([(path, declared)], columns):
            kept.append((path, declared, name))
            continue
        for earlier, earlier_format, earlier_name in kept:  # the snapshot is read after all
            tables.append(tabular.read_file(earlier, columns, name=earlier_name,
                                            file_format=earlier_format))
            earlier.unlink()
        kept = []
        tables.append(tabular.read_file(path, columns, name=name, file_format=declared))
        path.unlink()
    logger.info("%s %d objects of s3://%s/%s (its manifest)",
                "kept for DuckDB" if kept else "read", len(kept) or len(tables), bucket, prefix)
    if kept:
        files = sql_quality.parquet_files_of([(p, f) for p, f, _ in kept], columns)
        assert files is not None  # each file was scannable on its own
        return files
    return tabular.combine(tables, f"s3://{bucket}/{prefix}")


def metric_data(model: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``QualityViolations`` per rule (Model, Rule) and in total (Model)."""
    timestamp = report["checked_at"]
    data = [
        {
            "MetricName": METRIC_NAME,
            "Dimensions": [
                {"Name": "Model", "Value": model}, {"Name": "Rule", "Value": rule["id"]},
            ],
            "Value": float(rule["violations"]),
            "Unit": "Count",
            "Timestamp": timestamp,
        }
        for rule in report["rules"]
    ]
    data.append({
        "MetricName": METRIC_NAME,
        "Dimensions": [{"Name": "Model", "Value": model}],
        "Value": float(report["summary"]["violations"]),
        "Unit": "Count",
        "Timestamp": timestamp,
    })
    return data


def publish(cloudwatch: Any, namespace: str, model: str, report: Mapping[str, Any]) -> None:
    data = metric_data(model, report)
    for start in range(0, len(data), _BATCH):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + _BATCH])
