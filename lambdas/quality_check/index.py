"""Data quality check of one dated snapshot (MDLC stage 2), a Step Functions task.

Event::

    {"bucket": "...", "snapshot_prefix": "datasets/<model>/dt=YYYY-MM-DD/",
     "date": "YYYY-MM-DD",                                  # default: the dt= in the prefix
     "previous_prefix": "datasets/<model>/dt=YYYY-MM-DD/"}  # optional, for consistency rules

``"previous_prefix": "latest"`` compares with the newest snapshot of the 31
days before ``date`` that passed its own check (its report in REPORT_BUCKET
says so; days without a report or with a failed one are skipped; none
found: the consistency rules are skipped).

Environment:
    REPORT_BUCKET                 report at ``quality-reports/<model>/dt=<date>/report.json``
    POWERTOOLS_METRICS_NAMESPACE  namespace of the ``QualityViolations`` metrics
    MDLC_EPHEMERAL_STORAGE_MB     the function's /tmp, which bounds DuckDB's spill
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE  (set by Lambda) bounds DuckDB's memory limit

Returns ``{"passed", "violations", "rows", "failed_rules", "report_uri"}`` for
the workflow's Choice state. Violations are a result, not an error: the
handler raises only on unusable input (a prefix without a committed
manifest, an object that differs from its manifest, missing columns,
unreadable files, a malformed event), which the workflow's catch reports as
a failure. The snapshot is exactly the objects its manifest lists.

The work is ``mdlc_core.quality_job.run``, the same code the SageMaker
Processing runner executes, so both runners write the same report and the
same ``QualityViolations`` metrics (per rule: Model, Rule; in total: Model).
The engine is DuckDB (the rules compiled to SQL, docs/engines.md), from the
stack's data layer; its memory limit follows the function's memory size and
it spills under /tmp, within the ephemeral storage.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core import quality_job
from mdlc_core.runtime_config import load_config

logger = Logger(service="quality_check")
s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")

_DATE_IN_PREFIX = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")


class EventError(ValueError):
    """An event the workflow should never send: a bug upstream, not bad data."""


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bucket = _required(event, "bucket")
    prefix = _required(event, "snapshot_prefix")
    day = _date(event.get("date"), prefix, "date")
    previous = event.get("previous_prefix")
    previous_date = None
    if previous and previous != "latest":
        previous_date = _date(
            event.get("previous_date"), previous, "previous_date",
            default=day - timedelta(days=1),
        )
    result = quality_job.run(
        load_config(), day, s3=s3, cloudwatch=cloudwatch, bucket=bucket,
        snapshot_prefix=prefix, report_bucket=os.environ["REPORT_BUCKET"],
        namespace=os.environ["POWERTOOLS_METRICS_NAMESPACE"],
        previous_prefix=previous or None, previous_date=previous_date,
        memory_mb=_megabytes("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        storage_mb=_megabytes("MDLC_EPHEMERAL_STORAGE_MB"),
    )
    logger.info("quality check finished", extra={"result": result})
    return result


def _megabytes(variable: str) -> int | None:
    value = os.environ.get(variable)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as error:
        raise EventError(f"{variable} must be a number of MB, got {value!r}") from error


def _required(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"the event needs {key!r} (a non-empty string), got {value!r}")
    return value


def _date(value: Any, prefix: str, key: str, default: date | None = None) -> date:
    if value is None:
        match = _DATE_IN_PREFIX.search(prefix)
        if match:
            value = match.group(1)
        elif default is not None:
            return default
        else:
            raise EventError(f"no {key!r} in the event and no dt=YYYY-MM-DD in {prefix!r}")
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise EventError(f"{key!r} must be YYYY-MM-DD, got {value!r}") from error
