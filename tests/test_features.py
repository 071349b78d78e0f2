"""Feature engines: window semantics, batch (DuckDB) == incremental, exactly once, late events."""

from __future__ import annotations

import copy
import functools
import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mdlc_core.features import (
    DuplicateEvent,
    FeatureError,
    FeatureSet,
    IncrementalEngine,
    MalformedEvent,
    MemoryStore,
    Outcome,
    Write,
    WriteConflict,
    incremental_table,
)
from mdlc_core.sql import features as sql_features

from mdlc_constructs.cli import main
from mdlc_constructs.spec import load_spec
from tests.feature_answers import Answers, recorded_answers  # noqa: F401 - the fixture

START = datetime(2026, 3, 1, tzinfo=UTC)


@functools.cache
def _fraud_config() -> dict[str, Any]:
    # Parsed and validated once: Hypothesis' examples ask for it hundreds of times.
    return load_spec("models/fraud.yaml").as_config()


def fraud() -> FeatureSet:
    return FeatureSet.from_config(copy.deepcopy(_fraud_config()))


def rich_config(*, bounded: bool = True) -> dict[str, Any]:
    """Every function, several windows, and an aggregate over a second entity
    (tests/test_online_parity.py uses it without the ``bounded`` expression)."""
    config = copy.deepcopy(_fraud_config())
    config["data"]["columns"].append({"name": "merchant_id", "type": "string"})
    config["features"] = {
        "aggregates": [
            {"name": "total_3d", "function": "sum", "column": "order_amount", "window_days": 3},
            {"name": "count_1d", "function": "count", "window_days": 1},
            {"name": "amounts_7d", "function": "count", "column": "order_amount",
             "window_days": 7},
            {"name": "mean_7d", "function": "mean", "column": "order_amount", "window_days": 7},
            {"name": "min_2d", "function": "min", "column": "order_amount", "window_days": 2},
            {"name": "max_5d", "function": "max", "column": "order_amount", "window_days": 5},
            {"name": "merchant_total_4d", "function": "sum", "column": "order_amount",
             "window_days": 4, "entity": "merchant_id"},
        ],
        "expressions": [
            {"name": "to_mean", "expression": "order_amount / mean_7d"},
            {"name": "spread", "expression": "max_5d - min_2d + total_3d / (count_1d + 1)"},
        ],
    }
    if bounded:
        config["features"]["expressions"].append(
            {"name": "bounded", "expression": "min(order_amount, 100) + abs(spread)"})
    return config


def rich() -> FeatureSet:
    return FeatureSet.from_config(rich_config())


def event(i: int, customer: str, at: datetime, amount: float | None,
          merchant: str | None = "m0") -> dict[str, Any]:
    return {"order_id": f"o{i}", "customer_id": customer, "order_ts": at.isoformat(),
            "order_amount": amount, "merchant_id": merchant}


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_tables_equal(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    assert [r["customer_id"] for r in left] == [r["customer_id"] for r in right]
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key != "customer_id":
                assert same(a[key], b[key]), (a["customer_id"], key, a[key], b[key])


def held_days(item: dict[str, Any]) -> list[str]:
    """The days an online item holds events of: one entry per day bucket and one
    per event it keeps one by one (``recent``), sorted."""
    kept = json.loads(item["recent"])["events"] if item.get("recent") else []
    recent = [(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=e[0])).date()
              .isoformat() for e in kept]
    return sorted([*item["days"], *recent])


# --- window semantics ------------------------------------------------------------


def test_window_covers_whole_utc_days_ending_on_as_of() -> None:
    fs = fraud()
    events = [
        event(1, "c1", datetime(2026, 3, 1, 0, 0, tzinfo=UTC), 1.0),  # first instant of day 1
        event(2, "c1", datetime(2026, 3, 30, 23, 59, 59, tzinfo=UTC), 2.0),  # day 30
        event(3, "c1", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), 4.0),  # day 0
        event(4, "c1", datetime(2026, 3, 31, 0, 0, tzinfo=UTC), 8.0),  # after as_of
    ]
    [row] = sql_features.as_of(events, fs, "2026-03-30")
    assert row["order_total_30d"] == 3.0 and row["order_count_30d"] == 2
    # The raw column of the expression comes from the latest event up to as_of.
    assert row["amount_to_30d_mean"] == pytest.approx(2.0 / 1.5)
    # A day later, March 1st has left the window and the March 31st event entered.
    [row] = sql_features.as_of(events, fs, "2026-03-31")
    assert row["order_total_30d"] == 10.0


def test_window_expiry_across_day_boundaries_incremental() -> None:
    fs = fraud()
    engine = IncrementalEngine(fs, MemoryStore())
    engine.apply(event(1, "c1", datetime(2026, 3, 1, 23, 59, tzinfo=UTC), 5.0))
    engine.apply(event(2, "c1", datetime(2026, 3, 2, 0, 1, tzinfo=UTC), 7.0))
    assert engine.read("c1", "2026-03-30")["order_total_30d"] == 12.0
    assert engine.read("c1", "2026-03-31")["order_total_30d"] == 7.0
    assert engine.read("c1", "2026-04-01") is None  # nothing left in the window
    # A new event expires old buckets from the item itself, not just from reads.
    engine.apply(event(3, "c1", datetime(2026, 3, 31, 12, tzinfo=UTC), 1.0))
    item, _ = engine.store.get(engine.key("customer_id", "c1"))
    assert held_days(item) == ["2026-03-02", "2026-03-31"]
    assert engine.read("c1", "2026-03-31")["order_total_30d"] == 8.0


def test_redelivered_event_is_counted_once() -> None:
    fs = fraud()
    engine = IncrementalEngine(fs, MemoryStore())
    first = event(1, "c1", START, 10.0)
    assert engine.apply(first) is Outcome.APPLIED
    assert engine.apply(dict(first)) is Outcome.DUPLICATE
    assert engine.read("c1", "2026-03-01")["order_count_30d"] == 1
    [row] = sql_features.as_of([first, first], fs, "2026-03-01")
    assert row["order_count_30d"] == 1


def test_late_event_inside_window_lands_in_its_day_and_older_is_ignored() -> None:
    fs = fraud()
    engine = IncrementalEngine(fs, MemoryStore())
    engine.apply(event(1, "c1", START + timedelta(days=40), 1.0))
    late = event(2, "c1", START + timedelta(days=20), 2.0)
    assert engine.apply(late) is Outcome.APPLIED
    item, _ = engine.store.get(engine.key("customer_id", "c1"))
    assert held_days(item).count("2026-03-21") == 1
    too_late = event(3, "c1", START + timedelta(days=10), 4.0)  # day 40 - 30 + 1 is the oldest
    assert engine.apply(too_late) is Outcome.LATE
    assert engine.read("c1", "2026-04-10")["order_total_30d"] == 3.0
    assert sql_features.as_of([event(1, "c1", START + timedelta(days=40), 1.0), late, too_late],
                         fs, "2026-04-10")[0]["order_total_30d"] == 3.0


def test_write_conflict_is_retried_and_commit_is_atomic() -> None:
    class FlakyStore(MemoryStore):
        conflicts = 2

        def commit(self, event_id: str, writes: list[Write], marker_expires_at: int) -> None:
            if self.conflicts:
                self.conflicts -= 1
                raise WriteConflict(event_id)
            super().commit(event_id, writes, marker_expires_at)

    store = FlakyStore()
    engine = IncrementalEngine(fraud(), store)
    assert engine.apply(event(1, "c1", START, 3.0)) is Outcome.APPLIED
    assert engine.read("c1", "2026-03-01")["order_total_30d"] == 3.0

    memory = MemoryStore()
    memory.commit("e1", [Write("k", {"a": 1}, 0)], 0)
    with pytest.raises(WriteConflict):
        memory.commit("e2", [Write("k", {"a": 2}, 0)], 0)  # stale version
    assert "e2" not in memory.markers
    assert memory.get("k") == ({"a": 1}, 1)
    with pytest.raises(DuplicateEvent):
        memory.commit("e1", [Write("k", {"a": 3}, 1)], 0)
    assert memory.get("k") == ({"a": 1}, 1)


def test_malformed_events_are_rejected_with_a_reason() -> None:
    engine = IncrementalEngine(fraud(), MemoryStore())
    with pytest.raises(MalformedEvent, match="order_id"):
        engine.apply({"customer_id": "c1", "order_ts": START.isoformat()})
    with pytest.raises(MalformedEvent, match="not an ISO 8601"):
        engine.apply({"order_id": "x", "customer_id": "c1", "order_ts": "yesterday"})
    with pytest.raises(MalformedEvent, match="not a number"):
        engine.apply({"order_id": "x", "customer_id": "c1", "order_ts": START.isoformat(),
                      "order_amount": "ten"})
    with pytest.raises(FeatureError, match="no column 'order_ts'"):
        sql_features.as_of([{"order_id": "x", "customer_id": "c1"}], fraud(), "2026-03-01")


def test_division_by_zero_and_nulls_give_null_features() -> None:
    fs = fraud()
    rows = [event(1, "c1", START, 0.0), event(2, "c2", START, None)]
    batch = sql_features.as_of(rows, fs, "2026-03-01")
    assert batch == incremental_table(rows, fs, "2026-03-01")
    assert batch[0]["amount_to_30d_mean"] is None  # 0 / (0 / 1)
    assert batch[1] == {"customer_id": "c2", "order_total_30d": 0.0, "order_count_30d": 1,
                        "amount_to_30d_mean": None}


# --- batch and incremental agree --------------------------------------------------


def reference_per_event(events: list[dict[str, Any]], fs: FeatureSet) -> dict[str, list[Any]]:
    """Brute force: every event re-reads its whole window. The event id, then
    each feature, one row per event id (its first delivery), in input order.
    Timestamps are ISO text or datetimes; a null or non-finite number counts
    as null; keys compare as text."""
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        seen.setdefault(e["order_id"], e)
    unique = list(seen.values())

    def key(e: dict[str, Any]) -> tuple[datetime, str]:
        at = e["order_ts"]
        at = at if isinstance(at, datetime) else datetime.fromisoformat(at)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)), e["order_id"]

    def number(value: Any) -> float | None:
        return None if value is None or not math.isfinite(value) else float(value)

    def entity(e: dict[str, Any], column: str) -> str | None:
        value = e.get(column)
        return None if value is None or value == "" else str(value)

    out: dict[str, list[Any]] = {"order_id": [], **{name: [] for name in fs.names}}
    for row in unique:
        day = key(row)[0].date()
        scope: dict[str, Any] = {"order_amount": number(row["order_amount"])}
        for agg in fs.aggregates:
            window = [
                e for e in unique
                if entity(e, agg.entity) is not None
                and entity(e, agg.entity) == entity(row, agg.entity)
                and key(e) <= key(row)
                and (day - key(e)[0].date()).days < agg.window_days
            ]
            values = [v for v in (number(e[agg.column]) for e in window if agg.column)
                      if v is not None]
            scope[agg.name] = {
                "sum": float(sum(values)),
                "count": len(values) if agg.column else len(window),
                "mean": sum(values) / len(values) if values else None,
                "min": min(values, default=None),
                "max": max(values, default=None),
            }[agg.function]
        for name, expression in fs.expressions:
            value = expression.evaluate(scope)
            scope[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        out["order_id"].append(row["order_id"])
        for name in fs.names:
            out[name].append(scope[name])
    return out


amounts = st.one_of(st.none(), st.integers(0, 50_000).map(lambda cents: cents / 100))
raw_events = st.lists(
    st.tuples(
        st.sampled_from(["c0", "c1", "c2", "c3"]),
        st.sampled_from(["m0", "m1", None]),
        st.integers(0, 14 * 86_400 - 1),  # seconds into a two-week stretch
        amounts,
    ),
    min_size=1, max_size=60,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_events, seed=st.integers(0, 2**32 - 1), as_of_day=st.integers(0, 18),
       duplicates=st.integers(0, 10))
def test_batch_and_incremental_agree_on_random_streams(
    raw: list[tuple[str, str | None, int, float | None]], seed: int, as_of_day: int,
    duplicates: int,
) -> None:
    fs = rich()
    events = [event(i, c, START + timedelta(seconds=s), a, m) for i, (c, m, s, a) in
              enumerate(raw)]
    rng = random.Random(seed)
    stream = events + [dict(rng.choice(events)) for _ in range(duplicates)]
    rng.shuffle(stream)  # out of order, redelivered
    as_of = (START + timedelta(days=as_of_day)).date().isoformat()
    batch = sql_features.as_of(stream, fs, as_of)
    assert_tables_equal(batch, incremental_table(stream, fs, as_of))

    per_event = sql_features.per_event(stream, fs)
    ordered = sorted(per_event["order_id"], key=lambda o: int(o[1:]))
    expected = reference_per_event(sorted(stream, key=lambda e: int(e["order_id"][1:])), fs)
    position = {o: i for i, o in enumerate(per_event["order_id"])}
    for name in fs.names:
        got = [per_event[name][position[o]] for o in ordered]
        assert all(same(a, b) for a, b in zip(got, expected[name], strict=True)), name


def test_in_order_stream_serving_matches_training_rows(answers: Answers) -> None:
    """Scoring each event right after recording it reads its training features."""
    fs = fraud()
    rng = random.Random(7)
    events = sorted(
        (event(i, rng.choice("ab"), START + timedelta(hours=rng.randrange(24 * 45)),
               rng.randrange(1, 500) / 10) for i in range(300)),
        key=lambda e: (e["order_ts"], e["order_id"]),
    )
    training = answers(sql_features.per_event(events, fs))
    engine = IncrementalEngine(fs, MemoryStore())
    for index, e in enumerate(events):
        engine.apply(e)
        served = engine.read(e["customer_id"], e["order_ts"][:10])
        for name in fs.names:
            assert same(served[name], training[name][index]), (index, name)


# --- command line -------------------------------------------------------------------


def write_events(path: Any, rows: list[dict[str, Any]]) -> None:
    header = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status\n"
    lines = [f"{r['order_id']},{r['customer_id']},{r['order_ts']},"
             f"{'' if r['order_amount'] is None else r['order_amount']},10,0\n" for r in rows]
    path.write_text(header + "".join(lines))


def test_cli_engines_print_identical_tables(tmp_path: Any, capsys: Any) -> None:
    rng = random.Random(3)
    rows = [event(i, f"c{rng.randrange(20)}",
                  START + timedelta(minutes=rng.randrange(60 * 24 * 40)),
                  rng.randrange(100, 90_000) / 100) for i in range(2_000)]
    rows += rows[:50]  # redelivered
    rng.shuffle(rows)
    path = tmp_path / "events.csv"
    write_events(path, rows)
    outputs = []
    for engine in ("duckdb", "incremental"):
        assert main(["features", "models/fraud.yaml", str(path), "--as-of", "2026-04-05",
                     "--engine", engine]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    assert lines[0].split() == ["customer_id", "order_total_30d", "order_count_30d",
                                "amount_to_30d_mean"]
    assert len(lines) == 21


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("order_id,customer_id\no1,c1\n", [], "order_ts"),
        ("", [], "empty"),
        ("order_id,customer_id,order_ts,order_amount\no1,c1,nope,1\n", [], "'order_ts'"),
        ("order_id,customer_id,order_ts,order_amount\no1,c1,2026-03-01T00:00:00,ten\n", [],
         "'order_amount'"),
        ("\x00\x01binary\xff", [], "events.csv"),
        ("order_id,customer_id,order_ts,order_amount\no1,c1,2026-03-01T00:00:00,1\n",
         ["--as-of", "03/01/2026"], "YYYY-MM-DD"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Any, capsys: Any, content: str, args: list[str],
                               message: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(content)
    argv = ["features", "models/fraud.yaml", str(path), *(args or ["--as-of", "2026-03-01"])]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_file_and_bad_spec_exit_2(tmp_path: Any, capsys: Any) -> None:
    assert main(["features", "models/fraud.yaml", str(tmp_path / "nope.csv"),
                 "--as-of", "2026-03-01"]) == 2
    assert "nope.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    (tmp_path / "e.csv").write_text("a\n1\n")
    assert main(["features", str(bad), str(tmp_path / "e.csv"), "--as-of", "2026-03-01"]) == 2


def test_the_online_path_runs_without_numpy(tmp_path):
    """Stream functions deploy without the data layer: the incremental engine and the
    online reader must not import NumPy."""
    import subprocess
    import sys
    from pathlib import Path

    from mdlc_constructs.spec import load_spec

    config = load_spec(Path(__file__).resolve().parents[1] / "models" / "fraud.yaml").as_config()
    for column in config["data"]["columns"]:  # epoch seconds, parsed without NumPy too
        if column["name"] == "order_ts":
            column["unit"] = "s"
    script = f"""
import sys
sys.modules["numpy"] = None  # any import of NumPy now fails
from mdlc_core.features import FeatureSet, IncrementalEngine, MemoryStore
engine = IncrementalEngine(FeatureSet.from_config({config!r}), MemoryStore())
engine.apply({{"order_id": "o1", "customer_id": "c1", "order_amount": 5.0,
              "order_ts": 1_795_000_000}})
row = engine.read("c1", "2026-11-18")
assert row["order_total_30d"] == 5.0 and row["order_count_30d"] == 1, row
assert "numpy" not in {{m for m in sys.modules if sys.modules[m] is not None}}
print("ok")
"""
    lambdas = Path(__file__).resolve().parents[1] / "lambdas"
    result = subprocess.run([sys.executable, "-c", script], cwd=lambdas, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- the per-entity table batch inference scores ---------------------------------------


def test_entity_table_carries_each_entitys_raw_inputs_from_its_latest_event() -> None:
    entity_table = sql_features.entity_table
    fs = fraud()
    spec = load_spec("models/fraud.yaml")
    assert list(fs.inputs) == [c for c in spec.feature_columns if c not in fs.names]
    assert fs.entity_table_schema == ["customer_id", *spec.feature_columns]
    assert set(fs.entity_table_columns) >= {*fs.required_columns, "account_tenure"}
    rows = [
        {**event(1, "c1", START, 10.0), "account_tenure": 100},
        # Same instant, higher id: the tie-break of (time, id) makes it the latest.
        {**event(2, "c1", START + timedelta(days=2), 30.0), "account_tenure": "102"},
        {**event(0, "c1", START + timedelta(days=2), 99.0), "account_tenure": 1},
        {**event(3, "c1", START + timedelta(days=3), 50.0), "account_tenure": 103},  # after
        {**event(4, "c2", START, None), "account_tenure": None},
    ]
    as_of = (START + timedelta(days=2)).date()
    table = entity_table(rows, fs, as_of)
    assert list(table) == fs.entity_table_schema
    assert table["customer_id"] == ["c1", "c2"]
    assert table["order_amount"] == [30.0, None]
    assert table["account_tenure"] == [102.0, None]
    # The features are the batch engine's (as_of), unchanged.
    batch = sql_features.as_of(rows, fs, as_of)
    for name in fs.names:
        assert table[name] == [row[name] for row in batch], name
    assert table["amount_to_30d_mean"][0] == pytest.approx(30.0 / (139.0 / 3))


def test_training_table_carries_timestamp_label_and_inputs_of_each_event() -> None:
    training_table = sql_features.training_table
    fs = fraud()
    spec = load_spec("models/fraud.yaml")
    assert fs.training_table_schema == ["order_id", "customer_id", "order_ts", "fraud_status",
                                        *spec.feature_columns]
    rows = [
        {**event(1, "c1", START, 10.0), "account_tenure": "100", "fraud_status": 1},
        {**event(2, "c1", START + timedelta(hours=1), None), "account_tenure": 100,
         "fraud_status": None},
        {**event(1, "c1", START, 99.0), "account_tenure": 5, "fraud_status": 0},  # redelivered
    ]
    table = training_table(rows, fs)
    assert list(table) == fs.training_table_schema
    assert table["order_id"] == ["o1", "o2"]
    assert table["order_ts"] == [START, START + timedelta(hours=1)]
    assert table["fraud_status"] == [1, None]  # as given; the first delivery wins
    assert table["order_amount"] == [10.0, None] and table["account_tenure"] == [100.0, 100.0]
    # The features are the batch engine's (per_event), unchanged.
    per_event = sql_features.per_event(rows, fs)
    for name in fs.names:
        assert table[name] == per_event[name], name
    # Events without a label column (scoring data) give no label column.
    unlabelled = [{k: v for k, v in r.items() if k != "fraud_status"} for r in rows]
    assert "fraud_status" not in training_table(unlabelled, fs)


def test_entity_table_has_every_column_without_rows_and_needs_the_inputs() -> None:
    entity_table = sql_features.entity_table
    fs = fraud()
    assert entity_table([], fs, "2026-03-01") == {name: [] for name in fs.entity_table_schema}
    with pytest.raises(FeatureError, match="no column 'account_tenure'"):
        entity_table([event(1, "c1", START, 1.0)], fs, "2026-03-01")
    with pytest.raises(FeatureError, match="also the entity key or feature names"):
        sql_features.as_of([], fs, "2026-03-01", inputs=["order_total_30d"])


def test_bool_inputs_read_from_csv_text_are_numbers() -> None:
    config = load_spec("models/fraud.yaml").as_config()
    config["data"]["columns"].append({"name": "is_guest", "type": "bool"})
    fs = FeatureSet.from_config(config)
    assert fs.inputs[-1] == "is_guest"
    rows = [{**event(1, "c1", START, 1.0), "account_tenure": "5", "is_guest": "True"},
            {**event(2, "c2", START, 1.0), "account_tenure": "5", "is_guest": "false"}]
    [first, second] = sql_features.as_of(rows, fs, "2026-03-01", inputs=fs.inputs)
    assert (first["is_guest"], second["is_guest"]) == (1.0, 0.0)
