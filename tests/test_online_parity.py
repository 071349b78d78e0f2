"""Online features equal training features, whatever the updater does (issue #15).

The vector scored for an event must be the batch engine's row for it
(``mdlc_core.sql.features.per_event`` on DuckDB, the training row: its
window as of itself, the event included, redeliveries once, ordered by
(timestamp, event id)). Nothing here re-implements the online path:
the rows come from ``IncrementalEngine.read_events`` (the function the
consumer's ``OnlineFeatureReader.read_events`` runs on DynamoDB items) or from
the real ``stream_consumer`` and ``feature_update`` handlers on moto, and the
expected rows from the batch engine (the features compiled to SQL, on DuckDB;
the NumPy engine they were proven against was retired, issue #18).

A stream here is in arrival order. The updater is a separate reader of it:
before each consumer batch it has applied some prefix of the stream, behind
the consumer or ahead of it, minus the updates that failed for good (retries
exhausted). Records the consumer could not record are redelivered from there,
as Kinesis does after a partial batch failure.

An event can only be counted once it exists online: arrived with or before
the scored event's batch, or applied by the updater. The expected row of an
event is therefore its batch row over those events; for a
stream whose earlier events never arrive after later ones across batches
(what the simulation produces) that is its row over the whole stream.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mdlc_core.features import (
    FeatureSet,
    IncrementalEngine,
    MemoryStore,
    parse_event,
)
from mdlc_core.sql import features as sql_features

# At import, not inside a Hypothesis test: that module defines @given tests.
from tests.test_features import rich_config

#: One in-memory DuckDB for the module: the oracle runs once per consumer
#: batch of every example, and a fresh database costs more than the query.
_DUCKDB = duckdb.connect()


def compute_per_event(events: list[dict[str, Any]], fs: FeatureSet) -> dict[str, list[Any]]:
    """The batch engine's training rows (``sql_features.per_event``: the compiled
    SQL on DuckDB), on the module's database."""
    plan = sql_features.prepare_per_event(events, fs)
    _DUCKDB.register(sql_features.EVENTS, plan.relation.table)
    try:
        result = _DUCKDB.sql(plan.sql("duckdb"))
        # duckdb 2 names it to_arrow_table; 1.x arrow() (as sql_features.run).
        return plan.columns((getattr(result, "to_arrow_table", None) or result.arrow)())
    finally:
        _DUCKDB.unregister(sql_features.EVENTS)

START = datetime(2026, 3, 1, tzinfo=UTC)
#: The engine's clock: after every generated event (none is from the future).
CLOCK = (START + timedelta(days=30)).timestamp()


def rich() -> FeatureSet:
    """Every function, windows of 1 to 7 days, and an aggregate over a second entity."""
    return FeatureSet.from_config(rich_config(bounded=False))


def same(a: Any, b: Any) -> bool:
    """Equal, up to the last bits of a float sum (the engines add in different orders)."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass
class Run:
    """What a stream did, for the assertions and for Hypothesis' statistics."""

    checked: int = 0
    inexact: int = 0
    recorded_by_consumer: int = 0
    full_rows: int = 0


def replay(fs: FeatureSet, stream: list[dict[str, Any]], rng: random.Random, *,
           recent_events: int, lag: str, fail_updates: float, fail_records: float) -> Run:
    """Consume ``stream`` in random batches against a lagging, failing updater;
    assert each scored event's row, return the counts."""
    store = MemoryStore()
    updater = IncrementalEngine(fs, store, clock=lambda: CLOCK, recent_events=recent_events)
    # The consumer records with its own engine on the same store, as the handler does.
    consumer = IncrementalEngine(fs, store, clock=lambda: CLOCK, recent_events=recent_events)
    lost = {i for i in range(len(stream)) if rng.random() < fail_updates}
    applied: set[str] = set()
    full = compute_per_event(stream, fs)
    full_at = {o: i for i, o in enumerate(full["order_id"])}
    every_id = set(full_at)
    run = Run()
    updated, position = 0, 0
    while position < len(stream):
        end = min(len(stream), position + rng.randint(1, 8))
        target = {"behind": rng.randint(0, position), "ahead": rng.randint(position, len(stream)),
                  "any": rng.randint(0, len(stream))}[lag]
        for index in range(updated, max(updated, target)):
            if index not in lost:
                updater.apply(stream[index])
                applied.add(stream[index]["order_id"])
        updated = max(updated, target)
        batch = stream[position:end]
        found = updater.read_events([parse_event(fs, e) for e in batch])
        exists = {e["order_id"] for e in stream[:end]} | applied
        # Every event exists once the updater ran ahead: the full rows, not a query.
        known = full if exists >= every_id else compute_per_event(
            [e for e in stream if e["order_id"] in exists], fs)
        known_at = {o: i for i, o in enumerate(known["order_id"])}
        for event, row in zip(batch, found.rows, strict=True):
            assert row is not None
            event_id = event["order_id"]
            if event_id in found.inexact:
                run.inexact += 1
                continue
            run.checked += 1
            expected = {n: known[n][known_at[event_id]] for n in fs.names}
            got = {n: row[n] for n in fs.names}
            assert all(same(got[n], expected[n]) for n in fs.names), (event_id, got, expected)
            if all(same(got[n], full[n][full_at[event_id]]) for n in fs.names):
                run.full_rows += 1
        # Record what the store lacks; a failed write fails its record, and the
        # stream redelivers the batch from there.
        redeliver_from = end
        for index in found.unrecorded:
            if rng.random() < fail_records:
                redeliver_from = min(redeliver_from, position + index)
                continue
            consumer.apply(found.events[index])
            applied.add(batch[index]["order_id"])
            run.recorded_by_consumer += 1
        position = redeliver_from
    return run


amounts = st.one_of(st.none(), st.integers(0, 50_000).map(lambda cents: cents / 100))


def raw_events(days: int) -> st.SearchStrategy[list[tuple[str, str | None, int, float | None]]]:
    """Up to 40 events over ``days`` days, three customers, two merchants (or none)."""
    return st.lists(
        st.tuples(
            st.sampled_from(["c0", "c1", "c2"]),
            st.sampled_from(["m0", "m1", None]),
            st.integers(0, days * 86_400 - 1),
            amounts,
        ),
        min_size=1, max_size=40,
    )


def arrival(raw: list[tuple[str, str | None, int, float | None]], rng: random.Random, *,
            duplicates: int, disorder: int) -> list[dict[str, Any]]:
    """The events in time order, then redeliveries and swaps ``disorder`` places apart."""
    events = sorted(
        ({"order_id": f"o{i}", "customer_id": c, "merchant_id": m, "order_amount": a,
          "order_ts": (START + timedelta(seconds=s)).isoformat()}
         for i, (c, m, s, a) in enumerate(raw)),
        key=lambda e: (e["order_ts"], e["order_id"]))
    stream = list(events)
    for _ in range(duplicates):  # a redelivery comes after its first delivery
        first = rng.randrange(len(stream))
        stream.insert(rng.randint(first + 1, len(stream)), dict(stream[first]))
    for _ in range(len(stream) if disorder else 0):
        i = rng.randrange(len(stream))
        j = min(len(stream) - 1, i + rng.randint(0, disorder))
        stream[i], stream[j] = stream[j], stream[i]
    return stream


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_events(4), seed=st.integers(0, 2**32 - 1), duplicates=st.integers(0, 8),
       disorder=st.sampled_from([0, 0, 3, 40]), lag=st.sampled_from(["behind", "ahead", "any"]),
       fail_updates=st.sampled_from([0.0, 0.3, 1.0]), fail_records=st.sampled_from([0.0, 0.2]))
def test_every_scored_event_reads_its_training_row(
    raw: list[tuple[str, str | None, int, float | None]], seed: int, duplicates: int,
    disorder: int, lag: str, fail_updates: float, fail_records: float,
) -> None:
    """Items that keep every event of the stream one by one (recent_events >= its
    length), over 4 days (windows of 1 to 7 days end inside it, and no day
    leaves the longest window of an entity, 4 days for merchants, however far
    ahead the updater is): every row is exact, none is reported inexact."""
    rng = random.Random(seed)
    stream = arrival(raw, rng, duplicates=duplicates, disorder=disorder)
    run = replay(rich(), stream, rng, recent_events=64, lag=lag, fail_updates=fail_updates,
                 fail_records=fail_records)
    assert run.inexact == 0
    assert run.checked >= len(stream)
    if fail_updates == 1.0:  # the updater applied nothing: the consumer recorded every event
        assert run.recorded_by_consumer == len({e["order_id"] for e in stream})
    if disorder == 0:
        assert run.full_rows == run.checked, "in time order, every row is the training row"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_events(9), seed=st.integers(0, 2**32 - 1), duplicates=st.integers(0, 8),
       disorder=st.sampled_from([0, 3, 40]), lag=st.sampled_from(["behind", "ahead", "any"]),
       fail_updates=st.sampled_from([0.0, 0.3]), recent_events=st.sampled_from([1, 2, 4]))
def test_small_items_are_exact_or_say_they_are_not(
    raw: list[tuple[str, str | None, int, float | None]], seed: int, duplicates: int,
    disorder: int, lag: str, fail_updates: float, recent_events: int,
) -> None:
    """Items that keep only a few events one by one, over 9 days (days leave the
    windows; an updater far ahead drops what a late read needs): no row is
    silently wrong (each is exact or reported inexact), and in time order,
    without redeliveries, with the updater behind the consumer every row is exact."""
    rng = random.Random(seed)
    stream = arrival(raw, rng, duplicates=duplicates, disorder=disorder)
    run = replay(rich(), stream, rng, recent_events=recent_events, lag=lag,
                 fail_updates=fail_updates, fail_records=0.0)
    assert run.checked + run.inexact >= len(stream)
    if disorder == 0 and duplicates == 0 and lag == "behind":
        assert run.inexact == 0


def test_the_scored_event_counts_and_later_stored_ones_do_not() -> None:
    """The two halves of the skew, by hand: the updater ahead (it applied the
    event and a later one of the same day) and the updater behind (it applied
    nothing of the batch)."""
    fs = rich()
    events = [{"order_id": f"o{i}", "customer_id": "c1", "merchant_id": "m0",
               "order_amount": amount,
               "order_ts": (START + timedelta(hours=i)).isoformat()}
              for i, amount in enumerate([10.0, 20.0, 40.0])]
    training = compute_per_event(events, fs)

    ahead = IncrementalEngine(fs, MemoryStore(), clock=lambda: CLOCK)
    for e in events:
        ahead.apply(e)
    found = ahead.read_events([parse_event(fs, events[1])])
    assert found.rows[0]["total_3d"] == training["total_3d"][1] == 30.0
    assert found.rows[0]["max_5d"] == 20.0, "o2 (40, later the same day) is left out"
    assert found.unrecorded == [] and found.inexact == {}

    behind = IncrementalEngine(fs, MemoryStore(), clock=lambda: CLOCK)
    found = behind.read_events([parse_event(fs, e) for e in reversed(events)])
    assert [r["total_3d"] for r in found.rows] == [70.0, 30.0, 10.0]
    assert found.unrecorded == [0, 1, 2]


def test_an_event_older_than_what_the_item_keeps_one_by_one_is_reported() -> None:
    """recent_events=1: a late event whose day bucket already holds a newer event
    cannot be told apart from it; its row is reported inexact, never passed off
    as exact."""
    fs = rich()
    engine = IncrementalEngine(fs, MemoryStore(), clock=lambda: CLOCK, recent_events=1)
    at = [START + timedelta(hours=h) for h in (1, 2, 3)]
    for i, moment in enumerate(at[1:], start=1):
        engine.apply({"order_id": f"o{i}", "customer_id": "c1", "order_amount": 5.0,
                      "order_ts": moment.isoformat()})
    late = parse_event(fs, {"order_id": "o0", "customer_id": "c1", "order_amount": 1.0,
                            "order_ts": (at[1] - timedelta(minutes=30)).isoformat()})
    found = engine.read_events([late])
    assert found.unrecorded == [0]
    assert "only in aggregate" in found.inexact["o0"] or "cannot tell" in found.inexact["o0"]


# --- the deployed handlers, on moto ----------------------------------------------------

from tests.test_stream_consumer import (  # noqa: E402 - the consumer's moto fixtures
    NOW,
    Context,
    aws,
    aws_env,
    record,
)

__all__ = ["aws", "aws_env"]  # fixtures, used by name

_examples = iter(range(10**9))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_consumer_scores_training_rows_with_a_lagging_failing_updater(aws, monkeypatch,
                                                                          data) -> None:
    """The real stream_consumer and feature_update handlers: random batches, shuffled
    within each batch, redeliveries, and an updater that lags behind or runs ahead
    of the consumer and loses some records for good. Every row the endpoint got
    is the event's training row (``training_table``, the feature job's table, on DuckDB)."""
    from mdlc_core.scoring import feature_columns
    from mdlc_core.sql.features import training_table

    from tests.lambda_loader import load_handler

    monkeypatch.setenv("MODEL_NAME", "fraud")
    updater = load_handler("feature_update")
    consumer, runtime = aws["module"], aws["runtime"]
    config = consumer.CONFIG
    columns = feature_columns(config)
    example = next(_examples)
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    count = data.draw(st.integers(1, 14), label="events")
    events = sorted(
        ({"order_id": f"x{example}-{i}", "customer_id": f"x{example}-c{rng.randrange(2)}",
          "order_amount": rng.randrange(1, 100_000) / 100, "account_tenure": rng.randrange(400),
          "order_ts": (NOW - timedelta(seconds=rng.randrange(3 * 86_400))).isoformat()}
         for i in range(count)),
        key=lambda e: (e["order_ts"], e["order_id"]))
    stream = list(events)
    for _ in range(data.draw(st.integers(0, 4), label="redeliveries")):
        first = rng.randrange(len(stream))
        stream.insert(rng.randint(first + 1, len(stream)), dict(stream[first]))
    lost = {i for i in range(len(stream)) if rng.random() < 0.3}
    lag = data.draw(st.sampled_from(["behind", "ahead", "any"]), label="lag")
    sequence = {i: 1000 * example + i for i in range(len(stream))}
    training = training_table(stream, FeatureSet.from_config(config))
    row_of = {event_id: i for i, event_id in enumerate(training["order_id"])}

    updated, position, scored = 0, 0, 0
    while position < len(stream):
        end = min(len(stream), position + rng.randint(1, 5))
        target = {"behind": rng.randint(0, position), "ahead": rng.randint(position, len(stream)),
                  "any": rng.randint(0, len(stream))}[lag]
        delivered = [record(sequence[i], stream[i]) for i in range(updated, target)
                     if i not in lost]
        if delivered:
            assert updater.handler({"Records": delivered}, Context()) == {"batchItemFailures": []}
        updated = max(updated, target)
        order = list(range(position, end))
        rng.shuffle(order)  # out of order within the batch
        runtime.calls.clear()
        response = consumer.handler({"Records": [record(sequence[i], stream[i])
                                                 for i in order]}, Context())
        assert response == {"batchItemFailures": []}
        [rows] = runtime.calls
        for index, line in zip(order, rows, strict=True):
            expected = row_of[stream[index]["order_id"]]
            got = [float(v) if v else None for v in line.split(",")]
            want = [training[c][expected] for c in columns]
            assert all(same(a, None if b is None else float(b))
                       for a, b in zip(got, want, strict=True)), (stream[index], got, want)
            scored += 1
        position = end
    assert scored == len(stream)


def test_an_item_written_before_recent_events_existed_becomes_exact_the_next_day() -> None:
    """An item of the earlier layout (day buckets without ``hi``, no ``recent``):
    its buckets may hold any event of their day, so an event of such a day is
    reported inexact; from the next day on, rows are exact again."""
    fs = rich()
    store = MemoryStore()
    old = {"days": {"2026-03-01": {"n": 2, "v": {"order_amount": [30.0, 2, 10.0, 20.0]}}},
           "watermark": "2026-03-01",
           "last": {"micros": 0, "event_id": "o1", "values": {"merchant_id": None,
                                                              "order_amount": 20.0}}}
    store.items["fraud#customer_id#c1"] = (json.dumps(old), 1)
    engine = IncrementalEngine(fs, store, clock=lambda: CLOCK)

    def order(i: int, at: datetime, amount: float) -> dict[str, Any]:
        return {"order_id": f"n{i}", "customer_id": "c1", "order_amount": amount,
                "order_ts": at.isoformat()}

    same_day = parse_event(fs, order(1, START + timedelta(hours=20), 5.0))
    # The bucket may count it, or newer events of its day: neither can be told.
    assert set(engine.read_events([same_day]).inexact) == {"n1"}
    next_day = [order(2, START + timedelta(days=1, hours=1), 7.0),
                order(3, START + timedelta(days=1, hours=2), 9.0)]
    engine.apply(next_day[0])
    engine.apply(next_day[1])
    found = engine.read_events([parse_event(fs, e) for e in next_day])
    assert found.inexact == {} and found.unrecorded == []
    assert [r["total_3d"] for r in found.rows] == [37.0, 46.0]  # the old 30 counts too
    assert [r["max_5d"] for r in found.rows] == [20.0, 20.0]
