"""Batch inference around the SageMaker transform job: its input, then rules per output part.

Two operations, picked by ``event["step"]``:

``prepare_input``
    in:  ``{"step", "date", "entities_key"}`` (``entities_key``: the day's
    ``entities.parquet`` in FEATURES_BUCKET, from the features step).
    Writes the transform input as CSV parts without a header, columns in
    the model's training order (``ModelSpec.feature_columns``; a column the
    entity table lacks, such as a per-event raw column, is an empty field,
    which XGBoost treats as missing), ``PART_ROWS`` rows each, to
    ``batch-input/<model>/dt=<date>/part-NNNNN.csv`` in PREDICTIONS_BUCKET,
    and each part's entity ids alongside (``part-NNNNN.ids``, one per line,
    the same order: a transform job keeps line order within an object).
    out: ``{"input_prefix", "output_prefix", "parts", "rows"}`` (S3 URIs and
    the key prefix the Distributed Map lists).
``decide``
    in:  ``{"step", "date", "Key"}`` (``Key``: one transform output object,
    ``predictions/<model>/dt=<date>/part-NNNNN.csv.out``, as the Distributed
    Map's S3 item reader lists it). Applies ``mdlc_core.decisions`` to each
    row (the event id is ``<date>#<entity id>``) and writes the decisions
    as JSON lines to ``predictions/<model>/dt=<date>/decisions/part-NNNNN.jsonl``.
    Rerunning a part rewrites the same object (idempotent).
    out: ``{"key", "rows", "actions": {action: count}}``.

Environment: FEATURES_BUCKET, PREDICTIONS_BUCKET, MODEL_NAME, MODEL_VERSION
(optional; default the run's model name, given in the event as ``model``).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core.decisions import RuleSet
from mdlc_core.runtime_config import load_config
from mdlc_core.scoring import feature_columns, parse_scores

logger = Logger(service="batch_decisions")
s3 = boto3.client("s3")
CONFIG = load_config()
MODEL = os.environ.get("MODEL_NAME", CONFIG.get("name", "model"))
PART_ROWS = 100_000


def prepare_input(event: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    date, key = event["date"], event["entities_key"]
    body = s3.get_object(Bucket=os.environ["FEATURES_BUCKET"], Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    entity = CONFIG["data"]["entity_key"]
    columns = feature_columns(CONFIG)
    ids = [str(v) for v in table.column(entity).to_pylist()]
    values = {c: table.column(c).to_pylist() if c in table.column_names else [None] * len(ids)
              for c in columns}
    bucket = os.environ["PREDICTIONS_BUCKET"]
    prefix = f"batch-input/{MODEL}/dt={date}/"
    parts = 0
    for start in range(0, len(ids), PART_ROWS):
        end = min(start + PART_ROWS, len(ids))
        rows = (
            ",".join("" if values[c][i] is None else repr(float(values[c][i])) for c in columns)
            for i in range(start, end)
        )
        name = f"part-{parts:05d}"
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}.csv",
                      Body=("\n".join(rows) + "\n").encode(), ContentType="text/csv")
        s3.put_object(Bucket=bucket, Key=f"{prefix}{name}.ids",
                      Body=("\n".join(ids[start:end]) + "\n").encode())
        parts += 1
    output = f"predictions/{MODEL}/dt={date}/"
    logger.info("transform input written", extra={"rows": len(ids), "parts": parts})
    return {"input_prefix": f"s3://{bucket}/{prefix}", "input_key_prefix": prefix,
            "output_prefix": f"s3://{bucket}/{output}", "output_key_prefix": output,
            "parts": parts, "rows": len(ids)}


def decide(event: dict[str, Any]) -> dict[str, Any]:
    bucket = os.environ["PREDICTIONS_BUCKET"]
    date, key = event["date"], event["Key"]
    name = key.rsplit("/", 1)[-1].removesuffix(".csv.out")
    ids_key = f"batch-input/{MODEL}/dt={date}/{name}.ids"
    ids = s3.get_object(Bucket=bucket, Key=ids_key)["Body"].read().decode().split()
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    scores = parse_scores(text, len(ids))
    rules = RuleSet.from_config(CONFIG)
    version = os.environ.get("MODEL_VERSION") or str(event.get("model") or "unknown")
    counts: Counter[str] = Counter()
    lines = []
    for entity_id, score in zip(ids, scores, strict=True):
        if score is None:
            counts["no_score"] += 1
            continue
        decision = rules.decide(f"{date}#{entity_id}", score, {}, version, entity_id=entity_id)
        counts[decision.action] += 1
        lines.append(json.dumps(decision.to_record(), separators=(",", ":")))
    out_key = f"predictions/{MODEL}/dt={date}/decisions/{name}.jsonl"
    s3.put_object(Bucket=bucket, Key=out_key, Body=("\n".join(lines) + "\n").encode(),
                  ContentType="application/x-ndjson")
    return {"key": out_key, "rows": len(ids), "actions": dict(counts)}


STEPS = {"prepare_input": prepare_input, "decide": decide}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = STEPS.get(event.get("step", ""))
    if step is None:
        raise ValueError(f"unknown step {event.get('step')!r}; expected one of {list(STEPS)}")
    return step(event)
