"""Faults and bad input for the stream and batch handlers, on the local runtime.

The synthesized fraud stack is deployed by ``mdlc_constructs.local`` (every
call runs as the function's role and is checked as AWS checks it), its real
handlers run from their code assets, and :class:`Faults` makes chosen AWS
calls fail as a throttled service answers, *after* the SDK's own retries
(the local hooks answer before botocore's retry loop, so the error reaches
the handler as it does when AWS keeps throttling). What the handlers did is
counted from the resources themselves: the action topic and queue, the
decision log table, the dead-letter queue and the dead letters' payloads in
S3. Used by ``tests/test_faults_*.py`` and ``benchmarks/bench_faults.py``.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mdlc_constructs.local.hooks import ServiceError, streaming

#: What each service answers when it throttles.
THROTTLE_CODES = {
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "s3": ("SlowDown", 503),
    "sqs": ("ThrottlingException", 400),
    "sns": ("Throttling", 400),
    "sagemaker-runtime": ("ThrottlingException", 400),
}


@dataclass
class Rule:
    service: str
    operation: str
    times: int | None = 1
    probability: float | None = None
    when: Callable[[Mapping[str, Any]], bool] | None = None
    code: str | None = None
    status: int = 400
    injected: int = 0


class Faults:
    """Make chosen calls of the handlers fail (the test's own calls never do)."""

    def __init__(self, cloud: Any, *, seed: int = 0) -> None:
        self.cloud = cloud
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        guard = cloud.hooks.guard

        def check(service: str, operation: str, params: dict[str, Any]) -> None:
            if guard is not None:
                guard(service, operation, params)  # permissions first, as AWS checks them
            if cloud.principals.current() is not None:
                self.calls[f"{service}:{operation}"] += 1
                self._maybe_fail(service, operation, params)

        cloud.hooks.guard = check

    def fail(self, service: str, operation: str, *, times: int | None = 1,
             probability: float | None = None,
             when: Callable[[Mapping[str, Any]], bool] | None = None,
             code: str | None = None) -> Rule:
        """The next ``times`` matching calls fail (None: every one); or each with
        ``probability``. ``code``: the error (default: the service's throttling)."""
        default, status = THROTTLE_CODES.get(service, ("ThrottlingException", 400))
        rule = Rule(service, operation, times=times, probability=probability, when=when,
                    code=code or default, status=status if code is None else 400)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def _maybe_fail(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        for rule in self.rules:
            if (rule.service, rule.operation) != (service, operation) and \
                    (rule.service, rule.operation) != (service, "*"):
                continue
            if rule.when is not None and not rule.when(params):
                continue
            if rule.probability is not None:
                if self.random.random() >= rule.probability:
                    continue
            elif rule.times is not None and rule.injected >= rule.times:
                continue
            rule.injected += 1
            self.injected[f"{service}:{operation}"] += 1
            raise ServiceError(str(rule.code), f"injected fault on {service} {operation}",
                               status=rule.status)


def score_endpoint(params: dict[str, Any]) -> dict[str, Any]:
    """The endpoint, for these runs: each row's first value (order_amount) / 1000,
    so a test chooses its decision by the amount; a row without one scores NaN
    (no numeric score: the record is dead-lettered)."""
    rows = params["Body"].decode().split("\n") if isinstance(params["Body"], bytes) \
        else str(params["Body"]).split("\n")
    scores = [str(float(r.split(",")[0]) / 1000) if r.split(",")[0] else "nan" for r in rows]
    return {"Body": streaming("\n".join(scores).encode()), "ContentType": "text/csv",
            "InvokedProductionVariant": "blue"}


@dataclass
class Stack:
    """The deployed fraud stack's pieces the fault runs use."""

    cloud: Any
    name: str
    faults: Faults
    physical: dict[str, Any] = field(default_factory=dict)

    def find(self, prefix: str) -> Any:
        (match,) = [v for k, v in self.physical.items()
                    if k.startswith(prefix) and not k[len(prefix):].startswith(
                        ("Role", "Kinesis", "Policy", "ServiceRole", "LogGroup"))
                    and len(k) - len(prefix) <= 8]
        return match

    @property
    def stream_arn(self) -> str:
        (logical,) = [k for k in self.physical if k.startswith("Events")
                      and len(k) == len("Events") + 8]
        return str(self.cloud.deployed[self.name].resolver.attributes[logical]["Arn"])

    def now(self) -> datetime:
        return self.cloud.clock.now()


@contextmanager
def fraud_stack(assembly: Path, stack: str = "Mdlc-fraud", *, seed: int = 0
                ) -> Iterator[Stack]:
    """The synthesized stack deployed locally, its endpoint answering by the amount."""
    from mdlc_constructs.local.runtime import LocalCloud

    with LocalCloud(assembly, start=datetime.now(UTC).replace(microsecond=0),
                    stacks=[stack]) as cloud:
        cloud.hooks.add("sagemaker-runtime", "InvokeEndpoint", score_endpoint)
        yield Stack(cloud, stack, Faults(cloud, seed=seed), dict(cloud.deployed[stack].physical))


# --- records --------------------------------------------------------------------------


def order(order_id: str, amount: Any, *, customer: str = "c1", when: datetime) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": customer, "order_amount": amount,
            "account_tenure": 400, "order_ts": when.isoformat()}


def bad_records(prefix: str, now: datetime) -> dict[str, bytes | str]:
    """One record of every malformed kind issue 14 lists, as the bytes a producer
    put (a ``str`` is Kinesis data that is not base64 at all)."""
    good = order(f"{prefix}-x", 950.0, when=now)

    def encoded(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode()

    return {
        "not base64": "%%% not base64 %%%",
        "not UTF-8": b"\xff\xfe\x00 order",
        "not JSON": b"{not json",
        "JSON not an object": b"[1, 2, 3]",
        "no event id": encoded({k: v for k, v in good.items() if k != "order_id"}),
        "no entity": encoded({k: v for k, v in good.items() if k != "customer_id"}),
        "amount not a number": encoded(good | {"order_id": f"{prefix}-a", "order_amount": "lots"}),
        "amount not finite": (f'{{"order_id": "{prefix}-n", "customer_id": "c1", '
                              '"order_amount": NaN}').encode(),
        "timestamp not a timestamp": encoded(good | {"order_id": f"{prefix}-t",
                                                     "order_ts": "yesterday"}),
        "dated 40 days ahead": encoded(good | {"order_id": f"{prefix}-f",
                                               "order_ts": (now + timedelta(days=40))
                                               .isoformat()}),
        "dated 10 years ahead": encoded(good | {"order_id": f"{prefix}-g",
                                                "order_ts": (now + timedelta(days=3650))
                                                .isoformat()}),
        "180,000 é": encoded(good | {"order_id": f"{prefix}-e", "order_amount": "é" * 180_000}),
        "90,000 emoji": encoded(good | {"order_id": f"{prefix}-m",
                                        "order_amount": "\U0001f600" * 90_000}),
    }


class Stream:
    """Kinesis records of one shard, with the stack's stream ARN and rising sequence numbers."""

    def __init__(self, stack: Stack, *, start: int = 1) -> None:
        self.stack = stack
        self.next = start

    def records(self, payloads: Sequence[bytes | str]) -> list[dict[str, Any]]:
        out = []
        for payload in payloads:
            sequence = str(10**20 + self.next)
            self.next += 1
            data = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
            out.append({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "p",
                            "sequenceNumber": sequence, "data": data,
                            "approximateArrivalTimestamp": self.stack.now().timestamp()},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": self.stack.stream_arn,
            })
        return out


@dataclass
class Delivery:
    """What a function answered over the deliveries of a run."""

    invocations: int = 0
    reported_failures: int = 0
    function_errors: int = 0
    #: Records still failing when the run stopped redelivering them.
    unresolved: list[str] = field(default_factory=list)


def invoke(stack: Stack, function: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """One delivery; returns the reported sequence numbers (all, on a function error)."""
    invocation = stack.cloud.lambdas.invoke(function, json.dumps({"Records": list(records)})
                                            .encode())
    if invocation.error:
        return [r["kinesis"]["sequenceNumber"] for r in records]
    body = json.loads(invocation.payload)
    return [f["itemIdentifier"] for f in body.get("batchItemFailures", [])]


def deliver(stack: Stack, function: str, records: Sequence[dict[str, Any]], *,
            rounds: int = 12, delivery: Delivery | None = None) -> Delivery:
    """Deliver ``records`` as a Kinesis event source mapping with partial batch
    responses does: after a reported failure the batch is sent again from the
    first reported record on (records after it included), until none fail or
    ``rounds`` deliveries."""
    delivery = delivery or Delivery()
    pending = list(records)
    for _ in range(rounds):
        if not pending:
            break
        failed = invoke(stack, function, pending)
        delivery.invocations += 1
        delivery.reported_failures += len(failed)
        if not failed:
            pending = []
            break
        first = min(range(len(pending)),
                    key=lambda i: (pending[i]["kinesis"]["sequenceNumber"] not in failed, i))
        pending = pending[first:]
    delivery.unresolved = [r["kinesis"]["sequenceNumber"] for r in pending]
    return delivery


# --- what the handlers did --------------------------------------------------------------


def drain(stack: Stack, queue_url: str) -> list[dict[str, Any]]:
    """Every message of a queue (the test plays the reader, not a checked caller)."""
    sqs = stack.cloud.client("sqs")
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def decision_log(stack: Stack, table: str) -> dict[str, dict[str, Any]]:
    """The decision log's items by event id (plain values)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    return {item["event_id"]["S"]: {k: deserialize(v) for k, v in item.items()}
            for item in stack.cloud.items.all_items(table)}


def stored_payload(stack: Stack, letter: Mapping[str, Any]) -> bytes:
    where = letter["payload_location"]
    return stack.cloud.client("s3").get_object(Bucket=where["bucket"],
                                                Key=where["key"])["Body"].read()


def sent_bytes(record: Mapping[str, Any]) -> bytes:
    """What a record carried, as the dead letter must give it back."""
    data = record["kinesis"]["data"]
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return data.encode()


@dataclass
class Tally:
    """Counts of one run and the invariants issue 14 asks for."""

    records_in: int = 0
    actions: int = 0
    decision_log_entries: int = 0
    doubled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    dead_letter_messages: int = 0
    unexplained: list[str] = field(default_factory=list)
    unconfirmed: int = 0

    def line(self) -> str:
        return (f"records in {self.records_in}, actions {self.actions}, decision-log "
                f"entries {self.decision_log_entries}, doubles {len(self.doubled)}, lost "
                f"{len(self.lost)}, dead-lettered {self.dead_lettered}")


class ConsumerRun:
    """The stream consumer of the deployed stack, and what it has done so far."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.function = stack.find("IntegrationConsumer")
        self.dlq = stack.find("IntegrationDeadLetters")
        self.action_queue = stack.find("IntegrationActionQueue")
        self.topic = stack.find("IntegrationActionTopic")
        self.table = stack.find("IntegrationDecisions")
        self.letters: list[dict[str, Any]] = []
        self.queued: list[dict[str, Any]] = []

    def cold_start(self) -> None:
        """The next invocation runs in a new execution environment (modules reloaded)."""
        self.stack.cloud.lambdas.get(self.function).module = None

    def collect(self) -> None:
        self.letters += drain(self.stack, self.dlq)
        self.queued += drain(self.stack, self.action_queue)

    def actions(self) -> Counter[str]:
        """Event id -> how many times its action reached a target (topic or queue)."""
        self.collect()
        acted: Counter[str] = Counter()
        for note in self.stack.cloud.notifications:
            if note["topic"] == self.topic:
                acted[json.loads(note["message"])["event_id"]] += 1
        for message in self.queued:
            acted[message["event_id"]] += 1
        return acted

    def tally(self, good: Mapping[str, str], bad: Mapping[str, dict[str, Any]]) -> Tally:
        """``good``: event id -> the action its decision takes; ``bad``: sequence
        number -> the record that must be dead-lettered."""
        acted = self.actions()
        log = decision_log(self.stack, self.table)
        letters: dict[str, list[dict[str, Any]]] = {}
        for letter in self.letters:
            letters.setdefault(letter["source"]["sequence_number"], []).append(letter)
        tally = Tally(records_in=len(good) + len(bad))
        tally.actions = sum(acted[e] for e in good)
        tally.decision_log_entries = sum(
            1 for e in good if log.get(e, {}).get("action_status", "done") == "done"
            and e in log)
        tally.doubled = sorted(e for e, n in acted.items() if n > 1)
        tally.dead_letter_messages = sum(len(v) for v in letters.values())
        for event_id, action in good.items():
            entry = log.get(event_id)
            status = (entry or {}).get("action_status")
            if status == "unconfirmed":
                tally.unconfirmed += 1
                if not any(json.loads(sent_bytes_text(letter)).get("order_id") == event_id
                           for sent in letters.values() for letter in sent):
                    tally.lost.append(event_id)
                continue
            sent_out = acted[event_id] == 1 or action == "approve"
            if entry is None or status != "done" or not sent_out:
                tally.lost.append(event_id)
        for sequence, record in bad.items():
            kept = letters.get(sequence, [])
            if not kept:
                tally.lost.append(f"bad record {sequence}")
                continue
            tally.dead_lettered += 1
            if len(kept) > 1:
                tally.doubled.append(f"dead letter {sequence}")
            letter = kept[0]
            if not letter.get("reason") or stored_payload(self.stack, letter) != \
                    sent_bytes(record):
                tally.unexplained.append(sequence)
        return tally


def sent_bytes_text(letter: Mapping[str, Any]) -> str:
    """An unconfirmed action's dead letter carries the record's JSON payload inline."""
    return letter["payload"] if letter.get("payload_encoding") == "utf-8" else "{}"


def expected_action(amount: float) -> str:
    """The fraud spec's rules for the endpoint above (score = amount / 1000)."""
    score = amount / 1000
    return "block" if score >= 0.9 else "review" if score >= 0.6 else "approve"
