"""Incremental feature cost does not grow with history.

Replays 60 days of orders through the incremental engine (in-memory store,
which serializes items as DynamoDB would) and prints the per-event cost on
day 1, day 30 and day 60, next to a baseline run in the same process:
recomputing the window for every event by re-reading the entity's events of
the last 30 days (what an online service without running aggregates does).
Until day 30 an entity's item fills up to one bucket per day of the window;
after that history keeps growing and the incremental cost stays flat while
the recomputation's keeps rising. Ratios, not absolute times, are the result.

    .venv/bin/python benchmarks/bench_features.py [--days 60] [--events-per-day N] [--customers N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from mdlc_core.features import (
    FeatureSet,
    IncrementalEngine,
    MemoryStore,
    day_number,
    incremental_table,
    to_micros,
)

CONFIG = {
    "name": "bench",
    "data": {"entity_key": "customer_id", "event_id": "order_id", "timestamp": "order_ts",
             "columns": [{"name": n} for n in ("order_id", "customer_id", "order_ts",
                                               "order_amount")]},
    "features": {
        "aggregates": [
            {"name": "order_total_30d", "function": "sum", "column": "order_amount",
             "window_days": 30},
            {"name": "order_count_30d", "function": "count", "window_days": 30},
            {"name": "order_max_30d", "function": "max", "column": "order_amount",
             "window_days": 30},
        ],
        "expressions": [{"name": "amount_to_30d_mean",
                         "expression": "order_amount / (order_total_30d / order_count_30d)"}],
    },
}


def make_events(days: int, per_day: int, customers: int, seed: int = 1) -> list[list[dict]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out, n = [], 0
    for day in range(days):
        today = []
        for second in sorted(rng.randrange(86_400) for _ in range(per_day)):
            today.append({"order_id": f"o{n}", "customer_id": f"c{rng.randrange(customers)}",
                          "order_ts": (start + timedelta(days=day, seconds=second)).isoformat(),
                          "order_amount": rng.randrange(100, 50_000) / 100})
            n += 1
        out.append(today)
    return out


class Recompute:
    """Baseline: keep every event, and per event re-read its entity's window."""

    def __init__(self, features: FeatureSet) -> None:
        self.features = features
        self.log: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        self.log[event["customer_id"]].append(event)
        today = to_micros(event["order_ts"]) // 86_400_000_000
        # Re-read: parse and filter the entity's whole history, as a query would.
        window = [e for e in self.log[event["customer_id"]]
                  if today - 30 < to_micros(e["order_ts"]) // 86_400_000_000 <= today]
        amounts = [e["order_amount"] for e in window]
        return {"order_total_30d": sum(amounts), "order_count_30d": len(window),
                "order_max_30d": max(amounts)}


def per_event_us(apply: Any, events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        apply(event)
    return (time.perf_counter() - started) / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60,
                        help="days replayed (at least 30); default 60: history doubles "
                        "after the 30-day window is full")
    parser.add_argument("--events-per-day", type=int, default=2_000)
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args()
    features = FeatureSet.from_config(CONFIG)
    days = make_events(args.days, args.events_per_day, args.customers)

    engine = IncrementalEngine(features, MemoryStore())
    baseline = Recompute(features)
    costs: dict[int, tuple[float, float]] = {}
    for index, events in enumerate(days, start=1):
        incremental = per_event_us(engine.apply, events)
        recompute = per_event_us(baseline.apply, events)
        costs[index] = (incremental, recompute)

    if args.days < 30:
        parser.error("--days must be at least 30 (the window of order_total_30d)")
    def around(day: int) -> tuple[float, float]:
        # The median of three days: one day's 2,000 events is a noisy sample.
        picked = [costs[d] for d in range(max(1, day - 2), day + 1)]
        return (statistics.median(c[0] for c in picked), statistics.median(c[1] for c in picked))

    first, full, last = costs[1], around(30), around(args.days)
    history = sum(len(d) for d in days) / args.customers
    print(f"{args.days} days x {args.events_per_day} events/day, {args.customers} customers "
          f"(~{history:.0f} events per customer by the last day)")
    # Day 1 -> 30 the entity items fill up to one bucket per day of the window;
    # from day 30 on the history keeps growing and the item does not.
    print(f"{'':28}{'day 1':>10}{'day 30':>10}{f'day {args.days}':>10}"
          f"{'1->30':>9}{f'30->{args.days}':>9}")
    for label, index in (("incremental (us/event)", 0), ("recompute window (us/event)", 1)):
        print(f"{label:28}{first[index]:10.1f}{full[index]:10.1f}{last[index]:10.1f}"
              f"{full[index] / first[index]:8.2f}x{last[index] / full[index]:8.2f}x")
    print(f"recompute / incremental: day 30 {full[1] / full[0]:.1f}x, "
          f"day {args.days} {last[1] / last[0]:.1f}x")

    # The numbers must agree, or the speed is meaningless: the batch table
    # (the features compiled to SQL, on DuckDB) against the online engine's.
    from mdlc_core.sql import features as sql_features

    flat = [e for d in days for e in d]
    as_of = flat[-1]["order_ts"][:10]
    batch = sql_features.as_of(flat, features, as_of)
    online = incremental_table(flat, features, as_of)
    assert [round(r["order_total_30d"], 6) for r in batch] == \
        [round(r["order_total_30d"], 6) for r in online]
    assert day_number(as_of) - day_number(flat[0]["order_ts"][:10]) == args.days - 1
    print(f"batch and incremental tables agree ({len(batch)} customers as of {as_of})")


if __name__ == "__main__":
    main()
