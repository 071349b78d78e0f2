"""Each model version's drift is measured against its own training data.

The monitor handler on moto S3, CloudWatch and SageMaker: two versions
registered in the model package group, each naming its baseline in
``mdlc:drift-baseline`` (what the training workflow's Register step writes),
and one day of predictions scored by both.
"""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mdlc_constructs.spec import load_spec
from tests.lambda_loader import load_handler

BUCKET = "predictions-bucket"
ARTIFACTS = "artifacts-bucket"
DAY = "2024-05-01"
SCORED = f"predictions/fraud/dt={DAY}/scored/"
GROUP = "mdlc-fraud"


@pytest.fixture
def env(tmp_path, monkeypatch):
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec("models/fraud.yaml").as_config()))
    monkeypatch.setenv("MDLC_CONFIG_FILE", str(config))
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "PREDICTIONS_BUCKET": BUCKET,
                        "BASELINE_BUCKET": ARTIFACTS, "REPORT_BUCKET": ARTIFACTS}.items():
        monkeypatch.setenv(name, value)
    for name in ("BASELINE_KEY", "METRICS_NAMESPACE", "LABELS_BUCKET", "LABELS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (BUCKET, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield s3, sagemaker
    load_config.cache_clear()


def put_parquet(s3, bucket, key, table):
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def register(sagemaker, baseline_uri: str | None) -> str:
    """A version as the Register step makes it (its lineage properties, trimmed)."""
    properties = {"mdlc:model": "fraud", "mdlc:training-job": "job"}
    if baseline_uri is not None:
        properties["mdlc:drift-baseline"] = baseline_uri
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://a/m"}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties=properties,
    )["ModelPackageArn"]


def trained_version(s3, sagemaker, job: str, amounts_trained_on) -> str:
    """A version whose training job ``job`` wrote its features as the training
    input step does, registered naming them as the Register step does."""
    key = f"baselines/fraud/jobs/{job}/features.parquet"
    put_parquet(s3, ARTIFACTS, key, pa.table({"order_amount": amounts_trained_on}))
    return register(sagemaker, f"s3://{ARTIFACTS}/{key}")


def amounts(rng, n, scale):
    return rng.gamma(2, scale, size=n)


def predictions(s3, versions_and_amounts):
    rows = {"event_id": [], "score": [], "prediction_ts": [], "model_version": [],
            "action": [], "order_amount": []}
    rng = np.random.default_rng(3)
    for version, values in versions_and_amounts:
        for value in values:
            rows["event_id"].append(f"o{len(rows['event_id'])}")
            rows["score"].append(float(rng.uniform()))
            rows["prediction_ts"].append(f"{DAY}T10:00:00Z")
            rows["model_version"].append(version)
            rows["action"].append("approve")
            rows["order_amount"].append(float(value))
    put_parquet(s3, BUCKET, f"{SCORED}part-0.parquet", pa.table(rows))


def report(s3):
    key = f"monitoring/fraud/dt={DAY}/report.json"
    return json.loads(s3.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read())


def groups(open_loop):
    return {g["model_version"]: g for g in open_loop["by_version"]}


def test_each_version_is_compared_with_its_own_training_data(env):
    s3, sagemaker = env
    rng = np.random.default_rng(0)
    # v1 was trained on small orders, v2 (registered later) on orders ten times larger.
    v1 = trained_version(s3, sagemaker, "j1", amounts(rng, 2000, 10.0))
    v2 = trained_version(s3, sagemaker, "j2", amounts(rng, 3000, 100.0))
    # A third version, trained later on something else, is registered but serves nothing.
    trained_version(s3, sagemaker, "j3", amounts(rng, 500, 1.0))
    # Each version sees traffic like its own training data.
    predictions(s3, [(v1, amounts(rng, 400, 10.0)), (v2, amounts(rng, 600, 100.0))])

    result = load_handler("model_monitor").handler({"date": DAY}, None)

    opened = report(s3)["open_loop"]
    by = groups(opened)
    assert by[v1]["baseline_rows"] == 2000 and by[v2]["baseline_rows"] == 3000
    for version in (v1, v2):
        assert by[version]["features"]["order_amount"]["psi"] < 0.1, version
    # "all" (what alarms watch) is compared with the mixture of both versions'
    # training data in their shares of the day (400:600): no drift either.
    assert by["all"]["baseline_rows"] == 2000 + 3000
    assert by["all"]["features"]["order_amount"]["psi"] < 0.1
    entries = {e["model_version"]: e for e in opened["baselines"]}
    assert entries[v1] == {"model_version": v1, "source": "model-package", "rows": 2000,
                           "uri": f"s3://{ARTIFACTS}/baselines/fraud/jobs/j1/features.parquet",
                           "package_version": 1}
    assert entries[v2]["package_version"] == 2
    assert entries["all"]["source"] == "mixture" and entries["all"]["rows"] == 5000
    assert not any("feature_psi" in a for a in result["alarms"])


def test_a_version_drifting_from_its_own_data_alarms_though_another_would_not(env):
    """The drift the fixed 'newest run' baseline hid: v1 serves traffic like v2's
    training data, which is drift for v1."""
    s3, sagemaker = env
    rng = np.random.default_rng(1)
    v1 = trained_version(s3, sagemaker, "j1", amounts(rng, 2000, 10.0))
    trained_version(s3, sagemaker, "j2", amounts(rng, 2000, 100.0))
    predictions(s3, [(v1, amounts(rng, 500, 100.0))])

    result = load_handler("model_monitor").handler({"date": DAY}, None)

    assert groups(report(s3)["open_loop"])["all"]["features"]["order_amount"]["psi"] > 1
    assert any("feature_psi" in a and "order_amount" in a for a in result["alarms"])


def test_versions_without_a_package_baseline_fall_back_to_the_legacy_file(env):
    s3, sagemaker = env
    rng = np.random.default_rng(2)
    old = register(sagemaker, None)  # registered before per-version baselines
    put_parquet(s3, ARTIFACTS, "baselines/fraud/features.parquet",
                pa.table({"order_amount": amounts(rng, 700, 10.0)}))
    gone = old.rsplit("/", 1)[0] + "/99"
    predictions(s3, [(old, amounts(rng, 100, 10.0)), ("variant:AllTraffic",
                                                      amounts(rng, 50, 10.0)),
                     (gone, amounts(rng, 20, 10.0))])

    load_handler("model_monitor").handler({"date": DAY}, None)

    entries = {e["model_version"]: e for e in report(s3)["open_loop"]["baselines"]}
    legacy = f"s3://{ARTIFACTS}/baselines/fraud/features.parquet"
    assert {v: (e["source"], e["uri"], e["rows"]) for v, e in entries.items()} == {
        old: ("legacy", legacy, 700), "variant:AllTraffic": ("legacy", legacy, 700),
        gone: ("legacy", legacy, 700)}


def test_without_any_baseline_drift_is_not_compared_and_the_rest_runs(env):
    s3, sagemaker = env
    rng = np.random.default_rng(4)
    version = register(sagemaker, f"s3://{ARTIFACTS}/baselines/fraud/jobs/lost/features.parquet")
    predictions(s3, [(version, amounts(rng, 100, 10.0))])

    result = load_handler("model_monitor").handler({"date": DAY}, None)

    opened = report(s3)["open_loop"]
    assert opened["baselines"][0]["source"] == "none"
    assert groups(opened)["all"]["features"] == {}
    assert "order_amount" in groups(opened)["all"]["features_not_compared"]
    assert result["status"] in ("OK", "ALARM") and result["predictions"] == 100


def test_a_fixed_baseline_key_applies_to_every_version_and_describes_nothing(env, monkeypatch):
    s3, _ = env
    rng = np.random.default_rng(5)
    put_parquet(s3, ARTIFACTS, "pinned/features.parquet",
                pa.table({"order_amount": amounts(rng, 800, 10.0)}))
    monkeypatch.setenv("BASELINE_KEY", "pinned/features.parquet")
    predictions(s3, [("arn:aws:sagemaker:us-east-1:123456789012:model-package/mdlc-fraud/5",
                      amounts(rng, 100, 10.0))])

    load_handler("model_monitor").handler({"date": DAY}, None)

    opened = report(s3)["open_loop"]
    assert opened["baselines"] == [{"model_version": "all", "source": "fixed",
                                    "uri": "pinned/features.parquet", "rows": 800,
                                    "package_version": None}]
    assert opened["baseline_rows"] == 800


def test_a_denied_describe_fails_the_run_instead_of_hiding_drift():
    from mdlc_core.drift_baselines import VersionBaselines

    def denied(arn):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                          "DescribeModelPackage")

    baselines = VersionBaselines(read=lambda b, k: None, describe=denied,
                                 default_bucket="b", legacy_key=None)
    with pytest.raises(ClientError, match="AccessDenied"):
        baselines.resolve({"arn:aws:sagemaker:us-east-1:1:model-package/mdlc-fraud/1": 5})


def test_a_malformed_baseline_uri_is_named():
    from mdlc_core.drift_baselines import VersionBaselines

    baselines = VersionBaselines(
        read=lambda b, k: None, default_bucket="b", legacy_key=None,
        describe=lambda arn: {"ModelPackageVersion": 1,
                              "CustomerMetadataProperties": {"mdlc:drift-baseline": "s3://"}})
    with pytest.raises(ValueError, match=r"baseline URI 's3://' is not s3://bucket/key"):
        baselines.resolve({"arn:aws:sagemaker:us-east-1:1:model-package/mdlc-fraud/1": 5})


def test_the_mixture_keeps_each_versions_share_on_the_common_columns():
    from mdlc_core.drift_baselines import mixture

    a = pa.table({"x": np.zeros(1000), "only_a": np.ones(1000)})
    b = pa.table({"x": np.ones(300)})
    mixed = mixture([(a, 750), (b, 250)])  # 3:1; b's 300 rows allow 1,200 in all
    assert mixed.column_names == ["x"]
    values = mixed.column("x").to_numpy()
    assert len(values) == 1200 and values.sum() == 300
    assert mixture([(a, 1), (a, 9)]) is a and mixture([]) is None
