"""The scale-out runner: one SageMaker Processing job entry point for every job kind.

Each kind runs the same ``mdlc_core`` code as its embedded (Lambda) runner,
with the job's own boto3 clients, so the outputs in S3 and the metrics are
the same whichever runner ran; only the memory, disk and time limits differ.

    python3 index.py --kind quality    --date YYYY-MM-DD --snapshot-prefix datasets/<model>/dt=.../
    python3 index.py --kind features   --date YYYY-MM-DD
    python3 index.py --kind monitoring [--event '{"date": "YYYY-MM-DD", ...}']

Environment (set by :class:`mdlc_constructs.processing.ProcessingRunner`):

* quality: DATASETS_BUCKET, REPORT_BUCKET, METRICS_NAMESPACE (default
  ``MDLC/DataQuality``); the rules run on DuckDB, whose memory limit follows
  the instance's memory and which spills to ``/opt/ml/processing/scratch``,
  within the volume's free space;
* features: DATASETS_BUCKET, FEATURES_BUCKET, MODEL_NAME;
* monitoring: the ``model_monitor`` handler's (PREDICTIONS_BUCKET, ...); on
  DuckDB (``monitoring.engine``) the day's files and baselines are downloaded to
  the scratch folder and DuckDB, its memory limit from the instance's memory,
  spills there, within the volume's free space.

The job writes what the Lambda runner would have returned to
``<base>/output/result.json`` (SageMaker uploads it, KMS-encrypted, to the
job's output prefix, where the workflow reads it back), and exits non-zero
with the reason on stderr when the input is unusable, which fails the job
and so the workflow step, as an exception fails the Lambda runner.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

BASE = Path("/opt/ml/processing")
KINDS = ("quality", "features", "monitoring")

logger = logging.getLogger("mdlc.processing_job")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MDLC scale-out runner")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--date", type=date.fromisoformat, help="the day (quality, features)")
    parser.add_argument("--snapshot-prefix", help="the snapshot to check (quality)")
    parser.add_argument(
        "--event", default="{}", help="the Lambda runner's event as JSON (monitoring)"
    )
    args = parser.parse_args(argv)
    if args.kind in ("quality", "features") and args.date is None:
        parser.error(f"--kind {args.kind} needs --date YYYY-MM-DD")
    if args.kind == "quality" and not args.snapshot_prefix:
        parser.error("--kind quality needs --snapshot-prefix")
    return args


def run(
    args: argparse.Namespace,
    config: dict[str, Any],
    *,
    s3: Any,
    cloudwatch: Any,
    environ: dict[str, str] | os._Environ[str],
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Run one job kind; returns what its Lambda runner returns."""
    if args.kind == "quality":
        from mdlc_core import quality_job

        return quality_job.run(
            config, args.date, s3=s3, cloudwatch=cloudwatch,
            bucket=environ["DATASETS_BUCKET"], snapshot_prefix=args.snapshot_prefix,
            report_bucket=environ["REPORT_BUCKET"],
            namespace=environ.get("METRICS_NAMESPACE", "MDLC/DataQuality"), scratch=scratch,
            memory_mb=_memory_mb(), storage_mb=_free_mb(scratch),
        )  # fmt: skip
    if args.kind == "features":
        from mdlc_core import feature_job

        return feature_job.run(
            config, args.date, s3=s3, datasets_bucket=environ["DATASETS_BUCKET"],
            features_bucket=environ["FEATURES_BUCKET"],
            model=environ.get("MODEL_NAME", config["name"]), scratch=scratch,
            memory_mb=_memory_mb(), storage_mb=_free_mb(scratch),
        )  # fmt: skip
    from mdlc_core import monitor_job

    event = json.loads(args.event or "{}")
    if not isinstance(event, dict):
        raise ValueError(f"--event must be a JSON object, got {args.event!r}")
    # On DuckDB the day's files and DuckDB's spill go to the job's volume.
    return monitor_job.run(event, config, s3=s3, cloudwatch=cloudwatch, environ=environ,
                           scratch=scratch, memory_mb=_memory_mb(), storage_mb=_free_mb(scratch))


def _memory_mb() -> int | None:
    """The instance's memory, which bounds DuckDB's memory limit (quality)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def _free_mb(scratch: Path | None) -> int | None:
    """Free space of the job's volume, which bounds DuckDB's spill (quality)."""
    import shutil

    return shutil.disk_usage(scratch).free // 2**20 if scratch is not None else None


def main(
    argv: list[str] | None = None,
    *,
    base: Path = BASE,
    s3: Any = None,
    cloudwatch: Any = None,
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    os.environ.setdefault("MDLC_CONFIG_FILE", str(Path(__file__).with_name("mdlc_config.json")))
    from mdlc_core.runtime_config import load_config

    if s3 is None or cloudwatch is None:
        import boto3

        s3 = s3 or boto3.client("s3")
        cloudwatch = cloudwatch or boto3.client("cloudwatch")
    output = base / "output"
    output.mkdir(parents=True, exist_ok=True)
    scratch = base / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    result = run(
        args, load_config(), s3=s3, cloudwatch=cloudwatch, environ=os.environ, scratch=scratch
    )
    (output / "result.json").write_text(json.dumps(result, sort_keys=True))
    logger.info("result: %s", json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
