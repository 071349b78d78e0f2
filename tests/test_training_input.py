"""The training input step: parameters, deterministic split, CSV format, and the handler (moto)."""

from __future__ import annotations

import io
import json
import re
from datetime import date

import boto3
import pytest
from mdlc_core import training_input as ti
from moto import mock_aws

from tests import producers

DAY = date(2026, 11, 1)
ARTIFACTS = producers.ARTIFACTS


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
def lake(fraud_spec, fraud_config_file):
    """moto with the data lake's buckets, and the training_input handler loaded in it."""
    with mock_aws(), producers.training_input_handler(fraud_spec, fraud_config_file) as handler:
        s3 = boto3.client("s3", region_name="eu-west-1")
        producers.create_buckets(s3, producers.RAW, producers.DATASETS, producers.FEATURES,
                                 ARTIFACTS, region="eu-west-1")
        yield s3, handler


def test_handler_trains_on_the_feature_steps_real_output(lake, fraud_spec):
    """Sourcing -> feature_job.run -> the training input handler, on moto: the
    feature snapshot the feature step writes is one the handler can split."""
    import pyarrow.parquet as pq

    s3, handler = lake
    n = 120
    data = producers.prepare_data(s3, fraud_spec.as_config(), DAY, producers.orders_csv(DAY, n))
    assert data["features"]["rows"] == n
    written = pq.read_table(io.BytesIO(s3.get_object(
        Bucket=producers.FEATURES, Key=data["features"]["features_key"])["Body"].read()))
    # What a training run needs, typed: the label is a number, not CSV text.
    assert written.column_names == ["order_id", "customer_id", "order_ts", "fraud_status",
                                    *fraud_spec.feature_columns]
    assert str(written.schema.field("fraud_status").type) == "int64"
    state = {"data": data, "code_version": "abc123", "instance_count": 2}
    result = handler.handler({"state": state, "execution": "arn:x"}, None)
    assert result["parameters"]["instance_count"] == 2
    assert result["lineage"]["code_version"] == "abc123"
    assert result["lineage"]["dataset_manifest"] == data["snapshot"]["manifest_key"]
    assert result["lineage"]["feature_snapshot"] == data["features"]["features_key"]
    assert result["channels"]["train"].startswith(f"s3://{ARTIFACTS}/training-input/fraud/")
    train_key = result["channels"]["train"].removeprefix(f"s3://{ARTIFACTS}/") + "train.csv"
    lines = s3.get_object(Bucket=ARTIFACTS, Key=train_key)["Body"].read().decode().splitlines()
    assert {len(line.split(",")) for line in lines} == {1 + len(fraud_spec.feature_columns)}
    assert {line.split(",")[0] for line in lines} == {"0", "1"}
    # A missing amount reaches the channel as an empty field (XGBoost: missing).
    assert any(line.split(",")[1] == "" for line in lines)
    assert result["rows"]["train"] + result["rows"]["validation"] == n
    assert result["rows"]["dropped_unlabelled"] == 0
    # The training features are the drift baseline of the version this job
    # makes: one object per job, whose URI the Register step records.
    job_key = f"baselines/fraud/jobs/{result['job_name']}/features.parquet"
    assert result["baseline"] == f"s3://{ARTIFACTS}/{job_key}"
    baseline = s3.get_object(Bucket=ARTIFACTS, Key=job_key)
    columns = pq.read_table(io.BytesIO(baseline["Body"].read())).column_names
    assert columns == fraud_spec.feature_columns
    listed = s3.list_objects_v2(Bucket=ARTIFACTS, Prefix="baselines/")["Contents"]
    assert [o["Key"] for o in listed] == [job_key]  # no shared file is replaced any more
    # A run that names no commit (a scheduled re-training) records the deployed one.
    del state["code_version"]
    again = handler.handler({"state": state, "execution": "arn:y"}, None)
    assert again["lineage"]["code_version"] == "deployed-commit"
    # A later run writes its own baseline and leaves the first version's alone.
    assert again["baseline"] != result["baseline"]
    assert s3.get_object(Bucket=ARTIFACTS, Key=job_key)["ETag"] == baseline["ETag"]


def test_handler_names_what_an_unlabelled_snapshot_lacks(lake, fraud_spec):
    """A day whose source has no label column cannot be trained on; the handler says so."""
    s3, handler = lake
    unlabelled = b"\n".join(
        b",".join(line.split(b",")[:-1])
        for line in producers.orders_csv(DAY, 40).splitlines()
    ) + b"\n"
    data = producers.prepare_data(s3, fraud_spec.as_config(), DAY, unlabelled)
    with pytest.raises(ti.TrainingInputError, match=r"no column\(s\) \['fraud_status'\]"):
        handler.handler({"state": {"data": data}, "execution": "arn:x"}, None)


EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:mdlc-fraud-training:run-1"


def test_client_token_is_stable_per_execution_unique_across_and_valid():
    token = ti.client_token(EXECUTION)
    assert ti.CLIENT_TOKEN.match(token) and 1 <= len(token) <= 36
    assert ti.client_token(EXECUTION) == token  # a retry of the same execution
    assert ti.client_token(EXECUTION.replace("run-1", "run-2")) != token
    with pytest.raises(ti.TrainingInputError, match="ClientToken"):
        ti.client_token("")


def _definition(template, logical_id: str) -> dict:
    """A state machine's ASL from the synthesized template, CloudFormation tokens
    replaced by a placeholder string."""
    body = template["Resources"][logical_id]["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return json.loads("".join(p if isinstance(p, str) else "token" for p in parts))


def _training_paths(node) -> set[str]:
    """Every ``$.training...`` JSONPath anywhere in ``node``: parameters (``X.$``),
    Choice variables and ``*Path`` fields, and intrinsic function arguments."""
    if isinstance(node, dict):
        return set().union(*(_training_paths(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_training_paths(v) for v in node))
    if isinstance(node, str):
        return set(re.findall(r"\$\.training(?:\.[A-Za-z_][A-Za-z0-9_]*)*", node))
    return set()


def _lookup(data, path: str):
    for name in path.removeprefix("$.training").split(".")[1:]:
        assert isinstance(data, dict) and name in data, f"{path}: no {name!r} in {data!r}"
        data = data[name]
    return data


def test_every_training_path_the_workflow_reads_is_in_the_handlers_output(
    fraud_template, fraud_spec, fraud_config_file
):
    """The synthesized training workflow's references to ``$.training`` against
    what PrepareTrainingInput really returns (the steps before it run on moto)."""
    template = fraud_template.to_json()
    machines = [k for k, r in template["Resources"].items()
                if r["Type"] == "AWS::StepFunctions::StateMachine"
                and "PrepareTrainingInput" in json.dumps(r["Properties"]["DefinitionString"])]
    assert len(machines) == 1, machines
    asl = _definition(template, machines[0])
    paths = _training_paths(asl)
    # The Register step's ClientToken is among them, and so are the job's inputs.
    assert {"$.training.client_token", "$.training.job_name",
            "$.training.channels.train", "$.training.parameters.threshold"} <= paths
    outputs = producers.training_outputs(fraud_spec, fraud_config_file, {
        "first": (EXECUTION, {}),
        "retry": (EXECUTION, {}),
        "other": (EXECUTION.replace("run-1", "run-2"), {}),
    })
    training = outputs["first"]
    for path in sorted(paths):
        assert _lookup(training, path) is not None, path
    token = _lookup(training, "$.training.client_token")
    assert isinstance(token, str) and ti.CLIENT_TOKEN.match(token)
    # A retried PrepareTrainingInput gives the same token; another execution another.
    assert outputs["retry"]["client_token"] == token
    assert outputs["other"]["client_token"] != token
