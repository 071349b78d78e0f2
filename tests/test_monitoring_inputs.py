"""Model monitoring reads what the deciding paths really write (moto).

The producers run for real: the batch decide step over its real transform
input, the fused stream consumer over Kinesis events and the state-machine
integration step; then ``monitor_job.run`` reads the day from the same
bucket, as the scheduled job does. Only the SageMaker parts are stand-ins
(the transform's output lines, the endpoint's answers), as in the handlers'
own tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.lambda_loader import load_handler
from tests.test_batch_inference import (  # noqa: F401 - batch_aws is a fixture
    DATE,
    VERSION,
    _decide,
    _drain,
    _scored_part,
    batch_aws,
)
from tests.test_stream_consumer import (  # noqa: F401 - aws_env is a fixture
    MODEL_PACKAGE,
    REGION,
    Context,
    StubRuntime,
    aws_env,
    logged,
    messages,
    order,
    record,
)

BUCKET = "predictions-bucket"


class Recorder:
    """CloudWatch: keeps every put_metric_data call."""

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        self.data += MetricData

    def value(self, name: str, **dimensions: str) -> float | None:
        for datum in self.data:
            dims = {d["Name"]: d["Value"] for d in datum["Dimensions"]}
            if datum["MetricName"] == name and dims == {"Model": "fraud", **dimensions}:
                return datum["Value"]
        return None


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def _monitor(s3: Any, config: dict[str, Any], day: str, bucket: str,
             **environ: str) -> tuple[dict[str, Any], dict[str, Any], Recorder]:
    from mdlc_core import monitor_job

    metrics = Recorder()
    summary = monitor_job.run({"date": day}, config, s3=s3, cloudwatch=metrics,
                              environ={"PREDICTIONS_BUCKET": bucket, **environ})
    body = s3.get_object(Bucket=bucket, Key=f"monitoring/fraud/dt={day}/report.json")["Body"]
    return summary, json.loads(body.read()), metrics


# -- batch --------------------------------------------------------------------------------


def test_batch_decide_writes_predictions_the_monitor_reads(batch_aws, fraud_spec):  # noqa: F811
    """The day's folder holds the transform's .out and the decisions' .jsonl (neither is
    monitoring input) and scored/, which the monitor reads: every decision, with its
    version, action and the features it was scored on."""
    s3, sqs = batch_aws["s3"], batch_aws["sqs"]
    sqs.create_queue(QueueName="review")
    module = batch_aws["load"]()
    key = _scored_part(batch_aws, fraud_spec, module, [
        ("o1", "c1", f"{DATE}T10:00:00", "10.0", "400"),
        ("o2", "c2", f"{DATE}T10:00:00", "30.0", "3"),
        ("o3", "c3", f"{DATE}T10:00:00", "20.0", "900"),
    ], {10.0: "0.95", 30.0: "0.7", 20.0: "0.2"})
    result = _decide(module, key)
    assert result["actions"] == {"block": 1, "review": 1, "approve": 1}

    day = f"predictions/fraud/dt={DATE}/"
    assert _keys(s3, "predictions", day) == [
        f"{day}decisions/part-00000.jsonl",
        f"{day}scored/part-00000.parquet",
        f"{day}transform/part-00000.csv.out",
    ]
    assert result["predictions_key"] == f"{day}scored/part-00000.parquet"
    # The part's own predictions as the baseline: every feature is compared (PSI 0).
    summary, report, metrics = _monitor(
        s3, fraud_spec.as_config(), DATE, "predictions",
        BASELINE_KEY=f"s3://predictions/{result['predictions_key']}")

    assert summary["predictions"] == 3 and summary["status"] != "NO_DATA"
    assert report["duplicate_predictions"] == 0
    opened = {g["model_version"]: g for g in report["open_loop"]["by_version"]}
    assert set(opened) == {"all", VERSION}
    assert opened["all"]["actions"] == pytest.approx({"block": 1 / 3, "review": 1 / 3,
                                                      "approve": 1 / 3})
    assert report["open_loop"]["features_not_compared"] == []
    assert set(opened["all"]["features"]) == set(fraud_spec.feature_columns)
    for feature in fraud_spec.feature_columns:
        assert metrics.value("FeaturePSI", ModelVersion="all", Feature=feature) == 0.0
    assert metrics.value("Predictions", ModelVersion=VERSION) == 3
    # A retried map item acts once and rewrites the same file: still three predictions.
    assert [m["event_id"] for m in _drain(sqs, batch_aws["blocked"])] == [f"{DATE}#c1"]
    _decide(module, key)
    assert _drain(sqs, batch_aws["blocked"]) == []
    assert _monitor(s3, fraud_spec.as_config(), DATE, "predictions")[0]["predictions"] == 3


# -- stream -------------------------------------------------------------------------------


@pytest.fixture
def consumer(aws_env, monkeypatch):  # noqa: F811
    """The fused consumer with PREDICTIONS_BUCKET set, as the stack deploys it."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("PREDICTIONS_BUCKET", BUCKET)
    module = load_handler("stream_consumer")
    runtime = StubRuntime()
    module.SCORER.scorer.client = runtime
    return {**aws_env, "module": module, "runtime": runtime, "s3": s3}


def _labels(s3: Any, day: str, rows: list[tuple[str, int]]) -> None:
    """Ground truth as whoever learns it delivers it: labels/<model>/dt=<event date>/."""
    body = "event_id,label,label_ts\n" + "".join(
        f"{event_id},{label},{day}T23:00:00Z\n" for event_id, label in rows)
    s3.put_object(Bucket=BUCKET, Key=f"labels/fraud/dt={day}/labels.csv", Body=body.encode())


def test_stream_decisions_reach_monitoring_and_close_the_loop(consumer, fraud_spec):
    """One predictions file per batch, named by the batch (a redelivery overwrites it);
    a batch retried from another sequence number writes a second file whose copies are
    counted once; with labels joined on the producer's order ids, the closed loop has
    numbers."""
    module, s3, ddb = consumer["module"], consumer["s3"], consumer["ddb"]
    batch = {"Records": [record(1, order("o-block", 950.0)), record(2, order("o-review", 700.0)),
                         record(3, None, raw=b"{not json"), record(4, order("o-approve", 100.0))]}

    assert module.handler(batch, Context()) == {"batchItemFailures": []}

    day = logged(ddb, "o-block")["decided_at"]["S"][:10]
    scored = f"predictions/fraud/dt={day}/scored/"
    first = f"{scored}stream-shardId-000000000000-1-4.csv"
    assert _keys(s3, BUCKET, f"predictions/fraud/dt={day}/") == [first]
    # The same batch again (say the function timed out after writing): overwritten.
    assert module.handler(batch, Context()) == {"batchItemFailures": []}
    assert _keys(s3, BUCKET, scored) == [first]
    # Retried from sequence number 4 with a new event after it: a second file.
    retried = {"Records": [record(4, order("o-approve", 100.0)),
                           record(5, order("o-late", 650.0))]}
    assert module.handler(retried, Context()) == {"batchItemFailures": []}
    assert _keys(s3, BUCKET, scored) == [first, f"{scored}stream-shardId-000000000000-4-5.csv"]
    # Every event acted once.
    assert [m["event_id"] for m in messages(consumer["sqs"], consumer["blocked"])] == ["o-block"]
    assert [m["event_id"] for m in messages(consumer["sqs"], consumer["review"])] == [
        "o-review", "o-late"]

    _labels(s3, day, [("o-block", 1), ("o-review", 0), ("o-approve", 0), ("o-late", 1),
                      ("o-unknown", 1)])
    summary, report, metrics = _monitor(s3, fraud_spec.as_config(), day, BUCKET)

    assert summary["predictions"] == 4 and report["duplicate_predictions"] == 1
    assert summary["labels"] == 5 and summary["unmatched_labels"] == 1
    closed = {g["model_version"]: g for g in report["closed_loop"]["by_version"]}
    assert set(closed) == {"all", MODEL_PACKAGE}
    # Scores 0.95 (1), 0.7 (0), 0.1 (0), 0.65 (1) at the 0.5 threshold.
    overall = closed["all"]
    assert overall["precision"] == pytest.approx(2 / 3)
    assert overall["recall"] == 1.0
    assert overall["auc"] == pytest.approx(0.75)
    assert overall["label_coverage"] == 1.0
    assert metrics.value("AUC", ModelVersion="all") == pytest.approx(0.75)
    assert metrics.value("Precision", ModelVersion=MODEL_PACKAGE) == pytest.approx(2 / 3)
    opened = {g["model_version"]: g for g in report["open_loop"]["by_version"]}
    assert opened["all"]["actions"] == pytest.approx({"block": 0.25, "review": 0.5,
                                                      "approve": 0.25})


def test_a_failed_predictions_write_retries_those_records_and_acts_once(consumer, fraud_spec):
    """The write fails: the records are reported (the stream redelivers them), the
    decision log already holds them, and the redelivery writes the file without
    acting again."""
    module, s3, ddb = consumer["module"], consumer["s3"], consumer["ddb"]
    batch = {"Records": [record(1, order("o-1", 950.0)), record(2, None, raw=b"{bad"),
                         record(3, order("o-3", 700.0))]}
    module.PREDICTION_LOG.bucket = "no-such-bucket"

    response = module.handler(batch, Context())

    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]}
    assert logged(ddb, "o-1")["action"] == {"S": "block"}
    module.PREDICTION_LOG.bucket = BUCKET
    assert module.handler(batch, Context()) == {"batchItemFailures": []}
    assert [m["event_id"] for m in messages(consumer["sqs"], consumer["blocked"])] == ["o-1"]
    assert [m["event_id"] for m in messages(consumer["sqs"], consumer["review"])] == ["o-3"]
    day = logged(ddb, "o-1")["decided_at"]["S"][:10]
    summary, _, _ = _monitor(s3, fraud_spec.as_config(), day, BUCKET)
    assert summary["predictions"] == 2


# -- state machine path ---------------------------------------------------------------------


def test_integration_step_writes_one_prediction_per_event(aws_env, monkeypatch,  # noqa: F811
                                                          fraud_spec):
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("PREDICTIONS_BUCKET", BUCKET)
    module = load_handler("integration_step")
    module.CLIENTS._clients["sagemaker-runtime"] = StubRuntime()

    def run(event: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {"event": event}
        for step in ("collect_features", "run_inference", "execute_rules", "perform_action"):
            state = json.loads(json.dumps(module.handler({**state, "step": step}, Context())))
        return state

    first = run(order("o-1", 950.0))
    run(order("o-1", 950.0))  # redelivered: acts once, overwrites its file
    run(order("o-2", 100.0))
    day = first["decision"]["decided_at"][:10]
    assert _keys(s3, BUCKET, f"predictions/fraud/dt={day}/scored/") == [
        f"predictions/fraud/dt={day}/scored/event-o-1.csv",
        f"predictions/fraud/dt={day}/scored/event-o-2.csv"]
    _labels(s3, day, [("o-1", 1), ("o-2", 0)])
    summary, report, _ = _monitor(s3, fraud_spec.as_config(), day, BUCKET)
    assert summary["predictions"] == 2 and report["duplicate_predictions"] == 0
    overall = report["closed_loop"]["by_version"][0]
    assert (overall["precision"], overall["recall"], overall["auc"]) == (1.0, 1.0, 1.0)
