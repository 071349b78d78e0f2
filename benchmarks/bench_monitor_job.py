"""The fixed cost of one monitoring run on DuckDB: a small day through
``mdlc_core.monitor_job.run``, as the ``model_monitor`` function runs it.

    .venv/bin/python benchmarks/bench_monitor_job.py [PREDICTIONS] [BASELINE_ROWS] [REPEAT]
    (defaults 1,000 predictions, a 1,000-row baseline, 15 warm runs)

The run is in a fresh process (so its first run pays its imports, as a
cold Lambda does) over one day: one CSV and one Parquet file of
predictions of two versions with an action and two features, labels for 60%
of them and a fixed Parquet baseline, served from a local folder by an S3
stand-in (no moto: its cost is not the engine's). Printed: the first run,
the median of the warm runs, and the median of warm runs
with the parsed queries forgotten before each
(:func:`mdlc_core.sql.monitoring.clear_cache`), and with the DuckDB database
closed as well (:func:`mdlc_core.sql.monitoring_files.close_databases`): what
a run costs without what a warm process keeps. (The NumPy engine it was
compared with was retired, issue #18.)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-02"


class FolderS3:
    """The S3 calls monitor_job makes, served from a local folder (bucket = subfolder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.puts: dict[str, bytes] = {}

    def get_paginator(self, name: str) -> FolderS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
        base = self.root / Bucket
        return [{"Contents": [
            {"Key": str(p.relative_to(base)), "Size": p.stat().st_size}
            for p in sorted(base.rglob("*"))
            if p.is_file() and str(p.relative_to(base)).startswith(Prefix)]}]

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": (self.root / Bucket / Key).open("rb")}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.puts[Key] = Body


class CloudWatch:
    def put_metric_data(self, **_: Any) -> None:
        pass


def write_day(root: Path, n: int, baseline_rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    scored = root / "b" / "predictions" / "fraud" / f"dt={DAY}" / "scored"
    truth = root / "b" / "labels" / "fraud" / f"dt={DAY}"
    scored.mkdir(parents=True)
    truth.mkdir(parents=True)
    ids = [f"o{i}" for i in range(n)]
    table = pa.table({
        "event_id": ids, "score": np.round(rng.uniform(size=n), 3),
        "prediction_ts": [f"{DAY}T10:00:00Z"] * n,
        "model_version": [("v1", "v2")[i % 2] for i in range(n)],
        "action": [("approve", "review", "block")[i % 3] for i in range(n)],
        "order_amount": rng.gamma(2, 50, n), "account_tenure": rng.integers(0, 900, n) * 1.0})
    half = n // 2
    pacsv.write_csv(table.slice(0, half), scored / "part-0.csv")
    pq.write_table(table.slice(half).set_column(
        2, "prediction_ts", pa.array([1793613600000] * (n - half), pa.timestamp("ms", "UTC"))),
        scored / "part-1.parquet")
    k = n * 6 // 10
    pq.write_table(pa.table({
        "event_id": ids[:k], "label": (rng.uniform(size=k) < 0.3).astype(int),
        "label_ts": pa.array([1795000000000] * k, pa.timestamp("ms", "UTC"))}),
        truth / "labels.parquet")
    pq.write_table(pa.table({
        "score": rng.uniform(size=baseline_rows),
        "order_amount": rng.gamma(2, 45, baseline_rows),
        "account_tenure": rng.integers(0, 900, baseline_rows) * 1.0}),
        root / "b" / "baseline.parquet")


CONFIG = {"name": "fraud", "data": {"columns": [{"name": "order_amount", "type": "float"},
                                                {"name": "account_tenure", "type": "int"}]},
          "monitoring": {}}


def one_engine(root: Path, engine: str, repeat: int) -> dict[str, Any]:
    """In this process: the first run, then ``repeat`` warm ones (and, on DuckDB,
    ``repeat`` with the query cache cleared before each)."""
    sys.path.insert(0, str(ROOT / "lambdas"))
    from mdlc_core import monitor_job

    environ = {"PREDICTIONS_BUCKET": "b", "BASELINE_KEY": "baseline.parquet",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"}

    def once(before: Any = None) -> tuple[float, bytes]:
        if before is not None:
            before()
        s3 = FolderS3(root)
        start = time.perf_counter()
        monitor_job.run({"date": DAY}, CONFIG, s3=s3, cloudwatch=CloudWatch(),
                        environ=environ, engine=engine)
        return time.perf_counter() - start, s3.puts[f"monitoring/fraud/dt={DAY}/report.json"]

    first, report = once()
    warm = [once()[0] for _ in range(repeat)]
    result = {"engine": engine, "first_ms": first * 1000,
              "warm_ms": statistics.median(warm) * 1000, "report": report.decode()}
    if engine == "duckdb":
        from mdlc_core.sql import monitoring as sql_monitoring
        from mdlc_core.sql import monitoring_files

        def forget() -> None:
            sql_monitoring.clear_cache()
            monitoring_files.close_databases()

        cold = [once(forget)[0] for _ in range(repeat)]
        result["uncached_ms"] = statistics.median(cold) * 1000
        no_queries = [once(sql_monitoring.clear_cache)[0] for _ in range(repeat)]
        result["no_query_cache_ms"] = statistics.median(no_queries) * 1000
    return result


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--engine":
        print(json.dumps(one_engine(Path(argv[1]), argv[2], int(argv[3]))))
        return
    n = int(argv[0]) if argv else 1_000
    baseline_rows = int(argv[1]) if len(argv) > 1 else 1_000
    repeat = int(argv[2]) if len(argv) > 2 else 15
    with tempfile.TemporaryDirectory(prefix="bench-monitor-job-") as folder:
        root = Path(folder)
        write_day(root, n, baseline_rows)
        results = {}
        for engine in ("duckdb",):
            done = subprocess.run(
                [sys.executable, __file__, "--engine", str(root), engine, str(repeat)],
                capture_output=True, text=True, check=True)
            results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"monitor_job.run of {n:,} predictions ({n * 6 // 10:,} labels), a "
          f"{baseline_rows:,}-row baseline; median of {repeat} warm runs")
    print(f"{'engine':<10} {'first run':>10} {'warm':>9} {'no query cache':>15} "
          f"{'nothing cached':>15}")
    for engine, r in results.items():
        queries = f"{r['no_query_cache_ms']:.1f} ms" if "uncached_ms" in r else "-"
        nothing = f"{r['uncached_ms']:.1f} ms" if "uncached_ms" in r else "-"
        print(f"{engine:<10} {r['first_ms']:>7.1f} ms {r['warm_ms']:>6.1f} ms {queries:>15} "
              f"{nothing:>15}")


if __name__ == "__main__":
    main(sys.argv[1:])
