"""A day of 10 million predictions through the monitoring job code, as the
Processing runner runs it (``mdlc_core.monitor_job.run``: read the day's
Parquet files from S3, join the labels, compute every metric, write the
report, publish the metrics).

    .venv/bin/python benchmarks/bench_processing.py [N]   (default N = 10,000,000)

The data is generated once as Parquet files (10 prediction parts, labels for
60% of them, a 1-million-row baseline); each run is then a fresh process with
an S3 client that serves those files from disk, so its peak RSS is the job's
own. It prints time and peak memory at N and at N/10 (the baseline run) and
their ratios: the memory a Processing instance needs, and how it grows.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambdas"))
sys.path.insert(0, str(ROOT / "benchmarks"))

PARTS = 10


class FolderS3:
    """The S3 calls monitor_job makes, served from a local folder (bucket = subfolder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.puts: dict[str, int] = {}

    def get_paginator(self, name: str) -> FolderS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
        base = self.root / Bucket
        items = [
            {"Key": str(p.relative_to(base)), "Size": p.stat().st_size}
            for p in sorted(base.rglob("*"))
            if p.is_file() and str(p.relative_to(base)).startswith(Prefix)
        ]
        return [{"Contents": items}]

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": open(self.root / Bucket / Key, "rb")}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.puts[f"{Bucket}/{Key}"] = len(Body)


class CountingCloudWatch:
    def __init__(self) -> None:
        self.values = 0

    def put_metric_data(self, Namespace: str, MetricData: list[Any]) -> None:
        self.values += len(MetricData)


def generate(root: Path, n: int, seed: int) -> None:
    import numpy as np
    import pyarrow.parquet as pq
    from bench_monitoring import make

    predictions, labels, baseline = make(n, seed=seed)
    day = "2024-05-01"
    folder = root / "predictions" / "predictions" / "fraud" / f"dt={day}"
    folder.mkdir(parents=True)
    step = -(-n // PARTS)
    for i in range(PARTS):
        pq.write_table(predictions.slice(i * step, step), folder / f"part-{i}.parquet")
    labels_folder = root / "predictions" / "labels" / "fraud" / f"dt={day}"
    labels_folder.mkdir(parents=True)
    pq.write_table(labels, labels_folder / "labels.parquet")
    baseline_folder = root / "predictions" / "baselines" / "fraud"
    baseline_folder.mkdir(parents=True)
    pq.write_table(baseline, baseline_folder / "part-0.parquet")
    del np


def job(root: Path) -> None:
    """One run, in this (fresh) process; prints a JSON line."""
    from mdlc_core import monitor_job

    config = {
        "name": "fraud",
        "data": {"columns": [{"name": "order_amount", "type": "float"}]},
        "monitoring": {
            "closed_loop": {"decision_threshold": 0.5},
            "open_loop": {"bins": 10, "max_psi": 0.2, "ks_alpha": 0.01},
        },
    }
    s3, cloudwatch = FolderS3(root), CountingCloudWatch()
    start = time.perf_counter()
    summary = monitor_job.run(
        {"date": "2024-05-01"}, config, s3=s3, cloudwatch=cloudwatch,
        environ={"PREDICTIONS_BUCKET": "predictions", "BASELINE_KEY": "baselines/fraud/"},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "predictions": summary["predictions"],
                      "labels": summary["labels"], "metrics": cloudwatch.values}))


def measure(n: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mdlc-bench-processing-") as folder:
        root = Path(folder)
        generate(root, n, seed)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        done = subprocess.run(
            [sys.executable, __file__, "--job", str(root)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["parquet_mib"] = size
        return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--job":
        job(Path(sys.argv[2]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    small = measure(n // 10, seed=1)
    big = measure(n, seed=2)
    for label, r in ((f"{n // 10:,}", small), (f"{n:,}", big)):
        print(
            f"monitor_job on {label} predictions ({r['labels']:,} labels, "
            f"{r['parquet_mib']:,.0f} MiB of Parquet): {r['seconds']:.1f} s, "
            f"{r['predictions'] / r['seconds']:,.0f} rows/s, peak RSS {r['peak_mib']:,.0f} MiB, "
            f"{r['metrics']} metric values"
        )
    print(
        f"ratio {n:,} / {n // 10:,}: time {big['seconds'] / small['seconds']:.1f}x, "
        f"peak memory {big['peak_mib'] / small['peak_mib']:.1f}x"
    )
    print(
        f"fits: ml.m5.2xlarge (32 GiB, the monitoring default) with "
        f"{32 * 1024 / big['peak_mib']:.1f}x headroom; Lambda's 10 GiB with "
        f"{10 * 1024 / big['peak_mib']:.1f}x"
    )


if __name__ == "__main__":
    main()
