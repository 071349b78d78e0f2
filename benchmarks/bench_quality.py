"""Quality: the engine on 1,000,000 rows against 10 rules, a small day's fixed
cost, and the handler path.

Prints rows per second of the quality engine (``mdlc_core.sql.quality.check``:
the rules compiled to SQL, on DuckDB) on in-memory tables (the reader's cost
is printed separately), and the ratio against a naive per-row Python
implementation of the same rules run in this process on a smaller sample.

Then the fixed cost of one check of a 1,000-row day and its previous day
with the example spec's 19 rules, what a warm Lambda pays per invocation:
the process's first check, then the median of 20 with the compiled rules
cached (as a warm function runs them) and of 20 with the cache cleared
before each (what every check cost before the cache).

Then the handler path: ``quality_job.run`` (what the quality Lambda and the
Processing runner execute) on a day and its previous day as data sourcing
builds them in S3 (moto), as Parquet (scanned by DuckDB from disk) and as
CSV (read by the shared reader), with the example spec's 19 rules and the
Lambda's 3008 MB: download, check, report and metrics, the two formats'
reports asserted equal but for their sources. Seconds are the best of two.
Run: ``.venv/bin/python benchmarks/bench_quality.py [rows] [handler rows]``.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from mdlc_core import quality, tabular
from mdlc_core.sql import quality as sql_quality
from mdlc_core.sql import rules as sql_rules

from mdlc_constructs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 1)
RULES = [
    {"kind": "completeness", "column": "customer_id", "min": 1.0},
    {"kind": "completeness", "column": "order_amount", "min": 0.99},
    {"kind": "type", "column": "order_amount", "type": "float"},
    {"kind": "type", "column": "account_tenure", "type": "int"},
    {"kind": "range", "column": "order_amount", "min": 0, "max": 50000},
    {"kind": "range", "column": "account_tenure", "min": 0, "max": 36500},
    {"kind": "allowed_values", "column": "fraud_status", "values": [0, 1]},
    {"kind": "unique", "columns": ["order_id"]},
    {"kind": "freshness", "column": "order_ts", "max_age_hours": 36},
    {"id": "tenure_grows_daily", "kind": "consistency", "column": "account_tenure",
     "entity": "customer_id", "change": "days"},
]


def orders(rows: int, day: date, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    customers = rng.integers(0, max(rows // 10, 1), rows)
    start = np.datetime64(day.isoformat(), "us").astype(np.int64)
    return pa.table({
        "order_id": pa.array(np.char.add(f"o{seed}-", np.arange(rows).astype(str))),
        "customer_id": pa.array(np.char.add("c-", customers.astype(str))),
        "order_ts": pa.array(start + rng.integers(0, 86_400_000_000, rows),
                             type=pa.timestamp("us", tz="UTC")),
        "order_amount": pa.array(rng.gamma(2.0, 50.0, rows)),
        "account_tenure": pa.array(customers % 3000 + (day - DAY).days + 400, type=pa.int64()),
        "fraud_status": pa.array(rng.integers(0, 2, rows)),
    })


def naive_check(rows: list[dict[str, Any]], previous: list[dict[str, Any]]) -> int:
    """The same ten rules, row by row in plain Python: the baseline."""
    violations = 0
    n = len(rows)
    violations += sum(r["customer_id"] is None for r in rows) > 0
    violations += (n - sum(r["order_amount"] is None for r in rows)) / n < 0.99
    for column, kind in (("order_amount", float), ("account_tenure", int)):
        violations += sum(r[column] is not None and not isinstance(r[column], kind) for r in rows)
    violations += sum(r["order_amount"] is not None and not 0 <= r["order_amount"] <= 50000
                      for r in rows)
    violations += sum(r["account_tenure"] is not None and not 0 <= r["account_tenure"] <= 36500
                      for r in rows)
    violations += sum(r["fraud_status"] not in (0, 1) for r in rows)
    seen: set[str] = set()
    for r in rows:
        violations += r["order_id"] in seen
        seen.add(r["order_id"])
    newest = max(r["order_ts"] for r in rows)
    end = datetime(DAY.year, DAY.month, DAY.day + 1, tzinfo=newest.tzinfo)
    violations += (end - newest).total_seconds() / 3600 > 36
    before: dict[str, tuple[int, int]] = {}
    for r in previous:
        low, high = before.get(r["customer_id"], (r["account_tenure"], r["account_tenure"]))
        before[r["customer_id"]] = (min(low, r["account_tenure"]), max(high, r["account_tenure"]))
    now: dict[str, tuple[int, int]] = {}
    for r in rows:
        low, high = now.get(r["customer_id"], (r["account_tenure"], r["account_tenure"]))
        now[r["customer_id"]] = (min(low, r["account_tenure"]), max(high, r["account_tenure"]))
    for customer, (low, high) in now.items():
        if customer in before:
            plow, phigh = before[customer]
            violations += max(abs(low - phigh - 1), abs(high - plow - 1)) > 0
    return violations


def timed(function: Any, repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    spec = copy.deepcopy(load_spec(ROOT / "models" / "fraud.yaml").as_config())
    spec["quality"]["rules"] = RULES
    current, previous = orders(rows, DAY, 1), orders(rows, date(2026, 10, 31), 0)

    seconds, report = timed(lambda: sql_quality.check(
        spec, current, previous, snapshot_date=DAY))
    assert report["summary"]["passed"], [r["message"] for r in report["rules"] if not r["passed"]]
    print(f"engine   {rows:>9,} rows x {len(RULES)} rules: {seconds:6.3f} s "
          f"= {rows / seconds:,.0f} rows/s")
    for rule in RULES:
        single = dict(spec, quality=dict(spec["quality"], rules=[rule]))
        rule_seconds, _ = timed(lambda single=single: sql_quality.check(
            single, current, previous, snapshot_date=DAY), repeat=1)
        print(f"    {quality.rule_id(rule):<28} {rule_seconds * 1000:7.1f} ms")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "part-0000.csv"
        pacsv.write_csv(current, path)
        read_seconds, _ = timed(lambda: tabular.read_table(path, spec["data"]["columns"]),
                                repeat=1)
    print(f"reader   {rows:>9,} rows from CSV: {read_seconds:6.3f} s "
          f"= {rows / read_seconds:,.0f} rows/s (not part of the engine figure)")

    sample = min(rows, 100_000)
    small, small_previous = current.slice(0, sample), previous.slice(0, sample)
    engine_small, _ = timed(lambda: sql_quality.check(
        spec, small, small_previous, snapshot_date=DAY))
    as_rows, before_rows = small.to_pylist(), small_previous.to_pylist()
    naive_seconds, naive_violations = timed(lambda: naive_check(as_rows, before_rows), repeat=1)
    assert naive_violations == 0
    print(f"naive    {sample:>9,} rows x {len(RULES)} rules: {naive_seconds:6.3f} s "
          f"= {sample / naive_seconds:,.0f} rows/s (per-row Python, rows already as dicts)")
    print(f"engine   {sample:>9,} rows x {len(RULES)} rules: {engine_small:6.3f} s "
          f"= {sample / engine_small:,.0f} rows/s")
    print(f"ratio    engine/naive rows per second: {naive_seconds / engine_small:.1f}x "
          f"(same {sample:,} rows); at {rows:,} rows: "
          f"{(rows / seconds) / (sample / naive_seconds):.1f}x")


def fixed_cost() -> None:
    """One check of a small day, cold, warm and warm without the compile cache."""
    spec = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    current, previous = orders(1000, DAY, 1), orders(1000, date(2026, 10, 31), 0)

    def once(clear: bool) -> float:
        if clear:
            sql_rules.cache_clear()
        start = time.perf_counter()
        report = sql_quality.check(spec, current, previous, snapshot_date=DAY, threads=1)
        elapsed = time.perf_counter() - start
        assert report["summary"]["passed"], report["summary"]
        return elapsed

    sql_rules.cache_clear()
    first = once(False)
    cached = [once(False) for _ in range(20)]
    uncached = [once(True) for _ in range(20)]
    print(f"small    1,000 rows + previous day x {len(spec['quality']['rules'])} rules, one "
          f"check: first {first * 1000:.1f} ms; then median {statistics.median(cached) * 1000:.1f}"
          f" ms cached (min {min(cached) * 1000:.1f}), "
          f"{statistics.median(uncached) * 1000:.1f} ms recompiling each time "
          f"(min {min(uncached) * 1000:.1f})")


def handler_path(rows: int) -> None:
    """``quality_job.run`` on the same days in S3, as Parquet and as CSV."""
    import io
    import os

    import boto3
    import pyarrow.parquet as pq
    from mdlc_core import quality_job, sourcing
    from moto import mock_aws

    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench")
    base = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    days = {DAY: orders(rows, DAY, 1), date(2026, 10, 31): orders(rows, date(2026, 10, 31), 0)}
    seconds: dict[str, float] = {}
    reports: dict[str, dict[str, Any]] = {}
    with mock_aws():
        s3, cloudwatch = boto3.client("s3"), boto3.client("cloudwatch")
        for bucket in ("raw", "data", "reports"):
            s3.create_bucket(Bucket=bucket)
        for file_format in ("parquet", "csv"):
            spec = copy.deepcopy(base)
            spec["data"]["sources"][0].update(format=file_format, prefix=f"{file_format}/")
            prefixes = {}
            for day, table in days.items():
                buffer = io.BytesIO()
                if file_format == "parquet":
                    pq.write_table(table, buffer)
                else:
                    pacsv.write_csv(table, buffer)
                s3.put_object(Bucket="raw", Key=f"{file_format}/dt={day}/part-0000.{file_format}",
                              Body=buffer.getvalue())
                sources = [sourcing.build_source(source, s3=s3, default_bucket="raw")
                           for source in spec["data"]["sources"]]
                prefixes[day] = sourcing.create_snapshot(
                    s3, sources=sources, bucket="data", model="fraud", spec_name="fraud",
                    day=day)["snapshot_prefix"]
            def run(spec: dict[str, Any] = spec,
                    prefixes: dict[date, str] = prefixes) -> dict[str, Any]:
                quality_job.run(
                    spec, DAY, s3=s3, cloudwatch=cloudwatch, bucket="data",
                    snapshot_prefix=prefixes[DAY], report_bucket="reports",
                    namespace="Bench", previous_prefix=prefixes[date(2026, 10, 31)],
                    memory_mb=3008, storage_mb=10240)
                body = s3.get_object(Bucket="reports",
                                     Key=quality_job.report_key_of("fraud", DAY))["Body"]
                return json.loads(body.read())
            seconds[file_format], reports[file_format] = timed(run, repeat=2)
            for key in ("checked_at", "source", "previous_source"):
                reports[file_format].pop(key)
            summary = reports[file_format]["summary"]
            assert summary["rows"] == rows, summary
            print(f"handler  {rows:>9,} rows x {len(spec['quality']['rules'])} rules, "
                  f"{file_format:<7}: {seconds[file_format]:6.3f} s "
                  f"({summary['failed']} rules failed)")
        assert reports["parquet"] == reports["csv"], "Parquet and CSV days disagree"
        print(f"handler  csv/parquet {seconds['csv'] / seconds['parquet']:.2f}x, same report")


if __name__ == "__main__":
    main()
    fixed_cost()
    handler_path(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
