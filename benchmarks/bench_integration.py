"""Client integration: the fused path against one call per record.

    .venv/bin/python benchmarks/bench_integration.py [N]   (default N = 1,000)

Runs N stream records of the example fraud spec through the real
``mdlc_core`` code (parse, features, endpoint, rules, actions, decision log)
with stubbed AWS clients that only count calls, twice: in batches of the
spec's ``integration.batch_size`` (the fused consumer) and one record at a
time (what a per-event path costs: one feature read, one endpoint call, one
log write each). Prints, per 1,000 records, the in-process time per record
and the DynamoDB and SageMaker calls of each, and their ratios. Exits 1 if
the fused path makes fewer than 25x fewer feature and endpoint calls or
adds 1 ms or more per record.

Features are read as the deployed consumer reads them:
``mdlc_core.features.OnlineFeatureReader`` over the items ``feature_update``
writes (day buckets per entity and its latest event, built here by replaying
30 days of history through ``IncrementalEngine``), window values computed in
process as of the day.

Not counted (the same on both paths): Powertools idempotency's two
DynamoDB writes per acted event, and one SNS/SQS call per blocked or
reviewed event.
"""

from __future__ import annotations

import io
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT))
from mdlc_core.actions import Clients, DecisionLog, Dispatcher, Targets  # noqa: E402
from mdlc_core.decisions import RuleSet  # noqa: E402
from mdlc_core.features import (  # noqa: E402
    FeatureSet,
    IncrementalEngine,
    MemoryStore,
    OnlineFeatureReader,
    to_dynamo,
)
from mdlc_core.scoring import (  # noqa: E402
    BatchScorer,
    EndpointScorer,
    FeaturePlan,
)

from mdlc_constructs.spec import load_spec  # noqa: E402

CALLS: Counter[str] = Counter()


class StubDynamoDB:
    def __init__(self, items: dict[str, dict[str, Any]]) -> None:
        self.items = items

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        CALLS["dynamodb.BatchGetItem"] += 1
        (table, request), = RequestItems.items()
        found = [self.items[k["pk"]["S"]] for k in request["Keys"] if k["pk"]["S"] in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        CALLS["dynamodb.BatchWriteItem"] += 1
        return {"UnprocessedItems": {}}


class StubRuntime:
    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        CALLS["sagemaker.InvokeEndpoint"] += 1
        rows = kwargs["Body"].split(b"\n")
        scores = [str(min(float(row.split(b",", 1)[0]) / 1000, 1.0)) for row in rows]
        return {"Body": io.BytesIO("\n".join(scores).encode()), "InvokedProductionVariant": "a"}


class StubMessaging:
    def publish(self, **kwargs: Any) -> dict[str, Any]:
        CALLS["sns.Publish"] += 1
        return {"MessageId": "m"}

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        CALLS["sqs.SendMessage"] += 1
        return {"MessageId": "m"}


TODAY = "2026-11-02"
HISTORY_EVENTS_PER_CUSTOMER = 6  # spread over the 30-day window: realistic day buckets


def make_records(n: int, config: dict[str, Any],
                 seed: int = 7) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """N stream records, and the online feature items of their customers as
    ``feature_update`` leaves them (DynamoDB attribute format)."""
    from boto3.dynamodb.types import TypeSerializer

    rng = random.Random(seed)
    customers = [f"c{i}" for i in range(max(1, n // 5))]
    records = [
        (
            str(i),
            json.dumps({"order_id": f"o{i}", "customer_id": rng.choice(customers),
                        "order_amount": round(rng.uniform(1, 1000), 2),
                        "account_tenure": rng.randint(0, 3000),
                        "order_ts": f"{TODAY}T10:00:00Z"}),
        )
        for i in range(n)
    ]
    store = MemoryStore()
    engine = IncrementalEngine(FeatureSet.from_config(config), store)
    for c in customers:
        for j in range(HISTORY_EVENTS_PER_CUSTOMER):
            engine.apply({"order_id": f"h-{c}-{j}", "customer_id": c,
                          "order_ts": f"2026-10-{rng.randint(5, 31):02d}T12:00:00Z",
                          "order_amount": round(rng.uniform(1, 1000), 2),
                          "account_tenure": rng.randint(0, 3000)})
    serialize = TypeSerializer().serialize
    items = {
        key: {k: serialize(to_dynamo(v)) for k, v in {**json.loads(text), "pk": key}.items()}
        for key, (text, _) in store.items.items()
    }
    return records, items


def run(records: list[tuple[str, str]], batch_size: int, parts: dict[str, Any]) -> float:
    """Seconds for all records; CALLS counts what the stubs saw."""
    scorer, dispatcher, log = parts["scorer"], parts["dispatcher"], parts["log"]
    started = time.perf_counter()
    for start in range(0, len(records), batch_size):
        outcome = scorer.score(records[start : start + batch_size])
        for _, decision in outcome.decisions:
            dispatcher.perform(decision)
        log.write_many(d for _, d in outcome.decisions)
    return time.perf_counter() - started


def measure(records, batch_size, parts, repeats: int = 5) -> tuple[float, Counter[str]]:
    best = float("inf")
    for _ in range(repeats):
        CALLS.clear()
        best = min(best, run(records, batch_size, parts))
    return best, Counter(CALLS)


def main(n: int = 1000) -> int:
    config = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    batch_size = config["integration"]["batch_size"]
    records, items = make_records(n, config)
    messaging = StubMessaging()
    clients = Clients(dynamodb=StubDynamoDB(items), sagemaker_runtime=StubRuntime(),
                      sns=messaging, sqs=messaging)
    rules = RuleSet.from_config(config)
    parts = {
        "scorer": BatchScorer(
            FeaturePlan(config),
            # The consumer's reader, as of the records' day (a fixed clock).
            OnlineFeatureReader(clients.get("dynamodb"), "features",
                                FeatureSet.from_config(config),
                                clock=lambda: 1_793_620_800),  # 2026-11-02T12:00:00Z
            EndpointScorer(clients.get("sagemaker-runtime"), "endpoint"),
            rules,
            model_version="pkg/1",
        ),
        "dispatcher": Dispatcher.from_config(
            config, clients, Targets(topic_arn="arn:t", queue_url="https://q")
        ),
        "log": DecisionLog(clients, table_name="decisions"),
    }
    # The reads must find real windows, or the figures would flatter the fused path.
    sample = sorted({json.loads(r[1])["customer_id"] for r in records[:batch_size]})
    found = parts["scorer"].reader.read_many(sample)
    if len(found) != len(sample) or not all(f["order_count_30d"] for f in found.values()):
        print(f"online features missing: {len(found)} of {len(sample)} entities found")
        return 1
    run(records[:50], batch_size, parts)  # warm up caches and the expression code

    fused_s, fused = measure(records, batch_size, parts)
    single_s, single = measure(records, 1, parts)

    def scoring(calls: Counter[str]) -> int:
        return calls["dynamodb.BatchGetItem"] + calls["sagemaker.InvokeEndpoint"]

    def storage(calls: Counter[str]) -> int:
        return calls["dynamodb.BatchGetItem"] + calls["dynamodb.BatchWriteItem"]

    per_k = 1000 / n
    print(f"client integration, {n} records, fused batch size {batch_size}, stubbed AWS clients")
    print(f"{'':34}{'fused':>10}{'per record':>12}{'ratio':>9}")
    rows = [
        ("in-process time per record (us)", fused_s / n * 1e6, single_s / n * 1e6),
        ("DynamoDB feature reads / 1k", fused["dynamodb.BatchGetItem"] * per_k,
         single["dynamodb.BatchGetItem"] * per_k),
        ("DynamoDB decision-log writes / 1k", fused["dynamodb.BatchWriteItem"] * per_k,
         single["dynamodb.BatchWriteItem"] * per_k),
        ("SageMaker endpoint calls / 1k", fused["sagemaker.InvokeEndpoint"] * per_k,
         single["sagemaker.InvokeEndpoint"] * per_k),
        ("features + endpoint calls / 1k", scoring(fused) * per_k, scoring(single) * per_k),
        ("all DynamoDB + SageMaker / 1k",
         (storage(fused) + fused["sagemaker.InvokeEndpoint"]) * per_k,
         (storage(single) + single["sagemaker.InvokeEndpoint"]) * per_k),
    ]
    for label, a, b in rows:
        print(f"{label:34}{a:>10.1f}{b:>12.1f}{b / a if a else float('inf'):>8.1f}x")
    print(f"actions (SNS + SQS) / 1k, both paths: "
          f"{(fused['sns.Publish'] + fused['sqs.SendMessage']) * per_k:.0f}")

    ratio = scoring(single) / scoring(fused)
    per_record_ms = fused_s / n * 1e3
    ok = ratio >= 25 and per_record_ms < 1
    print(f"fused: {ratio:.0f}x fewer feature + endpoint calls (need >= 25x), "
          f"{per_record_ms * 1000:.0f} us per record in process (need < 1000 us): "
          f"{'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
