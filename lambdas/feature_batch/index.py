"""Batch features for one day, from the dated snapshots (the embedded runner).

Input: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday in UTC), as returned by
the data sourcing step. The work is ``mdlc_core.feature_job.run``, the same
code the scale-out runner (``processing_job --kind features``) runs: it
reads the day's snapshot and the days its windows need and writes
``features/<model>/dt=<date>/features.parquet`` (training rows) and
``entities.parquet`` (one row per entity, for batch inference) to
FEATURES_BUCKET.

Environment: DATASETS_BUCKET, FEATURES_BUCKET, MODEL_NAME;
MDLC_EPHEMERAL_STORAGE_MB (optional: the function's /tmp, which bounds
DuckDB's spill; without it DuckDB may fill 90% of the free disk). DuckDB's
memory limit follows the function's memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
Returns ``{"date", "features_key", "entities_key", "rows", "entities",
"snapshots"}`` (``snapshots``: the manifest keys read, for lineage).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core import feature_job
from mdlc_core.runtime_config import load_config
from mdlc_core.sourcing import parse_day

logger = Logger(service="feature_batch")
s3 = boto3.client("s3")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = load_config()
    storage = os.environ.get("MDLC_EPHEMERAL_STORAGE_MB")
    return feature_job.run(
        config,
        parse_day(event or {}),
        s3=s3,
        datasets_bucket=os.environ["DATASETS_BUCKET"],
        features_bucket=os.environ["FEATURES_BUCKET"],
        model=os.environ.get("MODEL_NAME", config["name"]),
        storage_mb=int(storage) if storage else None,
    )
