"""Faults and bad input at volume (issue 14): nothing lost, nothing doubled, every rejection kept.

Synthesizes the example stack once, deploys it on the local runtime (every
call as the function's role) and drives the stream consumer and the feature
updater with the same records, as the stream fans them out:

* ``--records`` records (default 10,000), ``--bad`` of them malformed (10%,
  every kind issue 14 lists in turn, 180,000 "é" and 90,000 emoji included),
  in batches of 100 delivered as a Kinesis event source mapping with partial
  batch responses delivers them (after a reported failure, from the first
  reported record on, until none fails);
* ``--throttled`` of the functions' AWS calls (5%) failing as a throttled
  service answers after the SDK's retries, on every service they call;
* then the whole stream delivered once more in reverse order, faults still on.

It prints, per function: records in, actions (at the topic and the queue),
decision-log entries, doubles, lost, dead-lettered, the reported failures
(redeliveries), the calls made and failed, and seconds; and, as the
baseline measured in the same run, the same records without bad ones or
faults, with the ratio of the two times (what faults and bad input cost).

    .venv/bin/python benchmarks/bench_faults.py [--records 10000] [--bad 0.1] [--throttled 0.05]

It takes minutes; not part of the tests (tests/test_faults_*.py run small
versions of it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # jsii's banner
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lambdas"))

from mdlc_constructs.local.simulation import synthesize  # noqa: E402
from mdlc_constructs.spec import load_spec  # noqa: E402
from tests.fault_harness import (  # noqa: E402
    ConsumerRun,
    Delivery,
    Stack,
    Stream,
    bad_records,
    deliver,
    drain,
    expected_action,
    fraud_stack,
    order,
    sent_bytes,
    stored_payload,
)

BATCH = 100
SERVICES = ("dynamodb", "s3", "sqs", "sns", "sagemaker-runtime")


def make_records(stack: Stack, stream: Stream, count: int, bad_share: float, seed: int
                 ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """(records in stream order, bad records by sequence number, good events by id)."""
    rng = random.Random(seed)
    now = stack.now()
    kinds = list(bad_records(f"s{seed}", now).values())
    bad_count = int(count * bad_share)
    good = [order(f"s{seed}-o{i}", rng.choice((950.0, 700.0, 120.0, 40.0)),
                  customer=f"s{seed}-c{i % 500}", when=now - timedelta(seconds=count - i))
            for i in range(count - bad_count)]
    payloads: list[bytes | str] = [json.dumps(e).encode() for e in good]
    bad_payloads = [kinds[i % len(kinds)] for i in range(bad_count)]
    slots = sorted(rng.sample(range(count), bad_count))
    for slot, payload in zip(slots, bad_payloads, strict=True):
        payloads.insert(slot, payload)
    records = stream.records(payloads)
    bad = {records[s]["kinesis"]["sequenceNumber"]: records[s] for s in slots}
    return records, bad, {e["order_id"]: e for e in good}


def drive(stack: Stack, function: str, records: Sequence[dict[str, Any]]) -> Delivery:
    delivery = Delivery()
    unresolved: list[str] = []
    for start in range(0, len(records), BATCH):
        deliver(stack, function, records[start:start + BATCH], rounds=100, delivery=delivery)
        unresolved += delivery.unresolved
    backwards = list(reversed(records))
    for start in range(0, len(backwards), BATCH):  # the whole stream again, another order
        deliver(stack, function, backwards[start:start + BATCH], rounds=100, delivery=delivery)
        unresolved += delivery.unresolved
    delivery.unresolved = unresolved
    return delivery


def updater_tally(stack: Stack, config: dict[str, Any], function: str, queue: str,
                  good: dict[str, Any], bad: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each customer's online aggregates against its good events (each counted once),
    and each bad record dead-lettered once with its bytes."""
    from mdlc_core.features import FeatureSet, OnlineFeatureReader

    expected: dict[str, list[float]] = {}
    for event in good.values():
        expected.setdefault(event["customer_id"], []).append(event["order_amount"])
    reader = OnlineFeatureReader(stack.cloud.client("dynamodb"),
                                 stack.find("DataFeaturesOnlineFeatures"),
                                 FeatureSet.from_config(config))
    rows = reader.read_many(sorted(expected))
    counted = sum(int(rows.get(c, {}).get("order_count_30d") or 0) for c in expected)
    doubled = sum(max(0, int(rows.get(c, {}).get("order_count_30d") or 0) - len(a))
                  for c, a in expected.items())
    lost = sum(max(0, len(a) - int(rows.get(c, {}).get("order_count_30d") or 0))
               for c, a in expected.items())
    wrong_totals = [c for c, a in expected.items()
                    if abs((rows.get(c, {}).get("order_total_30d") or 0.0) - sum(a)) > 1e-6]
    letters: dict[str, list[dict[str, Any]]] = {}
    for letter in drain(stack, queue):
        letters.setdefault(letter["source"]["sequence_number"], []).append(letter)
    kept = [s for s in bad if s in letters]
    unexplained = [s for s in kept if not letters[s][0].get("reason")
                   or stored_payload(stack, letters[s][0]) != sent_bytes(bad[s])]
    return {"applied": counted, "doubles": doubled + sum(len(v) - 1 for v in letters.values()),
            "lost": lost + len(bad) - len(kept), "dead_lettered": len(kept),
            "wrong_totals": len(wrong_totals), "unexplained": len(unexplained)}


def run(stack: Stack, config: dict[str, Any], *, count: int, bad_share: float,
        throttled: float, seed: int) -> dict[str, Any]:
    stream = Stream(stack, start=seed * 10**7)
    records, bad, good = make_records(stack, stream, count, bad_share, seed)
    stack.faults.clear()
    if throttled:
        for service in SERVICES:
            stack.faults.fail(service, "*", probability=throttled)
    calls_before = sum(stack.faults.calls.values())
    injected_before = sum(stack.faults.injected.values())

    consumer = ConsumerRun(stack)
    consumer.collect()
    stack.cloud.notifications.clear()
    started = time.perf_counter()
    consumer_delivery = drive(stack, consumer.function, records)
    consumer_seconds = time.perf_counter() - started

    updater = stack.find("DataFeaturesUpdate")
    started = time.perf_counter()
    updater_delivery = drive(stack, updater, records)
    updater_seconds = time.perf_counter() - started
    stack.faults.clear()

    tally = consumer.tally({e: expected_action(v["order_amount"]) for e, v in good.items()},
                           bad)
    updated = updater_tally(stack, config, updater, stack.find("DataFeaturesUpdateFailures"),
                            good, bad)
    return {
        "consumer": tally, "consumer_delivery": consumer_delivery,
        "consumer_seconds": consumer_seconds, "updater": updated,
        "updater_delivery": updater_delivery, "updater_seconds": updater_seconds,
        "calls": sum(stack.faults.calls.values()) - calls_before,
        "failed_calls": sum(stack.faults.injected.values()) - injected_before,
        "denied": len(stack.cloud.authorizer.denied),
    }


def report(title: str, result: dict[str, Any], count: int) -> None:
    tally, delivery = result["consumer"], result["consumer_delivery"]
    print(f"{title}: {result['calls']:,} AWS calls by the functions, "
          f"{result['failed_calls']:,} throttled; calls refused to a role: {result['denied']}")
    print(f"  stream consumer: {tally.line()} ({tally.dead_letter_messages} messages, "
          f"{tally.unconfirmed} unconfirmed), reported failures "
          f"{delivery.reported_failures} over {delivery.invocations} invocations, "
          f"unresolved {len(delivery.unresolved)}, unexplained {len(tally.unexplained)}; "
          f"{result['consumer_seconds']:.1f} s ({count * 2 / result['consumer_seconds']:.0f} "
          "records/s over two deliveries)")
    updated, delivery = result["updater"], result["updater_delivery"]
    print(f"  feature updater: records in {count}, applied {updated['applied']}, doubles "
          f"{updated['doubles']}, lost {updated['lost']}, dead-lettered "
          f"{updated['dead_lettered']}, wrong totals {updated['wrong_totals']}, "
          f"unexplained {updated['unexplained']}, reported failures "
          f"{delivery.reported_failures} over {delivery.invocations} invocations; "
          f"{result['updater_seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--bad", type=float, default=0.10, help="share of malformed records")
    parser.add_argument("--throttled", type=float, default=0.05,
                        help="share of the functions' AWS calls that fail")
    args = parser.parse_args()
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    started = time.perf_counter()
    stack_name = synthesize(spec, work / "cdk.out")
    print(f"synthesis: {time.perf_counter() - started:.1f} s")
    with fraud_stack(work / "cdk.out", stack_name) as stack:
        config = spec.as_config()
        baseline = run(stack, config, count=args.records, bad_share=0.0, throttled=0.0, seed=1)
        report("baseline (no bad records, no faults)", baseline, args.records)
        faulty = run(stack, config, count=args.records, bad_share=args.bad,
                     throttled=args.throttled, seed=2)
        report(f"faults ({args.bad:.0%} bad records, {args.throttled:.0%} throttled calls)",
               faulty, args.records)
    base = baseline["consumer_seconds"] + baseline["updater_seconds"]
    seconds = faulty["consumer_seconds"] + faulty["updater_seconds"]
    print(f"time with faults / baseline: {seconds / base:.2f}")
    consumer, updater = faulty["consumer"], faulty["updater"]
    ok = (not consumer.lost and not consumer.doubled and not consumer.unexplained
          and not updater["lost"] and not updater["doubles"] and not updater["unexplained"]
          and not updater["wrong_totals"] and not faulty["denied"])
    print("nothing lost, nothing doubled, every rejection kept: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
