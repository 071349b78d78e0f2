"""Data quality check of one dated snapshot (MDLC stage 2), a Step Functions task.

Event::

    {"bucket": "...", "snapshot_prefix": "datasets/<model>/dt=YYYY-MM-DD/",
     "date": "YYYY-MM-DD",                                  # default: the dt= in the prefix
     "previous_prefix": "datasets/<model>/dt=YYYY-MM-DD/"}  # optional, for consistency rules

``"previous_prefix": "latest"`` compares with the newest snapshot of the 31
days before ``date`` (none found: the consistency rules are skipped).

Environment:
    REPORT_BUCKET                 report at ``quality-reports/<model>/dt=<date>/report.json``
    POWERTOOLS_METRICS_NAMESPACE  namespace of the ``QualityViolations`` metrics

Returns ``{"passed", "violations", "failed_rules", "report_uri"}`` for the
workflow's Choice state. Violations are a result, not an error: the handler
raises only on unusable input (no data files, missing columns, unreadable
files, a malformed event), which the workflow's catch reports as a failure.

Metrics, via PutMetricData so alarms and the report agree on every run:
``QualityViolations`` per rule (dimensions Model, Rule) and in total
(dimension Model). The engine is ``mdlc_core.quality``, the same code as
``mdlc quality`` and the SageMaker Processing runner.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from mdlc_core import quality, tabular
from mdlc_core.runtime_config import load_config
from mdlc_core.sourcing import latest_manifest

logger = Logger(service="quality_check")
metrics = Metrics()
_F = TypeVar("_F", bound=Callable[..., Any])


def _untraced(function: _F) -> _F:
    return function


try:
    tracer = Tracer()
    capture_handler, capture_method = tracer.capture_lambda_handler, tracer.capture_method
except ModuleNotFoundError:  # pragma: no cover - depends on the environment
    # The managed Powertools layer ships the X-Ray SDK; a test or laptop
    # environment may not, and tracing is not worth failing the check over.
    capture_handler = capture_method = _untraced  # type: ignore[assignment]

s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")

METRIC_NAME = "QualityViolations"
# PutMetricData accepts 1000 values per call; smaller batches stay far below
# the request size limit whatever the rule ids are.
_BATCH = 200
#: How far back "previous_prefix": "latest" looks for an earlier snapshot.
LOOKBACK_DAYS = 31
_DATE_IN_PREFIX = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")


class EventError(ValueError):
    """An event the workflow should never send: a bug upstream, not bad data."""


@logger.inject_lambda_context
@capture_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = load_config()
    model = config["name"]
    bucket = _required(event, "bucket")
    prefix = _required(event, "snapshot_prefix")
    snapshot_date = _date(event.get("date"), prefix, "date")
    previous_prefix = event.get("previous_prefix")
    if previous_prefix == "latest":
        # The workflow asks for the newest earlier snapshot, whatever its date:
        # the consistency rules scale their expectation by the days between.
        found = _latest_before(bucket, model, snapshot_date)
        previous_prefix, previous_date_text = found if found else (None, None)
        event = {**event, "previous_date": previous_date_text}
    previous_date = None
    if previous_prefix:
        previous_date = _date(
            event.get("previous_date"), previous_prefix, "previous_date",
            default=snapshot_date - timedelta(days=1),
        )
    columns = config["data"]["columns"]
    with tempfile.TemporaryDirectory(prefix="mdlc-quality-") as scratch:
        # /tmp outlives one invocation: a temporary folder keeps runs apart
        # and is removed even when reading fails.
        table = tabular.read_table(_download(bucket, prefix, Path(scratch, "current")), columns)
        previous = None
        if previous_prefix:
            folder = _download(bucket, previous_prefix, Path(scratch, "previous"))
            previous = tabular.read_table(folder, columns)
    report = quality.check(
        table, config, snapshot_date=snapshot_date, previous=previous,
        previous_date=previous_date, source=f"s3://{bucket}/{prefix}",
        previous_source=f"s3://{bucket}/{previous_prefix}" if previous_prefix else None,
    )
    report_bucket = os.environ["REPORT_BUCKET"]
    report_key = f"quality-reports/{model}/dt={snapshot_date.isoformat()}/report.json"
    s3.put_object(
        Bucket=report_bucket, Key=report_key, ContentType="application/json",
        Body=json.dumps(report, indent=2).encode("utf-8"),
    )
    _publish(model, report)
    summary = report["summary"]
    metrics.add_metric(name="RowsChecked", unit=MetricUnit.Count, value=summary["rows"])
    failed = [rule["id"] for rule in report["rules"] if rule["status"] == "fail"]
    logger.info(
        "quality check finished",
        extra={"passed": summary["passed"], "violations": summary["violations"],
               "failed_rules": failed, "rows": summary["rows"]},
    )
    return {
        "passed": summary["passed"],
        "violations": summary["violations"],
        "failed_rules": failed,
        "report_uri": f"s3://{report_bucket}/{report_key}",
    }


def _latest_before(bucket: str, model: str, day: date) -> tuple[str, str] | None:
    """The newest snapshot in the LOOKBACK_DAYS before ``day``: (prefix, date)."""
    for back in range(1, LOOKBACK_DAYS + 1):
        earlier = day - timedelta(days=back)
        found = latest_manifest(s3, bucket, model, earlier)
        if found is not None:
            return found[1]["snapshot_prefix"], earlier.isoformat()
    return None


@capture_method
def _download(bucket: str, prefix: str, into: Path) -> Path:
    """Copy the snapshot's data objects (not manifests or markers) to ``into``."""
    into.mkdir(parents=True)
    paginator = s3.get_paginator("list_objects_v2")
    count = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
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
    logger.info("downloaded snapshot", extra={"prefix": prefix, "objects": count})
    return into


def _publish(model: str, report: dict[str, Any]) -> None:
    namespace = os.environ["POWERTOOLS_METRICS_NAMESPACE"]
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
    for start in range(0, len(data), _BATCH):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start:start + _BATCH])


def _required(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"the event needs {key!r} (a non-empty string), got {value!r}")
    return value


def _date(value: Any, prefix: str, key: str, default: date | None = None) -> date:
    if value is None:
        match = _DATE_IN_PREFIX.search(prefix)
        if match:
            value = match.group(1)
        elif default is not None:
            return default
        else:
            raise EventError(f"no {key!r} in the event and no dt=YYYY-MM-DD in {prefix!r}")
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise EventError(f"{key!r} must be YYYY-MM-DD, got {value!r}") from error
