"""The fused stream consumer against moto (DynamoDB, SQS, SNS) and a stub endpoint."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mdlc_constructs.spec import load_spec
from tests.lambda_loader import load_handler

SPEC = Path(__file__).resolve().parents[1] / "models" / "fraud.yaml"
REGION = "us-east-1"
MODEL_PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/fraud/3"


class StubRuntime:
    """sagemaker-runtime: moto answers invoke_endpoint with static data, so score
    each CSV row from its first value (order_amount / 1000) and count calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail_with: Exception | None = None

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        rows = kwargs["Body"].decode().split("\n")
        self.calls.append(rows)
        if self.fail_with is not None:
            raise self.fail_with
        scores = [str(float(row.split(",")[0]) / 1000) for row in rows]
        return {
            "Body": io.BytesIO("\n".join(scores).encode()),
            "ContentType": "text/csv",
            "InvokedProductionVariant": "blue",
        }


class Context:
    function_name = "stream-consumer"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def record(sequence: int, payload: Any, *, raw: bytes | None = None) -> dict[str, Any]:
    data = raw if raw is not None else json.dumps(payload).encode()
    return {
        "eventID": f"shardId-000000000000:{sequence}",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/fraud-events",
        "kinesis": {
            "sequenceNumber": str(sequence),
            "partitionKey": "p",
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": 1_800_000_000.0,
        },
    }


def order(order_id: str, amount: float, customer: str = "c1", *,
          seconds_ago: int = 0) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": customer, "order_amount": amount,
            "account_tenure": 400,
            "order_ts": (NOW - timedelta(seconds=seconds_ago)).isoformat()}


NOW = datetime.now(UTC).replace(microsecond=0)


def seed_online_features(ddb: Any, config: dict[str, Any]) -> None:
    """c1's history as the feature_update function stores it: 4 orders, 1000 in total,
    in the last 30 days (the online table's real layout, day buckets per entity)."""
    from mdlc_core.features import DynamoDBStore, FeatureSet, IncrementalEngine

    engine = IncrementalEngine(FeatureSet.from_config(config),
                               DynamoDBStore(ddb, "features", config["name"]))
    for days_ago, amount in ((1, 100.0), (3, 200.0), (10, 300.0), (29, 400.0)):
        engine.apply({"order_id": f"past-{days_ago}", "customer_id": "c1",
                      "order_amount": amount, "order_ts": (NOW - timedelta(days=days_ago))
                      .isoformat()})


@pytest.fixture
def aws_env(tmp_path, monkeypatch):
    """moto resources and the environment both integration handlers read."""
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec(SPEC).as_config()))
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "MDLC_CONFIG_FILE": str(config),
        "AWS_LAMBDA_FUNCTION_NAME": "stream-consumer",
    }.items():
        monkeypatch.setenv(name, value)
    from mdlc_core import runtime_config

    runtime_config.load_config.cache_clear()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        for table, key in (("features", "pk"), ("decisions", "event_id"), ("idempotency", "id")):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        seed_online_features(ddb, json.loads(config.read_text()))
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        review = sqs.create_queue(QueueName="review")["QueueUrl"]
        blocked = sqs.create_queue(QueueName="blocked")["QueueUrl"]
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="block")["TopicArn"]
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="raw")
        blocked_arn = sqs.get_queue_attributes(
            QueueUrl=blocked, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=blocked_arn,
                      Attributes={"RawMessageDelivery": "true"})
        for name, value in {
            "ENDPOINT_NAME": "fraud-endpoint",
            "FEATURES_TABLE": "features",
            "DECISIONS_TABLE": "decisions",
            "IDEMPOTENCY_TABLE": "idempotency",
            "DEAD_LETTER_QUEUE_URL": dlq,
            "DEAD_LETTER_BUCKET": "raw",
            "ACTION_TOPIC_ARN": topic,
            "ACTION_QUEUE_URL": review,
            "MODEL_PACKAGE_VERSION": MODEL_PACKAGE,
        }.items():
            monkeypatch.setenv(name, value)
        yield {"ddb": ddb, "sqs": sqs, "dlq": dlq, "review": review, "blocked": blocked}


@pytest.fixture
def aws(aws_env):
    module = load_handler("stream_consumer")
    runtime = StubRuntime()
    module.SCORER.scorer.client = runtime
    return {**aws_env, "module": module, "runtime": runtime}


def messages(sqs, url: str) -> list[dict[str, Any]]:
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def logged(ddb, event_id: str) -> dict[str, Any] | None:
    return ddb.get_item(TableName="decisions", Key={"event_id": {"S": event_id}}).get("Item")


def test_good_records_are_decided_logged_and_acted_on(aws):
    event = {"Records": [record(1, order("o-block", 950.0, seconds_ago=3)),
                         record(2, order("o-review", 700.0, seconds_ago=2)),
                         record(3, order("o-approve", 100.0, seconds_ago=1))]}

    response = aws["module"].handler(event, Context())

    assert response == {"batchItemFailures": []}
    assert len(aws["runtime"].calls) == 1, "one endpoint call for the whole batch"
    # Rows in the model's feature order: amount, tenure, total, count, amount / mean,
    # as of the event itself: c1's 4 stored orders (1000) and the event (950).
    assert aws["runtime"].calls[0][0] == f"950.0,400.0,1950.0,5.0,{950 / (1950 / 5)!r}"
    item = logged(aws["ddb"], "o-block")
    assert item["action"] == {"S": "block"}
    assert item["rule_id"] == {"S": "block_high_risk"}
    assert item["score"] == {"N": "0.95"}
    assert item["model_version"]["S"].endswith("model-package/fraud/3")
    assert item["features"]["M"]["order_total_30d"] == {"N": "1950.0"}
    assert logged(aws["ddb"], "o-approve")["rule_id"] == {"S": "default"}
    assert [m["event_id"] for m in messages(aws["sqs"], aws["blocked"])] == ["o-block"]
    assert [m["event_id"] for m in messages(aws["sqs"], aws["review"])] == ["o-review"]
    assert messages(aws["sqs"], aws["dlq"]) == []


def test_malformed_record_goes_to_the_dlq_and_does_not_fail_the_others(aws):
    event = {"Records": [
        record(1, order("o-1", 950.0)),
        record(2, None, raw=b"{not json"),
        record(3, {"customer_id": "c1", "order_amount": 5}),
        record(4, order("o-4", "lots")),
        record(5, order("o-5", 700.0)),
    ]}

    response = aws["module"].handler(event, Context())

    assert response == {"batchItemFailures": []}
    dead = {m["source"]["sequence_number"]: m for m in messages(aws["sqs"], aws["dlq"])}
    assert sorted(dead) == ["2", "3", "4"]
    assert dead["2"]["payload"] == "{not json"
    assert dead["2"]["reason"].startswith("not JSON")
    assert "order_id" in dead["3"]["reason"]
    assert "order_amount must be a number" in dead["4"]["reason"]
    assert json.loads(dead["4"]["payload"])["order_id"] == "o-4"
    assert logged(aws["ddb"], "o-1")["action"] == {"S": "block"}
    assert logged(aws["ddb"], "o-5")["action"] == {"S": "review"}
    assert aws["runtime"].calls[0] and len(aws["runtime"].calls[0]) == 2


def test_an_event_beyond_the_clock_skew_is_dead_lettered_with_the_reason(aws):
    """Issue 14.6, the consumer's half: an event dated beyond
    ``features.max_clock_skew_seconds`` is rejected as feature_update rejects it
    (its features cannot be read as of its own time), and never acts."""
    far = order("o-far", 950.0) | {"order_ts": (NOW + timedelta(days=3650)).isoformat()}
    skewed = order("o-40d", 950.0) | {"order_ts": (NOW + timedelta(days=40)).isoformat()}
    garbled = order("o-bad-ts", 950.0) | {"order_ts": "yesterday"}
    near = order("o-near", 700.0) | {"order_ts": (NOW + timedelta(minutes=5)).isoformat()}
    event = {"Records": [record(1, far), record(2, skewed), record(3, garbled),
                         record(4, near)]}

    assert aws["module"].handler(event, Context()) == {"batchItemFailures": []}

    dead = {m["source"]["sequence_number"]: m for m in messages(aws["sqs"], aws["dlq"])}
    assert sorted(dead) == ["1", "2", "3"]
    for sequence, sent in (("1", far), ("2", skewed)):
        assert "ahead of the processing clock" in dead[sequence]["reason"]
        assert "features.max_clock_skew_seconds" in dead[sequence]["reason"]
        assert json.loads(dead[sequence]["payload"]) == sent
    assert "not an ISO 8601 timestamp" in dead["3"]["reason"]
    for event_id in ("o-far", "o-40d", "o-bad-ts"):
        assert logged(aws["ddb"], event_id) is None
    assert messages(aws["sqs"], aws["blocked"]) == []
    assert logged(aws["ddb"], "o-near")["action"] == {"S": "review"}
    assert aws["runtime"].calls == [[aws["runtime"].calls[0][0]]], "only o-near is scored"


def test_redelivered_batch_acts_once_per_event(aws):
    event = {"Records": [record(1, order("o-1", 950.0)), record(2, order("o-2", 700.0))]}
    aws["module"].handler(event, Context())
    first = logged(aws["ddb"], "o-1")

    # The same events again (a retry from an earlier sequence number), plus a
    # producer resend of o-1 inside one batch.
    again = {"Records": [record(7, order("o-1", 950.0)), record(8, order("o-2", 700.0)),
                         record(9, order("o-1", 950.0))]}
    assert aws["module"].handler(again, Context()) == {"batchItemFailures": []}

    assert [m["event_id"] for m in messages(aws["sqs"], aws["blocked"])] == ["o-1"]
    assert [m["event_id"] for m in messages(aws["sqs"], aws["review"])] == ["o-2"]
    # The log keeps the decision that was acted on, not a re-scored copy.
    assert logged(aws["ddb"], "o-1")["decided_at"] == first["decided_at"]


def test_transient_endpoint_error_reports_batch_item_failures(aws):
    from botocore.exceptions import ClientError

    aws["runtime"].fail_with = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeEndpoint"
    )
    event = {"Records": [record(1, order("o-1", 950.0)), record(2, None, raw=b"[]"),
                         record(3, order("o-3", 100.0))]}

    response = aws["module"].handler(event, Context())

    assert response == {"batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": "3"}]}
    assert logged(aws["ddb"], "o-1") is None
    assert messages(aws["sqs"], aws["blocked"]) == []
    # The malformed neighbour is dead-lettered, not retried with the others.
    assert [m["source"]["sequence_number"] for m in messages(aws["sqs"], aws["dlq"])] == ["2"]

    # The retry succeeds and acts: the failed attempt took no idempotency lock.
    aws["runtime"].fail_with = None
    retry = {"Records": [record(1, order("o-1", 950.0)), record(3, order("o-3", 100.0))]}
    assert aws["module"].handler(retry, Context()) == {"batchItemFailures": []}
    assert [m["event_id"] for m in messages(aws["sqs"], aws["blocked"])] == ["o-1"]


def test_failed_action_fails_only_its_record_and_is_retried(aws):
    module = aws["module"]
    sqs_action = module.DISPATCHER.actions["review"]
    original = sqs_action.perform
    sqs_action.perform = lambda decision: (_ for _ in ()).throw(RuntimeError("queue down"))
    event = {"Records": [record(1, order("o-1", 950.0)), record(2, order("o-2", 700.0))]}

    assert module.handler(event, Context()) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert logged(aws["ddb"], "o-2") is None

    sqs_action.perform = original
    assert module.handler(event, Context()) == {"batchItemFailures": []}
    assert [m["event_id"] for m in messages(aws["sqs"], aws["review"])] == ["o-2"]
    assert [m["event_id"] for m in messages(aws["sqs"], aws["blocked"])] == ["o-1"]


def test_unknown_entity_scores_with_missing_features(aws):
    event = {"Records": [record(1, order("o-new", 200.0, customer="c-new"))]}

    assert aws["module"].handler(event, Context()) == {"batchItemFailures": []}
    # The event's own columns, and no stored history (the entity is unknown): the
    # window holds the event alone, as its training row does.
    assert aws["runtime"].calls[0] == ["200.0,400.0,200.0,1.0,1.0"]
    assert logged(aws["ddb"], "o-new")["action"] == {"S": "approve"}


class CountingDynamoDB:
    """Wraps a client and counts BatchGetItem calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.batch_gets = 0

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.batch_gets += 1
        return self.client.batch_get_item(**kwargs)


def test_features_written_by_the_updater_are_read_back_by_the_consumer(aws, monkeypatch):
    """The two halves of the online store agree: feature_update writes day buckets,
    the consumer's reader turns them into window values, in one BatchGetItem."""
    monkeypatch.setenv("MODEL_NAME", "fraud")
    updater = load_handler("feature_update")
    history = [
        {"order_id": "h-1", "customer_id": "c9", "order_amount": 300.0, "account_tenure": 20,
         "order_ts": (NOW - timedelta(days=2)).isoformat()},
        {"order_id": "h-2", "customer_id": "c9", "order_amount": 500.0, "account_tenure": 21,
         "order_ts": (NOW - timedelta(days=1)).isoformat()},
        # Outside the 30-day window as of today: stored, but not counted.
        {"order_id": "h-0", "customer_id": "c9", "order_amount": 9000.0, "account_tenure": 1,
         "order_ts": (NOW - timedelta(days=31)).isoformat()},
    ]
    written = updater.handler(
        {"Records": [record(i, event) for i, event in enumerate(history, start=1)]}, Context()
    )
    assert written == {"batchItemFailures": []}

    counting = CountingDynamoDB(aws["module"].SCORER.reader.client)
    aws["module"].SCORER.reader.client = counting
    event = {"Records": [record(10, order("o-9", 200.0, customer="c9", seconds_ago=2)),
                         record(11, order("o-10", 950.0, customer="c1", seconds_ago=1)),
                         record(12, order("o-11", 100.0, customer="c9"))]}

    assert aws["module"].handler(event, Context()) == {"batchItemFailures": []}
    assert counting.batch_gets == 1, "one feature read for the whole batch"
    # amount, tenure (the event's), total and count of c9's last 30 days as of the
    # event, itself included: o-9 adds to the stored 800, o-11 to 800 and o-9 too,
    # which the updater has not applied (the consumer folds it in).
    assert aws["runtime"].calls == [[f"200.0,400.0,1000.0,3.0,{200 / (1000 / 3)!r}",
                                     f"950.0,400.0,1950.0,5.0,{950 / (1950 / 5)!r}",
                                     f"100.0,400.0,1100.0,4.0,{100 / (1100 / 4)!r}"]]
    assert logged(aws["ddb"], "o-9")["features"]["M"]["order_total_30d"] == {"N": "1000.0"}
