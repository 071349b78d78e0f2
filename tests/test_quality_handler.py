"""The quality_check handler against moto S3 and CloudWatch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from mdlc_core import sourcing, tabular
from moto import mock_aws

from tests.lambda_loader import load_handler

from .test_quality_engine import SPEC, orders_csv

DATA = "data-bucket"
RAW = "raw-bucket"
REPORTS = "report-bucket"
NAMESPACE = "MDLC/Quality"
CONTEXT = SimpleNamespace(
    function_name="quality_check", memory_limit_in_mb=1024, aws_request_id="req-1",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:quality_check",
)


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(SPEC))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("REPORT_BUCKET", REPORTS)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=DATA)
        s3.create_bucket(Bucket=REPORTS)
        s3.create_bucket(Bucket=RAW)
        yield s3
    load_config.cache_clear()


@pytest.fixture
def handler(aws: Any) -> ModuleType:
    return load_handler("quality_check")


def put_snapshot(s3: Any, day: str, text: str) -> str:
    """The day's snapshot of ``text`` as data sourcing builds it (an unversioned
    datasets bucket here: readers then go by the manifest's SHA-256 alone)."""
    from tests import producers

    made = producers.snapshot(s3, SPEC, date.fromisoformat(day), text.encode(),
                              raw=RAW, datasets=DATA)
    return made["snapshot_prefix"]


def metric_values(rule: str) -> list[float]:
    cloudwatch = boto3.client("cloudwatch")
    dimensions = [{"Name": "Model", "Value": "fraud"}, {"Name": "Rule", "Value": rule}]
    result = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="QualityViolations", Dimensions=dimensions,
        StartTime="2000-01-01T00:00:00Z", EndTime="2100-01-01T00:00:00Z",
        Period=86400, Statistics=["Sum"],
    )
    return [point["Sum"] for point in result["Datapoints"]]


def sent_totals(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the model-wide totals the handler sends (still passing them to moto).

    moto matches a dimension subset where CloudWatch matches the exact set, so
    the total cannot be read back apart from the per-rule values.
    """
    totals: list[float] = []
    original = handler.cloudwatch.put_metric_data

    def spy(**kwargs: Any) -> Any:
        totals.extend(d["Value"] for d in kwargs["MetricData"] if len(d["Dimensions"]) == 1)
        return original(**kwargs)

    monkeypatch.setattr(handler.cloudwatch, "put_metric_data", spy)
    return totals


def test_clean_snapshot_passes_writes_report_and_zero_metrics(
    aws: Any, handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    totals = sent_totals(handler, monkeypatch)
    prefix = put_snapshot(aws, "2026-11-01", orders_csv())
    previous = put_snapshot(aws, "2026-10-31", orders_csv(day=date(2026, 10, 31), tenure=99))
    result = handler.handler(
        {"bucket": DATA, "snapshot_prefix": prefix, "previous_prefix": previous}, CONTEXT
    )
    key = "quality-reports/fraud/dt=2026-11-01/report.json"
    assert result == {"passed": True, "violations": 0, "rows": 6, "failed_rules": [],
                      "report_uri": f"s3://{REPORTS}/{key}"}
    report = json.loads(aws.get_object(Bucket=REPORTS, Key=key)["Body"].read())
    assert report["source"] == f"s3://{DATA}/{prefix}"
    assert report["previous_date"] == "2026-10-31"
    assert {r["status"] for r in report["rules"]} == {"pass"}
    names = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"]
    rules = {d["Value"] for m in names for d in m["Dimensions"] if d["Name"] == "Rule"}
    assert rules == {r["id"] for r in report["rules"]}
    assert totals == [0.0]


def test_violations_return_passed_false_and_publish_per_rule(
    aws: Any, handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    totals = sent_totals(handler, monkeypatch)
    prefix = put_snapshot(aws, "2026-11-02", orders_csv(
        [("o1", "c1", "2026-11-02T10:00:00Z", -5, 54, 0),
         ("o2", "c2", "2026-11-02T11:00:00Z", 10, 101, 3)]))
    previous = put_snapshot(aws, "2026-11-01", orders_csv(
        [("p1", "c1", "2026-11-01T10:00:00Z", 5, 364, 0),
         ("p2", "c2", "2026-11-01T11:00:00Z", 10, 100, 0)]))
    result = handler.handler(
        {"bucket": DATA, "snapshot_prefix": prefix, "date": "2026-11-02",
         "previous_prefix": previous}, CONTEXT,
    )
    assert result["passed"] is False and result["violations"] == 3
    assert sorted(result["failed_rules"]) == [
        "allowed_values_fraud_status", "range_order_amount", "tenure_grows_daily",
    ]
    bucket, key = result["report_uri"].removeprefix("s3://").split("/", 1)
    report = json.loads(aws.get_object(Bucket=bucket, Key=key)["Body"].read())
    tenure = next(r for r in report["rules"] if r["id"] == "tenure_grows_daily")
    assert tenure["sample"] == [
        {"customer_id": "c1", "previous": 364, "current": 54, "expected": 365}
    ]
    assert metric_values("tenure_grows_daily") == [1.0]
    assert metric_values("range_order_amount") == [1.0]
    assert metric_values("unique_order_id") == [0.0]
    assert totals == [3.0]


def test_first_snapshot_without_previous_skips_consistency(aws: Any, handler: ModuleType) -> None:
    prefix = put_snapshot(aws, "2026-11-01", orders_csv())
    result = handler.handler({"bucket": DATA, "snapshot_prefix": prefix}, CONTEXT)
    assert result["passed"] is True


def test_unusable_input_raises_and_writes_no_report(aws: Any, handler: ModuleType) -> None:
    prefix = put_snapshot(aws, "2026-11-01", "order_id,customer_id\no1,c1\n")
    part = f"s3://{DATA}/{prefix}orders/part-0000.csv"
    with pytest.raises(tabular.DataError, match=f"^{part}: missing column"):
        handler.handler({"bucket": DATA, "snapshot_prefix": prefix}, CONTEXT)
    # Objects without a committed manifest are not a snapshot, whatever they hold.
    empty = "datasets/fraud/dt=2026-01-01/"
    aws.put_object(Bucket=DATA, Key=f"{empty}orders/part-0000.csv", Body=b"order_id\no1\n")
    with pytest.raises(sourcing.SnapshotError, match="no committed snapshot"):
        handler.handler({"bucket": DATA, "snapshot_prefix": empty}, CONTEXT)
    assert aws.list_objects_v2(Bucket=REPORTS).get("KeyCount") == 0


def test_malformed_event_raises(aws: Any, handler: ModuleType) -> None:
    with pytest.raises(ValueError, match="'snapshot_prefix'"):
        handler.handler({"bucket": DATA}, CONTEXT)
    with pytest.raises(ValueError, match="no 'date'"):
        handler.handler({"bucket": DATA, "snapshot_prefix": "datasets/fraud/latest/"}, CONTEXT)


def _snapshot(aws: Any, day: str, rows: list[tuple[Any, ...]]) -> str:
    """The day's snapshot as data sourcing builds it (source drop, copy, manifest)."""
    from tests import producers

    made = producers.snapshot(aws, SPEC, date.fromisoformat(day), orders_csv(rows).encode(),
                              raw=RAW, datasets=DATA)
    return made["snapshot_prefix"]


def _check(handler: ModuleType, aws: Any, day: str, rows: list[tuple[Any, ...]]) -> dict:
    """Snapshot ``rows`` for ``day`` and run the workflow's check on it ("latest");
    returns the result and the report it wrote."""
    prefix = _snapshot(aws, day, rows)
    result = handler.handler(
        {"bucket": DATA, "snapshot_prefix": prefix, "previous_prefix": "latest"}, CONTEXT
    )
    key = result["report_uri"].split("/", 3)[3]
    return {**result, "prefix": prefix,
            "report": json.loads(aws.get_object(Bucket=REPORTS, Key=key)["Body"].read())}


def _tenure(report: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in report["rules"] if r["id"] == "tenure_grows_daily")


def test_latest_compares_with_the_newest_earlier_snapshot_across_a_gap(
    aws: Any, handler: ModuleType
) -> None:
    # The workflow asks for "latest": the snapshot three days earlier is found
    # (days without snapshots, or with one never checked, are skipped), and
    # tenure must have grown by 3.
    earlier = _check(handler, aws, "2026-10-29", [("p1", "c1", "2026-10-29T10:00:00Z", 5, 364, 0)])
    assert earlier["passed"] is True
    # A snapshot that was never checked is not a previous snapshot.
    _snapshot(aws, "2026-10-31", [("q1", "c1", "2026-10-31T10:00:00Z", 5, 1, 0)])
    prefix = _snapshot(aws, "2026-11-01", [("o1", "c1", "2026-11-01T10:00:00Z", 5, 367, 0)])
    # A later version of the same day is another snapshot, not part of this one.
    aws.put_object(Bucket=DATA, Key=f"{prefix}v=2/part-0000.csv", Body=b"not,a,snapshot\n")
    result = handler.handler(
        {"bucket": DATA, "snapshot_prefix": prefix, "previous_prefix": "latest"}, CONTEXT
    )
    report = json.loads(
        aws.get_object(Bucket=REPORTS, Key=result["report_uri"].split("/", 3)[3])["Body"].read()
    )
    assert report["previous_source"] == f"s3://{DATA}/{earlier['prefix']}"
    assert report["previous_date"] == "2026-10-29"
    assert _tenure(report)["status"] == "pass"


def test_latest_skips_a_snapshot_that_failed_quality(aws: Any, handler: ModuleType) -> None:
    """Three consecutive days, each checked as the workflow checks it: tenure
    364, 54, 366. The middle day fails; the third is compared with the first
    (the newest that passed), grows by 2 in 2 days and passes, where comparing
    with the failed day would have failed good data."""
    first = _check(handler, aws, "2026-11-01", [("o1", "c1", "2026-11-01T10:00:00Z", 5, 364, 0)])
    middle = _check(handler, aws, "2026-11-02", [("o2", "c1", "2026-11-02T10:00:00Z", 5, 54, 0)])
    third = _check(handler, aws, "2026-11-03", [("o3", "c1", "2026-11-03T10:00:00Z", 5, 366, 0)])

    assert first["passed"] is True and _tenure(first["report"])["status"] == "skipped"
    assert middle["passed"] is False and middle["failed_rules"] == ["tenure_grows_daily"]
    assert middle["report"]["previous_source"] == f"s3://{DATA}/{first['prefix']}"
    assert third["report"]["previous_source"] == f"s3://{DATA}/{first['prefix']}"
    assert third["report"]["previous_date"] == "2026-11-01"
    assert _tenure(third["report"])["status"] == "pass"
    assert third["passed"] is True
