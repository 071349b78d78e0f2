"""What the Spark features job's driver holds: the window through it, or none of it.

    .venv/bin/python benchmarks/bench_spark_driver.py [--days 10] [--rows 50000]

Builds ``--days`` dated snapshots of ``--rows`` sampled orders each (moto S3,
CSV, the real sourcing code), then computes the last day's features on local
PySpark twice, each in a fresh process:

* ``driver``: ``feature_job.run(engine="spark")``, the path the Spark job
  took before: the driver downloads, hashes and types the window, hands
  Spark an Arrow frame, collects both answers back (``toArrow``) and writes
  them;
* ``executors``: ``spark_features.run``, what ``spark_job --kind features``
  runs now: the driver reads the manifests; the executors check, parse,
  compute and write (``mdlc_core.spark_io``).

It prints each one's wall time and the peak resident memory of the driver's
Python process (``ru_maxrss`` of that process only: the JVM and the
executors' Python workers are its children, not counted), and checks both
wrote the same two tables. Local Spark runs the executors on the same
machine, so the figure is about where the rows are held, not about a
cluster's speed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 3, 1)
DATASETS, FEATURES, RAW, STAGING = "datasets", "features", "raw", "artifacts"


def _lake(s3: Any, spec: Any, days: int, rows: int) -> date:
    """``days`` snapshots of ``rows`` orders each; returns the last day."""
    from mdlc_core import sourcing

    from mdlc_constructs.sampling import sample, to_csv

    for bucket in (RAW, DATASETS, FEATURES, STAGING):
        s3.create_bucket(Bucket=bucket)
    config = spec.as_config()
    for day in sample(spec, days=days, start=START, rows_per_day=rows, seed=7,
                      entities=max(rows // 5, 10)):
        s3.put_object(Bucket=RAW, Key=f"orders/dt={day.date.isoformat()}/part.csv",
                      Body=to_csv(spec, [day]).encode())
        sources = [sourcing.build_source(source, s3=s3, default_bucket=RAW)
                   for source in config["data"]["sources"]]
        sourcing.create_snapshot(s3, sources=sources, bucket=DATASETS, model=config["name"],
                                 spec_name=config["name"], day=day.date)
    return START + timedelta(days=days - 1)


def _tables(s3: Any, result: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    return {key: pq.read_table(io.BytesIO(
        s3.get_object(Bucket=FEATURES, Key=result[key])["Body"].read())).to_pylist()
        for key in ("features_key", "entities_key")}


def variant(name: str, days: int, rows: int, out: Path) -> dict[str, Any]:
    """One run in this process: the lake, then the features of its last day
    (the two tables it wrote pickled to ``out``)."""

    import boto3
    from mdlc_core import feature_job, spark_features
    from mdlc_core.spark_io import Downloaded
    from mdlc_core.spark_job import local_session
    from moto import mock_aws

    from mdlc_constructs.spec import load_spec

    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench")
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    config = spec.as_config()
    spark = local_session("bench-spark-driver", threads=os.cpu_count() or 1)
    spark.sparkContext.setLogLevel("ERROR")
    with mock_aws(), tempfile.TemporaryDirectory() as folder:
        s3 = boto3.client("s3")
        day = _lake(s3, spec, days, rows)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        if name == "driver":
            result = feature_job.run(config, day, s3=s3, datasets_bucket=DATASETS,
                                     features_bucket=FEATURES, engine=feature_job.SPARK,
                                     spark=spark)
        else:
            result = spark_features.run(
                config, day, spark=spark, s3=s3, store=Downloaded(boto3.client("s3"), folder),
                datasets_bucket=DATASETS, features_bucket=FEATURES, staging_bucket=STAGING,
                staging_prefix="spark/bench/staging")
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out.write_bytes(pickle.dumps(_tables(s3, result)))
    return {"seconds": seconds, "peak_mib": peak / 1024, "before_mib": before / 1024,
            "result": result}


def _same(mine: dict[str, list[dict[str, Any]]], theirs: dict[str, list[dict[str, Any]]]
          ) -> None:
    """The same rows in the same order; floats to 1e-9 relative (another
    summation order may differ in the last bits, as the tests allow)."""
    for key, rows in theirs.items():
        assert len(mine[key]) == len(rows), key
        for index, (a, b) in enumerate(zip(mine[key], rows, strict=True)):
            assert a.keys() == b.keys(), (key, index)
            for name, x in a.items():
                y = b[name]
                if isinstance(x, float) and isinstance(y, float):
                    assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (key, index, name)
                else:
                    assert x == y, (key, index, name, x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--variant", choices=("driver", "executors"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.days, args.rows, args.out)))
        return
    runs, tables = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("driver", "executors"):
            out = Path(folder, f"{name}.pickle")
            printed = subprocess.run(
                [sys.executable, __file__, "--variant", name, "--days", str(args.days),
                 "--rows", str(args.rows), "--out", str(out)],
                check=True, capture_output=True, text=True).stdout
            runs[name] = json.loads(printed.strip().splitlines()[-1])
            tables[name] = pickle.loads(out.read_bytes())
    driver, executors = runs["driver"], runs["executors"]
    assert driver["result"] == executors["result"], (driver["result"], executors["result"])
    _same(tables["executors"], tables["driver"])
    events = args.days * args.rows
    print(f"features of day {args.days} over {args.days} days x {args.rows:,} orders "
          f"({events:,} events in the window), local Spark, {os.cpu_count()} cores; "
          "the same two tables")
    for name, run in runs.items():
        print(f"  {name:<9}  {run['seconds']:7.2f} s   driver Python peak RSS "
              f"{run['peak_mib']:7.0f} MiB (before the job {run['before_mib']:5.0f} MiB)")


if __name__ == "__main__":
    main()
