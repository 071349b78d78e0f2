"""What the Spark monitoring job's driver holds: the day through it, or none of it.

    .venv/bin/python benchmarks/bench_spark_monitoring_driver.py [--rows 500000] [--files 8]

Writes one day of ``--rows`` predictions in ``--files`` Parquet objects
(two model versions, actions, two features, a redelivered batch) and labels
for four in five of them (CSV) to moto S3, with a fixed baseline, then
monitors the day on local PySpark twice, each in a fresh process:

* ``driver``: ``monitor_job.run(engine="spark")``, the path the Spark job
  took before: the driver downloads and types the day (the shared reader,
  Arrow), hands Spark Arrow relations, and Spark runs the metrics' SQL;
* ``executors``: ``spark_monitoring.run``, what ``spark_job --kind
  monitoring`` runs now: the driver lists the objects; the executors read,
  type and deduplicate them; the same SQL runs on their frames.

It prints each one's wall time and the peak resident memory of the driver's
Python process (``ru_maxrss`` of that process only: the JVM and the
executors' Python workers are its children, not counted; moto's copy of the
objects is in it in both, and counted in "before"), and checks both wrote
the same report (floats to 1e-12). Local Spark runs the executors on the
same machine, so the figure is about where the rows are held, not about a
cluster's speed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-02"
BUCKET = "predictions"
BASELINE = "baselines/fraud/fixed/features.parquet"


def _day(s3: Any, rows: int, files: int) -> None:
    """The day's objects, one file at a time (never the whole day in memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3.create_bucket(Bucket=BUCKET)
    rng = np.random.default_rng(5)

    def put_parquet(key: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        s3.put_object(Bucket=BUCKET, Key=key, Body=sink.getvalue())

    put_parquet(BASELINE, pa.table({"score": rng.uniform(size=50_000),
                                    "order_amount": rng.gamma(2, 45.0, 50_000),
                                    "account_tenure": rng.integers(0, 400, 50_000) * 1.0}))
    per_file = -(-rows // files)
    for index in range(files):
        start, stop = index * per_file, min(rows, (index + 1) * per_file)
        n = stop - start
        scores = np.round(rng.uniform(size=n), 3)
        table = pa.table({
            "event_id": [f"o{i}" for i in range(start, stop)], "score": scores,
            "prediction_ts": pa.array(np.full(n, np.datetime64(f"{DAY}T10:00:00", "us"))
                                      ).cast(pa.timestamp("us", "UTC")),
            "model_version": np.where(np.arange(n) % 3 == 0, "v1", "v2").tolist(),
            "action": np.where(scores > 0.9, "block", "approve").tolist(),
            "order_amount": rng.gamma(2, 50.0, n), "account_tenure": rng.integers(0, 400, n) * 1.0,
        })
        put_parquet(f"predictions/fraud/dt={DAY}/scored/part-{index:04d}.parquet", table)
        if index == 0:  # a redelivered batch: its first thousand decisions again
            put_parquet(f"predictions/fraud/dt={DAY}/scored/redelivered.parquet",
                        table.slice(0, 1000))
        lines = [f"o{i},{int(s > 0.7)},2026-11-20T00:00:00Z"
                 for i, s in zip(range(start, stop), scores, strict=True) if i % 5]
        s3.put_object(Bucket=BUCKET, Key=f"labels/fraud/dt={DAY}/part-{index:04d}.csv",
                      Body=("event_id,label,label_ts\n" + "\n".join(lines) + "\n").encode())


def variant(name: str, rows: int, files: int) -> dict[str, Any]:
    """One run in this process: the day, then its monitoring report."""
    import boto3
    from mdlc_core import monitor_job, spark_job, spark_monitoring
    from mdlc_core.spark_io import Downloaded
    from moto import mock_aws

    from mdlc_constructs.spec import load_spec

    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench")
    config = load_spec(ROOT / "models" / "fraud.yaml").as_config()
    spark = spark_job.local_session("bench-spark-monitoring", threads=os.cpu_count() or 1)
    spark.sparkContext.setLogLevel("ERROR")

    class NoMetrics:
        def put_metric_data(self, **kwargs: Any) -> None:
            del kwargs

    environ = {"PREDICTIONS_BUCKET": BUCKET, "LABELS_BUCKET": BUCKET,
               "LABELS_PREFIX": "labels/fraud/", "BASELINE_BUCKET": BUCKET,
               "BASELINE_KEY": BASELINE, "REPORT_BUCKET": BUCKET}
    with mock_aws(), tempfile.TemporaryDirectory() as folder:
        s3 = boto3.client("s3")
        _day(s3, rows, files)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        if name == "driver":
            monitor_job.run({"date": DAY}, config, s3=s3, cloudwatch=NoMetrics(),
                            environ=environ, engine="spark", spark=spark)
        else:
            args = spark_job.parse_args([
                "--kind", "monitoring", "--date", "2026-11-03", "--event",
                json.dumps({"date": DAY}), "--predictions-bucket", BUCKET,
                "--labels-bucket", BUCKET, "--labels-prefix", "labels/fraud/",
                "--baseline-bucket", BUCKET, "--baseline-key", BASELINE,
                "--report-bucket", BUCKET, "--result-bucket", BUCKET, "--result-key", "r.json"])
            spark_monitoring.run(args, config, spark=spark, s3=s3, cloudwatch=NoMetrics(),
                                 store=Downloaded(boto3.client("s3"), folder))
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = json.loads(s3.get_object(
            Bucket=BUCKET, Key=f"monitoring/fraud/dt={DAY}/report.json")["Body"].read())
    return {"seconds": seconds, "peak_mib": peak / 1024, "before_mib": before / 1024,
            "report": report}


def _same(mine: Any, theirs: Any, path: str = "report") -> None:
    if isinstance(theirs, dict):
        assert list(mine) == list(theirs), path
        for key in theirs:
            _same(mine[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert len(mine) == len(theirs), path
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert math.isclose(mine, theirs, rel_tol=1e-12, abs_tol=1e-300), (path, mine, theirs)
    else:
        assert mine == theirs, (path, mine, theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--variant", choices=("driver", "executors"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.rows, args.files)))
        return
    runs = {}
    for name in ("driver", "executors"):
        printed = subprocess.run(
            [sys.executable, __file__, "--variant", name, "--rows", str(args.rows),
             "--files", str(args.files)], check=True, capture_output=True, text=True).stdout
        runs[name] = json.loads(printed.strip().splitlines()[-1])
    _same(runs["executors"]["report"], runs["driver"]["report"])
    report = runs["executors"]["report"]
    print(f"monitoring one day of {report['predictions']:,} predictions "
          f"(+{report['duplicate_predictions']:,} redelivered) in {args.files + 1} Parquet "
          f"objects and {report['closed_loop']['labels']:,} labels, local Spark, "
          f"{os.cpu_count()} cores; the same report")
    for name, run in runs.items():
        print(f"  {name:<9}  {run['seconds']:7.2f} s   driver Python peak RSS "
              f"{run['peak_mib']:7.0f} MiB (before the job {run['before_mib']:5.0f} MiB)")


if __name__ == "__main__":
    main()
