"""``features.runner: spark``: the day's batch features as Spark SQL.

Every Spark test of the features runner is in this one file, which ``make
test`` runs with the other Spark modules on one worker's JVM (the session-wide
``spark`` fixture; tests/work_units.py): the job entry point (``spark_job --kind
features``) against the DuckDB engine and the retired NumPy engine's recorded
tables on the same moto snapshots, a snapshot object that is not its manifest,
the spec's validation, the EMR Serverless runner synthesized with both cdk-nag
packs (its role's exact prefixes, KMS, the state machine's IAM,
``grant_start``), and the data preparation and training workflows of a
``runner: spark`` spec executed locally, training on what the Spark job wrote.
"""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import yaml
from mdlc_core import feature_job, spark_job
from mdlc_core.spark_io import EMRFS_SSE, EMRFS_SSE_KEY, Downloaded
from moto import mock_aws

from mdlc_constructs.spec import SpecError, parse_spec
from tests.conftest import FRAUD_SPEC
from tests.feature_answers import Answers, recorded_answers  # noqa: F401 - the fixture
from tests.lambda_loader import load_handler
from tests.spark_driver import RecordingS3, data_keys_read, forbid_driver_reads
from tests.template_queries import actions as _actions
from tests.template_queries import listed as _listed
from tests.template_queries import only as _only
from tests.template_queries import statements as _statements
from tests.template_queries import synthesized_or_fail
from tests.template_queries import text as _text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RAW, DATASETS, FEATURES, ARTIFACTS = "raw-sf", "datasets-sf", "features-sf", "artifacts-sf"
ENVIRONMENT = "s3://mdlc-envs-123/py311/env.tar.gz"
START = date(2026, 3, 1)


def spark_spec_data(name: str = "fraud") -> dict[str, Any]:
    """The example spec with ``features.runner: spark``, and more features than
    it has (every aggregate function, another entity, a 1-day window, ``//``
    and ``%``), so the Spark SQL of each is compared."""
    data = yaml.safe_load(FRAUD_SPEC.read_text())
    data["name"] = name
    data["features"]["runner"] = "spark"
    data["features"]["spark"] = {"python_environment": ENVIRONMENT, "max_runtime_minutes": 45}
    data["features"]["aggregates"] += [
        {"name": "amount_mean_7d", "function": "mean", "column": "order_amount",
         "window_days": 7},
        {"name": "amount_max_2d", "function": "max", "column": "order_amount", "window_days": 2},
        {"name": "amount_min_1d", "function": "min", "column": "order_amount", "window_days": 1},
        {"name": "tenure_count_3d", "function": "count", "column": "account_tenure",
         "window_days": 3},
    ]
    data["features"]["expressions"] += [
        {"name": "tenure_weeks", "expression": "account_tenure // 7"},
        {"name": "amount_cents", "expression": "(order_amount * 100) % 100"},
    ]
    return data


# --- the job on S3 (moto) against the other engines ----------------------------------------


@pytest.fixture
def lake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """moto S3 with the model's buckets, three days of sampled orders sourced as
    dated snapshots (the real sourcing handler), a redelivered order and a day
    missing from the 30-day window; yields (s3, config, the last day)."""
    from mdlc_constructs.sampling import sample, to_csv

    spec = parse_spec(spark_spec_data(), "fraud.yaml")
    config = spec.as_config()
    path = tmp_path / "mdlc_config.json"
    path.write_text(json.dumps(config))
    for name, value in {
        "MDLC_CONFIG_FILE": str(path), "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "RAW_BUCKET": RAW, "DATASETS_BUCKET": DATASETS, "FEATURES_BUCKET": FEATURES,
        "MODEL_NAME": "fraud",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    days = sample(spec, days=3, start=START, rows_per_day=120, seed=11, entities=40)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (RAW, DATASETS, FEATURES, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        sourcing = load_handler("data_sourcing")
        # Day 0, then days 5 and 6 (days 1-4 missing: skipped, logged).
        for offset, day in zip((0, 5, 6), days, strict=True):
            dated = START + timedelta(days=offset)
            shifted = copy.deepcopy(day)
            shifted.columns["order_ts"] = [
                v + timedelta(days=offset) for v in day.columns["order_ts"]]
            text = to_csv(spec, [shifted])
            if offset == 6:  # day 5's first order again: a training row of day 5 only
                text += to_csv(spec, [_first_row(days[1], 5)]).split("\n", 1)[1]
            s3.put_object(Bucket=RAW, Key=f"orders/dt={dated.isoformat()}/part.csv",
                          Body=text.encode())
            sourcing.handler({"date": dated.isoformat()}, None)
        yield s3, config, path, START + timedelta(days=6)
    load_config.cache_clear()


def _first_row(day: Any, offset: int) -> Any:
    from mdlc_constructs.sampling import SampleDay

    columns = {name: [values[0]] for name, values in day.columns.items()}
    columns["order_ts"] = [columns["order_ts"][0] + timedelta(days=offset)]
    return SampleDay(date=day.date, columns=columns)


def _files(s3: Any, result: dict[str, Any]) -> dict[str, Any]:
    """The two Parquet tables a run wrote, then removed (the next run writes
    the same keys)."""
    out = {}
    for key in ("features_key", "entities_key"):
        body = s3.get_object(Bucket=FEATURES, Key=result[key])["Body"].read()
        out[key] = pq.read_table(io.BytesIO(body))
        s3.delete_object(Bucket=FEATURES, Key=result[key])
    return out


class _NoMetrics:
    """A CloudWatch client the features job must not call."""

    def put_metric_data(self, **kwargs: Any) -> None:
        raise AssertionError(f"the features job published metrics: {kwargs}")


def test_the_spark_job_writes_what_the_embedded_and_duckdb_engines_write(
    answers: Answers, spark: Any, lake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spark_job.main --kind features against feature_job.run (duckdb, what
    the Lambda function runs) on the same snapshots: the same result, the
    same two files (schema, rows, order), the retired NumPy engine's
    (recorded, tests/feature_answers.py), while no row goes
    through the driver: in its process every reader of snapshot data raises,
    its S3 client reads no snapshot object, and the executors write the
    tables (copied to their keys, SSE-KMS with the key given, the staging
    folder emptied). The result object is SSE-KMS too."""
    s3, config, config_path, day = lake
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    results, files = {}, {}
    lambda_result = load_handler("feature_batch").handler({"date": day.isoformat()}, None)
    results["duckdb"] = feature_job.run(config, day, s3=s3, datasets_bucket=DATASETS,
                                        features_bucket=FEATURES, engine="duckdb")
    files["duckdb"] = _files(s3, results["duckdb"])
    result_key = "spark/fraud/features/fraud-features-0123456789ab/result.json"
    manifests = [json.loads(s3.get_object(Bucket=DATASETS, Key=k)["Body"].read())
                 for k in results["duckdb"]["snapshots"]]
    forbid_driver_reads(monkeypatch)
    job_s3 = RecordingS3(s3)
    assert spark_job.main([
        "--kind", "features", "--date", day.isoformat(), "--datasets-bucket", DATASETS,
        "--features-bucket", FEATURES, "--model", "fraud", "--result-bucket", ARTIFACTS,
        "--result-key", result_key, "--kms-key", key, "--read-from", "s3",
        "--config", str(config_path),
    ], spark=spark, s3=job_s3, cloudwatch=_NoMetrics(), scratch=tmp_path,
        store=Downloaded(boto3.client("s3"), tmp_path / "emrfs", kms_key=key)) == 0
    monkeypatch.undo()
    assert data_keys_read(job_s3, manifests) == [] and len(manifests) == 3
    for name in ("features", "entities"):
        written = s3.head_object(Bucket=FEATURES,
                                 Key=f"features/fraud/dt={day.isoformat()}/{name}.parquet")
        assert (written["ServerSideEncryption"], written["SSEKMSKeyId"]) == ("aws:kms", key)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=ARTIFACTS).get("Contents", [])] == [
        result_key]  # the staged parts deleted
    stored = s3.get_object(Bucket=ARTIFACTS, Key=result_key)
    assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", key)
    results["spark"] = json.loads(stored["Body"].read())
    files["spark"] = _files(s3, results["spark"])
    assert results["spark"] == results["duckdb"] == lambda_result
    # Day 6's rows less the redelivered order; 30 days back: days 0, 5 and 6.
    assert results["spark"]["rows"] == 120 and len(results["spark"]["snapshots"]) == 3
    for name in ("features_key", "entities_key"):
        answers(files["duckdb"][name], files["spark"][name])
    training = files["spark"]["features_key"]
    assert training.column_names[:4] == ["order_id", "customer_id", "order_ts", "fraud_status"]
    assert {"amount_mean_7d", "tenure_weeks", "amount_cents"} <= set(training.column_names)
    assert files["spark"]["entities_key"].num_rows == results["spark"]["entities"] > 30


def test_an_object_that_is_not_its_manifest_fails_the_spark_job(
    spark: Any, lake: Any, tmp_path: Path
) -> None:
    """A snapshot object replaced after its manifest was committed: the job
    raises naming the object (the run fails) and writes no feature file."""
    from mdlc_core.sourcing import SnapshotError

    s3, _, config_path, day = lake
    manifest_key = next(o["Key"] for o in s3.list_objects_v2(
        Bucket=DATASETS, Prefix=f"datasets/fraud/dt={day.isoformat()}/")["Contents"]
        if o["Key"].endswith("_manifest.json"))
    entry = json.loads(s3.get_object(Bucket=DATASETS, Key=manifest_key)["Body"].read()
                       )["objects"][0]
    s3.put_object(Bucket=DATASETS, Key=entry["key"], Body=b"order_id\nnot-the-snapshot\n")
    # The manifest names the version it committed: the newest copy is refused too.
    latest = s3.head_object(Bucket=DATASETS, Key=entry["key"])["VersionId"]
    manifest = json.loads(s3.get_object(Bucket=DATASETS, Key=manifest_key)["Body"].read())
    manifest["objects"][0]["version_id"] = latest
    s3.put_object(Bucket=DATASETS, Key=manifest_key, Body=json.dumps(manifest).encode())
    with pytest.raises(SnapshotError, match=re.escape(entry["key"])):
        spark_job.main(["--kind", "features", "--date", day.isoformat(), "--datasets-bucket",
                        DATASETS, "--features-bucket", FEATURES, "--result-bucket", ARTIFACTS,
                        "--result-key", "spark/fraud/features/x/result.json",
                        "--config", str(config_path)],
                       spark=spark, s3=s3, cloudwatch=_NoMetrics(), scratch=tmp_path,
                       store=Downloaded(boto3.client("s3"), tmp_path / "emrfs"))
    assert "Contents" not in s3.list_objects_v2(Bucket=FEATURES)
    assert "Contents" not in s3.list_objects_v2(Bucket=ARTIFACTS)


def test_the_spark_engine_needs_its_session_and_its_arguments(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="needs a Spark session"):
        feature_job.engine_tables(feature_job.SPARK)
    with pytest.raises(SystemExit):
        spark_job.parse_args(["--kind", "features", "--date", "2026-03-07",
                              "--result-bucket", "b", "--result-key", "k",
                              "--datasets-bucket", DATASETS])
    assert "--features-bucket" in capsys.readouterr().err


@pytest.mark.parametrize("version", ["4.1.1", "3.5.6"])
def test_the_tables_on_spark_are_the_embedded_engines_with_nulls(
    answers: Answers, spark: Any, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spark_features.tables, the Spark engine of feature_job, against the
    retired NumPy engine's training and entity tables (recorded), with null amounts, a
    division by zero and an event id delivered twice; once as Spark 4 runs it
    (Arrow both ways) and once taking Spark 3.5's path (EMR 7's release:
    frames through pandas, where a null double is NaN, which must come back
    as null, not as a NaN feature)."""
    import pyspark
    from mdlc_core import spark_features

    from tests.test_features import START as DAY0
    from tests.test_features import event, rich

    monkeypatch.setattr(pyspark, "__version__", version)
    events = [{**event(i, customer, at, amount), "account_tenure": tenure, "fraud_status": i % 2}
              for i, customer, at, amount, tenure in (
                  (1, "c1", datetime(2026, 3, 1, 9, tzinfo=UTC), 0.0, 10),
                  (2, "c2", DAY0 + timedelta(hours=3), None, None),
                  (3, "c1", DAY0 + timedelta(days=1, hours=1), 7.5, 11),
                  (1, "c1", DAY0 + timedelta(days=1, hours=2), 99.0, 11),  # redelivered
                  (4, "c3", DAY0 + timedelta(days=1, hours=4), None, 3))]
    features = rich()
    training, entities = spark_features.tables(spark)
    for mine in (training(events, features), entities(events, features, date(2026, 3, 2))):
        answers(mine)
        assert any(v is None for values in mine.values() for v in values)  # nulls compared
    assert "events" not in [t.name for t in spark.catalog.listTables()]  # the view dropped


# --- the spec -------------------------------------------------------------------------------


def test_the_spec_takes_runner_spark_and_refuses_a_section_no_runner_reads() -> None:
    spec = parse_spec(spark_spec_data(), "fraud.yaml")
    assert spec.features.runner == "spark"
    assert spec.features.spark.python_environment == ENVIRONMENT
    assert spec.as_config()["features"]["spark"]["max_runtime_minutes"] == 45
    data = spark_spec_data()
    data["features"]["runner"] = "embedded"
    with pytest.raises(SpecError, match=r"fraud\.yaml: features: features\.spark is set but "
                                        r"features\.runner is 'embedded'"):
        parse_spec(data, "fraud.yaml")
    del data["features"]["spark"]
    assert "spark" not in parse_spec(data, "fraud.yaml").as_config()["features"]
    data = spark_spec_data()
    del data["features"]["spark"]["python_environment"]
    with pytest.raises(SpecError, match=r"features\.spark\.python_environment: runner spark "
                                        "needs it"):
        parse_spec(data, "fraud.yaml")


# --- the EMR Serverless runner, synthesized -------------------------------------------------


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The runner: spark stack with both cdk-nag packs (synthesis fails on a
    finding that is not acknowledged), as the local execution synthesizes it,
    plus a role given :meth:`SparkRunner.grant_start`; the same assembly runs
    the simulation below. The runner is a team's subclass, through
    ``FeatureEngineering.spark_runner_class`` (the extension point)."""
    from aws_cdk import aws_iam as iam
    from aws_cdk.assertions import Template

    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.features import FeatureEngineering
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.preparation import DataPreparation
    from mdlc_constructs.spark import SparkRunner
    from mdlc_constructs.testing import make_app

    class TeamSpark(SparkRunner):
        """A team's runner: the library's, one more tag on the application."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.application.tags.set_tag("team", "fraud-science")

    class TeamFeatures(FeatureEngineering):
        spark_runner_class = TeamSpark

    class TeamPreparation(DataPreparation):
        features_class = TeamFeatures

    class TeamStack(MdlcModelStack):
        data_preparation_class = TeamPreparation

    spec = parse_spec(spark_spec_data(), "fraud.yaml")
    outdir = tmp_path_factory.mktemp("spark-features") / "cdk.out"
    app = make_app(outdir=str(outdir), context={"aws:cdk:enable-path-metadata": True})
    stack = TeamStack(app, "Mdlc-fraud", spec=spec)
    runner = stack.preparation.features.spark_runner
    assert type(runner) is TeamSpark and runner.node.id == "Spark"
    starter = iam.Role(stack, "Starter", assumed_by=iam.ServicePrincipal(
        "states.amazonaws.com"))
    grant = runner.grant_start(starter)
    assembly = synthesized_or_fail(outdir, app.synth)
    template = Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)
    return {"spec": spec, "stack": stack, "template": template, "outdir": outdir,
            "findings": read_findings(outdir), "grant": grant, "starter": starter}







def test_the_stack_has_no_unacknowledged_findings(synthesized: dict[str, Any]) -> None:
    assert synthesized["findings"] == []
    stack = synthesized["stack"]
    assert stack.preparation.features.processing_runner is None
    assert stack.preparation.quality.spark_runner is None  # quality stays in Lambda


def test_the_job_role_reads_the_snapshots_and_writes_the_features_only(
    synthesized: dict[str, Any]
) -> None:
    template = synthesized["template"]
    role_id, role = _only(template, "AWS::IAM::Role", "FeaturesSparkRole")
    application_id = _only(template, "AWS::EMRServerless::Application", "FeaturesSpark")[0]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert trust["Condition"]["ArnEquals"] == {
        "aws:SourceArn": {"Fn::GetAtt": [application_id, "Arn"]}}
    statements = _statements(template, role_id)
    buckets = {name: {"Fn::GetAtt": [_only(template, "AWS::S3::Bucket", f"DataLake{name}")[0],
                                     "Arn"]}
               for name in ("Datasets", "Features", "Artifacts")}
    reads, writes, deletes = set(), set(), set()
    for statement in statements:
        actions = _actions(statement)
        for resource in _listed(statement["Resource"]):
            if not isinstance(resource, dict) or "Fn::Join" not in resource:
                continue
            parts = resource["Fn::Join"][1]
            where = (_text(parts[0]), parts[-1])
            if any(a.startswith("s3:GetObject") for a in actions):
                reads.add(where)
            if any(a.startswith("s3:PutObject") for a in actions):
                writes.add(where)
            if any(a.startswith("s3:DeleteObject") for a in actions):
                deletes.add(where)
    assets = {w for w in reads if re.fullmatch(r"/[0-9a-f]{64}\.(py|zip)", w[1])}
    assert len(assets) == 2  # the entry point and the code archive
    # This model's snapshots, the job's Python environment and its own runs'
    # folders (the executors' staged tables, which the driver copies); no more.
    staging = (_text(buckets["Artifacts"]), "/spark/fraud/features/*")
    assert reads - assets == {(_text(buckets["Datasets"]), "/datasets/fraud/*"),
                              ('"arn:"', ":s3:::mdlc-envs-123/py311/env.tar.gz"), staging}
    assert writes == {(_text(buckets["Features"]), "/features/fraud/*"), staging}
    assert deletes == {staging}  # never the features or the snapshots
    text = _text(statements)
    assert "quality-reports" not in text and "cloudwatch:PutMetricData" not in text
    assert not [s for s in statements if s["Resource"] == "*"]  # no metrics, no wildcard
    kms = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    key_id = _only(template, "AWS::KMS::Key", "DataLakeKey")[0]
    assert kms and all(s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} for s in kms)


def test_the_application_and_its_logs_are_encrypted_and_bounded(
    synthesized: dict[str, Any]
) -> None:
    template = synthesized["template"]
    _, application = _only(template, "AWS::EMRServerless::Application", "FeaturesSpark")
    props = application["Properties"]
    assert props["Name"] == "mdlc-fraud-features"
    assert {"Key": "team", "Value": "fraud-science"} in props["Tags"]  # the team's class
    assert props["MaximumCapacity"] == {"Cpu": "64 vCPU", "Memory": "256 GB", "Disk": "1000 GB"}
    assert props["AutoStopConfiguration"] == {"Enabled": True, "IdleTimeoutMinutes": 15}
    key = {"Fn::GetAtt": [_only(template, "AWS::KMS::Key", "DataLakeKey")[0], "Arn"]}
    monitoring = props["MonitoringConfiguration"]
    assert monitoring["CloudWatchLoggingConfiguration"]["EncryptionKeyArn"] == key
    assert monitoring["ManagedPersistenceMonitoringConfiguration"]["EncryptionKeyArn"] == key
    assert _only(template, "AWS::Logs::LogGroup", "FeaturesSparkLogs")[1][
        "Properties"]["KmsKeyId"] == key


def test_the_workflows_start_the_job_and_read_its_result_into_data_features(
    synthesized: dict[str, Any]
) -> None:
    template = synthesized["template"]
    application_id = _only(template, "AWS::EMRServerless::Application", "FeaturesSpark")[0]
    role_id = _only(template, "AWS::IAM::Role", "FeaturesSparkRole")[0]
    machines = {k: m for k, m in template.find_resources("AWS::StepFunctions::StateMachine")
                .items() if "'--kind', 'features'" in _text(m)}
    # Data preparation, training and batch inference each compute the day's features.
    assert sorted(re.sub(r"[0-9A-F]{8}$", "", k) for k in machines) == [
        "BatchInferenceStateMachine", "DataWorkflow", "TrainingStateMachine"]
    for machine in machines.values():
        definition = _text(machine["Properties"]["DefinitionString"])
        assert "emr-serverless:startJobRun.sync" in definition
        assert "'--date', $.data.snapshot.date" in definition
        assert "'--features-bucket'" in definition and "'--datasets-bucket'" in definition
        assert '\\"ClientToken.$\\":\\"$.data.features.job_name\\"' in definition
        assert '\\"ExecutionTimeoutMinutes\\":45' in definition
        assert '\\"InputPath\\":\\"$.data.features.result\\"' in definition
        assert "feature_batch" not in definition and "FeaturesBatch" not in definition
        # EMRFS encrypts what the executors write with the data key (SSE-KMS).
        key_arn = _text({"Fn::GetAtt": [_only(template, "AWS::KMS::Key", "DataLakeKey")[0],
                                        "Arn"]})
        assert f"--conf {EMRFS_SSE}=true --conf {EMRFS_SSE_KEY}=" in definition
        assert definition.count(key_arn) >= 2  # the EMRFS key and --kms-key
        statements = _statements(template, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
        text = _text(statements)
        for needed in ('"emr-serverless:StartJobRun"', "/jobruns/*",
                       "StepFunctionsGetEventsForEMRServerlessJobRule",
                       '"iam:PassedToService": "emr-serverless.amazonaws.com"',
                       "/spark/fraud/features/*"):
            assert needed in text, needed
        assert _text({"Fn::GetAtt": [application_id, "Arn"]}) in text
        assert _text({"Fn::GetAtt": [role_id, "Arn"]}) in text
        # The batch function is not what these workflows run.
        batch = _only(template, "AWS::Lambda::Function", "FeaturesBatch")[0]
        invokes = [s for s in statements if "lambda:InvokeFunction" in _actions(s)]
        assert batch not in _text(invokes)


def test_grant_start_lets_another_role_run_the_job(synthesized: dict[str, Any]) -> None:
    template = synthesized["template"]
    starter_id = _only(template, "AWS::IAM::Role", "Starter")[0]
    application_id = _only(template, "AWS::EMRServerless::Application", "FeaturesSpark")[0]
    role_id = _only(template, "AWS::IAM::Role", "FeaturesSparkRole")[0]
    statements = _statements(template, starter_id)
    by_action = {a: s for s in statements for a in _actions(s)}
    assert by_action["emr-serverless:StartJobRun"]["Resource"] == {
        "Fn::GetAtt": [application_id, "Arn"]}
    assert by_action["iam:PassRole"]["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}}
    assert "/spark/fraud/features/*" in _text(by_action["s3:GetObject"]["Resource"])
    assert synthesized["grant"].success


# --- runner: spark, executed locally --------------------------------------------------------


def test_training_and_batch_inference_run_on_what_the_local_spark_job_wrote(
    spark: Any, synthesized: dict[str, Any], tmp_path: Path
) -> None:
    """runner: spark, simulated on the synthesized assembly (one day): every
    workflow that computes features (data preparation, training, batch
    inference) runs the job on the EMR Serverless stand-in (local PySpark, as
    the job role), never the batch function; training fits and registers a
    version from the training rows that job wrote, batch inference scores the
    entity rows it wrote; each run's result is what its step read back."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    spec = synthesized["spec"]
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=1, start=date(2026, 11, 1), rows_per_day=150, seed=5),
              orders)
    run = simulate(spec, orders, assembly=synthesized["outdir"], stack="Mdlc-fraud",
                   out=tmp_path / "out")
    report = run.report
    assert report["denied_calls"] == []
    status = {(e["workflow"], e["started_by"]): e["status"] for e in report["executions"]}
    for workflow in (("training", "manual"), ("data_preparation", "schedule"),
                     ("batch_inference", "schedule")):
        assert status.get(workflow) == "SUCCEEDED", (workflow, report["notifications"])
    spark_runs = report["functions"]["mdlc-local-sagemaker-emrServerlessStartJobRun"]
    assert spark_runs["errors"] == 0
    assert not [name for name in report["functions"] if "FeaturesBatch" in name]
    s3 = tmp_path / "out" / "s3"
    results = [json.loads(p.read_text())
               for p in s3.glob("*/spark/fraud/features/fraud-features-*/result.json")]
    # Training, data preparation and batch inference: one run each at least.
    assert len(results) == spark_runs["invocations"] >= 3
    # The executors' staged parts were copied to their keys and deleted.
    assert [p for p in s3.glob("*/spark/fraud/features/*/staging/**/*") if p.is_file()] == []
    for result in results:
        assert result["date"] == "2026-11-01"
        assert result["snapshots"] == ["datasets/fraud/dt=2026-11-01/_manifest.json"]
        written = next(s3.glob(f"*/{result['features_key']}"))
        assert pq.read_metadata(written).num_rows == result["rows"] == 150
        entities = next(s3.glob(f"*/{result['entities_key']}"))
        assert pq.read_metadata(entities).num_rows == result["entities"] > 0
    versions = report["model_versions"]
    assert versions and versions[0]["dataset_date"] == "2026-11-01"
    assert versions[0]["metrics"]["validation:auc"] >= 0.8
    # Batch inference scored the entity rows the Spark job wrote.
    assert report["decisions"]["batch"]["total"] == results[0]["entities"]
