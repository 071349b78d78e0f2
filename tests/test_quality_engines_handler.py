"""The quality_check handler on DuckDB, the only engine: from S3 to report and metrics.

The same days as CSV and as Parquet that DuckDB scans from disk: the report
the handler writes to S3 must be the engine's report of the same days read
locally, but for the clock and the source, whether the configuration names
the engine or predates the field; the metrics it sends are the report's
violations. The run is bounded by the function's memory and ephemeral
storage (the variables Lambda and the construct set), and a day larger than
DuckDB's memory limit is checked by spilling, its peak memory bounded. A
configuration synthesized for the retired pyarrow engine is refused saying
what to do.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from mdlc_core import sourcing, tabular
from mdlc_core.sql import quality as sql_quality

from tests.lambda_loader import load_handler

from .test_quality_engine import SPEC, orders_csv
from .test_quality_handler import CONTEXT, DATA, RAW, REPORTS, aws  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = [("p1", "c1", "2026-11-01T10:00:00Z", 5, 364, 0),
            ("p2", "c2", "2026-11-01T11:00:00Z", 10, 100, 0),
            ("p3", "c3", "2026-11-01T12:00:00Z", 7, 20, 1)]
CURRENT = [("o1", "c1", "2026-11-02T10:00:00Z", -5, 54, 0),     # range, tenure
           ("o2", "c2", "2026-11-02T11:00:00Z", 10, 101, 3),    # allowed values
           ("o2", "c3", "2026-11-02T12:00:00Z", None, 21, 1),   # duplicate key, null amount
           ("o4", None, "2026-11-02T13:00:00Z", 8, 5, 0)]      # null customer


def spec_for(engine: str | None, file_format: str) -> dict[str, Any]:
    """The example spec's configuration with ``quality.engine`` set, or without
    the field (a function synthesized before there was a choice)."""
    spec = copy.deepcopy(SPEC)
    spec["quality"].pop("engine", None)
    if engine is not None:
        spec["quality"]["engine"] = engine
    spec["data"]["sources"][0]["format"] = file_format
    return spec


def drop(s3: Any, spec: dict[str, Any], day: date, rows: list[tuple[Any, ...]]) -> str:
    """The day's source drop (CSV, or Parquet of the declared types) and the
    snapshot data sourcing builds of it."""
    text = orders_csv(rows, day=day)
    file_format = spec["data"]["sources"][0]["format"]
    if file_format == "parquet":
        table = tabular.read_bytes(text.encode(), "drop.csv", spec["data"]["columns"])
        buffer = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(None), buffer)
        body, name = buffer.getvalue(), "part-0000.parquet"
    else:
        body, name = text.encode(), "part-0000.csv"
    s3.put_object(Bucket=RAW, Key=f"orders/dt={day.isoformat()}/{name}", Body=body)
    sources = [sourcing.build_source(source, s3=s3, default_bucket=RAW)
               for source in spec["data"]["sources"]]
    made = sourcing.create_snapshot(s3, sources=sources, bucket=DATA, model=spec["name"],
                                    spec_name=spec["name"], day=day)
    return made["snapshot_prefix"]


def run_handler(s3: Any, spec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """The handler's result, the report it wrote and the metric data it sent."""
    from mdlc_core.runtime_config import load_config

    config = tmp_path / f"{spec['quality'].get('engine')}.json"
    config.write_text(json.dumps(spec))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(config))
    load_config.cache_clear()
    handler = load_handler("quality_check")
    sent: list[Any] = []
    monkeypatch.setattr(handler.cloudwatch, "put_metric_data",
                        lambda **kwargs: sent.extend(kwargs["MetricData"]))
    result = handler.handler(event, CONTEXT)
    bucket, key = result["report_uri"].removeprefix("s3://").split("/", 1)
    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    s3.delete_object(Bucket=bucket, Key=key)
    return result, report, sent


def without_clock(report: dict[str, Any], metrics: list[Any]) -> tuple[Any, Any]:
    return ({k: v for k, v in report.items() if k != "checked_at"},
            [{k: v for k, v in d.items() if k != "Timestamp"} for d in metrics])


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_handler_writes_the_engines_report_and_its_metrics(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str  # noqa: F811
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    monkeypatch.setenv("MDLC_EPHEMERAL_STORAGE_MB", "512")
    calls: list[dict[str, Any]] = []
    original = sql_quality.check

    def spy(spec: Any, table: Any, previous: Any = None, **kwargs: Any) -> Any:
        calls.append({"table": table, "previous": previous, **kwargs})
        return original(spec, table, previous, **kwargs)

    monkeypatch.setattr(sql_quality, "check", spy)
    spec = spec_for("duckdb", file_format)
    previous = drop(aws, spec, date(2026, 11, 1), PREVIOUS)
    prefix = drop(aws, spec, date(2026, 11, 2), CURRENT)
    event = {"bucket": DATA, "snapshot_prefix": prefix, "previous_prefix": previous}
    runs = [run_handler(aws, spec_for(engine, file_format), tmp_path, monkeypatch, event)
            for engine in ("duckdb", None)]
    (result, report, metrics), unnamed = runs
    assert without_clock(*unnamed[1:]) == without_clock(report, metrics)
    assert unnamed[0] == result
    # The case exercises failing rules, samples and the consistency rule.
    assert sorted(result["failed_rules"]) == [
        "allowed_values_fraud_status", "completeness_customer_id", "completeness_order_amount",
        "range_order_amount", "tenure_grows_daily", "unique_order_id"]
    assert any(rule["sample"] for rule in report["rules"])
    assert report["source"] == f"s3://{DATA}/{prefix}"
    # What the engine gives for the same days read locally, but for where they came from.
    local = original(spec, tabular.read_bytes(orders_csv(CURRENT, day=date(2026, 11, 2))
                                              .encode(), "c.csv", spec["data"]["columns"]),
                     tabular.read_bytes(orders_csv(PREVIOUS, day=date(2026, 11, 1)).encode(),
                                        "p.csv", spec["data"]["columns"]),
                     snapshot_date=date(2026, 11, 2), source=report["source"],
                     previous_source=report["previous_source"])
    assert without_clock(report, [])[0] == without_clock(local, [])[0]
    # One metric per rule and the total, each the report's violations.
    by_rule = {next((d["Value"] for d in m["Dimensions"] if d["Name"] == "Rule"), "total"):
               m["Value"] for m in metrics}
    assert by_rule == {**{r["id"]: float(r["violations"]) for r in report["rules"]},
                       "total": float(report["summary"]["violations"])}
    # Each run went through SQL bounded by the function's resources; typed
    # Parquet was scanned from disk, CSV read by the shared reader.
    assert len(calls) == 2
    for call in calls:
        scanned = isinstance(call["table"], sql_quality.ParquetFiles)
        assert scanned == (file_format == "parquet")
        assert isinstance(call["previous"], sql_quality.ParquetFiles) == scanned
        loaded = 0 if scanned else call["table"].nbytes + call["previous"].nbytes
        assert call["memory_limit"] == sql_quality.memory_limit_for(1024, loaded)
        assert call["max_temp_directory_size"].endswith("MB")
        assert int(call["max_temp_directory_size"][:-2]) < 512


def test_a_configuration_for_the_retired_engine_is_refused_saying_what_to_do(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A function synthesized before the pyarrow engine was retired carries
    ``engine: embedded`` in its configuration: the check fails naming it."""
    spec = spec_for("embedded", "csv")
    prefix = drop(aws, spec, date(2026, 11, 2), CURRENT)
    with pytest.raises(ValueError, match=r"quality.engine must be one of \('duckdb',\), got "
                       r"'embedded': the embedded \(pyarrow\) engine was retired; synthesize "
                       "and deploy the stack again with quality.engine removed or set to duckdb"):
        run_handler(aws, spec, tmp_path, monkeypatch, {"bucket": DATA, "snapshot_prefix": prefix})


def test_an_object_that_is_not_its_manifest_is_named_by_its_uri(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    spec = spec_for("duckdb", "csv")
    prefix = drop(aws, spec, date(2026, 11, 2), CURRENT)
    key = f"{prefix}orders/part-0000.csv"
    aws.put_object(Bucket=DATA, Key=key, Body=b"order_id\no1\n")  # not what the manifest says
    with pytest.raises(sourcing.SnapshotError) as raised:
        run_handler(aws, spec, tmp_path, monkeypatch, {"bucket": DATA, "snapshot_prefix": prefix})
    assert f"s3://{DATA}/{key}" in str(raised.value)
    assert "manifest" in str(raised.value)


SPILL = textwrap.dedent('''
    import json, sys
    from datetime import date
    from pathlib import Path
    import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    from mdlc_core import tabular
    from mdlc_core.sql import quality as sql_quality

    spec = json.loads(sys.argv[1]); rows = int(sys.argv[2]); temp_size = sys.argv[3]
    limit = sys.argv[4]; folder = Path(sys.argv[5])
    spec["quality"]["rules"] = [{"kind": "unique", "columns": ["order_id"]},
                                {"kind": "completeness", "column": "customer_id", "min": 1.0}]
    ids = pa.array(np.char.add("order-with-a-long-identifier-",
                               np.arange(rows).astype(str)).astype(object))
    ids = pa.concat_arrays([ids, ids.slice(0, 7)])  # seven keys repeated
    n = len(ids)
    table = pa.table({
        "order_id": ids, "customer_id": ids,
        "order_ts": pa.array(np.full(n, 1_793_000_000_000_000), pa.timestamp("us", "UTC")),
        "order_amount": pa.array(np.ones(n)), "account_tenure": pa.array(np.ones(n, np.int64)),
        "fraud_status": pa.array(np.zeros(n, np.int64))})
    # Two files, as writers split a day: one scan of both (a UNION ALL of a
    # scan each did not spill), the repeated keys in the second.
    table = table.select([c["name"] for c in spec["data"]["columns"]])
    half = n // 2
    pq.write_table(table.slice(0, half), folder / "part-0.parquet", row_group_size=200_000)
    pq.write_table(table.slice(half), folder / "part-1.parquet", row_group_size=200_000)
    del table, ids
    def peak():
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        return int(status.split()[0]) // 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
    before = peak()
    try:
        report = sql_quality.check(spec, folder, snapshot_date=date(2026, 11, 2),
                                   memory_limit=limit, threads=1,
                                   max_temp_directory_size=temp_size)
    except Exception as error:
        print(json.dumps({"error": type(error).__name__ + ": " + str(error)[:200]}))
        sys.exit(0)
    unique = report["rules"][0]
    print(json.dumps({"violations": unique["violations"], "rows": report["summary"]["rows"],
                      "peak_mib": peak() - before, "before_mib": before,
                      "parquet_mib": sum(f.stat().st_size for f in folder.iterdir()) // 2**20}))
''')


def spill_run(rows: int, temp_size: str, limit: str = "64MB") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mdlc-spill-day-") as folder:  # the day's Parquet
        done = subprocess.run([sys.executable, "-c", SPILL, json.dumps(SPEC), str(rows),
                               temp_size, limit, folder],
                              capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_day_larger_than_the_memory_limit_spills_with_bounded_memory() -> None:
    rows = 1_500_000
    # The unique rule's hash table of 1.5M long keys does not fit 64 MB: with
    # no room to spill, DuckDB gives up...
    starved = spill_run(rows, "1MB")
    assert "error" in starved and "Out of Memory" in starved["error"], starved
    # ...with the disk it checks the day, and its memory stays near the limit
    # (the keys alone are ~75 MB as Arrow).
    checked = spill_run(rows, "2GB")
    assert checked["rows"] == rows + 7 and checked["violations"] == 7, checked
    assert checked["peak_mib"] < 64 * 2.5, checked
    # Without the limit the same check holds the table in memory (measured
    # 85 MiB against 260 MiB over the process).
    unbounded = spill_run(rows, "2GB", limit="4GB")
    assert unbounded["violations"] == 7 and unbounded["peak_mib"] > 2 * checked["peak_mib"], \
        (checked, unbounded)
