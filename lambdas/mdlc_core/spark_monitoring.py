"""The Spark runner's monitoring kind: the day's monitoring job with its metrics on Spark SQL.

``spark_job.py --kind monitoring`` (``monitoring.runner: spark``, run on EMR
Serverless by :class:`mdlc_constructs.spark.SparkRunner`) is
:func:`mdlc_core.monitor_job.run`, the job the Lambda and Processing runners
run, with one difference: the metrics (the join of predictions to labels,
precision, recall, F1, AUC with ties, PSI, KS, action shares, per model
version) are :mod:`mdlc_core.sql.monitoring`'s queries rendered for Spark and
run on the job's session. Everything around them is shared, so a day
monitored on Spark has the same report at
``monitoring/<model>/dt=<date>/report.json``, the same CloudWatch metrics and
the same summary as on the other runners: the same readers (only the
``scored/`` CSV and Parquet of the day, an event counted once), the same
per-version drift baselines (``sagemaker:DescribeModelPackage`` of each
version serving that day, ``mdlc_core.drift_baselines``), the same alarms.

Where the work happens: the day's files are read and typed on the driver
(the shared reader: one definition of parsing for every engine), then handed
to Spark as the plan's relations; the joins, sorts and window sums of the
metrics run on the executors and only small results (counts per version,
order statistics, bin counts) come back. The driver's memory therefore
bounds one day's predictions and labels (``spark.driver.memory``); see
docs/monitoring.md, "Scale". (The quality and features kinds read on the
executors, :mod:`mdlc_core.spark_io`; this kind's reading is
:mod:`mdlc_core.monitor_job`'s, shared with the other runners, and has not
moved there yet.)

Arguments (beside the entry point's common ones): the buckets and prefixes
the Lambda runner takes from its environment (``--predictions-bucket``,
``--labels-bucket``, ``--labels-prefix``, ``--baseline-bucket``,
``--baseline-key``, ``--report-bucket``, ``--namespace``,
``--closed-loop-lag-days``) and ``--event``, the Lambda runner's event as
JSON. ``--date`` is the day the run was started (UTC, the workflow passes its
execution's start): the monitored day is the event's ``date`` when it has
one (a backfill), else the day before ``--date``, yesterday, as the Lambda
runner's. ``--read-from`` does not apply: the driver reads through S3's API
either way.

``mdlc_core.spark_job`` lists :func:`arguments` and :func:`run` as its
``monitoring`` :class:`~mdlc_core.spark_job.Job`; this module does not import
it back (the SQL's Spark helper imports its session settings when it runs).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from mdlc_core import monitor_job

#: The default of ``--namespace``: the monitoring metrics' (``METRICS_NAMESPACE``).
NAMESPACE = "MDLC"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The monitoring kind's arguments: the Lambda runner's environment, as flags."""
    parser.add_argument("--event", default="{}",
                        help="the Lambda runner's event as JSON (date, closed_loop_lag_days, "
                        "baseline); without a date, the day before --date")
    parser.add_argument("--predictions-bucket", required=True)
    parser.add_argument("--labels-bucket", required=True)
    parser.add_argument("--labels-prefix", required=True)
    parser.add_argument("--baseline-bucket", required=True)
    parser.add_argument("--baseline-key",
                        help="one fixed baseline for every version; default: each version's own")
    parser.add_argument("--report-bucket", required=True)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--closed-loop-lag-days", type=int, default=0)


def event_of(args: argparse.Namespace) -> dict[str, Any]:
    """``--event`` as the Lambda runner's event, its ``date`` defaulting to the
    day before ``--date``.

    Raises:
        ValueError: ``--event`` is not a JSON object (naming the flag and what it got).
    """
    try:
        event = json.loads(args.event or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"--event must be a JSON object, got {args.event!r}: {error}") from error
    if not isinstance(event, dict):
        raise ValueError(f"--event must be a JSON object, got {args.event!r}")
    if event.get("date") is None:
        event["date"] = (args.date - timedelta(days=1)).isoformat()
    return event


def environment(args: argparse.Namespace) -> dict[str, str]:
    """What :func:`mdlc_core.monitor_job.run` reads from the Lambda runner's
    environment, from the flags (the construct sets both from one place)."""
    environ = {
        "PREDICTIONS_BUCKET": args.predictions_bucket,
        "LABELS_BUCKET": args.labels_bucket,
        "LABELS_PREFIX": args.labels_prefix,
        "BASELINE_BUCKET": args.baseline_bucket,
        "REPORT_BUCKET": args.report_bucket,
        "METRICS_NAMESPACE": args.namespace,
        "CLOSED_LOOP_LAG_DAYS": str(args.closed_loop_lag_days),
    }
    if args.baseline_key:
        environ["BASELINE_KEY"] = args.baseline_key
    return environ


def run(args: argparse.Namespace, config: Mapping[str, Any], *, spark: Any, s3: Any,
        cloudwatch: Any, scratch: str | Path | None = None, sagemaker: Any = None,
        store: Any = None) -> dict[str, Any]:
    """Monitor the day on Spark; returns :func:`mdlc_core.monitor_job.run`'s
    summary (the small JSON result the workflow reads back).

    ``sagemaker`` describes the versions' model packages (default: a boto3
    client as the job's role, made when a package is first described).
    ``scratch`` is unused: nothing is written locally. ``store`` is unused:
    this kind's driver still reads the day (the module docstring says so).
    """
    del scratch, store
    return monitor_job.run(event_of(args), config, s3=s3, cloudwatch=cloudwatch,
                           environ=environment(args), sagemaker=sagemaker, engine="spark",
                           spark=spark)

