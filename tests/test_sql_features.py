"""The features compiled to SQL give the retired NumPy engine's answers, on DuckDB and Spark.

The hand-written NumPy batch engine (``compute_per_event``,
``compute_batch``, ``training_table``, ``entity_table``) was retired (issue
#18) after these tests proved the SQL engines equal to it; its answers were
recorded (``tests/feature_answers.py``, the ``answers`` fixture), and every
test holds :mod:`mdlc_core.sql.features` on DuckDB to them: the same
columns, order, types and nulls, floats to 1e-9 relative (the engines add
in other orders), on the NumPy engine's own test data and on NumPy days
with redeliveries, nulls and NaN. Random days (Hypothesis) with shuffles,
NaN and infinities, shared timestamps and as-of days with nothing in the
window are held to the online engine (as of a day) and to a brute-force
reference (as of each event). The Spark part runs the very same plans'
Spark SQL on local PySpark (one session for the module).
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mdlc_core.features import FeatureError, FeatureSet, incremental_table
from mdlc_core.sql import features as sql_features

from mdlc_constructs.spec import load_spec
from tests.feature_answers import Answers, recorded_answers  # noqa: F401 - the fixture
from tests.test_feature_handlers import aws  # noqa: F401 - the moto fixture, shared
from tests.test_features import (
    START,
    assert_tables_equal,
    event,
    fraud,
    reference_per_event,
    rich,
    rich_config,
    same,
)

SECONDS_PER_DAY = 86_400


# --- comparing ---------------------------------------------------------------------------


def same_value(a: Any, b: Any, where: Any) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, float) and isinstance(b, float), (where, a, b)
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        # ids and keys (str), counts (int, never bool), nulls, datetimes, labels.
        assert type(a) is type(b) and a == b, (where, a, b)


def same_columns(expected: dict[str, list[Any]], got: dict[str, list[Any]]) -> None:
    assert list(got) == list(expected)
    for name, values in expected.items():
        assert len(got[name]) == len(values), name
        for index, (a, b) in enumerate(zip(values, got[name], strict=True)):
            same_value(a, b, (name, index))


def check_per_event(answers: Answers, events: Any, features: FeatureSet,
                    inputs: tuple[str, ...] = ()) -> None:
    answers(sql_features.per_event(events, features, inputs=inputs))


def check_as_of(answers: Answers, events: Any, features: FeatureSet, day: date | str,
                inputs: tuple[str, ...] = ()) -> None:
    answers(sql_features.as_of(events, features, day, inputs=inputs))


def check_all(answers: Answers, events: Any, features: FeatureSet, days: list[str]) -> None:
    check_per_event(answers, events, features)
    for day in days:
        check_as_of(answers, events, features, day)


def check_references(events: Any, features: FeatureSet, days: list[str]) -> None:
    """Random events (no recorded answer): DuckDB as of each event against the
    brute-force reference, as of each day against the online engine's replay."""
    rows = events.to_pylist() if hasattr(events, "to_pylist") else list(events)
    per_event = sql_features.per_event(events, features)
    expected = reference_per_event(rows, features)
    assert per_event[features.event_id] == expected[features.event_id]
    for name in features.names:
        got, want = per_event[name], expected[name]
        assert all(same(a, b) for a, b in zip(got, want, strict=True)), (name, got, want)
    for day in days:
        assert_tables_equal(sql_features.as_of(events, features, day),
                            incremental_table(rows, features, day))


# --- the embedded engine's own test data ----------------------------------------------------


def test_whole_utc_days_and_the_latest_event_as_in_the_embedded_tests(answers: Answers) -> None:
    events = [
        event(1, "c1", datetime(2026, 3, 1, 0, 0, tzinfo=UTC), 1.0),
        event(2, "c1", datetime(2026, 3, 30, 23, 59, 59, tzinfo=UTC), 2.0),
        event(3, "c1", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), 4.0),
        event(4, "c1", datetime(2026, 3, 31, 0, 0, tzinfo=UTC), 8.0),
    ]
    [row] = sql_features.as_of(events, fraud(), "2026-03-30")
    assert row["order_total_30d"] == 3.0 and row["order_count_30d"] == 2
    [row] = sql_features.as_of(events, fraud(), "2026-03-31")
    assert row["order_total_30d"] == 10.0
    check_all(answers, events, fraud(), ["2026-02-28", "2026-03-30", "2026-03-31", "2026-04-29"])
    check_all(answers, events, rich(), ["2026-03-01", "2026-03-30", "2026-04-02"])


def test_redelivered_event_counts_once_first_delivery_wins(answers: Answers) -> None:
    first = event(1, "c1", START, 10.0)
    later = {**first, "order_amount": 99.0}  # a redelivery whose values changed
    events = [first, dict(first), later, event(2, "c1", START + timedelta(hours=1), 5.0)]
    [row] = sql_features.as_of(events, fraud(), "2026-03-01")
    assert row["order_count_30d"] == 2 and row["order_total_30d"] == 15.0
    per_event = sql_features.per_event(events, fraud())
    assert per_event["order_id"] == ["o1", "o2"]
    assert per_event["order_total_30d"] == [10.0, 15.0]
    check_all(answers, events, rich(), ["2026-03-01"])


def test_nulls_and_division_by_zero_give_null_features(answers: Answers) -> None:
    events = [event(1, "c1", START, 0.0), event(2, "c2", START, None)]
    rows = sql_features.as_of(events, fraud(), "2026-03-01")
    assert rows[1] == {"customer_id": "c2", "order_total_30d": 0.0, "order_count_30d": 1,
                       "amount_to_30d_mean": None}
    assert rows[0]["amount_to_30d_mean"] is None
    check_all(answers, events, fraud(), ["2026-03-01"])
    check_all(answers, events, rich(), ["2026-03-01"])


def test_same_instant_orders_by_event_id_and_the_event_is_included(answers: Answers) -> None:
    at = START + timedelta(hours=5)
    events = [event(3, "c1", at, 3.0), event(1, "c1", at, 1.0), event(2, "c1", at, 2.0),
              event(0, "c1", at - timedelta(days=1), 8.0)]
    per_event = sql_features.per_event(events, rich())
    # o1 < o2 < o3 at the same instant: each counts the ones before it and itself.
    assert per_event["order_id"] == ["o3", "o1", "o2", "o0"]
    assert per_event["count_1d"] == [3, 1, 2, 1]
    assert per_event["total_3d"] == [14.0, 9.0, 11.0, 8.0]
    check_all(answers, events, rich(), ["2026-03-01", "2026-03-02"])


def test_tables_training_reads_and_batch_inference_scores(answers: Answers) -> None:
    features = fraud()
    rows = [
        {**event(1, "c1", START, 10.0), "account_tenure": 100, "fraud_status": 1},
        {**event(2, "c1", START + timedelta(days=2), 30.0), "account_tenure": "102",
         "fraud_status": None},
        {**event(0, "c1", START + timedelta(days=2), 99.0), "account_tenure": 1,
         "fraud_status": 0},
        {**event(3, "c1", START + timedelta(days=3), 50.0), "account_tenure": 103,
         "fraud_status": 1},
        {**event(4, "c2", START, None), "account_tenure": None, "fraud_status": 0},
        {**event(1, "c1", START, 99.0), "account_tenure": 5, "fraud_status": 0},
    ]
    answers(sql_features.training_table(rows, features))
    for day in ("2026-03-01", "2026-03-03", "2026-04-15"):
        answers(sql_features.entity_table(rows, features, day))
    unlabelled = [{k: v for k, v in r.items() if k != "fraud_status"} for r in rows]
    assert "fraud_status" not in sql_features.training_table(unlabelled, features)
    assert sql_features.entity_table([], features, "2026-03-01") == \
        {name: [] for name in features.entity_table_schema}


def test_inputs_that_also_key_an_aggregate_and_bool_inputs(answers: Answers) -> None:
    config = rich_config()
    config["data"]["columns"] += [{"name": "store", "type": "int"},
                                  {"name": "is_guest", "type": "bool"}]
    config["features"]["aggregates"].append(
        {"name": "store_count_2d", "function": "count", "window_days": 2, "entity": "store"})
    features = FeatureSet.from_config(config)
    assert {"store", "is_guest"} <= set(features.inputs)
    rng = random.Random(5)
    rows = [{**event(i, f"c{rng.randrange(3)}", START + timedelta(hours=rng.randrange(96)),
                     rng.randrange(100) / 4),
             "store": rng.choice([1, 2.0, None, "3"]), "account_tenure": rng.randrange(9),
             "is_guest": rng.choice([True, False, "true", "False", None])}
            for i in range(60)]
    check_per_event(answers, rows, features, inputs=features.inputs)
    for day in ("2026-03-02", "2026-03-04"):
        check_as_of(answers, rows, features, day, inputs=features.inputs)


def test_bad_input_fails_with_the_embedded_engines_error(answers: Answers) -> None:
    """Each message is the retired engine's (recorded), on both queries."""
    features = fraud()
    cases: list[Any] = [
        [{"order_id": "x", "customer_id": "c1"}],  # no timestamp column
        [{"order_id": None, "customer_id": "c1", "order_ts": "2026-03-01", "order_amount": 1}],
        [{"order_id": "x", "customer_id": "c1", "order_ts": None, "order_amount": 1}],
        [{"order_id": "x", "customer_id": "c1", "order_ts": "yesterday", "order_amount": 1}],
        [{"order_id": "x", "customer_id": "", "order_ts": "2026-03-01", "order_amount": 1}],
        [{"order_id": "x", "customer_id": "c", "order_ts": "2026-03-01", "order_amount": "ten"}],
        [{"order_id": "x", "customer_id": "c", "order_ts": 1_795_000_000, "order_amount": 1}],
        {"order_id": ["a", "b"], "customer_id": ["c"], "order_ts": ["2026-03-01"] * 2,
         "order_amount": [1, 2]},
        pa.table({"order_id": ["a"], "customer_id": ["c"], "order_amount": [1.0],
                  "order_ts": pa.array([None], pa.timestamp("us", "UTC"))}),
    ]
    for events in cases:
        with pytest.raises(FeatureError) as per_event:
            sql_features.per_event(events, features)
        with pytest.raises(FeatureError) as as_of:
            sql_features.as_of(events, features, "2026-03-01")
        answers(str(per_event.value), str(as_of.value))
    with pytest.raises(FeatureError, match="YYYY-MM-DD"):
        sql_features.as_of([], features, "03/01/2026")
    with pytest.raises(FeatureError, match="also the entity key or feature names"):
        sql_features.per_event([], features, inputs=["order_total_30d"])


@pytest.mark.parametrize("source", ["min(order_amount)", "order_amount * 1e999"])
def test_an_expression_not_compiled_yet_names_its_feature(source: str) -> None:
    config = load_spec("models/fraud.yaml").as_config()
    config["features"]["expressions"].append({"name": "odd_one", "expression": source})
    features = FeatureSet.from_config(config)
    with pytest.raises(sql_features.NotCompiled, match=r"feature 'odd_one'.*not compiled"):
        sql_features.per_event([event(1, "c1", START, 1.0)], features)
    with pytest.raises(sql_features.NotCompiled, match=r"rewrite the expression in features"):
        sql_features.as_of([event(1, "c1", START, 1.0)], features, "2026-03-01")


#: log1p's test values: near 0 (where LN(1 + x) loses every digit), large,
#: the largest double, -1 and below (-inf and NaN: null), null.
LOG1P_VALUES = [1e-18, -1e-12, 1e-5, -1e-5, 2.0**-53, 5e-324, -0.5, -0.999999, 0.75, 3.0,
                1e10, 1e300, 1.7976931348623157e308, -1.0, -1.5, -1e300, None, 0.0, -0.0]


def log1p_case() -> tuple[list[dict[str, Any]], FeatureSet]:
    """log1p of a raw column, of an aggregate and nested, one customer per value."""
    config = load_spec("models/fraud.yaml").as_config()
    config["features"]["expressions"] = [
        {"name": "log_amount", "expression": "log1p(order_amount)"},
        {"name": "log_total", "expression": "log1p(order_total_30d - 1) * 2"},
        {"name": "log_log", "expression": "log1p(log1p(order_amount) + 1e-300)"}]
    rows = [event(i, f"c{i}", START, v) for i, v in enumerate(LOG1P_VALUES)]
    return rows, FeatureSet.from_config(config)


def assert_log1p(per_event: dict[str, list[Any]]) -> None:
    """Each value's features against math.log1p, to 1e-9 relative and no
    absolute slack (values near 0 are the point); null where not finite."""
    def reference(x: float | None) -> float | None:
        return None if x is None or not x > -1 else math.log1p(x)

    def close(got: float | None, want: float | None, where: Any) -> None:
        if want is None or not math.isfinite(want):
            assert got is None, where
        else:
            assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=0), \
                (where, got, want)
            assert math.copysign(1, got) == math.copysign(1, want), where  # log1p(-0) = -0

    for index, x in enumerate(LOG1P_VALUES):
        close(per_event["log_amount"][index], reference(x), ("log_amount", x))
        total = 0.0 if x is None or not math.isfinite(x) else x
        inner = reference(total - 1)
        close(per_event["log_total"][index], None if inner is None else inner * 2,
              ("log_total", x))
        once = reference(x)
        close(per_event["log_log"][index], None if once is None else reference(once + 1e-300),
              ("log_log", x))


def test_log1p_compiles_with_its_precision_near_zero_and_nulls_below_minus_one(
        answers: Answers) -> None:
    rows, features = log1p_case()
    per_event = sql_features.per_event(rows, features)
    assert_log1p(per_event)
    assert per_event["log_amount"][:2] == [1e-18, -1.0000000000005e-12]  # LN(1 + x) gives 0
    check_all(answers, rows, features, ["2026-03-01"])


def test_log1p_on_spark_matches_math_log1p(spark: Any) -> None:
    rows, features = log1p_case()
    assert_log1p(on_spark(spark, sql_features.prepare_per_event(rows, features)))


def operator_case() -> tuple[list[dict[str, Any]], FeatureSet]:
    """Every compiled operator and function, with nulls, zeros and signs."""
    config = rich_config()
    config["features"]["expressions"] += [
        {"name": "power", "expression": "(-order_amount) ** 0.5 + order_amount ** 2"},
        {"name": "biggest", "expression": "max(order_amount, mean_7d, -min_2d, +3)"},
        {"name": "huge", "expression": "order_amount * 1e308 * 10 - total_3d / 1e-300"},
        {"name": "flag", "expression": "True * 2 + abs(-order_amount) / (count_1d - 1)"},
        # Python's rounding: the sign of the divisor, the floor (1 // 0.1 is 9.0).
        {"name": "modulo", "expression": "order_amount % 2 + order_amount % -0.7 - 7.5 % mean_7d"},
        {"name": "ninth", "expression": "1 // 0.1"},
        {"name": "floored", "expression": "order_amount // -0.3 - -order_amount // 0.7"},
        {"name": "by_zero", "expression": "order_amount // (count_1d - count_1d) + 1 % 0"},
        {"name": "both", "expression": "(order_amount - 30) // 7 * 7 + (order_amount - 30) % 7"},
    ]
    features = FeatureSet.from_config(config)
    rng = random.Random(11)
    rows = [event(i, f"c{rng.randrange(3)}", START + timedelta(hours=rng.randrange(72)),
                  rng.choice([None, 0.0, -1.5, rng.randrange(1000) / 8]), rng.choice(["m", None]))
            for i in range(80)]
    return rows, features


def test_every_compiled_operator_agrees_with_the_embedded_engine(answers: Answers) -> None:
    rows, features = operator_case()
    check_all(answers, rows, features, ["2026-03-02", "2026-03-03"])
    per_event = sql_features.per_event(rows, features)
    assert set(per_event["ninth"]) == {9.0}  # not floor(1 / 0.1), which is 10
    assert set(per_event["by_zero"]) == {None}


def test_floor_division_and_modulo_round_as_python_on_a_grid(answers: Answers) -> None:
    """Python's // and % (NumPy's for columns) against the SQL spelling, on
    values where truncation, floor and rounding part: negative operands,
    fractions that are not binary, halves, quotients near and above 2**52."""
    config = load_spec("models/fraud.yaml").as_config()
    divisors = ("0.1", "-0.3", "7", "-2", "0.5", "1e-300")
    config["features"]["expressions"] = [
        *[{"name": f"q{i}", "expression": f"order_amount // {d}"} for i, d in enumerate(divisors)],
        *[{"name": f"m{i}", "expression": f"order_amount % {d}"} for i, d in enumerate(divisors)]]
    features = FeatureSet.from_config(config)
    values = [*np.linspace(-10, 10, 161).tolist(), 0.5, -0.5, 2.5, -2.5, 4503599627370497.0,
              -4503599627370497.0, 2.0**52 + 1, 1e17, -1e300, 0.30000000000000004]
    rows = [event(i, f"c{i}", START, v) for i, v in enumerate(values)]
    check_per_event(answers, rows, features)


def test_empty_input_and_days_with_nothing_in_the_window(answers: Answers) -> None:
    for features in (fraud(), rich()):
        check_all(answers, [], features, ["2026-03-01"])
        empty = pa.table({c: pa.array([], pa.string()) for c in
                          ["order_id", "customer_id", "merchant_id"]}).append_column(
            "order_ts", pa.array([], pa.timestamp("us", "UTC"))).append_column(
            "order_amount", pa.array([], pa.float64()))
        check_all(answers, empty, features, ["2026-03-01"])
        events = [event(1, "c1", START, 1.0)]
        assert sql_features.as_of(events, features, "2026-02-28") == []  # before any event
        assert sql_features.as_of(events, features, "2026-06-01") == []  # out of every window


# --- random days ---------------------------------------------------------------------------

amounts = st.one_of(st.none(), st.integers(-5_000, 50_000).map(lambda cents: cents / 100),
                    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
raw_events = st.lists(
    st.tuples(
        st.sampled_from(["c0", "c1", "c2", "c3"]),
        st.sampled_from(["m0", "m1", None]),
        # Few distinct instants: shared timestamps, day boundaries.
        st.one_of(st.integers(0, 14 * SECONDS_PER_DAY - 1),
                  st.sampled_from([0, SECONDS_PER_DAY - 1, SECONDS_PER_DAY, 3 * SECONDS_PER_DAY])),
        amounts,
    ),
    max_size=50,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_events, seed=st.integers(0, 2**32 - 1), as_of_day=st.integers(-1, 20),
       redelivered=st.integers(0, 10), typed=st.booleans())
def test_random_streams_agree(raw: list[tuple[str, str | None, int, float | None]], seed: int,
                              as_of_day: int, redelivered: int, typed: bool) -> None:
    rng = random.Random(seed)
    events = [event(i, c, START + timedelta(seconds=s), a, m) for i, (c, m, s, a) in
              enumerate(raw)]
    stream = events + [{**rng.choice(events), "order_amount": rng.choice([None, 1.0])}
                       for _ in range(redelivered if events else 0)]
    rng.shuffle(stream)  # out of order; a redelivery may arrive first
    if typed:  # as the shared reader or a Parquet snapshot gives them
        stream = pa.Table.from_pylist(
            [{**e, "order_ts": datetime.fromisoformat(e["order_ts"])} for e in stream],
            schema=pa.schema([("order_id", pa.string()), ("customer_id", pa.string()),
                              ("order_ts", pa.timestamp("us", "UTC")),
                              ("order_amount", pa.float64()), ("merchant_id", pa.string())]))
    day = (START + timedelta(days=as_of_day)).date().isoformat()
    check_references(stream, rich(), [day])


def numpy_day(n: int, seed: int) -> pa.Table:
    """A larger typed day from NumPy: 40 customers over 40 days, redeliveries,
    nulls and NaN, many events at the same microsecond, integer entity keys."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, int(n * 0.9), n)  # ~10% redelivered ids
    micros = (np.datetime64("2026-03-01", "us").astype(np.int64)
              + rng.integers(0, 40 * 86_400, n) * 1_000_000 // 600 * 600)
    amount = rng.gamma(2.0, 40.0, n)
    amount[rng.random(n) < 0.05] = np.nan
    return pa.table({
        "order_id": pa.array([f"o{i}" for i in ids]),
        "customer_id": pa.array(rng.integers(0, 40, n)),
        "merchant_id": pa.array([None if m == 0 else f"m{m}" for m in rng.integers(0, 4, n)]),
        "order_ts": pa.array(micros, pa.timestamp("us", "UTC")),
        "order_amount": pa.array(amount, mask=rng.random(n) < 0.05),
    })


@pytest.mark.parametrize("seed", [0, 1])
def test_a_numpy_day_agrees_typed_and_as_text(answers: Answers, seed: int) -> None:
    table = numpy_day(3_000, seed)
    features = rich()
    check_all(answers, table, features, ["2026-03-05", "2026-03-31", "2026-04-09", "2026-04-20"])
    # The same events as CSV text (dict rows of strings): parsed value by value.
    text = [{k: (None if v is None else v.isoformat() if isinstance(v, datetime) else str(v))
             for k, v in row.items()} for row in table.to_pylist()[:600]]
    check_all(answers, text, features, ["2026-03-20"])


# --- the SQL, per dialect --------------------------------------------------------------------


def sample_plans() -> list[sql_features.Plan]:
    table = numpy_day(400, 2)
    return [sql_features.prepare_per_event(table, rich()),
            sql_features.prepare_as_of(table, rich(), "2026-03-20"),
            sql_features.prepare_per_event(table, fraud()),
            sql_features.prepare_as_of(table, fraud(), "2026-04-09")]


def test_the_queries_render_for_spark_and_parse_back() -> None:
    for plan in sample_plans():
        text = plan.sql("spark")
        assert '"' not in text  # Spark quotes identifiers with backticks
        assert "QUALIFY" not in text.upper()  # Spark has none; sqlglot rewrites it
        sqlglot.parse_one(text, read="spark")
        sqlglot.parse_one(plan.sql("duckdb"), read="duckdb")
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        sample_plans()[0].sql("oracle")


def test_duckdb_options_bound_the_run(answers: Answers, tmp_path: Any) -> None:
    table = numpy_day(2_000, 3)
    options = sql_features.DuckDB(memory_limit="64MB", temp_directory=tmp_path, threads=1)
    answers(sql_features.per_event(table, rich(), duckdb_options=options))
    with pytest.raises(ValueError, match="DuckDB rejected"):
        sql_features.per_event(table, rich(),
                               duckdb_options=sql_features.DuckDB(memory_limit="lots"))


# --- Spark -------------------------------------------------------------------------------------

def on_spark(spark: Any, plan: sql_features.Plan) -> Any:
    return plan.finish(sql_features.run_spark(plan, spark))


def test_spark_gives_the_embedded_engines_answers(answers: Answers, spark: Any) -> None:
    """The plans' Spark SQL: the rich spec on a typed NumPy day, on dict rows
    with a redelivery, a shared instant and a null merchant, and on nothing;
    every compiled operator (Spark's own % and NULLIF) on its test's events
    (7 queries: each costs Spark seconds to plan and run on 2 cores; the rich
    spec uses every function the example spec does and more)."""
    table = numpy_day(400, 2)
    rows = [event(3, "c1", START, 3.0), event(1, "c1", START, None, None),
            event(3, "c1", START, 9.0), event(2, "c2", START + timedelta(days=1), 0.0)]
    operators, with_operators = operator_case()
    # The typed NumPy day once (as of a day): how events are typed is shared
    # by both engines and tested on DuckDB; the SQL is what differs.
    answers(on_spark(spark, sql_features.prepare_as_of(table, rich(), "2026-03-20")))
    cases = [(rows, rich(), "2026-03-02"), ([], rich(), "2026-03-02"),
             (operators, with_operators, "2026-03-03")]
    for events, features, day in cases:
        answers(on_spark(spark, sql_features.prepare_per_event(events, features)))
        answers(on_spark(spark, sql_features.prepare_as_of(events, features, day)))


def test_mdlc_features_on_spark_prints_the_batch_table(spark: Any, tmp_path: Any,
                                                       capsys: Any) -> None:
    path = cli_events(tmp_path)
    assert cli_tables(path, capsys, "duckdb", "spark") == 1


# --- the runners: mdlc features and the batch feature job --------------------------------------


def cli_events(tmp_path: Any) -> Any:
    from tests.test_features import write_events

    rng = random.Random(3)
    rows = [event(i, f"c{rng.randrange(20)}",
                  START + timedelta(minutes=rng.randrange(60 * 24 * 40)),
                  rng.choice([None, rng.randrange(100, 90_000) / 100])) for i in range(800)]
    rows += rows[:30]  # redelivered
    rng.shuffle(rows)
    path = tmp_path / "events.csv"
    write_events(path, rows)
    return path


def cli_tables(path: Any, capsys: Any, *engines: str) -> int:
    """How many different tables the engines print (1: all the same)."""
    from mdlc_constructs.cli import main

    outputs = set()
    for engine in engines:
        assert main(["features", "models/fraud.yaml", str(path), "--as-of", "2026-04-05",
                     "--engine", engine]) == 0
        outputs.add(capsys.readouterr().out)
    assert len(next(iter(outputs)).splitlines()) == 21
    return len(outputs)


def test_mdlc_features_engines_print_the_same_table(tmp_path: Any, capsys: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mdlc_constructs.cli import main

    path = cli_events(tmp_path)
    assert cli_tables(path, capsys, "duckdb", "incremental") == 1
    with pytest.raises(SystemExit) as exited:  # the retired engine is no choice
        main(["features", "models/fraud.yaml", str(path), "--as-of", "2026-04-05",
              "--engine", "batch"])
    assert exited.value.code == 2
    assert "invalid choice: 'batch'" in capsys.readouterr().err
    # Without --engine: the spec's features.engine, duckdb by default.
    used: list[str] = []
    real = sql_features.as_of
    monkeypatch.setattr(sql_features, "as_of",
                        lambda *a, **k: used.append("duckdb") or real(*a, **k))
    assert main(["features", "models/fraud.yaml", str(path), "--as-of", "2026-04-05"]) == 0
    assert used == ["duckdb"] and len(capsys.readouterr().out.splitlines()) == 21
    spec = tmp_path / "odd.yaml"
    spec.write_text(Path("models/fraud.yaml").read_text().replace(
        '"order_amount / (order_total_30d / order_count_30d)"', '"order_amount * 1e999"'))
    assert main(["features", str(spec), str(path), "--as-of", "2026-04-05",
                 "--engine", "duckdb"]) == 2
    assert "feature 'amount_to_30d_mean'" in capsys.readouterr().err


def test_the_feature_job_writes_the_same_tables_on_both_engines(
        answers: Answers, aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """``feature_job.run`` (the feature_batch function and the Processing
    runner) with ``features.engine: duckdb`` writes the retired NumPy engine's
    training rows and entity table (recorded) from the snapshots, and refuses
    a configuration synthesized for that engine, saying what to do."""
    import io
    import json

    import pyarrow.parquet as pq
    from mdlc_core import feature_job

    from tests.lambda_loader import load_handler
    from tests.test_feature_handlers import DATASETS, FEATURES, RAW, csv, orders

    s3, _ = aws
    sourcing = load_handler("data_sourcing")
    days = {0: [("o1", "c1", 1, 10.0), ("o2", "c2", 2, 5.0)],
            20: [("o3", "c1", 3, 20.0), ("o6", "c2", 3, 0.5)],
            35: [("o4", "c1", 4, 40.0), ("o5", "c3", 5, 1.0), ("o3", "c1", 3, 20.0),
                 ("o7", "c2", 4, 2.5)]}
    for day, rows in days.items():
        date_text = (START + timedelta(days=day)).date().isoformat()
        s3.put_object(Bucket=RAW, Key=f"orders/dt={date_text}/part.csv",
                      Body=csv(orders(day, rows)))
        sourcing.handler({"date": date_text}, None)
    config = load_spec("models/fraud.yaml").as_config()
    def no_python(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the DuckDB engine read an object into Python")

    config["features"]["engine"] = "duckdb"
    with monkeypatch.context() as patch:
        # The window never enters Python: DuckDB reads the objects.
        patch.setattr(feature_job, "read_object", no_python)
        patch.setattr(feature_job, "engine_tables", no_python)
        out = feature_job.run(config, date(2026, 4, 5), s3=s3, datasets_bucket=DATASETS,
                              features_bucket=FEATURES)
    assert out["rows"] == 3 and out["entities"] == 3
    for key in ("features_key", "entities_key"):
        answers(pq.read_table(io.BytesIO(s3.get_object(
            Bucket=FEATURES, Key=out[key])["Body"].read())))
    config["features"]["engine"] = "embedded"  # synthesized before the engine was retired
    with pytest.raises(ValueError, match=r"embedded \(NumPy\) engine was retired: synthesize "
                       r"and deploy the stack again with features\.engine removed"):
        feature_job.run(config, date(2026, 4, 5), s3=s3, datasets_bucket=DATASETS,
                        features_bucket=FEATURES)
    with pytest.raises(ValueError, match=r"features\.engine must be one of"):
        feature_job.run(config, date(2026, 4, 5), s3=s3, datasets_bucket=DATASETS,
                        features_bucket=FEATURES, engine="polars")
    json.dumps(out)  # the result the workflow reads stays plain JSON


def test_a_runtime_without_duckdb_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import mdlc_core.sql
    from mdlc_core import feature_job

    monkeypatch.setitem(sys.modules, "duckdb", None)  # any import of DuckDB now fails
    # Forget the modules that import it, and the package's attributes naming
    # them (``from .sql import features`` finds an attribute before sys.modules).
    for name in ("quality", "features", "feature_window"):
        monkeypatch.delitem(sys.modules, f"mdlc_core.sql.{name}", raising=False)
        monkeypatch.delattr(mdlc_core.sql, name, raising=False)
    with pytest.raises(FeatureError, match=r"cannot import DuckDB.*install duckdb and sqlglot"):
        feature_job.engine_tables("duckdb")
