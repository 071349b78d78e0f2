"""Data quality check of one dated snapshot: S3 in, report and metrics out.

The S3 and CloudWatch side of stage 2 for the scale-out runner
(``processing_job --kind quality``), written to behave exactly like the
``quality_check`` Lambda handler: the same snapshot files (data objects only,
not manifests, markers or later versions ``v=N/``), the same previous
snapshot for the consistency rules (the newest one in the
:data:`LOOKBACK_DAYS` before the date that passed its own check, found by
its report: :func:`latest_passed_before`), the same report at
``quality-reports/<model>/dt=<date>/report.json`` and the same
``QualityViolations`` metrics. ``tests/test_processing.py`` runs both on the
same snapshot and compares.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from . import quality, tabular

logger = logging.getLogger("mdlc.quality_job")

METRIC_NAME = "QualityViolations"
#: Reports are ``<REPORT_PREFIX>/<model>/dt=<date>/report.json`` in the report bucket.
REPORT_PREFIX = "quality-reports"
#: How far back the previous snapshot is looked for (as the Lambda runner).
LOOKBACK_DAYS = 31
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
) -> dict[str, Any]:
    """Check the snapshot under ``snapshot_prefix`` of ``day``; returns
    ``{"passed", "violations", "rows", "failed_rules", "report_uri"}``.

    ``previous_prefix`` is the snapshot the consistency rules compare with:
    ``"latest"`` (the newest of the LOOKBACK_DAYS before ``day`` that passed
    quality, :func:`latest_passed_before`), a prefix (``previous_date``
    defaults to the day before), or None (no comparison).
    """
    model = config["name"]
    columns = config["data"]["columns"]
    if previous_prefix == "latest":
        found = latest_passed_before(s3, bucket, report_bucket, model, day)
        previous_prefix, previous_date = (
            (found[0], date.fromisoformat(found[1])) if found else (None, None)
        )
    elif previous_prefix and previous_date is None:
        previous_date = day - timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="mdlc-quality-", dir=scratch) as folder:
        table = tabular.read_table(download(s3, bucket, snapshot_prefix, Path(folder, "current")),
                                   columns)
        previous = None
        if previous_prefix:
            previous = tabular.read_table(
                download(s3, bucket, previous_prefix, Path(folder, "previous")), columns
            )
    report = quality.check(
        table, config, snapshot_date=day, previous=previous, previous_date=previous_date,
        source=f"s3://{bucket}/{snapshot_prefix}",
        previous_source=f"s3://{bucket}/{previous_prefix}" if previous_prefix else None,
    )
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
    return f"{REPORT_PREFIX}/{model}/dt={day.isoformat()}/report.json"


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


def download(s3: Any, bucket: str, prefix: str, into: Path) -> Path:
    """Copy the snapshot's data objects (not manifests or markers) to ``into``."""
    into.mkdir(parents=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):].lstrip("/")
            parts = relative.split("/")
            # Later versions of the same day live in v=N/ below this prefix;
            # they are other snapshots, not part of this one.
            if not relative or relative.endswith("/") or any(
                part.startswith(("_", ".", "v=")) or part == ".." for part in parts
            ):
                continue
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
            count += 1
    if not count:
        raise tabular.DataError(f"s3://{bucket}/{prefix}: no data objects under this prefix")
    logger.info("downloaded %d objects of s3://%s/%s", count, bucket, prefix)
    return into


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
