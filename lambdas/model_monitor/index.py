"""Scheduled model monitoring (MDLC stage 7), the embedded runner: one day in Lambda.

Event: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday, UTC). Optional keys:
``closed_loop_lag_days`` and ``baseline`` (``s3://bucket/key`` or a key; a key
ending in ``/`` is a prefix of files).

Environment: PREDICTIONS_BUCKET, LABELS_BUCKET, LABELS_PREFIX, BASELINE_BUCKET,
BASELINE_KEY, REPORT_BUCKET, METRICS_NAMESPACE, CLOSED_LOOP_LAG_DAYS (defaults
in ``mdlc_core.monitor_job``).

The work is ``mdlc_core.monitor_job.run``, the same code the scale-out runner
(``processing_job --kind monitoring``, a SageMaker Processing job) runs: it
reads the predictions, labels and baseline, writes the report to
``monitoring/<model>/dt=<date>/report.json``, publishes the metrics of
docs/monitoring.md and returns the summary ``{model, date, closed_loop_date,
predictions, labels, unmatched_labels, metrics_published, report, alarms,
status}``. On DuckDB (``monitoring.engine``) the day's objects and the drift
baselines are downloaded to ``/tmp`` and DuckDB types them into its own tables, within a
memory limit from the function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``),
spilling to ``/tmp`` past it (at most what ``MDLC_EPHEMERAL_STORAGE_MB``
allows, when set): the day is bounded by the function's ephemeral storage and
its 15 minutes, not its memory. Past those, switch ``monitoring.runner`` to
``processing`` (or ``spark``).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core import monitor_job
from mdlc_core.runtime_config import load_config

logger = Logger(service="model_monitor")

s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")

#: The CloudWatch datums of a report (kept here for callers of the handler module).
metric_data = monitor_job.metric_data


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    return monitor_job.run(
        event or {}, load_config(), s3=s3, cloudwatch=cloudwatch, environ=os.environ
    )
