"""The real producing steps, run on moto, for tests of the steps that consume their output.

A test of a consumer (the training input, the batch transform input) gets its
input from here: raw source objects, the snapshot ``mdlc_core.sourcing``
builds from them and the feature files ``mdlc_core.feature_job.run`` writes,
never a hand-made copy of what those steps produce. The caller runs inside
``mock_aws`` and passes its S3 client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mdlc_core import feature_job
from mdlc_core.sourcing import build_source, create_snapshot

from tests.lambda_loader import load_handler

RAW, DATASETS, FEATURES = "raw-bucket", "datasets-bucket", "features-bucket"
ARTIFACTS = "artifacts-bucket"
HEADER = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"


def create_buckets(s3: Any, *names: str, region: str | None = None) -> None:
    """Versioned buckets, as the data lake's are (sourcing pins object versions)."""
    for name in names:
        extra = ({"CreateBucketConfiguration": {"LocationConstraint": region}}
                 if region and region != "us-east-1" else {})
        s3.create_bucket(Bucket=name, **extra)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def orders_csv(day: date, count: int, *, customers: int = 7, first: int = 0) -> bytes:
    """``count`` orders of the fraud example on ``day``, as a source system drops them:
    spread over the day and over ``customers`` customers, about one in three
    fraudulent, one order in ten with no amount (a real gap the model sees as
    missing)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    lines = [HEADER]
    for i in range(first, first + count):
        amount = "" if i % 10 == 9 else f"{5 + (i * 37) % 400}.5"
        ts = (start + timedelta(minutes=(i * 13) % 1440)).isoformat()
        lines.append(f"o{i},c{i % customers},{ts},{amount},{100 + i % customers},"
                     f"{1 if i % 3 == 0 else 0}")
    return ("\n".join(lines) + "\n").encode()


def snapshot(s3: Any, config: Mapping[str, Any], day: date, body: bytes, *,
             raw: str = RAW, datasets: str = DATASETS,
             new_version: bool = False) -> dict[str, Any]:
    """Drop ``body`` as the day's source partition and build the day's snapshot
    (``mdlc_core.sourcing``, as the data_sourcing handler does; ``new_version``:
    a corrected drop becomes the day's next version)."""
    s3.put_object(Bucket=raw, Key=f"orders/dt={day.isoformat()}/part-0000.csv", Body=body)
    sources = [build_source(source, s3=s3, default_bucket=raw)
               for source in config["data"]["sources"]]
    return create_snapshot(s3, sources=sources, bucket=datasets, model=config["name"],
                           spec_name=config["name"], day=day, new_version=new_version)


def prepare_data(s3: Any, config: Mapping[str, Any], day: date, body: bytes, *,
                 raw: str = RAW, datasets: str = DATASETS,
                 features_bucket: str = FEATURES) -> dict[str, Any]:
    """Snapshot ``body`` for ``day``, then run the feature step on it; returns what
    data preparation leaves at ``$.data`` for the next steps: ``snapshot`` (the
    sourcing result) and ``features`` (``feature_job.run``'s result)."""
    made = snapshot(s3, config, day, body, raw=raw, datasets=datasets)
    computed = feature_job.run(config, day, s3=s3, datasets_bucket=datasets,
                               features_bucket=features_bucket, model=config["name"])
    return {"snapshot": made, "features": computed}


@contextmanager
def training_input_handler(spec: Any, config_file: Path, *,
                           region: str = "eu-west-1") -> Iterator[ModuleType]:
    """The training_input handler with the environment TrainingWorkflow gives it
    (load it inside ``mock_aws``: its S3 client is made at import)."""
    from mdlc_core.runtime_config import load_config

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "MDLC_CONFIG_FILE": str(config_file),
            "FEATURES_BUCKET": FEATURES, "ARTIFACTS_BUCKET": ARTIFACTS,
            "FEATURE_COLUMNS": json.dumps(spec.feature_columns),
            "CODE_VERSION": "deployed-commit",
        }.items():  # fmt: skip
            patch.setenv(name, value)
        load_config.cache_clear()
        try:
            yield load_handler("training_input")
        finally:
            load_config.cache_clear()


def training_outputs(spec: Any, config_file: Path,
                     runs: Mapping[str, tuple[str, Mapping[str, Any]]],
                     *, day: date = date(2026, 11, 1), rows: int = 120) -> dict[str, Any]:
    """What PrepareTrainingInput leaves at ``$.training``, from the real steps.

    On a fresh moto: a day's orders are snapshotted, the feature step runs,
    then the training input handler once per ``runs`` entry
    ``name: (execution id, execution input overrides)``. Returns each run's
    handler result by name, and the data preparation result as ``"data"``.
    """
    import boto3
    from moto import mock_aws

    config = spec.as_config()
    with mock_aws(), training_input_handler(spec, config_file) as handler:
        s3 = boto3.client("s3", region_name="eu-west-1")
        create_buckets(s3, RAW, DATASETS, FEATURES, ARTIFACTS, region="eu-west-1")
        data = prepare_data(s3, config, day, orders_csv(day, rows))
        out: dict[str, Any] = {"data": data}
        for name, (execution, overrides) in runs.items():
            state = {"data": data, **overrides}
            out[name] = handler.handler({"state": state, "execution": execution}, None)
    return out
