"""The training input step: parameters, deterministic split, CSV format, and the handler (moto)."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from mdlc_core import training_input as ti
from moto import mock_aws

from tests.lambda_loader import load_handler


def test_split_is_deterministic_and_label_first():
    columns = {"id": [f"o{i}" for i in range(200)], "y": [i % 2 for i in range(200)],
               "a": [float(i) for i in range(200)], "b": [None] * 200}
    one = ti.split(columns, event_id="id", label="y", features=["a", "b"],
                   validation_fraction=0.2)
    two = ti.split(columns, event_id="id", label="y", features=["a", "b"],
                   validation_fraction=0.2)
    assert one == two
    assert list(one.train) == ["y", "a", "b"]
    assert 20 < one.rows["validation"] < 60
    first = ti.to_csv(one.train).decode().splitlines()[0]
    assert first.count(",") == 2 and first.endswith(",")  # missing value -> empty field


def test_unlabelled_rows_are_dropped_and_counted():
    columns = {"id": ["a", "b", "c", "d"], "y": [1, None, 0, float("nan")], "x": [1, 2, 3, 4]}
    with pytest.raises(ti.TrainingInputError, match="dropping 2 unlabelled"):
        ti.split(columns, event_id="id", label="y", features=["x"], validation_fraction=0.01)


def test_parameters_overrides_over_spec(fraud_spec):
    training = fraud_spec.as_config()["training"]
    resolved = ti.resolve_parameters(training, {"hyperparameters": {"eta": 0.1}, "threshold": 0.9})
    assert resolved["hyperparameters"]["eta"] == "0.1"
    assert resolved["hyperparameters"]["num_round"] == "200"
    assert resolved["instance_type"] == "ml.m5.xlarge" and resolved["threshold"] == 0.9
    with pytest.raises(ti.TrainingInputError, match="instance_type"):
        ti.resolve_parameters(training, {"instance_type": "m5.xlarge"})


def test_job_name_fits_and_is_stable():
    name = ti.job_name("a" * 31, "2026-11-01", "arn:aws:states:...:execution:x:y")
    assert len(name) <= 63 and name == ti.job_name("a" * 31, "2026-11-01",
                                                   "arn:aws:states:...:execution:x:y")


def test_handler_writes_channels(monkeypatch, fraud_spec, fraud_config_file):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(fraud_config_file))
    monkeypatch.setenv("FEATURES_BUCKET", "features")
    monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
    monkeypatch.setenv("FEATURE_COLUMNS", json.dumps(fraud_spec.feature_columns))
    monkeypatch.setenv("CODE_VERSION", "deployed-commit")
    n = 100
    table = {"order_id": [f"o{i}" for i in range(n)], "fraud_status": [i % 2 for i in range(n)]}
    for column in fraud_spec.feature_columns:
        table[column] = [float(i) for i in range(n)]
    buffer = io.BytesIO()
    pq.write_table(pa.table(table), buffer)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        for bucket in ("features", "artifacts"):
            s3.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        key = "features/fraud/dt=2026-11-01/features.parquet"
        s3.put_object(Bucket="features", Key=key, Body=buffer.getvalue())
        handler = load_handler("training_input")
        state = {"data": {"features": {"features_key": key, "date": "2026-11-01"},
                          "snapshot": {"snapshot_prefix": "datasets/fraud/dt=2026-11-01/"}},
                 "code_version": "abc123", "instance_count": 2}
        result = handler.handler({"state": state, "execution": "arn:x"}, None)
        assert result["parameters"]["instance_count"] == 2
        assert result["lineage"]["code_version"] == "abc123"
        assert result["lineage"]["dataset_manifest"] == "unknown"
        assert result["channels"]["train"].startswith("s3://artifacts/training-input/fraud/")
        train_key = result["channels"]["train"].removeprefix("s3://artifacts/") + "train.csv"
        body = s3.get_object(Bucket="artifacts", Key=train_key)["Body"].read().decode()
        first = body.splitlines()[0].split(",")
        assert len(first) == 1 + len(fraud_spec.feature_columns)
        assert first[0] in ("0", "1")
        assert result["rows"]["train"] + result["rows"]["validation"] == n
        # The training features are the monitoring job's drift baseline.
        baseline = s3.get_object(Bucket="artifacts", Key="baselines/fraud/features.parquet")
        columns = pq.read_table(io.BytesIO(baseline["Body"].read())).column_names
        assert columns == fraud_spec.feature_columns
        # A run that names no commit (a scheduled re-training) records the deployed one.
        del state["code_version"]
        again = handler.handler({"state": state, "execution": "arn:y"}, None)
        assert again["lineage"]["code_version"] == "deployed-commit"
