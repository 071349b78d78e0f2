"""Integer timestamps are read in the unit the spec declares (issue #14 item 5).

Epoch seconds read as microseconds land in January 1970: the type rule
passed them and the online updater dropped them as late. Every reader now
takes the unit from ``data.columns[].unit`` (carried to the handlers in
their runtime config) and rejects, with the reason, an integer without a
unit, a count outside the plausible window for its unit, and a float.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mdlc_core import feature_job, spark_io, spark_job, tabular, timestamps
from mdlc_core.features import FeatureError, FeatureSet, IncrementalEngine, MemoryStore, to_micros
from mdlc_core.sql import quality as sql_quality
from mdlc_core.timestamps import TimestampError, epoch_micros

from mdlc_constructs.spec import load_spec
from tests import test_feature_handlers
from tests.lambda_loader import load_handler
from tests.test_feature_handlers import DLQ, TABLE, Context, dead_letters, kinesis

FRAUD = Path(__file__).resolve().parents[1] / "models" / "fraud.yaml"
MOMENT = datetime(2026, 11, 17, 10, 30, 15, 250_000, tzinfo=UTC)
SECONDS = int(MOMENT.timestamp())
#: The feature handlers' moto fixture (buckets, table, dead-letter queue).
aws = test_feature_handlers.aws


def spec_file(tmp_path: Path, unit: str | None, source_format: str = "csv") -> Path:
    """The fraud spec with ``order_ts``'s unit (and the source's format) changed."""
    text = FRAUD.read_text()
    column = "{name: order_ts, type: timestamp}"
    assert column in text
    if unit:
        text = text.replace(column, f"{{name: order_ts, type: timestamp, unit: {unit}}}")
    text = text.replace("prefix: orders/, format: csv", f"prefix: orders/, format: {source_format}")
    path = tmp_path / f"fraud-{unit}-{source_format}.yaml"
    path.write_text(text)
    return path


def config_of(tmp_path: Path, unit: str | None, source_format: str = "csv") -> dict[str, Any]:
    return load_spec(spec_file(tmp_path, unit, source_format)).as_config()


# -- the conversion --------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "count"), [
    ("s", SECONDS), ("ms", SECONDS * 1000 + 250), ("us", SECONDS * 1_000_000 + 250_000),
    ("ns", SECONDS * 1_000_000_000 + 250_000_123)])
def test_each_unit_counts_from_the_epoch(unit: str, count: int) -> None:
    expected = to_micros(MOMENT.replace(microsecond=0 if unit == "s" else 250_000))
    assert epoch_micros(count, unit) == expected
    assert epoch_micros(str(count), unit) == expected  # CSV text
    assert to_micros(count, unit) == expected


@pytest.mark.parametrize(("value", "unit", "reason"), [
    (SECONDS, None, "only with its column's unit"),
    (SECONDS, "ms", "as epoch ms is outside 1971-01-01..2200-01-01"),  # -> 1970-01-21
    (SECONDS * 1000, "s", "as epoch s is outside"),  # -> the year 57000
    (float(SECONDS), "s", "has a fraction; an integer timestamp counts whole epoch s"),
    (1.5e9, None, "is a number; an integer is a timestamp only with its column's unit"),
    (True, "s", "is a boolean"),
])
def test_what_does_not_fit_its_unit_is_rejected_with_the_reason(
    value: Any, unit: str | None, reason: str
) -> None:
    with pytest.raises(TimestampError, match=reason):
        epoch_micros(value, unit)
    with pytest.raises(FeatureError, match=reason):
        to_micros(value, unit)


def test_the_runtime_config_carries_the_unit(tmp_path: Path, monkeypatch: Any) -> None:
    from mdlc_core.runtime_config import load_config

    path = tmp_path / "mdlc_config.json"
    path.write_text(json.dumps(config_of(tmp_path, "ms")))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(path))
    load_config.cache_clear()
    try:
        column = next(c for c in load_config()["data"]["columns"] if c["name"] == "order_ts")
        assert column["unit"] == "ms"
        assert FeatureSet.from_config(load_config()).timestamp_unit == "ms"
    finally:
        load_config.cache_clear()


# -- the online updater ------------------------------------------------------------------


def _order(order_id: str, ts: Any, amount: float = 100.0) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": "c1", "order_ts": ts,
            "order_amount": amount, "account_tenure": 5, "fraud_status": 0}


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_the_updater_applies_epoch_integers_in_the_specs_unit(
    aws: Any, tmp_path: Path, monkeypatch: Any, unit: str
) -> None:
    """Three orders of the last days as epoch integers: all three count (read as
    microseconds they were 1970 and 'late')."""
    _, ddb = aws
    _use_config(tmp_path, monkeypatch, config_of(tmp_path, unit))
    update = load_handler("feature_update")
    scale = {"s": 1, "ms": 1000}[unit]
    now = int(datetime.now(UTC).timestamp())
    events = [_order(f"o{d}", (now - d * 86_400) * scale) for d in (2, 1, 0)]
    assert update.handler(kinesis(events), Context()) == {"batchItemFailures": []}
    assert dead_letters(boto3.client("sqs", region_name="us-east-1"), DLQ) == []
    today = datetime.now(UTC).date().isoformat()
    row = update.engine().read("c1", today)
    assert (row["order_total_30d"], row["order_count_30d"]) == (300.0, 3)
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "fraud#customer_id#c1"}})["Item"]
    assert item["watermark"]["S"] == today


def test_without_a_unit_an_integer_timestamp_is_dead_lettered(
    aws: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    _, ddb = aws
    _use_config(tmp_path, monkeypatch, config_of(tmp_path, None))
    update = load_handler("feature_update")
    good = _order("o1", datetime.now(UTC).isoformat())
    bad = _order("o2", int(datetime.now(UTC).timestamp()))
    floating = _order("o3", datetime.now(UTC).timestamp())
    assert update.handler(kinesis([good, bad, floating]), Context()) == {"batchItemFailures": []}
    letters = {json.loads(m["payload"])["order_id"]: m
               for m in dead_letters(boto3.client("sqs", region_name="us-east-1"), DLQ)}
    assert sorted(letters) == ["o2", "o3"]
    assert "only with its column's unit (data.columns[].unit" in letters["o2"]["reason"]
    assert "is a number" in letters["o3"]["reason"]
    row = update.engine().read("c1", datetime.now(UTC).date().isoformat())
    assert (row["order_total_30d"], row["order_count_30d"]) == (100.0, 1)
    for rejected in ("o2", "o3"):
        assert "Item" not in ddb.get_item(TableName=TABLE,
                                          Key={"pk": {"S": f"fraud#event#{rejected}"}})


def test_the_engine_rejects_a_wrong_unit_before_it_moves_anything() -> None:
    config = load_spec(FRAUD).as_config()
    next(c for c in config["data"]["columns"] if c["name"] == "order_ts")["unit"] = "ms"
    engine = IncrementalEngine(FeatureSet.from_config(config), MemoryStore())
    with pytest.raises(FeatureError, match="as epoch ms is outside"):
        engine.apply(_order("o1", SECONDS))  # seconds, declared ms
    assert engine.store.items == {}  # type: ignore[attr-defined]


# -- batch: a Parquet int64 order_ts, sourcing -> quality -> features --------------------


def _parquet_orders(day: date, count: int) -> bytes:
    start = int(datetime.combine(day, datetime.min.time(), UTC).timestamp())
    table = pa.table({
        "order_id": [f"o{i}" for i in range(count)],
        "customer_id": [f"c{i % 4}" for i in range(count)],
        "order_ts": pa.array([start + 600 * i for i in range(count)], pa.int64()),
        "order_amount": [10.0 + i for i in range(count)],
        "account_tenure": [100 + i % 4 for i in range(count)],
        "fraud_status": [i % 2 for i in range(count)],
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize("unit", [None, "s"])
def test_parquet_epoch_seconds_through_sourcing_quality_and_features(
    aws: Any, tmp_path: Path, monkeypatch: Any, unit: str | None
) -> None:
    s3, _ = aws
    config = config_of(tmp_path, unit, "parquet")
    _use_config(tmp_path, monkeypatch, config)
    monkeypatch.setenv("REPORT_BUCKET", "datasets-bucket-f")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MDLC/DataQuality")
    day = date(2026, 3, 5)
    s3.put_object(Bucket="raw-bucket-f", Key=f"orders/dt={day}/part-0.parquet",
                  Body=_parquet_orders(day, 40))
    snapshot = load_handler("data_sourcing").handler({"date": day.isoformat()}, None)
    result = load_handler("quality_check").handler(
        {"bucket": "datasets-bucket-f", "snapshot_prefix": snapshot["snapshot_prefix"]},
        _LambdaContext())
    report = json.loads(s3.get_object(Bucket="datasets-bucket-f",
                                      Key=result["report_uri"].split("/", 3)[3])["Body"].read())
    rule = next(r for r in report["rules"] if r["id"] == "type_order_ts")
    if unit is None:
        # Not 1970-01-21 and passing: 40 integers that are not timestamps, and why.
        assert result["passed"] is False and "type_order_ts" in result["failed_rules"]
        assert rule["violations"] == 40
        assert "only with its column's unit" in rule["message"]
        with pytest.raises(FeatureError, match="only with its column's unit"):
            feature_job.run(config, day, s3=s3, datasets_bucket="datasets-bucket-f",
                            features_bucket="features-bucket-f")
        return
    assert result["passed"] is True, result
    assert rule["expected"] == {"type": "timestamp", "unit": "s"}
    out = feature_job.run(config, day, s3=s3, datasets_bucket="datasets-bucket-f",
                          features_bucket="features-bucket-f")
    assert out["rows"] == 40
    body = s3.get_object(Bucket="features-bucket-f", Key=out["features_key"])["Body"].read()
    written = pq.read_table(io.BytesIO(body)).column("order_ts").to_pylist()
    start = datetime.combine(day, datetime.min.time(), UTC)
    assert written[:2] == [start, start + timedelta(minutes=10)]


def test_the_type_rule_names_the_reason_for_out_of_range_text(tmp_path: Path) -> None:
    config = config_of(tmp_path, "ms")
    header = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"
    rows = [f"o1,c1,{SECONDS * 1000},5,10,0", f"o2,c1,{SECONDS},5,10,0",
            "o3,c1,2026-11-17T10:00:00Z,5,10,0"]
    path = tmp_path / "part.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    table = tabular.read_table(path, config["data"]["columns"])
    assert table.column("order_ts").to_pylist()[0] == MOMENT.replace(microsecond=0)
    report = sql_quality.check(config, table, snapshot_date=date(2026, 11, 17))
    rule = next(r for r in report["rules"] if r["id"] == "type_order_ts")
    assert rule["violations"] == 1 and rule["observed"]["examples"] == [str(SECONDS)]
    assert f"{SECONDS} as epoch ms is outside 1971-01-01..2200-01-01" in rule["message"]


# -- helpers -------------------------------------------------------------------------------


class _LambdaContext:
    function_name = "quality_check"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:quality_check"
    aws_request_id = "req"


def _use_config(tmp_path: Path, monkeypatch: Any, config: dict[str, Any]) -> None:
    from mdlc_core.runtime_config import load_config

    path = tmp_path / "unit_config.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(path))
    load_config.cache_clear()


@pytest.mark.parametrize(("unit", "value", "rejected"), [
    ("ms", SECONDS * 1000, None), ("s", SECONDS, None),
    (None, SECONDS, "only with its column's unit"),
    ("ms", SECONDS, "as epoch ms is outside")])
def test_the_stream_consumer_reads_the_timestamp_in_the_specs_unit(
    tmp_path: Path, unit: str | None, value: int, rejected: str | None
) -> None:
    """The scoring path parses the event's time as the updater does: in the unit,
    or rejected (to the dead-letter queue) with the reason."""
    from mdlc_core.scoring import FeaturePlan, Rejected

    config = config_of(tmp_path, unit)
    plan = FeaturePlan(config, clock=lambda: MOMENT.timestamp() + 60)
    parsed = plan.parse("r1", json.dumps(_order("o1", value)))
    if rejected is None:
        assert not isinstance(parsed, Rejected), parsed
    else:
        assert isinstance(parsed, Rejected) and rejected in parsed.reason
        assert parsed.reason.startswith("order_ts: ")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_parquet_integer_column_is_read_in_each_unit(tmp_path: Path, unit: str) -> None:
    per_second = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    sink = io.BytesIO()
    pq.write_table(pa.table({"order_ts": pa.array([SECONDS * per_second], pa.int64())}), sink)
    column = [{"name": "order_ts", "type": "timestamp", "unit": unit}]
    table = tabular.read_bytes(sink.getvalue(), "s3://b/part.parquet", column)
    assert table.column("order_ts").to_pylist() == [MOMENT.replace(microsecond=0)]
    assert tabular.unparseable(table) == {}


def test_a_parquet_float_timestamp_is_rejected_with_the_reason() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"order_ts": pa.array([float(SECONDS)], pa.float64())}), sink)
    column = [{"name": "order_ts", "type": "timestamp", "unit": "s"}]
    table = tabular.read_bytes(sink.getvalue(), "s3://b/part.parquet", column)
    assert table.column("order_ts").to_pylist() == [None]
    assert "stored as double: an integer timestamp is stored as an integer" in (
        tabular.unparseable(table)["order_ts"].reason or "")


def test_a_day_of_several_files_gives_the_reasons_one_file_gives(tmp_path: Path) -> None:
    """The type rule's reason does not depend on how a day is split into files:
    each kind of number (an integer without a unit, a fraction) is explained
    once, by its first example, whether the shared reader combines the files or
    the Spark executors read each object and the driver merges their records."""
    columns = config_of(tmp_path, None)["data"]["columns"]
    header = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"
    files = [[str(SECONDS), "2026-11-17T10:00:00Z"], ["1.5", "noon", str(SECONDS + 1)],
             ["2026-11-17T11:00:00Z", "2.5"]]
    folder, lines = tmp_path / "dt=2026-11-17", []
    folder.mkdir()
    for index, stamps in enumerate(files):
        rows = [f"o{len(lines) + i},c1,{stamp},5,10,0" for i, stamp in enumerate(stamps)]
        lines += rows
        (folder / f"part-{index:04d}.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "one.csv").write_text("\n".join([header, *lines]) + "\n")

    one_file = tabular.unparseable(tabular.read_table(tmp_path / "one.csv", columns))["order_ts"]
    assert one_file.count == 5 and one_file.rows == [0, 2, 3, 4, 6]
    assert list(one_file.reasons) == ["integer", "fraction"]
    assert one_file.reason == (f"{timestamps.no_unit_reason()}; "
                               f"{timestamps.fraction_reason('1.5', None)}")
    assert tabular.unparseable(tabular.read_table(folder, columns))["order_ts"] == one_file

    parse = spark_job._quality_parser(columns)
    summaries = []
    for path in sorted(folder.glob("*.csv")):
        table, extra = parse(path.read_bytes(), spark_io.StoredObject("b", path.name, None, "csv"))
        summaries.append({"rows": table.num_rows, **json.loads(json.dumps(extra))})
    read = spark_io.Objects(frame=None, summaries=summaries, objects=[])
    assert spark_job._unparseable(read)["order_ts"] == one_file


def test_a_unit_on_a_column_that_is_not_a_timestamp_is_refused() -> None:
    with pytest.raises(tabular.DataError, match="unit 's' applies to timestamp columns only"):
        tabular.read_bytes(b"a\n1\n", "x.csv", [{"name": "a", "type": "int", "unit": "s"}])
