"""Scheduled model monitoring (MDLC stage 7): closed- and open-loop metrics for one day.

Event: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday, UTC). Optional keys:
``closed_loop_lag_days`` (evaluate accuracy on the predictions of that many
days before ``date``, whose labels have had time to arrive) and
``baseline`` (``s3://bucket/key`` or a key; a key ending in ``/`` is a
prefix of files).

Environment:
    PREDICTIONS_BUCKET   predictions under ``predictions/<model>/dt=YYYY-MM-DD/``
    LABELS_BUCKET        default PREDICTIONS_BUCKET
    LABELS_PREFIX        default ``labels/<model>/``; labels under ``<prefix>dt=<event date>/``
    BASELINE_BUCKET      default PREDICTIONS_BUCKET
    BASELINE_KEY         used when the event names no baseline
    REPORT_BUCKET        default PREDICTIONS_BUCKET; report at
                         ``monitoring/<model>/dt=<date>/report.json``
    METRICS_NAMESPACE    default ``MDLC``
    CLOSED_LOOP_LAG_DAYS default 0

Metrics (dimensions Model, ModelVersion; ModelVersion ``all`` aggregates every
version and is what alarms watch): Predictions, Precision, Recall, F1, AUC,
LabelCoverage, UnmatchedLabels (ModelVersion ``all`` only), ScorePSI, KSPValue,
FeaturePSI and FeatureKSPValue (+ Feature), ActionShare (+ Action). A metric that
is undefined for the day (None) is not published; alarms treat it as missing.

The whole day is computed in memory with numpy (``mdlc_core.monitoring``);
past the Lambda's memory the same module runs in a SageMaker Processing job.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pyarrow as pa
from aws_lambda_powertools import Logger
from mdlc_core import monitoring
from mdlc_core.runtime_config import load_config

logger = Logger(service="model_monitor")

s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")

# put_metric_data takes up to 1000 values per call; smaller batches keep each
# request far below the 1 MB payload limit.
_BATCH = 200


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event or {}
    config = load_config()
    model = config["name"]
    spec = config.get("monitoring", {})
    day = _day(event.get("date"))
    lag = int(event.get("closed_loop_lag_days", os.environ.get("CLOSED_LOOP_LAG_DAYS", 0)))
    closed_day = day - timedelta(days=lag)
    predictions_bucket = os.environ["PREDICTIONS_BUCKET"]
    features = _feature_columns(config)

    today = _predictions(predictions_bucket, model, day, features)
    baseline = _baseline(event.get("baseline"), predictions_bucket)
    report: dict[str, Any] = {
        "model": model,
        "date": day.isoformat(),
        "closed_loop_date": closed_day.isoformat(),
        "predictions": len(today),
    }
    report["open_loop"] = monitoring.open_loop(
        today, baseline, int(spec.get("open_loop", {}).get("bins", 10)), features
    )
    closed_predictions = (
        today if lag == 0 else _predictions(predictions_bucket, model, closed_day, features)
    )
    labels = _labels(model, closed_day, predictions_bucket)
    threshold = float(spec.get("closed_loop", {}).get("decision_threshold", 0.5))
    report["closed_loop"] = monitoring.closed_loop(closed_predictions, labels, threshold)
    alarms = monitoring.evaluate_alarms(report, spec)
    report["alarms"] = alarms

    published = _publish(model, report)
    report_key = f"monitoring/{model}/dt={day.isoformat()}/report.json"
    report_bucket = os.environ.get("REPORT_BUCKET", predictions_bucket)
    s3.put_object(
        Bucket=report_bucket,
        Key=report_key,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    summary = {
        "model": model,
        "date": day.isoformat(),
        "closed_loop_date": closed_day.isoformat(),
        "predictions": len(today),
        "labels": report["closed_loop"]["labels"],
        "unmatched_labels": report["closed_loop"]["unmatched_labels"],
        "metrics_published": published,
        "report": f"s3://{report_bucket}/{report_key}",
        "alarms": [a["message"] for a in alarms],
        "status": "ALARM" if alarms else ("NO_DATA" if not len(today) else "OK"),
    }
    logger.info("monitoring done", extra=summary)
    return summary


def _day(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"event 'date' must be YYYY-MM-DD, got {value!r}") from error


def _feature_columns(config: dict[str, Any]) -> list[str]:
    # The same rule as ModelSpec.feature_columns, on the JSON form of the spec.
    data = config.get("data", {})
    roles = {data.get(k) for k in ("entity_key", "event_id", "timestamp", "label")}
    raw = [
        c["name"]
        for c in data.get("columns", [])
        if c["name"] not in roles and c.get("type") != "string"
    ]
    features = config.get("features", {})
    derived = [f["name"] for f in features.get("aggregates", [])]
    derived += [f["name"] for f in features.get("expressions", [])]
    return raw + derived


def _read_prefix(bucket: str, prefix: str) -> list[Any]:
    tables = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            name = key.rsplit("/", 1)[-1]
            # Writers leave markers (_SUCCESS), manifests (.json) and folders.
            if not item["Size"] or name.startswith(("_", ".")) or key.endswith(".json"):
                continue
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            tables.append(monitoring.read_table_bytes(body, f"s3://{bucket}/{key}"))
    return tables


def _predictions(bucket: str, model: str, day: date, features: list[str]) -> Any:
    prefix = f"predictions/{model}/dt={day.isoformat()}/"
    tables = _read_prefix(bucket, prefix)
    if not tables:
        logger.warning("no predictions", extra={"bucket": bucket, "prefix": prefix})
        empty = pa.table({c: pa.array([], pa.string()) for c in monitoring.PREDICTION_COLUMNS})
        return monitoring.Predictions.from_table(empty)
    table = monitoring.concat_tables(tables, f"s3://{bucket}/{prefix}")
    return monitoring.Predictions.from_table(table, features, what=f"s3://{bucket}/{prefix}")


def _labels(model: str, day: date, default_bucket: str) -> monitoring.Labels | None:
    bucket = os.environ.get("LABELS_BUCKET", default_bucket)
    prefix = os.environ.get("LABELS_PREFIX", f"labels/{model}/")
    prefix = f"{prefix.rstrip('/')}/dt={day.isoformat()}/"
    tables = _read_prefix(bucket, prefix)
    if not tables:
        return None
    table = monitoring.concat_tables(tables, f"s3://{bucket}/{prefix}")
    return monitoring.Labels.from_table(table, what=f"s3://{bucket}/{prefix}")


def _baseline(location: str | None, default_bucket: str) -> Any:
    location = location or os.environ.get("BASELINE_KEY")
    if not location:
        return None
    bucket = os.environ.get("BASELINE_BUCKET", default_bucket)
    key = location
    if location.startswith("s3://"):
        bucket, _, key = location[5:].partition("/")
    if key.endswith("/"):
        tables = _read_prefix(bucket, key)
        if not tables:
            # A model's first days come before any baseline exists: the
            # closed loop and action shares still run; drift is not compared.
            logger.warning("no baseline files; drift is not compared",
                           extra={"baseline": f"s3://{bucket}/{key}"})
            return None
        return monitoring.concat_tables(tables, f"s3://{bucket}/{key}")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return monitoring.read_table_bytes(body, f"s3://{bucket}/{key}")


def metric_data(model: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The CloudWatch datums for a report; None values are left out."""
    data: list[dict[str, Any]] = []

    def add(name: str, value: Any, version: str, unit: str = "None", **extra: str) -> None:
        if value is None:
            return
        dimensions = [{"Name": "Model", "Value": model}, {"Name": "ModelVersion", "Value": version}]
        dimensions += [{"Name": k, "Value": v} for k, v in extra.items()]
        data.append(
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}
        )

    closed = report.get("closed_loop")
    if closed:
        for group in closed["by_version"]:
            version = group["model_version"]
            add("Precision", group["precision"], version)
            add("Recall", group["recall"], version)
            add("F1", group["f1"], version)
            add("AUC", group["auc"], version)
            add("LabelCoverage", group["label_coverage"], version)
        add("UnmatchedLabels", closed["unmatched_labels"], monitoring.ALL_VERSIONS, "Count")
    opened = report.get("open_loop")
    if opened:
        for group in opened["by_version"]:
            version = group["model_version"]
            add("Predictions", group["rows"], version, "Count")
            if group["score"]:
                add("ScorePSI", group["score"]["psi"], version)
                add("KSPValue", group["score"]["ks_pvalue"], version)
            for feature, drift in group["features"].items():
                add("FeaturePSI", drift["psi"], version, Feature=feature)
                add("FeatureKSPValue", drift["ks_pvalue"], version, Feature=feature)
            for action, share in group["actions"].items():
                add("ActionShare", share, version, Action=action)
    return data


def _publish(model: str, report: dict[str, Any]) -> int:
    namespace = os.environ.get("METRICS_NAMESPACE", "MDLC")
    data = metric_data(model, report)
    for start in range(0, len(data), _BATCH):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + _BATCH])
    return len(data)
