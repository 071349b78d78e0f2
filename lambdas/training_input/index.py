"""Prepare a training run: resolve its parameters and write the train/validation channels.

Event (from the training workflow)::

    {"state": <the execution's state: "data" from data preparation, plus the
               input's overrides "hyperparameters", "instance_type",
               "instance_count", "threshold", "code_version">,
     "execution": <the execution's id>}

Reads ``state.data.features.features_key`` (Parquet, one row per event) from
FEATURES_BUCKET, splits it deterministically (see ``mdlc_core.training_input``)
and writes both channels in the spec's ``training.content_type`` to
ARTIFACTS_BUCKET under ``training-input/<model>/<job name>/``, and the
training features as the drift baseline of the version this job makes,
``baselines/<model>/jobs/<job name>/features.parquet`` (the Register step
records its URI in the package's ``mdlc:drift-baseline``).

Environment: FEATURES_BUCKET, ARTIFACTS_BUCKET, MODEL_NAME, FEATURE_COLUMNS (JSON
list, ``ModelSpec.feature_columns``), CODE_VERSION (the deployed commit: the
lineage's ``code_version`` when the execution input names none).

Returns ``{"job_name", "client_token", "parameters", "channels": {"train",
"validation"}, "output_uri", "baseline", "rows", "lineage"}`` (``client_token``: the
Register step's idempotency token, stable across retries of this execution
and unique per execution).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from mdlc_core import training_input as ti
from mdlc_core.layout import Layout
from mdlc_core.runtime_config import load_config

logger = Logger(service="training_input")
s3 = boto3.client("s3")


def _features_key(state: dict[str, Any]) -> str:
    key = ((state.get("data") or {}).get("features") or {}).get("features_key")
    if not key:
        raise ti.TrainingInputError(
            "the input has no data.features.features_key (the feature snapshot to train on)"
        )
    return key


def _read_columns(bucket: str, key: str, names: list[str]) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    present = [n for n in names if n in table.column_names]
    return {n: table.column(n).to_pylist() for n in present}


def _write_baseline(
    bucket: str, model: str, job: str, columns: dict[str, list[Any]],
    feature_columns: list[str],
) -> str:
    """The training features are the open-loop monitor's reference distribution.

    One file per training job, never replaced: the monitor compares each
    model version's predictions with the data that version was trained on,
    whichever run came later (a rejected or not yet approved one included).
    Returns its ``s3://`` URI.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: columns[name] for name in feature_columns if name in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = Layout(model).job_baseline(job)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())
    return f"s3://{bucket}/{key}"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    config = load_config()
    model = os.environ.get("MODEL_NAME", config["name"])
    features_bucket, artifacts = os.environ["FEATURES_BUCKET"], os.environ["ARTIFACTS_BUCKET"]
    state = event.get("state") or {}
    training = config["training"]
    data = config["data"]
    # The model's inputs in training order, as ModelSpec.feature_columns said at
    # synthesis: the order of the CSV columns must be the order inference uses.
    feature_columns = json.loads(os.environ["FEATURE_COLUMNS"])
    parameters = ti.resolve_parameters(training, state)
    key = _features_key(state)
    day = str(((state.get("data") or {}).get("features") or {}).get("date") or "undated")
    execution = str(event.get("execution") or "")
    job = ti.job_name(model, day, execution)
    # Before any write: a run without an execution id must not produce channels.
    token = ti.client_token(execution)
    columns = _read_columns(
        features_bucket, key, [data["event_id"], data["label"], *feature_columns]
    )
    split = ti.split(
        columns,
        event_id=data["event_id"],
        label=data["label"],
        features=feature_columns,
        validation_fraction=training.get("validation_fraction", 0.2),
    )
    prefix = Layout(model).training_job_input(job).rstrip("/")
    channels = {}
    for name, rows in (("train", split.train), ("validation", split.validation)):
        body, suffix = ti.encode(rows, training["content_type"])
        s3.put_object(Bucket=artifacts, Key=f"{prefix}/{name}/{name}.{suffix}", Body=body)
        channels[name] = f"s3://{artifacts}/{prefix}/{name}/"
    baseline = _write_baseline(artifacts, model, job, columns, feature_columns)
    logger.info("training input written", extra={"job_name": job, "rows": split.rows})
    return {
        "job_name": job,
        "client_token": token,
        "parameters": parameters,
        "channels": channels,
        "output_uri": f"s3://{artifacts}/{Layout(model).training_output}",
        "baseline": baseline,
        "rows": split.rows,
        "lineage": ti.lineage(
            state.get("data") or {},
            state.get("code_version") or os.environ.get("CODE_VERSION"),
        ),
    }
