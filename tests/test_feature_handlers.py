"""Feature handlers against moto: batch feature snapshots and the online updater."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from mdlc_core.features import FeatureSet
from moto import mock_aws

from mdlc_constructs.spec import load_spec
from tests.feature_answers import Answers, recorded_answers  # noqa: F401 - the fixture
from tests.lambda_loader import load_handler

RAW, DATASETS, FEATURES, TABLE = "raw-bucket-f", "datasets-bucket-f", "features-bucket-f", "feat"
DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/update-failures"
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def aws(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec("models/fraud.yaml").as_config()))
    for name, value in {"MDLC_CONFIG_FILE": str(config), "AWS_DEFAULT_REGION": "us-east-1",
                        "RAW_BUCKET": RAW, "DATASETS_BUCKET": DATASETS,
                        "FEATURES_BUCKET": FEATURES, "FEATURES_TABLE": TABLE,
                        "MODEL_NAME": "fraud", "DEAD_LETTER_QUEUE_URL": DLQ,
                        "DEAD_LETTER_BUCKET": RAW}.items():
        monkeypatch.setenv(name, value)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (RAW, DATASETS, FEATURES):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="update-failures")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        yield s3, ddb
    load_config.cache_clear()


def orders(day: int, rows: list[tuple[str, str, int, float]]) -> list[dict[str, Any]]:
    return [{"order_id": o, "customer_id": c,
             "order_ts": (START + timedelta(days=day, hours=h)).isoformat(),
             "order_amount": a, "account_tenure": 5, "fraud_status": 0} for o, c, h, a in rows]


def csv(rows: list[dict[str, Any]]) -> bytes:
    header = list(rows[0])
    return ("\n".join([",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows])
            + "\n").encode()


def test_batch_handler_writes_training_rows_and_entity_table(answers: Answers,
                                                            aws: Any) -> None:
    s3, _ = aws
    sourcing = load_handler("data_sourcing")
    days = {
        0: orders(0, [("o1", "c1", 1, 10.0), ("o2", "c2", 2, 5.0)]),
        20: orders(20, [("o3", "c1", 3, 20.0)]),
        35: orders(35, [("o4", "c1", 4, 40.0), ("o5", "c3", 5, 1.0), ("o3", "c1", 3, 20.0)]),
    }
    for day, rows in days.items():
        date = (START + timedelta(days=day)).date().isoformat()
        s3.put_object(Bucket=RAW, Key=f"orders/dt={date}/part.csv", Body=csv(rows))
        sourcing.handler({"date": date}, None)
    batch = load_handler("feature_batch")
    out = batch.handler({"date": "2026-04-05"}, None)
    assert out["features_key"] == "features/fraud/dt=2026-04-05/features.parquet"
    assert out["snapshots"] == ["datasets/fraud/dt=2026-03-21/_manifest.json",
                                "datasets/fraud/dt=2026-04-05/_manifest.json"]
    training = pq.read_table(io.BytesIO(
        s3.get_object(Bucket=FEATURES, Key=out["features_key"])["Body"].read())).to_pylist()
    # o3 was redelivered in the day's snapshot: it stays a row of its own day only.
    assert [(r["order_id"], r["order_total_30d"], r["order_count_30d"]) for r in training] == [
        ("o4", 60.0, 2), ("o5", 1.0, 1)]
    table = pq.read_table(io.BytesIO(
        s3.get_object(Bucket=FEATURES, Key=out["entities_key"])["Body"].read()))
    entities = table.to_pylist()
    features = FeatureSet.from_config(load_spec("models/fraud.yaml").as_config())
    # One row per entity with every model input: raw columns, then features
    # (the recorded answer of the retired NumPy engine's entity_table).
    answers(table.to_pydict())
    assert list(entities[0]) == features.entity_table_schema and out["entities"] == 2
    # The window values are the batch engine's (its compute_batch, recorded).
    answers([{k: e[k] for k in (features.entity_key, *features.names)} for e in entities])


def test_batch_handler_needs_the_days_snapshot(aws: Any) -> None:
    batch = load_handler("feature_batch")
    with pytest.raises(ValueError, match="no snapshot of 2026-04-05"):
        batch.handler({"date": "2026-04-05"}, None)


def kinesis(records: list[Any]) -> dict[str, Any]:
    out = []
    for index, record in enumerate(records):
        data = record if isinstance(record, bytes) else json.dumps(record).encode()
        out.append({
            "eventSource": "aws:kinesis", "eventID": f"shardId-0:{index}",
            "kinesis": {"data": base64.b64encode(data).decode(), "sequenceNumber": str(index),
                        "partitionKey": "p", "kinesisSchemaVersion": "1.0",
                        "approximateArrivalTimestamp": 1.0},
        })
    return {"Records": out}


class Context:
    function_name = "feature_update"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:feature_update"
    aws_request_id = "req"


def test_update_handler_exactly_once_partial_failures_and_reads(aws: Any) -> None:
    s3, ddb = aws
    update = load_handler("feature_update")
    events = orders(0, [("o1", "c1", 1, 10.0), ("o2", "c1", 2, 5.0)])
    batch = kinesis([events[0], b"{not json", events[1], {"order_id": "o9"}, events[0]])
    response = update.handler(batch, Context())
    # The malformed records are kept with their reason, and fail no neighbour.
    assert response == {"batchItemFailures": []}
    sqs = boto3.client("sqs", region_name="us-east-1")
    letters = {m["source"]["sequence_number"]: m for m in dead_letters(sqs, DLQ)}
    assert sorted(letters) == ["1", "3"]
    assert letters["1"]["reason"].startswith("malformed record:")
    assert letters["1"]["payload"] == "{not json"
    assert "order_ts" in letters["3"]["reason"] or "customer_id" in letters["3"]["reason"]
    where = letters["3"]["payload_location"]
    stored = s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read()
    assert json.loads(stored) == {"order_id": "o9"}
    assert where["key"].startswith("dead-letters/fraud/feature-update/")
    # Delivered again: dead-lettered once, not once per delivery (issue 14.9).
    assert update.handler(batch, Context()) == {"batchItemFailures": []}
    assert dead_letters(sqs, DLQ) == []
    # The whole batch again (a retry): nothing is counted twice.
    update.handler(kinesis([events[0], events[1]]), Context())
    engine = update.engine()
    row = engine.read("c1", "2026-03-01")
    assert row == {"customer_id": "c1", "order_total_30d": 15.0, "order_count_30d": 2,
                   "amount_to_30d_mean": pytest.approx(5.0 / 7.5)}
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "fraud#customer_id#c1"}})["Item"]
    assert item["version"]["N"] == "2"
    assert int(item["expires_at"]["N"]) == (20513 + 30 + 2) * 86_400  # 2026-03-01 is day 20513
    # Both events kept one by one (the newest of the entity), none in a day bucket yet.
    assert item["days"]["M"] == {}
    recent = json.loads(item["recent"]["S"])  # one string attribute, compact JSON
    assert recent["columns"] == ["order_amount"]
    assert [e[1] for e in recent["events"]] == ["o1", "o2"]
    marker = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "fraud#event#o1"}})["Item"]
    assert "expires_at" in marker


def test_all_bad_batch_is_dead_lettered_record_by_record(aws: Any) -> None:
    s3, _ = aws
    update = load_handler("feature_update")
    response = update.handler(kinesis([b"\xff", [1, 2]]), Context())
    assert response == {"batchItemFailures": []}
    letters = dead_letters(boto3.client("sqs", region_name="us-east-1"), DLQ)
    by_encoding = {m["payload_encoding"]: m for m in letters}
    assert set(by_encoding) == {"base64", "utf-8"}
    binary = by_encoding["base64"]["payload_location"]
    assert s3.get_object(Bucket=RAW, Key=binary["key"])["Body"].read() == b"\xff"
    assert "expected a JSON object, got list" in by_encoding["utf-8"]["reason"]


def test_a_record_that_cannot_be_dead_lettered_is_reported_as_failed(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue unreachable: never dropped, the record fails and is retried."""
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ.replace("update-failures", "gone"))
    update = load_handler("feature_update")
    assert update.handler(kinesis([b"{nope"]), Context()) == {
        "batchItemFailures": [{"itemIdentifier": "0"}]}


def dead_letters(sqs: Any, url: str) -> list[dict[str, Any]]:
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


@pytest.mark.parametrize("ahead", [timedelta(days=3650), timedelta(days=40)])
def test_a_future_dated_event_is_dead_lettered_and_never_moves_the_watermark(
    aws: Any, monkeypatch: pytest.MonkeyPatch, ahead: timedelta
) -> None:
    """Issue 14.6: 10 orders of 100 over 10 days, one event dated far ahead, then
    5 orders today; the online reader still sees all 15 real orders."""
    from mdlc_core.features import OnlineFeatureReader

    _, ddb = aws
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = DLQ
    update = load_handler("feature_update")
    now = datetime.now(UTC)

    def order(order_id: str, moment: datetime) -> dict[str, Any]:
        return {"order_id": order_id, "customer_id": "c1", "order_ts": moment.isoformat(),
                "order_amount": 100.0, "account_tenure": 5, "fraud_status": 0}

    history = [order(f"h{d}", now - timedelta(days=d)) for d in range(10, 0, -1)]
    future = order("f1", now + ahead)
    today = [order(f"t{i}", now - timedelta(minutes=i)) for i in range(5, 0, -1)]
    assert update.handler(kinesis(history), Context()) == {"batchItemFailures": []}
    assert update.handler(kinesis([future]), Context()) == {"batchItemFailures": []}
    assert update.handler(kinesis(today), Context()) == {"batchItemFailures": []}

    reader = OnlineFeatureReader(ddb, TABLE, update.engine().features)
    row = reader.read_many(["c1"])["c1"]
    assert (row["order_total_30d"], row["order_count_30d"]) == (1500.0, 15)
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "fraud#customer_id#c1"}})["Item"]
    assert item["watermark"]["S"] == max(e["order_ts"] for e in today)[:10]
    assert item["last"]["M"]["event_id"]["S"] == "t1"
    assert "Item" not in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "fraud#event#f1"}})
    [letter] = dead_letters(sqs, queue)
    assert json.loads(letter["payload"]) == future
    assert "ahead of the processing clock" in letter["reason"]
    assert "features.max_clock_skew_seconds" in letter["reason"]
    assert letter["source"]["sequence_number"] == "0"
    assert letter["payload_truncated"] is False


def test_a_future_event_is_kept_as_a_failure_without_a_dead_letter_queue(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never dropped: with no queue to keep it, the record is reported as failed."""
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL", raising=False)
    update = load_handler("feature_update")
    ahead = datetime.now(UTC) + timedelta(hours=2)
    event = orders(0, [("o1", "c1", 1, 10.0)])[0] | {"order_ts": ahead.isoformat()}
    assert update.handler(kinesis([event]), Context()) == {
        "batchItemFailures": [{"itemIdentifier": "0"}]}


def test_the_clock_skew_is_the_specs(aws: Any) -> None:
    """Within ``features.max_clock_skew_seconds`` (default 900 s) an event is applied."""
    update = load_handler("feature_update")
    assert update.engine().features.max_clock_skew_seconds == 900
    soon = datetime.now(UTC) + timedelta(minutes=10)
    event = orders(0, [("o1", "c1", 1, 10.0)])[0] | {"order_ts": soon.isoformat()}
    assert update.handler(kinesis([event]), Context()) == {"batchItemFailures": []}
    assert update.engine().read("c1", soon.date())["order_count_30d"] == 1
