"""The training input step: parameters, deterministic split, CSV format, and the handler (moto)."""

from __future__ import annotations

import io
import json
from datetime import date

import boto3
import pytest
from mdlc_core import training_input as ti
from moto import mock_aws

from tests import producers
from tests.lambda_loader import load_handler

DAY = date(2026, 11, 1)


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


@pytest.fixture
def training_env(monkeypatch, fraud_spec, fraud_config_file):
    """The training input function's environment, as TrainingWorkflow sets it."""
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "MDLC_CONFIG_FILE": str(fraud_config_file),
        "FEATURES_BUCKET": producers.FEATURES, "ARTIFACTS_BUCKET": "artifacts",
        "FEATURE_COLUMNS": json.dumps(fraud_spec.feature_columns),
        "CODE_VERSION": "deployed-commit",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    yield
    load_config.cache_clear()


def test_handler_trains_on_the_feature_steps_real_output(training_env, fraud_spec):
    """Sourcing -> feature_job.run -> the training input handler, on moto: the
    feature snapshot the feature step writes is one the handler can split."""
    import pyarrow.parquet as pq

    config = fraud_spec.as_config()
    n = 120
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        producers.create_buckets(s3, producers.RAW, producers.DATASETS, producers.FEATURES,
                                 "artifacts", region="eu-west-1")
        data = producers.prepare_data(s3, config, DAY, producers.orders_csv(DAY, n))
        assert data["features"]["rows"] == n
        written = pq.read_table(io.BytesIO(s3.get_object(
            Bucket=producers.FEATURES, Key=data["features"]["features_key"])["Body"].read()))
        # What a training run needs, typed: the label is a number, not CSV text.
        assert written.column_names == ["order_id", "customer_id", "order_ts", "fraud_status",
                                        *fraud_spec.feature_columns]
        assert str(written.schema.field("fraud_status").type) == "int64"
        handler = load_handler("training_input")
        state = {"data": data, "code_version": "abc123", "instance_count": 2}
        result = handler.handler({"state": state, "execution": "arn:x"}, None)
        assert result["parameters"]["instance_count"] == 2
        assert result["lineage"]["code_version"] == "abc123"
        assert result["lineage"]["dataset_manifest"] == data["snapshot"]["manifest_key"]
        assert result["lineage"]["feature_snapshot"] == data["features"]["features_key"]
        assert result["channels"]["train"].startswith("s3://artifacts/training-input/fraud/")
        train_key = result["channels"]["train"].removeprefix("s3://artifacts/") + "train.csv"
        body = s3.get_object(Bucket="artifacts", Key=train_key)["Body"].read().decode()
        lines = body.splitlines()
        assert {len(line.split(",")) for line in lines} == {1 + len(fraud_spec.feature_columns)}
        assert {line.split(",")[0] for line in lines} == {"0", "1"}
        # A missing amount reaches the channel as an empty field (XGBoost: missing).
        assert any(line.split(",")[1] == "" for line in lines)
        assert result["rows"]["train"] + result["rows"]["validation"] == n
        assert result["rows"]["dropped_unlabelled"] == 0
        # The training features are the monitoring job's drift baseline.
        baseline = s3.get_object(Bucket="artifacts", Key="baselines/fraud/features.parquet")
        columns = pq.read_table(io.BytesIO(baseline["Body"].read())).column_names
        assert columns == fraud_spec.feature_columns
        # A run that names no commit (a scheduled re-training) records the deployed one.
        del state["code_version"]
        again = handler.handler({"state": state, "execution": "arn:y"}, None)
        assert again["lineage"]["code_version"] == "deployed-commit"


def test_handler_names_what_an_unlabelled_snapshot_lacks(training_env, fraud_spec):
    """A day whose source has no label column cannot be trained on; the handler says so."""
    config = fraud_spec.as_config()
    unlabelled = b"\n".join(
        b",".join(line.split(b",")[:-1])
        for line in producers.orders_csv(DAY, 40).splitlines()
    ) + b"\n"
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        producers.create_buckets(s3, producers.RAW, producers.DATASETS, producers.FEATURES,
                                 "artifacts", region="eu-west-1")
        data = producers.prepare_data(s3, config, DAY, unlabelled)
        handler = load_handler("training_input")
        with pytest.raises(ti.TrainingInputError, match=r"no column\(s\) \['fraud_status'\]"):
            handler.handler({"state": {"data": data}, "execution": "arn:x"}, None)
