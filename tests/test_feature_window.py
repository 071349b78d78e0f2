"""The feature job on DuckDB reads the window's objects itself (mdlc_core.sql.feature_window).

The job (``feature_job.run``, which the feature_batch function and the
Processing runner execute) over moto snapshots made by data sourcing: CSV
plain and compressed with text in the forms SQL parses and in those only
the shared converters do, typed Parquet scanned in place, Parquet of other
stored types typed by the converters; the files and results the retired
NumPy engine wrote (recorded, ``tests/feature_answers.py``). A bad value
fails with the converters' message naming the object and row; a changed
object with the SHA-256 error. The text forms SQL
parses agree with the converters on generated text. And a window larger than
DuckDB's memory limit is computed within it, in a subprocess whose peak
memory is measured, with the tables of an unlimited run.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mdlc_core import batch_features as shared
from mdlc_core import feature_job, sourcing
from mdlc_core.features import FeatureError, FeatureSet
from mdlc_core.sql import feature_window

from mdlc_constructs.spec import load_spec
from tests.feature_answers import Answers, recorded_answers  # noqa: F401 - the fixture
from tests.test_feature_handlers import DATASETS, FEATURES, RAW, aws  # noqa: F401 - fixture
from tests.test_sql_features import same_columns

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 4, 5)
COLUMNS = ["order_id", "customer_id", "order_ts", "order_amount", "account_tenure",
           "fraud_status"]


def spec() -> dict[str, Any]:
    """The example spec reading three sources: CSV, typed Parquet, other Parquet."""
    config = load_spec("models/fraud.yaml").as_config()
    config["data"]["sources"] = [
        {"kind": "s3", "name": "orders", "prefix": "orders/", "format": "csv"},
        {"kind": "s3", "name": "typed", "prefix": "typed/", "format": "parquet"},
        {"kind": "s3", "name": "other", "prefix": "other/", "format": "parquet"}]
    return config


def csv_text(rows: list[tuple[Any, ...]]) -> bytes:
    return (",".join(COLUMNS) + "\n"
            + "".join(",".join(str(v) for v in row) + "\n" for row in rows)).encode()


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def snapshot(s3: Any, config: dict[str, Any], day: date, objects: dict[str, bytes]) -> str:
    """The day's source objects (``source/name``) and the snapshot sourcing makes."""
    for key, body in objects.items():
        source, name = key.split("/", 1)
        s3.put_object(Bucket=RAW, Key=f"{source}/dt={day.isoformat()}/{name}", Body=body)
    sources = [sourcing.build_source(s, s3=s3, default_bucket=RAW)
               for s in config["data"]["sources"]]
    made = sourcing.create_snapshot(s3, sources=sources, bucket=DATASETS, model="fraud",
                                    spec_name="fraud", day=day)
    return made["snapshot_prefix"]


def run_job(s3: Any, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's result and the two tables it wrote."""
    out = feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS,
                          features_bucket=FEATURES)
    tables = {key: pq.read_table(io.BytesIO(s3.get_object(
        Bucket=FEATURES, Key=out[key])["Body"].read())) for key in
        ("features_key", "entities_key")}
    return out, tables


def job_error(s3: Any, config: dict[str, Any]) -> str:
    with pytest.raises((ValueError, sourcing.SnapshotError)) as raised:
        feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS, features_bucket=FEATURES)
    return str(raised.value)


# --- every kind of object -------------------------------------------------------------------


def test_every_kind_of_object_gives_the_embedded_engines_tables(
        answers: Answers, aws: Any) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    earlier = DAY - timedelta(days=3)
    # CSV text in the forms SQL parses and in those only Python does: zones
    # without a colon, the basic format, an hour alone, seven fraction digits,
    # a comma, underscores and spaces in numbers, booleans, nan and inf.
    text = [("o1", "c1", "2026-04-02T05:00:00+00:00", "10.5", "5", "0"),
            ("o2", "c2", "2026-04-02 06:30", "1_000", "", "1"),
            ("o3", "c1", "2026-04-02T07:00:00.250Z", " 7", "3", "")]
    zipped = [("o4", "c3", "20260402T080000", "nan", "2", "1"),
              ("o5", "c1", "2026-04-02T09+0530", "inf", "1", "0"),
              ("o6", "c2", "2026-04-02", "-2.5e1", "1", " 1")]
    squeezed = [("o7", "c2", "2026-04-02T23:59:59.1234567", "true", "9", "0"),
                ("o8", "c4", '"2026-04-02T10:00:00,5+02:00"', ".5", "9", "1")]
    snapshot(s3, config, earlier, {"orders/a.csv": csv_text(text),
                                   "orders/b.csv.gz": gzip.compress(csv_text(zipped)),
                                   "orders/c.csv.bz2": bz2.compress(csv_text(squeezed))})
    at = datetime(2026, 4, 5, 8, tzinfo=UTC)
    typed = pa.table({
        "order_id": ["o9", "o1", "o11"],  # o1 redelivered into the day: not a row of it
        "customer_id": ["c1", "c1", "c5"],
        "order_ts": pa.array([at, at, at + timedelta(hours=1)], pa.timestamp("us", "UTC")),
        "order_amount": pa.array([3.0, 99.0, float("nan")]),
        "account_tenure": pa.array([1, None, 3], pa.int64()),
        "fraud_status": pa.array([1, 0, 1], pa.int64())})
    # Stored types SQL does not type: float customer ids, millisecond
    # timestamps (naive), numbers as text, the label as text.
    other = pa.table({
        "order_id": ["o12", "o13", "o12"],
        "customer_id": pa.array([1.0, 2.5, 1.0]),
        "order_ts": pa.array([datetime(2026, 4, 5, 1), datetime(2026, 4, 5, 2),
                              datetime(2026, 4, 5, 3)], pa.timestamp("ms")),
        "order_amount": ["4.25", "1e2", "7"],
        "account_tenure": pa.array([7, 8, 9], pa.int32()),
        "fraud_status": ["1", "x", "0"]})
    today = {"orders/d.csv": csv_text([("o14", "c2", "2026-04-05T12:00:00+00:00", "2", "4", "1"),
                                       ("o2", "c2", "2026-04-05T12:00:00+00:00", "5", "4", "0")]),
             "typed/part.parquet": parquet(typed)}
    snapshot(s3, config, DAY, {**today, "other/part.parquet": parquet(other)})
    got_out, got = run_job(s3, config)
    answers(got_out)
    assert got_out["rows"] == 5 and got_out["entities"] == 7, got_out
    for key in ("features_key", "entities_key"):
        answers(got[key])
    training = got["features_key"].to_pydict()
    # The day's first deliveries in manifest order (orders/, other/, typed/).
    assert training["order_id"] == ["o14", "o12", "o13", "o9", "o11"]
    # The label as declared (int), from the day's objects only; "x" is null.
    assert got["features_key"].schema.field("fraud_status").type == pa.int64()
    assert dict(zip(training["order_id"], training["fraud_status"], strict=True))["o13"] is None


def test_parquet_of_the_declared_types_is_scanned_not_typed_in_python(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    at = datetime(2026, 4, 5, 8, tzinfo=UTC)
    typed = pa.table({"order_id": ["o1", "o2"], "customer_id": ["c1", "c1"],
                      "order_ts": pa.array([at, at], pa.timestamp("us", "UTC")),
                      "order_amount": [1.0, 2.0], "account_tenure": [1, 2],
                      "fraud_status": [0, 1]})
    snapshot(s3, config, DAY, {"typed/part.parquet": parquet(typed)})

    def no_python(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a typed Parquet object was typed in Python")

    monkeypatch.setattr(feature_window.Window, "_stage_in_python", no_python)
    monkeypatch.setattr(feature_job, "read_object", no_python)
    out = feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS,
                          features_bucket=FEATURES)  # the default engine: duckdb
    assert out["rows"] == 2 and out["entities"] == 1


def test_text_in_the_common_forms_never_reaches_the_converters(
        aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A Python call a value would cost more than the SQL around it: the
    converters run only for text SQL does not parse (here: one amount)."""
    s3, _ = aws
    config = spec()
    rows = [(f"o{i}", f"c{i % 7}", f"2026-04-05T{i % 24:02d}:00:00+00:00", f"{i}.25", "3", "1")
            for i in range(200)] + [("o999", "c1", "2026-04-05 01:00", "1_000", "", "0")]
    snapshot(s3, config, DAY, {"orders/part.csv": csv_text(rows)})
    calls: list[Any] = []
    real_float, real_micros = shared.as_float, shared.to_micros
    monkeypatch.setattr(shared, "as_float", lambda v, c: calls.append(v) or real_float(v, c))
    monkeypatch.setattr(shared, "to_micros", lambda v, u=None: calls.append(v) or
                        real_micros(v, u))
    out = feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS, features_bucket=FEATURES)
    assert out["rows"] == 201
    assert calls and set(calls) == {"1_000"}, calls[:5]


def test_a_warm_process_reuses_its_database_and_no_run_leaks_into_the_next(
        aws: Any) -> None:  # noqa: F811
    """The DuckDB database outlives a run (feature_window.session); a run that
    failed halfway, then a good one, give a fresh process's tables, and the
    runs' functions do not pile up in it."""
    s3, _ = aws
    # Another test of this worker may have left its database (another memory
    # limit): this one counts the databases its own runs open.
    feature_window.close_databases()
    config = spec()
    good = [("o1", "c1", "2026-04-05T01:00:00+00:00", "2", "1", "1"),
            ("o2", "c1", "2026-04-05T02:00:00+00:00", "3", "1", "0")]
    bad_day = DAY - timedelta(days=1)
    snapshot(s3, config, bad_day, {"orders/part.csv": csv_text([("o0", "c1", "x", "1", "1",
                                                                "1")])})
    with pytest.raises(FeatureError, match="is not an ISO 8601 timestamp"):
        feature_job.run(config, bad_day, s3=s3, datasets_bucket=DATASETS,
                        features_bucket=FEATURES)
    databases = dict(feature_window._DATABASES)
    snapshot(s3, config, DAY, {"orders/part.csv": csv_text(good)})
    # The bad day is in the window: it fails again, then without it the day computes.
    with pytest.raises(FeatureError, match="is not an ISO 8601 timestamp"):
        feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS, features_bucket=FEATURES)
    s3.delete_object(Bucket=DATASETS, Key=f"datasets/fraud/dt={bad_day}/_manifest.json")
    warm = feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS,
                           features_bucket=FEATURES)
    assert databases == feature_window._DATABASES  # the same database, not a new one
    [(database, _)] = databases.values()
    functions = database.execute("SELECT count(*) FROM duckdb_functions() "
                                 "WHERE function_name LIKE 'mdlc_%'").fetchone()
    assert functions == (0,)
    key = warm["features_key"]
    warm_table = pq.read_table(io.BytesIO(s3.get_object(Bucket=FEATURES, Key=key)["Body"]
                                          .read()))
    feature_window.close_databases()
    cold = feature_job.run(config, DAY, s3=s3, datasets_bucket=DATASETS,
                           features_bucket=FEATURES)
    assert cold == warm
    cold_table = pq.read_table(io.BytesIO(s3.get_object(Bucket=FEATURES, Key=key)["Body"]
                                          .read()))
    assert cold_table.equals(warm_table) and warm_table.num_rows == 2


def test_a_day_of_no_rows_writes_empty_typed_tables_as_the_embedded_engine(
        answers: Answers, aws: Any) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    snapshot(s3, config, DAY, {"orders/part.csv": csv_text([])})  # the header alone
    got_out, got = run_job(s3, config)
    answers(got_out)
    assert got_out["rows"] == 0 and got_out["entities"] == 0
    for key in ("features_key", "entities_key"):
        answers(got[key])
        assert got[key].num_rows == 0, key
    assert got["features_key"].schema.field("order_ts").type == pa.timestamp("us", tz="UTC")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "reason"), [
    (("o2", "c1", "2026-04-05T01:00:00", "ten", "1", "0"),
     "column 'order_amount': 'ten' is not a number"),
    (("o2", "c1", "2026-02-30T01:00:00", "1", "1", "0"),
     "column 'order_ts': '2026-02-30T01:00:00' is not an ISO 8601 timestamp"),
    (("o2", "c1", "", "1", "1", "0"), "column 'order_ts': '' is not a timestamp"),
    (("o2", "c1", "1775000000", "1", "1", "0"),
     "column 'order_ts': 1775000000: an integer is a timestamp only with its column's unit "
     "(data.columns[].unit: s, ms, us or ns)"),
    (("o2", "", "2026-04-05T01:00:00", "1", "1", "0"), "event 'o2' has no customer_id"),
    (("", "c1", "2026-04-05T01:00:00", "1", "1", "0"), "event has no order_id"),
])
def test_a_bad_csv_value_names_the_object_the_row_and_the_engines_reason(
        aws: Any, row: tuple[str, ...], reason: str) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    good = ("o1", "c1", "2026-04-05T00:00:00", "1", "1", "0")
    prefix = snapshot(s3, config, DAY, {"orders/part.csv": csv_text([good, row])})
    error = job_error(s3, config)
    # The object, the row and line, then the reason the retired engine gave.
    assert error == f"s3://{DATASETS}/{prefix}orders/part.csv, row 1 (line 3): {reason}", error


def test_a_bad_parquet_object_names_itself(aws: Any) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    at = datetime(2026, 4, 5, 8, tzinfo=UTC)
    table = pa.table({"order_id": ["o1", "o2"], "customer_id": ["c1", "c1"],
                      "order_ts": pa.array([at, None], pa.timestamp("us", "UTC")),
                      "order_amount": [1.0, 2.0], "account_tenure": [1, 2],
                      "fraud_status": [0, 1]})
    prefix = snapshot(s3, config, DAY, {"typed/part.parquet": parquet(table)})
    error = job_error(s3, config)
    assert error == f"s3://{DATASETS}/{prefix}typed/part.parquet, row 1: event 'o2' has no order_ts"


def test_a_missing_column_and_a_changed_object_fail_as_on_the_embedded_engine(
        aws: Any) -> None:  # noqa: F811
    s3, _ = aws
    config = spec()
    table = pa.table({"order_id": ["o1"], "customer_id": ["c1"],
                      "order_ts": pa.array([datetime(2026, 4, 5, tzinfo=UTC)],
                                           pa.timestamp("us", "UTC"))})
    prefix = snapshot(s3, config, DAY, {"typed/part.parquet": parquet(table)})
    error = job_error(s3, config)
    assert error == (f"s3://{DATASETS}/{prefix}typed/part.parquet has no "
                     "column(s) ['order_amount', 'account_tenure']")
    # Overwritten after the snapshot was committed: the SHA-256 check, as before.
    key = f"{prefix}typed/part.parquet"
    s3.put_object(Bucket=DATASETS, Key=key, Body=csv_text([("o1", "c1", "x", "1", "1", "0")]))
    listed = s3.list_object_versions(Bucket=DATASETS, Prefix=key)["Versions"]
    assert len(listed) == 2
    manifest = json.loads(s3.get_object(Bucket=DATASETS, Key=prefix + "_manifest.json")["Body"]
                          .read())
    for entry in manifest["objects"]:
        entry.pop("version_id", None)  # an older manifest: the newest version is read
    s3.put_object(Bucket=DATASETS, Key=prefix + "_manifest.json",
                  Body=json.dumps(manifest).encode())
    error = job_error(s3, config)
    assert "content differs from its manifest" in error
    assert f"s3://{DATASETS}/{key}" in error


# --- the text forms SQL parses -------------------------------------------------------------

digits = st.text("0123456789", min_size=1, max_size=4)
stamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=st.sampled_from([None, UTC])).map(
        lambda d: d.isoformat(sep="T" if d.second % 2 else " ")),
    st.builds(lambda y, m, d, h, mi, s, f, z, sep: f"{y}-{m}-{d}{sep}{h}:{mi}{s}{f}{z}",
              st.sampled_from(["2026", "0000", "0001", "9999", "202"]),
              st.sampled_from(["01", "02", "12", "13", "00", "1"]),
              st.sampled_from(["01", "28", "29", "30", "31", "32", "00"]),
              st.sampled_from(["00", "23", "24", "9"]), st.sampled_from(["00", "59", "60"]),
              st.sampled_from(["", ":00", ":59", ":60", ":5"]),
              st.sampled_from(["", ".5", ".123456", ".1234567", ","]),
              st.sampled_from(["", "Z", "+00:00", "-23:59", "+24:00", "+0530", "+05", "z"]),
              st.sampled_from(["T", " ", "t", "_"])),
    st.builds(lambda sign, n: f"{sign}{n}", st.sampled_from(["", "+", "-", "+-"]),
              st.integers(0, 10**19)),
    st.text(max_size=12))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds(lambda s, a, dot, b, e: f"{s}{a}{dot}{b}{e}", st.sampled_from(["", "+", "-"]),
              st.sampled_from(["", "0", "12", "007"]), st.sampled_from(["", "."]),
              st.sampled_from(["", "5", "25"]),
              st.sampled_from(["", "e5", "E-3", "e999", "e-400", "e"])),
    st.sampled_from(["1_000", " 7", "7 ", "True", "FALSE", "yes", "0x10", "∞", "١٢"]),
    st.text(max_size=8))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stamp=stamps, number=numbers, unit=st.sampled_from([None, "s", "ms", "us", "ns"]))
def test_the_text_forms_sql_parses_agree_with_the_engines_converters(
        stamp: str, number: str, unit: str | None) -> None:
    """Where SQL parses a value (the fast forms) it gives what ``to_micros`` and
    ``float()`` give; where the converter fails, SQL parses nothing (the
    converter then decides, and says why)."""
    config = spec()
    if unit:
        next(c for c in config["data"]["columns"] if c["name"] == "order_ts")["unit"] = unit
    features = FeatureSet.from_config(config)
    with duckdb.connect() as con:
        window = feature_window.Window(con, features, Path("/nonexistent"), inputs=())
        con.register("t", pa.table({"t": [stamp], "v": [number]}))
        fast_micros, fast_number = con.execute(
            f"SELECT {window.micros_fast('t')}, {window.number_fast('v')} FROM t").fetchone()
    try:
        micros: int | None = shared.to_micros(stamp, unit)
    except FeatureError:
        micros = None
    assert fast_micros is None or fast_micros == micros, (stamp, fast_micros, micros)
    try:
        value: float | None = shared.as_float(number, "v")
    except FeatureError:
        value = None
    if fast_number is not None:
        assert value is not None and (fast_number == value or value != value), \
            (number, fast_number, value)


def test_the_common_forms_are_parsed_by_sql() -> None:
    """The forms sourcing and the sampler write never reach Python."""
    features = FeatureSet.from_config(spec())
    stamps_ = ["2026-04-05T01:02:03+00:00", "2026-04-05 01:02:03", "2026-04-05T01:02:03.5Z",
               "2026-04-05", "2026-04-05T01:02"]
    with duckdb.connect() as con:
        window = feature_window.Window(con, features, Path("/nonexistent"), inputs=())
        con.register("t", pa.table({"t": stamps_, "v": ["1", "-2.5", "1e3", ".5", "true"]}))
        rows = con.execute(f"SELECT {window.micros_fast('t')}, {window.number_fast('v')} "
                           "FROM t").fetchall()
    assert [m for m, _ in rows] == [shared.to_micros(s) for s in stamps_]
    assert [v for _, v in rows] == [1.0, -2.5, 1000.0, 0.5, 1.0]


# --- bounded memory -------------------------------------------------------------------------

BOUNDED = textwrap.dedent('''
    import io, json, sys
    from datetime import date, timedelta
    from pathlib import Path
    import boto3, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    from moto import mock_aws
    from mdlc_core import feature_job, sourcing
    from mdlc_constructs.spec import load_spec

    days, per_day, limit, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    config = load_spec("models/fraud.yaml").as_config()
    config["data"]["sources"][0]["format"] = "parquet"
    def peak():
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("raw", "data", "features"):
            s3.create_bucket(Bucket=bucket)
        rng = np.random.default_rng(0)
        last, arrow_bytes = date(2026, 4, 30), 0
        for back in range(days - 1, -1, -1):
            day = last - timedelta(days=back)
            start = np.datetime64(day.isoformat(), "us").astype(np.int64)
            ids = np.char.add(f"o{back:03d}-", np.arange(per_day).astype(str))
            if back == 0:  # a few of the day's events redelivered from earlier days
                ids[:100] = np.char.add("o001-", np.arange(100).astype(str))
            customers = rng.integers(0, per_day // 4, per_day).astype(str)
            table = pa.table({
                "order_id": pa.array(ids.astype(object)),
                "customer_id": pa.array(np.char.add("c", customers).astype(object)),
                "order_ts": pa.array(start + rng.integers(0, 86_400_000_000, per_day),
                                     pa.timestamp("us", "UTC")),
                "order_amount": pa.array(rng.gamma(2.0, 40.0, per_day)),
                "account_tenure": pa.array(rng.integers(0, 900, per_day)),
                "fraud_status": pa.array(rng.integers(0, 2, per_day))})
            arrow_bytes += table.nbytes
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            s3.put_object(Bucket="raw", Key=f"orders/dt={day}/part-0.parquet",
                          Body=buffer.getvalue())
            sources = [sourcing.build_source(s, s3=s3, default_bucket="raw")
                       for s in config["data"]["sources"]]
            sourcing.create_snapshot(s3, sources=sources, bucket="data", model="fraud",
                                     spec_name="fraud", day=day)
            del table, buffer
        runs = {}
        for name, options in (("limited", {"memory_limit": limit, "threads": 1}),
                              ("unlimited", {"memory_limit": "8GB"})):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # the high-water mark back to the resident size
            before = peak()
            result = feature_job.run(config, last, s3=s3, datasets_bucket="data",
                                     features_bucket="features", **options)
            runs[name] = {"peak_mib": peak() - before, "result": result}
            for key in ("features_key", "entities_key"):
                body = s3.get_object(Bucket="features", Key=result[key])["Body"].read()
                (out / f"{name}-{key}.parquet").write_bytes(body)
    (out / "measured.json").write_text(json.dumps({"arrow_mib": arrow_bytes / 2**20, **runs}))
''')


@pytest.mark.slow
def test_a_window_larger_than_duckdbs_memory_limit_is_computed_within_it(
        tmp_path: Path) -> None:
    """1.5M events over 15 daily snapshots (79 MiB as Arrow, several times that
    as the retired NumPy engine's Python lists) with a 64 MB limit: the process grows by
    less than the window, and writes the tables of an unlimited run."""
    env = {"PYTHONPATH": f"{ROOT}/lambdas:{ROOT}", "PATH": "/usr/bin:/bin",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    done = subprocess.run([sys.executable, "-c", BOUNDED, "15", "100000", "64MB",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads((tmp_path / "measured.json").read_text())
    limited, unlimited = measured["limited"], measured["unlimited"]
    assert measured["arrow_mib"] > 64, measured  # the window does not fit the limit
    assert limited["result"] == unlimited["result"]
    assert limited["result"]["rows"] == 100_000 - 100  # the redelivered stay earlier rows
    assert limited["peak_mib"] < measured["arrow_mib"], measured
    assert unlimited["peak_mib"] > 2 * limited["peak_mib"], measured
    for key in ("features_key", "entities_key"):
        a = pq.read_table(tmp_path / f"limited-{key}.parquet")
        b = pq.read_table(tmp_path / f"unlimited-{key}.parquet")
        assert a.schema == b.schema and a.num_rows == b.num_rows, key
        same_columns(b.to_pydict(), a.to_pydict())


def test_the_windows_reserved_names_and_an_empty_window() -> None:
    config = copy.deepcopy(spec())
    config["data"]["columns"].append({"name": "_mdlc_label", "type": "float"})
    features = FeatureSet.from_config(config)
    with duckdb.connect() as con, pytest.raises(FeatureError, match="reserved"):
        feature_window.Window(con, features, Path("/nonexistent"), inputs=features.inputs)
    with duckdb.connect() as con, pytest.raises(FeatureError, match="no objects"):
        feature_window.Window(con, FeatureSet.from_config(spec()), Path("/tmp"),
                              inputs=()).relation()
