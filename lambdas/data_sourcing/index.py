"""Data sourcing: build the immutable dated snapshot of one day.

Input: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday in UTC, for the schedule;
given: a backfill) and optionally ``"new_version": true`` to write
``dt=<date>/v=N/`` next to an existing snapshot instead of returning it.
Environment: DATASETS_BUCKET, RAW_BUCKET (the default bucket of S3 sources),
MODEL_NAME. Returns ``{"date", "version", "snapshot_prefix", "manifest_key",
"rows", "content_hash", "created"}``; ``created`` is false when the snapshot
already existed (a re-run is a no-op).

Raises ``SourcingError`` (the workflow's catch notifies) when the day has no
source objects or any of them cannot be read, naming each such object by its
``s3://`` URI; nothing is written then, and a re-run after fixing or removing
the object completes the day (see ``mdlc_core.sourcing``).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core.runtime_config import load_config
from mdlc_core.sourcing import build_source, create_snapshot, parse_day

logger = Logger(service="data_sourcing")
s3 = boto3.client("s3")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = load_config()
    day = parse_day(event or {})
    raw_bucket = os.environ["RAW_BUCKET"]
    sources = [build_source(source, s3=s3, default_bucket=raw_bucket)
               for source in config["data"]["sources"]]
    outcome = create_snapshot(
        s3, sources=sources, bucket=os.environ["DATASETS_BUCKET"],
        model=os.environ.get("MODEL_NAME", config["name"]), spec_name=config["name"], day=day,
        new_version=bool((event or {}).get("new_version")),
    )
    logger.info("snapshot", extra={"snapshot": outcome})
    return outcome
