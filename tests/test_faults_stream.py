"""Faults and bad input on the stream consumer, deployed from the synthesized stack.

Issue 14: malformed records of every kind, whole batches redelivered in other
orders, each AWS call of each step throttled, the dead-letter queue
unreachable, and redelivery after the in-progress window. Each run counts
actions (at the topic and the queue), decision-log entries, dead letters and
reported failures, and asserts 0 lost, 0 doubled, every rejection with its
reason and its payload retrievable, and 0 calls refused to the function's role.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fault_harness import (
    ConsumerRun,
    Stack,
    Stream,
    bad_records,
    decision_log,
    deliver,
    drain,
    expected_action,
    fraud_stack,
    invoke,
    order,
    stored_payload,
)


@pytest.fixture(scope="module")
def stack(synthesized) -> Stack:
    _, assembly = synthesized
    with fraud_stack(Path(assembly.directory)) as deployed:
        yield deployed


@pytest.fixture
def run(stack: Stack) -> ConsumerRun:
    """A consumer run on the shared stack; faults cleared, no call refused."""
    stack.faults.clear()
    consumer = ConsumerRun(stack)
    consumer.collect()  # what earlier tests left in the queues is theirs
    consumer.stack.cloud.notifications.clear()
    consumer.cold_start()
    yield consumer
    stack.faults.clear()
    assert stack.cloud.authorizer.denied == [], stack.cloud.authorizer.report()


_streams: dict[int, Stream] = {}


def stream(stack: Stack) -> Stream:
    """One sequence-number space per deployed stack, as one shard has."""
    return _streams.setdefault(id(stack), Stream(stack))


def good_orders(prefix: str, stack: Stack, count: int) -> tuple[list[bytes], dict[str, str]]:
    amounts = [950.0, 700.0, 100.0]
    events = [order(f"{prefix}-{i}", amounts[i % 3], customer=f"c{i % 4}", when=stack.now())
              for i in range(count)]
    return ([json.dumps(e).encode() for e in events],
            {e["order_id"]: expected_action(e["order_amount"]) for e in events})


@pytest.mark.slow
def test_bad_records_of_every_kind_are_dead_lettered_once_over_reordered_redeliveries(
        run: ConsumerRun) -> None:
    """Every malformed kind, mixed with good records, delivered three times in three
    orders: each bad record is dead-lettered once, with its reason and its exact
    bytes retrievable (180,000 "é" and 90,000 emoji included, issue 14.1 and 14.9);
    each good record acts once and is logged once; no record fails."""
    stack = run.stack
    bad = bad_records("bad", stack.now())
    payloads, good = good_orders("mix", stack, 9)
    records = stream(stack).records([*bad.values(), *payloads])
    kinds = dict(zip((r["kinesis"]["sequenceNumber"] for r in records), bad, strict=False))
    bad_by_sequence = {r["kinesis"]["sequenceNumber"]: r for r in records[:len(bad)]}

    shuffled = random.Random(7)
    orders = [records, records[::-1], shuffled.sample(records, len(records))]
    reported = [invoke(stack, run.function, batch) for batch in orders]

    assert reported == [[], [], []]
    tally = run.tally(good, bad_by_sequence)
    assert tally.lost == [] and tally.doubled == [] and tally.unexplained == []
    assert tally.dead_lettered == tally.dead_letter_messages == len(bad)
    assert tally.actions == sum(1 for a in good.values() if a != "approve")
    assert tally.decision_log_entries == len(good)
    letters = {letter["source"]["sequence_number"]: letter for letter in run.letters}
    reasons = {kinds[s]: letters[s]["reason"] for s in kinds}
    assert reasons["not base64"].startswith("not base64 UTF-8")
    assert reasons["not UTF-8"].startswith("not base64 UTF-8")
    assert reasons["not JSON"].startswith("not JSON")
    assert "order_id" in reasons["no event id"]
    assert "customer_id" in reasons["no entity"]
    assert "order_amount must be a number" in reasons["amount not a number"]
    assert "not a finite number" in reasons["amount not finite"]
    assert "ahead of the processing clock" in reasons["dated 40 days ahead"]
    for kind in ("180,000 é", "90,000 emoji"):
        sequence = next(s for s, k in kinds.items() if k == kind)
        letter = letters[sequence]
        assert letter["payload_truncated"] is True
        assert letter["payload_bytes"] == len(bad[kind])
        assert stored_payload(stack, letter) == bad[kind]


def test_a_large_non_ascii_record_fits_the_queue_whatever_its_characters(
        run: ConsumerRun) -> None:
    """The message is bounded by its encoded size (SQS's 262,144-byte default),
    measured as SQS measures it; the inline part is a prefix of the payload."""
    stack = run.stack
    body = json.dumps({"order_id": "big", "customer_id": "c1",
                       "order_amount": "\U0001f600é\"\\\n" * 60_000}, ensure_ascii=False)
    (record,) = stream(stack).records([body.encode()])
    assert invoke(stack, run.function, [record]) == []
    run.collect()
    (letter,) = [m for m in run.letters
                 if m["source"]["sequence_number"] == record["kinesis"]["sequenceNumber"]]
    encoded = json.dumps(letter, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= 262_144
    assert body.startswith(letter["payload"]) and len(letter["payload"]) > 10_000
    assert stored_payload(stack, letter) == body.encode()


def _sequence_of(records: list[dict[str, Any]], event_id: str) -> str:
    for record in records:
        try:
            if json.loads(record_bytes(record)).get("order_id") == event_id:
                return record["kinesis"]["sequenceNumber"]
        except ValueError:
            continue
    raise KeyError(event_id)


def record_bytes(record: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(record["kinesis"]["data"])


def _is_dead_letter_queue(run: ConsumerRun):
    return lambda params: params.get("QueueUrl") == run.dlq


def _is_action_queue(run: ConsumerRun):
    return lambda params: params.get("QueueUrl") == run.action_queue


def _is_dead_letter_object(params) -> bool:
    return str(params.get("Key", "")).startswith("dead-letters/")


def _is_prediction_object(params) -> bool:
    return str(params.get("Key", "")).startswith("predictions/")


# Each AWS call the consumer makes, at each step, throttled once (the first
# matching call) or for the whole first delivery (``times=None`` until cleared).
STEPS = {
    "feature read (BatchGetItem)": ("dynamodb", "BatchGetItem", None),
    "endpoint (InvokeEndpoint)": ("sagemaker-runtime", "InvokeEndpoint", None),
    "claim (PutItem)": ("dynamodb", "PutItem", None),
    "claim read-back (GetItem)": ("dynamodb", "GetItem", None),
    "action to the topic (Publish)": ("sns", "Publish", None),
    "action to the queue (SendMessage)": ("sqs", "SendMessage", _is_action_queue),
    "completion after the action (UpdateItem)": ("dynamodb", "UpdateItem", None),
    "predictions (PutObject)": ("s3", "PutObject", lambda run: _is_prediction_object),
    "dead-letter mark check (HeadObject)": ("s3", "HeadObject", None),
    "dead-letter payload (PutObject)": ("s3", "PutObject", lambda run: _is_dead_letter_object),
    "dead-letter message (SendMessage)": ("sqs", "SendMessage", _is_dead_letter_queue),
}


#: Calls made only when a record comes again (its claim or its dead-letter mark exists).
ON_REDELIVERY = {"claim read-back (GetItem)"}


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "whole-delivery"])
@pytest.mark.parametrize("step", list(STEPS))
def test_a_throttled_call_at_any_step_loses_nothing_and_doubles_nothing(
        run: ConsumerRun, step: str, persistent: bool) -> None:
    """The call fails (after the SDK's retries) once, or on every attempt of the
    first delivery; the mapping redelivers from the first reported record, as
    Lambda does, and a second delivery of the whole batch follows in reverse
    order. Every good event is acted on once and logged once; every bad one is
    dead-lettered once."""
    stack = run.stack
    prefix = f"t{abs(hash((step, persistent))) % 10**6}"
    payloads, good = good_orders(prefix, stack, 6)
    bad = [b"{not json", json.dumps({"order_id": f"{prefix}-nan", "customer_id": "c1",
                                     "order_amount": None, "account_tenure": 1}).encode()]
    records = stream(stack).records([bad[0], *payloads, bad[1]])
    bad_by_sequence = {records[0]["kinesis"]["sequenceNumber"]: records[0],
                       records[-1]["kinesis"]["sequenceNumber"]: records[-1]}
    service, operation, matcher = STEPS[step]
    when = matcher(run) if matcher is not None else None
    if step in ON_REDELIVERY:  # the call is made only for a record seen before
        assert invoke(stack, run.function, records) == []
    rule = stack.faults.fail(service, operation, times=None if persistent else 1, when=when)

    invoke(stack, run.function, records)
    assert rule.injected >= 1, f"the fault on {step} was never reached"
    stack.faults.clear()
    delivery = deliver(stack, run.function, records)
    assert delivery.unresolved == []
    assert invoke(stack, run.function, records[::-1]) == []

    tally = run.tally(good, bad_by_sequence)
    assert tally.doubled == [], tally
    assert tally.lost == [], tally
    assert tally.unexplained == []
    assert tally.decision_log_entries == len(good)
    assert tally.actions == sum(1 for a in good.values() if a != "approve")
    assert tally.dead_lettered == tally.dead_letter_messages == 2


def test_a_completion_that_keeps_failing_is_finished_by_the_retry_without_acting_again(
        run: ConsumerRun) -> None:
    """Issue 14.2: the UpdateItem after the action is throttled for the whole
    invocation. The record fails; its retry (the same execution environment, as
    Lambda retries a shard) writes the completion and does not act again."""
    stack = run.stack
    payloads, good = good_orders("keep", stack, 3)
    records = stream(stack).records(payloads)
    stack.faults.fail("dynamodb", "UpdateItem", times=None)
    failed = invoke(stack, run.function, records)
    assert failed == [r["kinesis"]["sequenceNumber"] for r in records]
    assert run.actions() == {"keep-0": 1, "keep-1": 1}
    log = decision_log(stack, run.table)
    assert {log[e]["action_status"] for e in good} == {"acting"}

    stack.faults.clear()
    assert invoke(stack, run.function, records) == []
    tally = run.tally(good, {})
    assert tally.doubled == [] and tally.lost == []
    assert tally.decision_log_entries == 3


def test_redelivery_after_the_in_progress_window_never_acts_twice(run: ConsumerRun) -> None:
    """Issue 14.2's second half: the completion was never written and the retry
    lands in another execution environment. Within the claim's lease the record is
    reported as failed (retried, not lost, not acted); past it, the action is not
    performed again: the log says ``unconfirmed`` and the record is dead-lettered
    with that reason and its payload."""
    stack = run.stack
    payloads, good = good_orders("lease", stack, 1)
    records = stream(stack).records(payloads)
    (event_id,) = good
    stack.faults.fail("dynamodb", "UpdateItem", times=None)
    assert invoke(stack, run.function, records) != []
    stack.faults.clear()
    assert run.actions()[event_id] == 1

    run.cold_start()
    assert invoke(stack, run.function, records) == [records[0]["kinesis"]["sequenceNumber"]]
    assert run.actions()[event_id] == 1

    stack.cloud.clock.advance_to(stack.now() + timedelta(minutes=5))
    run.cold_start()
    assert invoke(stack, run.function, records) == []
    assert invoke(stack, run.function, records) == []  # and once more: still once
    assert run.actions()[event_id] == 1
    assert decision_log(stack, run.table)[event_id]["action_status"] == "unconfirmed"
    (letter,) = [m for m in run.letters
                 if m["source"]["sequence_number"] == records[0]["kinesis"]["sequenceNumber"]]
    assert "not performed again" in letter["reason"]
    assert stored_payload(stack, letter) == payloads[0]


def test_an_unreachable_dead_letter_queue_fails_the_bad_records_and_no_other(
        run: ConsumerRun) -> None:
    """The queue refuses every send: the bad records are reported as failed (never
    counted handled), the good ones act; when the queue is back, the redelivery
    dead-letters each bad record once."""
    stack = run.stack
    payloads, good = good_orders("unreach", stack, 4)
    records = stream(stack).records([payloads[0], b"{bad", payloads[1], b"[]", *payloads[2:]])
    bad = {records[1]["kinesis"]["sequenceNumber"]: records[1],
           records[3]["kinesis"]["sequenceNumber"]: records[3]}
    stack.faults.fail("sqs", "SendMessage", times=None, when=_is_dead_letter_queue(run),
                      code="AWS.SimpleQueueService.NonExistentQueue")

    assert invoke(stack, run.function, records) == list(bad)
    assert deliver(stack, run.function, records, rounds=3).unresolved != []
    run.collect()
    assert run.letters == []
    # Nothing good was held back by the bad records' failures.
    assert set(run.actions()) == {e for e, a in good.items() if a != "approve"}

    stack.faults.clear()
    assert deliver(stack, run.function, records).unresolved == []
    tally = run.tally(good, bad)
    assert tally.lost == [] and tally.doubled == [] and tally.unexplained == []
    assert tally.dead_letter_messages == 2


def test_throttling_at_random_over_batches_loses_and_doubles_nothing(run: ConsumerRun) -> None:
    """A small version of benchmarks/bench_faults.py: 200 records, 10% bad, 5% of
    the consumer's calls throttled, delivered as the mapping delivers them and
    again in reverse order."""
    stack = run.stack
    rng = random.Random(3)
    payloads, good = good_orders("rand", stack, 180)
    kinds = list(bad_records("rb", stack.now()).values())
    bad_payloads = [kinds[i % len(kinds)] for i in range(20)]
    mixed = payloads + bad_payloads
    rng.shuffle(mixed)
    records = stream(stack).records(mixed)
    bad = {r["kinesis"]["sequenceNumber"]: r for r, p in zip(records, mixed, strict=True)
           if p in bad_payloads}
    for service, operation in (("dynamodb", "*"), ("s3", "*"), ("sqs", "*"), ("sns", "*"),
                               ("sagemaker-runtime", "*")):
        stack.faults.fail(service, operation, probability=0.05)
    for start in range(0, len(records), 50):
        assert deliver(stack, run.function, records[start:start + 50], rounds=30).unresolved \
            == []
    stack.faults.clear()
    assert invoke(stack, run.function, records[::-1][:100]) == []
    tally = run.tally(good, bad)
    assert tally.lost == [] and tally.doubled == [] and tally.unexplained == [], tally
    assert tally.decision_log_entries == len(good)


# -- the feature updater ---------------------------------------------------------------

UPDATER_FAULTS = {
    "none": None,
    "entity read (GetItem)": ("dynamodb", "GetItem", None),
    "aggregate commit (TransactWriteItems)": ("dynamodb", "TransactWriteItems", None),
    "dead-letter mark check (HeadObject)": ("s3", "HeadObject", None),
    "dead-letter payload (PutObject)": ("s3", "PutObject", None),
    "dead-letter message (SendMessage)": ("sqs", "SendMessage", None),
}


@pytest.mark.parametrize("fault", list(UPDATER_FAULTS))
def test_the_feature_updater_applies_each_event_once_and_keeps_each_bad_one(
        stack: Stack, fraud_spec, fault: str) -> None:
    """Every malformed kind and eight good events of one customer, the first
    delivery under a fault on every attempt of one call, then redelivered as the
    mapping does and twice more in other orders: the online aggregates count each
    good event once, and each bad record is dead-lettered once with its reason
    and its exact bytes."""
    from mdlc_core.features import FeatureSet, OnlineFeatureReader

    stack.faults.clear()
    function = stack.find("DataFeaturesUpdate")
    queue = stack.find("DataFeaturesUpdateFailures")
    drain(stack, queue)
    customer = f"fu{list(UPDATER_FAULTS).index(fault)}"
    now = stack.now()
    events = [order(f"{customer}-{i}", 10.0 * (i + 1), customer=customer,
                    when=now - timedelta(hours=i)) for i in range(8)]
    bad = bad_records(customer, now)
    payloads = [*bad.values(), *(json.dumps(e).encode() for e in events)]
    random.Random(len(customer)).shuffle(payloads)
    records = stream(stack).records(payloads)
    bad_sequences = {r["kinesis"]["sequenceNumber"]: p for r, p in zip(records, payloads,
                                                                         strict=True)
                     if p in bad.values()}
    if UPDATER_FAULTS[fault] is not None:
        service, operation, _ = UPDATER_FAULTS[fault]
        rule = stack.faults.fail(service, operation, times=None)
        assert invoke(stack, function, records) != []
        assert rule.injected >= 1
        stack.faults.clear()

    assert deliver(stack, function, records).unresolved == []
    assert invoke(stack, function, records[::-1]) == []
    assert invoke(stack, function, random.Random(1).sample(records, len(records))) == []

    reader = OnlineFeatureReader(stack.cloud.client("dynamodb"),
                                 stack.find("DataFeaturesOnlineFeatures"),
                                 FeatureSet.from_config(fraud_spec.as_config()))
    row = reader.read_many([customer])[customer]
    assert (row["order_total_30d"], row["order_count_30d"]) == (360.0, 8)
    letters = drain(stack, queue)
    by_sequence: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_sequence.setdefault(letter["source"]["sequence_number"], []).append(letter)
    assert sorted(by_sequence) == sorted(bad_sequences), "each bad record, and only those"
    for sequence, sent in bad_sequences.items():
        (letter,) = by_sequence[sequence]
        assert letter["reason"] and letter["function"] == "feature-update"
        assert stored_payload(stack, letter) == (sent.encode() if isinstance(sent, str)
                                                 else sent)
    assert stack.cloud.authorizer.denied == [], stack.cloud.authorizer.report()


def test_the_local_queue_refuses_what_sqs_refuses(stack: Stack) -> None:
    """moto counts characters and accepts any; SQS counts UTF-8 bytes of body and
    attributes against the queue's MaximumMessageSize (moto 5.2 and the queues
    here: 1 MiB) and refuses characters outside XML's. The dead-letter bound
    above is tested against this."""
    from botocore.exceptions import ClientError

    sqs = stack.cloud.client("sqs")
    queue = stack.find("IntegrationDeadLetters")
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=queue, MessageBody="é" * 600_000)  # 1,200,000 bytes
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=queue, MessageBody="a" * 1_048_000, MessageAttributes={
            "reason": {"DataType": "String", "StringValue": "b" * 600}})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=queue, MessageBody="ok \ufffe")
    assert raised.value.response["Error"]["Code"] == "InvalidMessageContents"
    sqs.send_message(QueueUrl=queue, MessageBody="é" * 524_288)  # exactly 1 MiB
    sqs.purge_queue(QueueUrl=queue)
