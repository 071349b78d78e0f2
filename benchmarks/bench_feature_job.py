"""The feature job's cost per invocation: ``feature_job.run`` on moto, on DuckDB.

    .venv/bin/python benchmarks/bench_feature_job.py [--days 30] [--rows 500]
        [--format csv|parquet] [--repeat 9]

Builds ``--days`` daily snapshots of ``--rows`` orders of the example spec
through data sourcing (moto S3, in process), then runs the job of the last
day (its 30-day window: every snapshot) on its engine, the features
compiled to SQL on DuckDB, in two passes of ``--repeat`` runs in one
process, and prints the median and the minimum of each pass (two, so the
spread between them shows the machine's noise). A warm process, as a warm
Lambda function is: the first run is not counted. At one day of ten rows it
is the engine's fixed cost (its database kept by the process, the window
staged and deduplicated on disk, two queries, two Parquet files streamed);
the simulation runs the job once per simulated day and workflow. (The NumPy
engine it was once compared with here was retired, issue #18.)
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

import boto3  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from mdlc_core import feature_job, sourcing, tabular  # noqa: E402
from moto import mock_aws  # noqa: E402

from mdlc_constructs.spec import load_spec  # noqa: E402

HEADER = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status\n"


def orders(day: date, back: int, rows: int, rng: np.random.Generator) -> bytes:
    start = np.datetime64(day.isoformat(), "us").astype(np.int64)
    stamps = (start + rng.integers(0, 86_400_000_000, rows)).astype("datetime64[us]")
    lines = [f"o{back}-{i},c{rng.integers(0, 200)},{stamps[i]}+00:00,"
             f"{rng.gamma(2, 40):.2f},{rng.integers(0, 900)},{rng.integers(0, 2)}\n"
             for i in range(rows)]
    return (HEADER + "".join(lines)).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the window's missing days
    config = load_spec(str(ROOT / "models" / "fraud.yaml")).as_config()
    config["data"]["sources"][0]["format"] = args.format
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("raw", "data", "features"):
            s3.create_bucket(Bucket=bucket)
        rng = np.random.default_rng(0)
        last = date(2026, 4, 30)
        for back in range(args.days - 1, -1, -1):
            day = last - timedelta(days=back)
            body, name = orders(day, back, args.rows, rng), "part.csv"
            if args.format == "parquet":
                table = tabular.read_bytes(body, name, config["data"]["columns"])
                buffer = io.BytesIO()
                pq.write_table(table.replace_schema_metadata(None), buffer)
                body, name = buffer.getvalue(), "part.parquet"
            s3.put_object(Bucket="raw", Key=f"orders/dt={day}/{name}", Body=body)
            sources = [sourcing.build_source(s, s3=s3, default_bucket="raw")
                       for s in config["data"]["sources"]]
            sourcing.create_snapshot(s3, sources=sources, bucket="data", model="fraud",
                                     spec_name="fraud", day=day)

        def run() -> float:
            began = time.perf_counter()
            feature_job.run(config, last, s3=s3, datasets_bucket="data",
                            features_bucket="features", engine="duckdb")
            return time.perf_counter() - began

        run()  # warm: imports, the kept database
        print(f"{args.days} days x {args.rows} rows, {args.format}, {args.repeat} runs a pass")
        for index in (1, 2):
            times = [run() for _ in range(args.repeat)]
            print(f"  duckdb pass {index} median {statistics.median(times) * 1000:7.1f} ms, "
                  f"min {min(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
