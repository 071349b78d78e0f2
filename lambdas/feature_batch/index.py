"""Batch features for one day, from the dated snapshots.

Input: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday in UTC), as returned by
the data sourcing step. Reads the newest version of the snapshot of that day
and of the days before it that the longest window needs (missing days are
skipped and logged), and writes to FEATURES_BUCKET:

* ``features/<model>/dt=<date>/features.parquet``: one row per event of the
  day's snapshot, its features as of itself (training rows; earlier days are
  history only);
* ``features/<model>/dt=<date>/entities.parquet``: one row per entity as of
  the end of the day (batch inference).

Environment: DATASETS_BUCKET, FEATURES_BUCKET, MODEL_NAME. Returns
``{"date", "features_key", "entities_key", "rows", "entities",
"snapshots"}`` (``snapshots``: the manifest keys read, for lineage).
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core.features import FeatureError, FeatureSet, compute_batch, compute_per_event
from mdlc_core.runtime_config import load_config
from mdlc_core.sourcing import latest_manifest, parse_day

logger = Logger(service="feature_batch")
s3 = boto3.client("s3")


def _read_object(bucket: str, key: str, columns: list[str]) -> dict[str, list[Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(body))
    else:
        # Text as written: the engine parses ids, timestamps and numbers itself.
        header = body.split(b"\n", 1)[0].decode().strip().split(",")
        options = pacsv.ConvertOptions(column_types={n: pa.string() for n in header})
        table = pacsv.read_csv(io.BytesIO(body), convert_options=options)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise FeatureError(f"s3://{bucket}/{key} has no column(s) {missing}")
    return {c: table.column(c).to_pylist() for c in columns}


def _write_parquet(bucket: str, key: str, columns: dict[str, list[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = load_config()
    features = FeatureSet.from_config(config)
    model = os.environ.get("MODEL_NAME", config["name"])
    datasets, target = os.environ["DATASETS_BUCKET"], os.environ["FEATURES_BUCKET"]
    day = parse_day(event or {})
    columns = features.required_columns
    merged: dict[str, list[Any]] = {c: [] for c in columns}
    today_ids: set[str] = set()
    earlier_ids: set[str] = set()
    manifests = []
    # Oldest first: an event id repeated in a later snapshot keeps its first row.
    for back in range(max(features.horizon(), 1) - 1, -1, -1):
        found = latest_manifest(s3, datasets, model, day - timedelta(days=back))
        if found is None:
            if back == 0:
                raise FeatureError(f"no snapshot of {day.isoformat()} for model {model!r}")
            logger.warning("snapshot missing", extra={"date": str(day - timedelta(days=back))})
            continue
        manifest_key, manifest = found
        manifests.append(manifest_key)
        for obj in manifest["objects"]:
            part = _read_object(datasets, obj["key"], columns)
            for c in columns:
                merged[c].extend(part[c])
            ids = today_ids if back == 0 else earlier_ids
            ids.update(str(v) for v in part[features.event_id])
    per_event = compute_per_event(merged, features)
    # A row redelivered into today's snapshot stays a training row of its first day.
    fresh = today_ids - earlier_ids
    keep = [i for i, event_id in enumerate(per_event[features.event_id]) if event_id in fresh]
    rows = {name: [values[i] for i in keep] for name, values in per_event.items()}
    table = compute_batch(merged, features, day)
    entities = {name: [row[name] for row in table]
                for name in [features.entity_key, *features.names]}
    prefix = f"features/{model}/dt={day.isoformat()}/"
    _write_parquet(target, prefix + "features.parquet", rows)
    _write_parquet(target, prefix + "entities.parquet", entities)
    outcome = {"date": day.isoformat(), "features_key": prefix + "features.parquet",
               "entities_key": prefix + "entities.parquet", "rows": len(keep),
               "entities": len(table), "snapshots": manifests}
    logger.info("features written", extra={"features": outcome})
    return outcome
