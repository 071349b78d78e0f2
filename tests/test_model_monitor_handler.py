"""The model_monitor handler against moto S3 and CloudWatch."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from mdlc_constructs.spec import load_spec
from tests.lambda_loader import load_handler

BUCKET = "predictions-bucket"
LABELS = "labels-bucket"
DAY = "2024-05-01"
SCORED = f"predictions/fraud/dt={DAY}/scored/"


@pytest.fixture
def env(tmp_path, monkeypatch):
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec("models/fraud.yaml").as_config()))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("PREDICTIONS_BUCKET", BUCKET)
    monkeypatch.setenv("LABELS_BUCKET", LABELS)
    monkeypatch.setenv("LABELS_PREFIX", "truth/fraud/")
    monkeypatch.setenv("BASELINE_KEY", "snapshots/fraud/dt=2024-04-01/")
    monkeypatch.delenv("METRICS_NAMESPACE", raising=False)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=LABELS)
        yield s3
    load_config.cache_clear()


def put_csv(s3, bucket, key, rows, header):
    body = "\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())


def put_parquet(s3, bucket, key, table):
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def seed(s3, n=200, shift=0.0):
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=n)
    amounts = rng.gamma(2, 50, size=n) + shift
    versions = ["v1" if i % 2 else "v2" for i in range(n)]
    actions = ["block" if s >= 0.9 else "review" if s >= 0.6 else "approve" for s in scores]
    header = ["event_id", "score", "prediction_ts", "model_version", "action", "order_amount"]
    rows = [
        (f"o{i}", f"{scores[i]:.6f}", f"{DAY}T10:00:00Z", versions[i], actions[i], amounts[i])
        for i in range(n)
    ]
    # Two files of one day's scored/ folder, CSV and Parquet, plus a marker that must
    # be skipped.
    put_csv(s3, BUCKET, f"{SCORED}part-0.csv", rows[: n // 2], header)
    rest = slice(n // 2, n)
    ts = pc.cast(pa.array([f"{DAY}T10:00:00Z"] * (n - n // 2)), pa.timestamp("us", "UTC"))
    table = pa.table(
        {
            "event_id": [f"o{i}" for i in range(n)][rest],
            "score": scores[rest],
            "prediction_ts": ts,
            "model_version": versions[rest],
            "action": actions[rest],
            "order_amount": amounts[rest],
        }
    )
    put_parquet(s3, BUCKET, f"{SCORED}part-1.parquet", table)
    s3.put_object(Bucket=BUCKET, Key=f"{SCORED}_SUCCESS", Body=b"")
    labels = [
        (f"o{i}", int(scores[i] > 0.5), "2024-05-20T00:00:00Z") for i in range(n) if i % 4 != 3
    ]
    labels += [("ghost-1", 1, "2024-05-20T00:00:00Z"), ("ghost-2", 0, "2024-05-20T00:00:00Z")]
    put_csv(
        s3, LABELS, f"truth/fraud/dt={DAY}/labels.csv", labels, ["event_id", "label", "label_ts"]
    )
    baseline = pa.table(
        {"score": rng.uniform(size=1000), "order_amount": rng.gamma(2, 50, size=1000)}
    )
    put_parquet(s3, BUCKET, "snapshots/fraud/dt=2024-04-01/part-0.parquet", baseline)


def metrics_by_name():
    cw = boto3.client("cloudwatch")
    found: dict[str, list[dict[str, str]]] = {}
    for page in cw.get_paginator("list_metrics").paginate(Namespace="MDLC"):
        for metric in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            found.setdefault(metric["MetricName"], []).append(dims)
    return found


def test_publishes_every_metric_with_model_and_version_dimensions(env):
    seed(env)
    module = load_handler("model_monitor")
    result = module.handler({"date": DAY}, None)

    assert result["predictions"] == 200
    assert result["unmatched_labels"] == 2
    found = metrics_by_name()
    for name in (
        "Precision",
        "Recall",
        "F1",
        "AUC",
        "LabelCoverage",
        "ScorePSI",
        "KSPValue",
        "Predictions",
    ):
        versions = {d["ModelVersion"] for d in found[name]}
        assert versions == {"all", "v1", "v2"}, name
        assert all(
            set(d) == {"Model", "ModelVersion"} and d["Model"] == "fraud" for d in found[name]
        ), name
    assert found["UnmatchedLabels"] == [{"Model": "fraud", "ModelVersion": "all"}]
    assert {(d["Feature"], d["ModelVersion"]) for d in found["FeaturePSI"]} == {
        ("order_amount", "all"),
        ("order_amount", "v1"),
        ("order_amount", "v2"),
    }
    assert {d["Action"] for d in found["ActionShare"]} == {"block", "review", "approve"}
    assert all(set(d) == {"Model", "ModelVersion", "Action"} for d in found["ActionShare"])


def test_values_and_report(env):
    seed(env)
    module = load_handler("model_monitor")
    result = module.handler({"date": DAY}, None)
    # Labels are exactly "score > 0.5", the decision threshold: a perfect day.
    report = json.loads(
        env.get_object(Bucket=BUCKET, Key=f"monitoring/fraud/dt={DAY}/report.json")["Body"].read()
    )
    overall = report["closed_loop"]["by_version"][0]
    assert overall["model_version"] == "all"
    assert overall["precision"] == 1.0 and overall["recall"] == 1.0 and overall["auc"] == 1.0
    assert overall["label_coverage"] == pytest.approx(0.75)
    assert report["closed_loop"]["unmatched_labels"] == 2
    assert result["report"] == f"s3://{BUCKET}/monitoring/fraud/dt={DAY}/report.json"
    stats = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="MDLC",
        MetricName="LabelCoverage",
        Dimensions=[{"Name": "Model", "Value": "fraud"}, {"Name": "ModelVersion", "Value": "all"}],
        StartTime="2000-01-01",
        EndTime="2100-01-01",
        Period=86400,
        Statistics=["Maximum"],
    )
    assert stats["Datapoints"][0]["Maximum"] == pytest.approx(0.75)
    # fraud.yaml caps block at 5% of decisions; uniform scores block ~10%.
    assert any("max_action_share.block" in a for a in result["alarms"])
    assert result["status"] == "ALARM"


def test_drifted_feature_crosses_max_psi(env):
    seed(env, shift=500.0)
    result = load_handler("model_monitor").handler({"date": DAY}, None)
    assert any("feature_psi" in a and "order_amount" in a for a in result["alarms"])


def test_day_without_predictions_reports_no_data(env, monkeypatch):
    monkeypatch.delenv("BASELINE_KEY")
    result = load_handler("model_monitor").handler({"date": "2024-01-01"}, None)
    assert result["status"] == "NO_DATA"
    assert result["predictions"] == 0
    assert metrics_by_name()["Predictions"] == [{"Model": "fraud", "ModelVersion": "all"}]


def test_closed_loop_lag_reads_older_predictions_and_their_labels(env, monkeypatch):
    seed(env)
    monkeypatch.delenv("BASELINE_KEY")
    result = load_handler("model_monitor").handler(
        {"date": "2024-05-31", "closed_loop_lag_days": 30}, None
    )
    assert result["closed_loop_date"] == DAY
    assert result["predictions"] == 0  # nothing scored on 05-31
    assert result["labels"] == 152


def test_bad_date_is_rejected(env):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        load_handler("model_monitor").handler({"date": "May 1"}, None)


def test_custom_namespace(env, monkeypatch):
    seed(env)
    monkeypatch.setenv("METRICS_NAMESPACE", "Team/Fraud")
    load_handler("model_monitor").handler({"date": DAY}, None)
    names = boto3.client("cloudwatch").list_metrics(Namespace="Team/Fraud")["Metrics"]
    assert {m["MetricName"] for m in names} >= {"Precision", "ScorePSI"}


def test_missing_baseline_still_monitors_accuracy_without_drift(env, monkeypatch):
    seed(env)
    monkeypatch.setenv("BASELINE_KEY", "baselines/fraud/")  # nothing written there yet
    result = load_handler("model_monitor").handler({"date": DAY}, None)
    names = metrics_by_name()
    assert "Precision" in names and "ActionShare" in names
    assert "ScorePSI" not in names and "FeaturePSI" not in names
    assert result["predictions"] > 0


def test_reads_only_the_scored_folder_and_only_csv_or_parquet(env):
    """Beside scored/ the day holds a transform's raw output and the decision records,
    and other writers may leave files in scored/: none of them is read (and none fails
    the run); an event written twice (a redelivered stream batch) counts once."""
    seed(env)
    day = f"predictions/fraud/dt={DAY}/"
    env.put_object(Bucket=BUCKET, Key=f"{day}transform/part-00000.csv.out", Body=b"0.5\n0.7\n")
    env.put_object(Bucket=BUCKET, Key=f"{day}decisions/part-00000.jsonl", Body=b'{"a": 1}\n')
    env.put_object(Bucket=BUCKET, Key=f"{day}part-00000.csv", Body=b"not,the,contract\n1,2,3\n")
    env.put_object(Bucket=BUCKET, Key=f"{SCORED}notes.txt", Body=b"hello")
    env.put_object(Bucket=BUCKET, Key=f"{SCORED}part-00000.jsonl", Body=b'{"a": 1}\n')
    header = ["event_id", "score", "prediction_ts", "model_version", "action", "order_amount"]
    put_csv(env, BUCKET, f"{SCORED}again.csv", [("o1", "0.1", f"{DAY}T11:00:00Z", "v1",
                                                 "approve", "10")], header)

    result = load_handler("model_monitor").handler({"date": DAY}, None)

    assert result["predictions"] == 200
    report = json.loads(
        env.get_object(Bucket=BUCKET, Key=f"monitoring/fraud/dt={DAY}/report.json")["Body"].read()
    )
    assert report["duplicate_predictions"] == 1
