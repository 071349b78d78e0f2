"""The Spark engine of the quality stage, on PySpark in local mode.

Every Spark test of the quality stage is in this one file; ``make test`` runs
it with the other modules that use the ``spark`` fixture on one worker and one
JVM (tests/work_units.py; starting Spark costs seconds on 2 cores): the compiled
rules' Spark SQL against DuckDB's report, Parquet read by Spark itself (row
positions across files, NaN the statistics leave out), ``mdlc quality --engine
spark``, the job entry point against the Lambda runner's code on the same S3
snapshot, the EMR Serverless construct's template, and the quality workflow
with ``runner: spark`` executed locally.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mdlc_core import quality_job, spark_job, tabular
from mdlc_core.spark_io import Downloaded
from mdlc_core.sql import quality as sql_quality
from mdlc_core.sql import rules as sql_rules

from mdlc_constructs.cli import main
from tests.template_queries import actions as _actions
from tests.template_queries import only as _only
from tests.template_queries import statements as _statements
from tests.template_queries import synthesized_or_fail
from tests.template_queries import text as _text

from .test_quality_engine import COLUMNS, DAY, SPEC, orders_csv, read, spec_with, write

ROOT = Path(__file__).resolve().parents[1]
FRAUD = str(ROOT / "models" / "fraud.yaml")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def without_clock(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "checked_at"}


def assert_same(theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    theirs, mine = without_clock(theirs), without_clock(mine)
    for ours, other in zip(mine["rules"], theirs["rules"], strict=True):
        assert other == ours, ours["id"]  # one rule at a time: a readable diff
    assert theirs == mine


# --- the compiled SQL on Spark --------------------------------------------------------------


def test_every_rule_kind_gives_duckdbs_report_on_spark(spark: Any, tmp_path: Path) -> None:
    """The Spark-dialect SQL of every rule kind, failing and passing, with an
    unparseable value, a null key, a duplicate and the consistency rule."""
    table = read(tmp_path, orders_csv([("o1", "c1", "2026-11-01T10:00:00Z", -3, 1, 4),
                                       ("o1", None, "2026-11-01T11:00:00Z", "x", 2, 0)]))
    previous = read(tmp_path, orders_csv(day=date(2026, 10, 31)), "p.csv")
    spec = spec_with(*SPEC["quality"]["rules"],
                     {"id": "numeric_id", "kind": "type", "column": "order_id", "type": "int"},
                     {"id": "flag", "kind": "type", "column": "customer_id", "type": "bool"})
    report = spark_job.check(spark, spec, table, previous, snapshot_date=DAY)
    duck = sql_quality.check(spec, table, previous, snapshot_date=DAY)
    assert_same(report, duck)
    kinds = {r["kind"] for r in report["rules"]}
    assert kinds == set(sql_rules.RULE_KINDS)
    assert {r["id"] for r in report["rules"] if r["status"] == "fail"} >= {
        "numeric_id", "unique_order_id", "tenure_grows_daily", "range_order_amount"}


def test_typed_parquet_is_read_by_spark_with_positions_across_files(
    spark: Any, tmp_path: Path
) -> None:
    rows = [(f"o{i % 5}", f"c{i % 3}", f"2026-11-01T{i:02d}:00:00Z",
             -1 if i in (8, 10) else 10.0 * i - 30, 100 + i % 3, i % 3) for i in range(12)]
    whole = read(tmp_path, orders_csv(rows))
    folder = tmp_path / "dt=2026-11-01"
    folder.mkdir()
    pq.write_table(whole.slice(0, 7), folder / "part-0000.parquet")
    pq.write_table(whole.slice(7), folder / "part-0001.parquet")
    before = tmp_path / "previous.parquet"
    pq.write_table(read(tmp_path, orders_csv(day=date(2026, 10, 31), tenure=50), "p.csv"), before)
    spec = spec_with(*SPEC["quality"]["rules"], sample_size=5)
    plan = sql_quality.prepare(spec, folder, before, snapshot_date=DAY)
    assert isinstance(plan.relations["snapshot"], sql_quality.ParquetFiles)
    report = spark_job.check(spark, spec, folder, before, snapshot_date=DAY)
    # DuckDB over the reader's tables: another read path, another engine
    ours = sql_quality.check(spec, tabular.read_table(folder, COLUMNS),
                             tabular.read_table(before, COLUMNS), snapshot_date=DAY)
    assert_same(report, ours)
    failed = {r["id"]: r for r in report["rules"] if r["status"] == "fail"}
    # rows of the second file carry their position in the snapshot, not in the file
    assert [s["row"] for s in failed["range_order_amount"]["sample"]] == [0, 1, 2, 8, 10]


def test_nan_in_parquet_is_not_pruned_by_statistics(spark: Any, tmp_path: Path) -> None:
    """Parquet's min/max leave NaN out: a pushed-down range filter would skip it."""
    columns = [{"name": "order_id", "type": "string"}, {"name": "order_amount", "type": "float"}]
    spec = {**spec_with({"kind": "range", "column": "order_amount", "min": 0, "max": 5}),
            "data": {**SPEC["data"], "columns": columns}}
    table = pa.table({"order_id": [f"o{i}" for i in range(4)],
                      "order_amount": pa.array([1.0, 2.0, None, float("nan")], pa.float64())})
    # Row groups of two rows: the second's statistics are those of None only.
    pq.write_table(table, tmp_path / "nan.parquet", row_group_size=2)
    report = spark_job.check(spark, spec, tmp_path / "nan.parquet", snapshot_date=DAY)
    assert report["rules"][0]["sample"] == [{"order_id": "o3", "row": 3, "value": "nan"}]
    assert_same(report, sql_quality.check(spec, table, snapshot_date=DAY))


def test_the_sql_of_a_plan_is_what_spark_runs(spark: Any, tmp_path: Path) -> None:
    """Spark must run the plan's own text: a query that is not Spark SQL fails."""
    plan = sql_quality.prepare(SPEC, read(tmp_path, orders_csv()), snapshot_date=DAY)
    for name, relation in plan.relations.items():
        spark.createDataFrame(relation).createOrReplaceTempView(name)
    for text in plan.sql("spark"):
        spark.sql(text).collect()
    with pytest.raises(Exception, match=r"(?i)parse|syntax"):
        spark.sql(plan.sql("duckdb")[0].replace("SELECT", "SELECT ::", 1)).collect()
    assert sql_rules.ROW in spark.table("snapshot").columns


# --- mdlc quality --engine spark ------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_the_cli_prints_and_writes_the_same_report_on_spark(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], file_format: str
) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", 99999, 54, 0),
            ("o1", "c2", "2026-11-01T11:00:00Z", None, 101, 3)]
    before = [("p1", "c1", "2026-10-31T10:00:00Z", 10, 364, 0),
              ("p2", "c2", "2026-10-31T11:00:00Z", 20, 100, 0)]
    paths = []
    for day, day_rows in (("2026-11-01", rows), ("2026-10-31", before)):
        folder = tmp_path / f"dt={day}"
        if file_format == "csv":
            write(folder, orders_csv(day_rows), "part-0000.csv")
        else:
            folder.mkdir()
            table = tabular.read_bytes(orders_csv(day_rows).encode(), "d.csv", COLUMNS)
            pq.write_table(table.replace_schema_metadata(None), folder / "part-0000.parquet")
        paths.append(str(folder))
    outputs = {}
    for engine in ("duckdb", "spark"):
        report_file = tmp_path / f"{engine}.json"
        code = main(["quality", FRAUD, paths[0], "--previous", paths[1], "--engine", engine,
                     "--report", str(report_file)])
        report = without_clock(json.loads(report_file.read_text()))
        outputs[engine] = (code, capsys.readouterr().out, report)
    assert outputs["spark"] == outputs["duckdb"]
    code, out, _ = outputs["spark"]
    assert code == 1 and "FAIL  unique_order_id" in out and "FAIL  tenure_grows_daily" in out


def test_a_local_session_keeps_its_warehouse_out_of_the_working_directory(spark: Any) -> None:
    """Spark's default warehouse is ``spark-warehouse/`` where the command runs:
    ``mdlc quality --engine spark`` in a team's checkout would leave it there."""
    warehouse = Path(spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:"))
    assert warehouse == spark_job.local_warehouse()
    assert not warehouse.is_relative_to(Path.cwd()), warehouse


def test_the_cli_says_what_spark_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write(tmp_path / "dt=2026-11-01", orders_csv(), "part-0000.csv").parent
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert main(["quality", FRAUD, str(data), "--engine", "spark"]) == 2
    assert "needs a Java runtime" in capsys.readouterr().err


# --- the job entry point on S3 --------------------------------------------------------------


def test_the_job_writes_what_the_lambda_runner_writes(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spark_job.main against quality_job.run on the same S3 snapshots (moto):
    the same result, report and metric data; the result object is SSE-KMS."""
    import boto3
    from moto import mock_aws

    from .test_quality_engines_handler import CURRENT, PREVIOUS, drop, spec_for
    from .test_quality_handler import DATA, RAW, REPORTS

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    for file_format in ("csv", "parquet"):
        spec = spec_for("duckdb", file_format)
        config = tmp_path / f"{file_format}.json"
        config.write_text(json.dumps(spec))
        with mock_aws():
            s3 = boto3.client("s3")
            for bucket in (DATA, REPORTS, RAW):
                s3.create_bucket(Bucket=bucket)
            key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
            before = drop(s3, spec, date(2026, 11, 1), PREVIOUS)
            prefix = drop(s3, spec, date(2026, 11, 2), CURRENT)
            # The day before passes, so both runners compare with it ("latest").
            assert quality_job.run(spec, date(2026, 11, 1), s3=s3, cloudwatch=_Recorder([]),
                                   bucket=DATA, snapshot_prefix=before, report_bucket=REPORTS,
                                   namespace="MDLC/DQ", previous_prefix=None)["passed"]
            sent: dict[str, list[Any]] = {"lambda": [], "spark": []}
            runs = {}
            for runner in ("lambda", "spark"):
                cloudwatch = _Recorder(sent[runner])
                if runner == "lambda":
                    runs[runner] = quality_job.run(
                        spec, date(2026, 11, 2), s3=s3, cloudwatch=cloudwatch, bucket=DATA,
                        snapshot_prefix=prefix, report_bucket=REPORTS, namespace="MDLC/DQ")
                else:
                    assert spark_job.main([
                        "--kind", "quality", "--date", "2026-11-02", "--snapshot-prefix", prefix,
                        "--datasets-bucket", DATA, "--report-bucket", REPORTS,
                        "--namespace", "MDLC/DQ", "--result-bucket", REPORTS,
                        "--result-key", "spark/fraud/quality/run-1/result.json",
                        "--kms-key", key, "--read-from", "local", "--config", str(config),
                    ], spark=spark, s3=s3, cloudwatch=cloudwatch, scratch=tmp_path) == 0
                    stored = s3.get_object(Bucket=REPORTS,
                                           Key="spark/fraud/quality/run-1/result.json")
                    assert stored["ServerSideEncryption"] == "aws:kms"
                    assert stored["SSEKMSKeyId"] == key
                    runs[runner] = json.loads(stored["Body"].read())
                report_key = quality_job.report_key_of("fraud", date(2026, 11, 2))
                runs[f"{runner}-report"] = without_clock(json.loads(
                    s3.get_object(Bucket=REPORTS, Key=report_key)["Body"].read()))
        assert runs["spark"] == runs["lambda"], file_format
        assert runs["spark-report"] == runs["lambda-report"], file_format
        assert [{k: v for k, v in d.items() if k != "Timestamp"} for d in sent["spark"]] == \
            [{k: v for k, v in d.items() if k != "Timestamp"} for d in sent["lambda"]]
        assert "tenure_grows_daily" in runs["spark"]["failed_rules"]  # the previous day was used


def test_an_object_that_is_not_its_manifest_fails_the_job(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from mdlc_core.sourcing import SnapshotError
    from moto import mock_aws

    from .test_quality_engines_handler import CURRENT, drop, spec_for
    from .test_quality_handler import DATA, RAW, REPORTS

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    spec = spec_for("duckdb", "parquet")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (DATA, REPORTS, RAW):
            s3.create_bucket(Bucket=bucket)
        prefix = drop(s3, spec, date(2026, 11, 2), CURRENT)
        manifest = json.loads(s3.get_object(Bucket=DATA, Key=f"{prefix}_manifest.json")["Body"]
                              .read())
        entry = manifest["objects"][0]
        s3.put_object(Bucket=DATA, Key=entry["key"], Body=b"PAR1 not the snapshot PAR1")
        with pytest.raises(SnapshotError, match=entry["key"]):
            spark_job.run(copy.deepcopy(spec), date(2026, 11, 2), spark=spark, s3=s3,
                          cloudwatch=_Recorder([]), bucket=DATA, snapshot_prefix=prefix,
                          report_bucket=REPORTS, namespace="MDLC/DQ", previous_prefix=None,
                          store=Downloaded(boto3.client("s3"), tmp_path / "emrfs"))
        assert "Contents" not in s3.list_objects_v2(Bucket=REPORTS)  # no report written


def test_an_object_the_reader_refuses_fails_the_job_naming_it(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed object (its SHA-256 right) that lacks a declared column: the
    executor's DataError is the driver's, naming the object; no report."""
    import hashlib

    import boto3
    from moto import mock_aws

    from .test_quality_engines_handler import CURRENT, drop, spec_for
    from .test_quality_handler import DATA, RAW, REPORTS

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    spec = spec_for("duckdb", "csv")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (DATA, REPORTS, RAW):
            s3.create_bucket(Bucket=bucket)
        prefix = drop(s3, spec, date(2026, 11, 2), CURRENT)
        key = f"{prefix}_manifest.json"
        manifest = json.loads(s3.get_object(Bucket=DATA, Key=key)["Body"].read())
        entry = manifest["objects"][-1]
        body = b"order_id,customer_id\no-1,c-1\n"
        s3.put_object(Bucket=DATA, Key=entry["key"], Body=body)
        entry["sha256"] = hashlib.sha256(body).hexdigest()
        entry.pop("version_id", None)
        s3.put_object(Bucket=DATA, Key=key, Body=json.dumps(manifest).encode())
        with pytest.raises(tabular.DataError, match=re.escape(f"s3://{DATA}/{entry['key']}")):
            spark_job.run(copy.deepcopy(spec), date(2026, 11, 2), spark=spark, s3=s3,
                          cloudwatch=_Recorder([]), bucket=DATA, snapshot_prefix=prefix,
                          report_bucket=REPORTS, namespace="MDLC/DQ", previous_prefix=None,
                          store=Downloaded(boto3.client("s3"), tmp_path / "emrfs"))
        assert "Contents" not in s3.list_objects_v2(Bucket=REPORTS)


class _Recorder:
    """A CloudWatch client that keeps the metric data it is sent."""

    def __init__(self, sent: list[Any]) -> None:
        self.sent = sent

    def put_metric_data(self, **kwargs: Any) -> None:
        self.sent.extend(kwargs["MetricData"])


# --- the EMR Serverless runner, synthesized -------------------------------------------------

ENVIRONMENT = "s3://mdlc-envs-123/py311/env.tar.gz"


def spark_spec_data(name: str = "fraudspark") -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(FRAUD).read_text())
    data["name"] = name
    data["quality"]["runner"] = "spark"
    data["quality"]["spark"] = {"python_environment": ENVIRONMENT, "max_vcpu": 32,
                                "max_runtime_minutes": 90}
    return data


@pytest.fixture(scope="module")
def synthesized_spark(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A runner: spark stack in a network, with both cdk-nag packs (synthesis
    fails on any finding that is not acknowledged)."""
    from aws_cdk.assertions import Template

    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.spec import parse_spec
    from mdlc_constructs.testing import make_app

    data = spark_spec_data()
    data["network"] = {"create": True}
    outdir = tmp_path_factory.mktemp("spark.out")
    app = make_app(outdir=str(outdir))
    stack = MdlcModelStack(app, "Mdlc-fraudspark", spec=parse_spec(data, "fraudspark.yaml"))
    assembly = synthesized_or_fail(outdir, app.synth)
    template = Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)
    return {"stack": stack, "template": template, "findings": read_findings(outdir)}






def test_the_spark_stack_has_no_unacknowledged_findings(synthesized_spark: dict[str, Any]) -> None:
    assert synthesized_spark["findings"] == []


def test_the_application_is_bounded_encrypted_and_in_the_models_subnets(
    synthesized_spark: dict[str, Any]
) -> None:
    template = synthesized_spark["template"]
    _, application = _only(template, "AWS::EMRServerless::Application", "DataQualitySpark")
    props = application["Properties"]
    assert (props["Type"], props["ReleaseLabel"]) == ("SPARK", "emr-7.12.0")
    assert props["MaximumCapacity"] == {"Cpu": "32 vCPU", "Memory": "256 GB", "Disk": "1000 GB"}
    assert props["AutoStopConfiguration"] == {"Enabled": True, "IdleTimeoutMinutes": 15}
    key = {"Fn::GetAtt": [_only(template, "AWS::KMS::Key", "DataLakeKey")[0], "Arn"]}
    monitoring = props["MonitoringConfiguration"]
    assert monitoring["CloudWatchLoggingConfiguration"]["EncryptionKeyArn"] == key
    assert monitoring["ManagedPersistenceMonitoringConfiguration"] == {
        "Enabled": True, "EncryptionKeyArn": key}
    logs_id, log_group = _only(template, "AWS::Logs::LogGroup", "DataQualitySparkLogs")
    assert monitoring["CloudWatchLoggingConfiguration"]["LogGroupName"] == {"Ref": logs_id}
    assert log_group["Properties"]["KmsKeyId"] == key
    network = props["NetworkConfiguration"]
    subnets = [{"Ref": k} for k in template.find_resources("AWS::EC2::Subnet")
               if "Private" in k]
    assert sorted(_text(s) for s in network["SubnetIds"]) == sorted(_text(s) for s in subnets)
    group_id, group = _only(template, "AWS::EC2::SecurityGroup", "DataQualitySparkWorkers")
    assert network["SecurityGroupIds"] == [{"Fn::GetAtt": [group_id, "GroupId"]}]
    assert [e["IpProtocol"] for e in group["Properties"]["SecurityGroupEgress"]] == ["tcp"]


def test_the_job_role_is_scoped_to_the_models_prefixes(synthesized_spark: dict[str, Any]) -> None:
    template = synthesized_spark["template"]
    role_id, role = _only(template, "AWS::IAM::Role", "DataQualitySparkRole")
    application_id = _only(template, "AWS::EMRServerless::Application", "DataQualitySpark")[0]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert trust["Condition"]["ArnEquals"] == {
        "aws:SourceArn": {"Fn::GetAtt": [application_id, "Arn"]}}
    statements = _statements(template, role_id)
    text = _text(statements)
    for prefix in ("/datasets/fraudspark/*", "/quality-reports/fraudspark/*",
                   "/spark/fraudspark/quality/*", ":s3:::mdlc-envs-123/py311/env.tar.gz"):
        assert prefix in text, prefix
    objects = [r for s in statements if _actions(s)[0].startswith(("s3:GetObject", "s3:Put",
                                                                     "s3:Abort"))
               for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    allowed = ("/datasets/fraudspark/*", "/quality-reports/fraudspark/*",
               "/spark/fraudspark/quality/*", ":s3:::mdlc-envs-123/py311/env.tar.gz")
    for resource in objects:  # this model's prefixes, the two assets, the archive: no more
        tail = resource["Fn::Join"][1][-1]
        assert tail in allowed or re.fullmatch(r"/[0-9a-f]{64}\.(py|zip)", tail), resource
    assert len(objects) == 7  # reads: 2 prefixes, 2 assets, the archive; puts: reports, result
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [s["Action"] for s in wildcard] == ["cloudwatch:PutMetricData"]
    assert wildcard[0]["Condition"] == {"StringEquals": {"cloudwatch:namespace":
                                                         "MDLC/DataQuality"}}
    kms = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    key_id = _only(template, "AWS::KMS::Key", "DataLakeKey")[0]
    assert kms and all(s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} for s in kms)


def test_the_workflow_starts_the_run_and_reads_its_result_back(
    synthesized_spark: dict[str, Any]
) -> None:
    template = synthesized_spark["template"]
    application_id = _only(template, "AWS::EMRServerless::Application", "DataQualitySpark")[0]
    role_id = _only(template, "AWS::IAM::Role", "DataQualitySparkRole")[0]
    machines = [m for m in template.find_resources("AWS::StepFunctions::StateMachine").values()
                if "emr-serverless:startJobRun.sync" in _text(m)]
    assert machines, "no state machine runs the Spark job"
    for machine in machines:
        definition = _text(machine["Properties"]["DefinitionString"])
        assert '\\"ClientToken.$\\":\\"$.data.quality.job_name\\"' in definition
        assert '\\"ExecutionTimeoutMinutes\\":90' in definition
        assert "spark.archives=" + ENVIRONMENT + "#environment" in definition
        assert "'--read-from', 's3'" in definition
        assert '\\"InputPath\\":\\"$.data.quality.result\\"' in definition
        role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        statements = _text(_statements(template, role))
        for needed in ('"emr-serverless:StartJobRun"', "/jobruns/*",
                       "StepFunctionsGetEventsForEMRServerlessJobRule",
                       '"iam:PassedToService": "emr-serverless.amazonaws.com"'):
            assert needed in statements, needed
        assert _text({"Fn::GetAtt": [application_id, "Arn"]}) in statements
        assert _text({"Fn::GetAtt": [role_id, "Arn"]}) in statements


def test_runner_spark_without_a_python_environment_is_refused() -> None:
    from mdlc_constructs.spec import SpecError, parse_spec

    data = spark_spec_data()
    del data["quality"]["spark"]["python_environment"]
    with pytest.raises(SpecError, match=r"spark\.python_environment"):
        parse_spec(data, "fraudspark.yaml")


# --- runner: spark, executed locally --------------------------------------------------------


@pytest.fixture(scope="module")
def spark_assembly(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from mdlc_constructs.local.simulation import synthesize
    from mdlc_constructs.spec import parse_spec

    spec = parse_spec(spark_spec_data("fraud"), "fraud.yaml")
    outdir = tmp_path_factory.mktemp("spark-local") / "cdk.out"
    synthesize(spec, outdir)
    return spec, outdir


def test_the_quality_workflow_runs_on_local_spark_and_stops_the_bad_day(
    spark: Any, spark_assembly: tuple[Any, Path], tmp_path: Path
) -> None:
    """runner: spark, simulated: day 1 passes the gate, day 2's tenure anomaly
    stops it; the EMR Serverless stand-in ran every check (not the
    Lambda) and the runs wrote the same report the Lambda runner writes."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import parse_anomaly, sample, write_csv

    spec, assembly = spark_assembly
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=2, start=date(2026, 11, 1), rows_per_day=200, seed=7,
                           anomalies=[parse_anomaly("account_tenure@2026-11-02",
                                                    start=date(2026, 11, 1), days=2)]), orders)
    run = simulate(spec, orders, assembly=assembly, stack="Mdlc-fraud", initial_training=False,
                   out=tmp_path / "out")
    report = run.report
    prepared = {e["date"]: e for e in report["executions"] if e["workflow"] == "data_preparation"}
    assert [prepared[d]["status"] for d in ("2026-11-01", "2026-11-02")] == [
        "SUCCEEDED", "FAILED"], report["notifications"]
    failures = [json.loads(n["message"]) for n in report["notifications"]
                if n["subject"] == "MDLC fraud: data preparation failed"]
    assert failures and failures[0]["error"] == "DataQualityViolations"
    assert "tenure_grows_daily" in failures[0]["cause"]
    # Each day's data preparation and batch inference check the day: four Spark runs.
    runs = report["functions"]["mdlc-local-sagemaker-emrServerlessStartJobRun"]["invocations"]
    assert runs == 4 and report["denied_calls"] == []
    assert "DataQualityFunctionC5BA9E4D" not in report["functions"]
    s3 = tmp_path / "out" / "s3"
    results = [json.loads(p.read_text())
               for p in s3.glob("*/spark/fraud/quality/fraud-quality-*/result.json")]
    assert len(results) == runs  # the bad day's runs wrote theirs too; the gate failed them
    assert sorted(r["passed"] for r in results) == [False, False, True, True]
    day2 = json.loads(next(s3.glob("*/quality-reports/fraud/dt=2026-11-02/report.json"))
                      .read_text())
    rule = next(r for r in day2["rules"] if r["id"] == "tenure_grows_daily")
    assert rule["status"] == "fail" and rule["violations"] >= 1
    assert day2["previous_date"] == "2026-11-01"  # the day that passed, found by its report


def test_the_stand_in_checks_the_state_machines_iam(
    spark: Any, spark_assembly: tuple[Any, Path], tmp_path: Path
) -> None:
    """Without iam:PassRole of the job role the start is refused, as Step
    Functions' integration is: the day fails on that call, and only that one."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    spec, assembly = spark_assembly
    template = json.loads(next(assembly.glob("Mdlc-fraud.template.json")).read_text())
    (machine,) = [v for k, v in template["Resources"].items()
                  if v["Type"] == "AWS::StepFunctions::StateMachine" and k.startswith("Data")]
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=1, start=date(2026, 11, 1), rows_per_day=50, seed=3),
              orders)
    revoked: list[int] = []
    run = simulate(spec, orders, assembly=assembly, stack="Mdlc-fraud", initial_training=False,
                   configure=lambda cloud: revoked.append(
                       cloud.authorizer.revoke(role, "iam:PassRole")))
    assert revoked[0] >= 1
    (prepared,) = [e for e in run.report["executions"] if e["workflow"] == "data_preparation"]
    assert prepared["status"] == "FAILED"
    denied = {(d["action"], d["operation"]) for d in run.report["denied_calls"]}
    assert ("iam:PassRole", "emr-serverless:StartJobRun") in denied
    assert {action for action, _ in denied} == {"iam:PassRole"}


def test_an_application_network_must_exist_in_one_vpc() -> None:
    """The stand-in refuses an application whose subnets or groups do not exist
    or lie in two VPCs, as EMR Serverless does."""
    from types import SimpleNamespace

    from mdlc_constructs.local.emr_serverless import _check_network
    from mdlc_constructs.local.hooks import ServiceError

    cloud: Any = SimpleNamespace(authorizer=SimpleNamespace(networks={
        "subnet-a": "vpc-1", "subnet-b": "vpc-1", "sg-1": "vpc-1", "subnet-c": "vpc-2"}))
    _check_network(cloud, "app", {"SubnetIds": ["subnet-a", "subnet-b"],
                                  "SecurityGroupIds": ["sg-1"]})
    with pytest.raises(ServiceError, match=r"\['subnet-x'\] do not exist"):
        _check_network(cloud, "app", {"SubnetIds": ["subnet-x"], "SecurityGroupIds": ["sg-1"]})
    with pytest.raises(ServiceError, match="different VPCs"):
        _check_network(cloud, "app", {"SubnetIds": ["subnet-a", "subnet-c"],
                                      "SecurityGroupIds": ["sg-1"]})


def test_the_executors_read_the_snapshots_the_driver_reads_only_manifests(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quality kind on CSV and on Parquet with its previous day: the same
    report as the Lambda runner's, while in the driver's process every reader
    of snapshot data raises and the job's S3 client reads no object of either
    manifest; Spark is handed each manifest object, in manifest order, at the
    location the store gives (``s3://bucket/key`` on EMR, EMRFS)."""
    import boto3
    from mdlc_core.spark_io import Downloaded, Emrfs
    from moto import mock_aws

    from .spark_driver import RecordingS3, data_keys_read, forbid_driver_reads
    from .test_quality_engines_handler import CURRENT, PREVIOUS, drop, spec_for
    from .test_quality_handler import DATA, RAW, REPORTS

    class Locations(Downloaded):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.asked: list[str] = []

        def read_location(self, bucket: str, key: str) -> str:
            self.asked.append(Emrfs().read_location(bucket, key))
            return super().read_location(bucket, key)

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    for file_format in ("csv", "parquet"):
        spec = spec_for("duckdb", file_format)
        with mock_aws(), monkeypatch.context() as patched:
            s3 = boto3.client("s3")
            for bucket in (DATA, REPORTS, RAW):
                s3.create_bucket(Bucket=bucket)
            before = drop(s3, spec, date(2026, 11, 1), PREVIOUS)
            prefix = drop(s3, spec, date(2026, 11, 2), CURRENT)
            manifests = [json.loads(s3.get_object(Bucket=DATA, Key=f"{p}_manifest.json")
                                    ["Body"].read()) for p in (prefix, before)]
            expected = quality_job.run(copy.deepcopy(spec), date(2026, 11, 2), s3=s3,
                                       cloudwatch=_Recorder([]), bucket=DATA,
                                       snapshot_prefix=prefix, report_bucket=REPORTS,
                                       namespace="MDLC/DQ", previous_prefix=before)
            report_key = quality_job.report_key_of("fraud", date(2026, 11, 2))
            theirs = without_clock(json.loads(s3.get_object(Bucket=REPORTS, Key=report_key)
                                              ["Body"].read()))
            forbid_driver_reads(patched)
            job_s3 = RecordingS3(s3)
            store = Locations(boto3.client("s3"), tmp_path / file_format)
            result = spark_job.run(copy.deepcopy(spec), date(2026, 11, 2), spark=spark,
                                   s3=job_s3, cloudwatch=_Recorder([]), bucket=DATA,
                                   snapshot_prefix=prefix, report_bucket=REPORTS,
                                   namespace="MDLC/DQ", previous_prefix=before, store=store)
            mine = without_clock(json.loads(s3.get_object(Bucket=REPORTS, Key=report_key)
                                            ["Body"].read()))
        assert data_keys_read(job_s3, manifests) == [], file_format
        assert store.asked == [f"s3://{DATA}/{entry['key']}"
                               for manifest in manifests for entry in manifest["objects"]]
        assert result == expected and mine == theirs, file_format
        assert "tenure_grows_daily" in result["failed_rules"]  # the previous day was read
