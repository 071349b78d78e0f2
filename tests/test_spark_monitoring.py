"""``monitoring.runner: spark``: the monitoring job with its metrics on Spark SQL (issue #18).

Every Spark test of the monitoring stage is in this one file, which ``make
test`` runs with the other Spark modules on one worker's JVM (the session-wide
``spark`` fixture; tests/work_units.py): the job entry point (``spark_job --kind
monitoring``) against the Lambda runner's code on DuckDB, on the same moto S3
day (two package versions with their own drift baselines described through
SageMaker, a version without a package, a redelivered prediction, duplicate and
unmatched labels, ties in scores); ``mdlc monitor --engine spark`` against
``--engine duckdb``; the synthesized runner (cdk-nag, the role's prefixes, KMS,
the state machine's IAM); and the scheduled workflow run locally on PySpark,
whose published metrics the alarms then evaluate.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from mdlc_core import monitor_job, spark_job

from mdlc_constructs.spec import load_spec
from tests.spark_driver import RecordingS3, forbid_driver_reads
from tests.template_queries import actions as _actions
from tests.template_queries import listed as _listed
from tests.template_queries import only as _only
from tests.template_queries import statements as _statements
from tests.template_queries import synthesized_or_fail

from .test_model_monitor_handler import env  # noqa: F401 (fixture)
from .test_monitoring_engines_handler import monitor_on, write_cli_day
from .test_sql_monitoring import assert_same

ROOT = Path(__file__).resolve().parents[1]
FRAUD = str(ROOT / "models" / "fraud.yaml")
PREDICTIONS = "predictions-bucket"
ARTIFACTS = "artifacts-bucket"
GROUP = "mdlc-fraud"
DAY = "2024-05-01"
SCORED = f"predictions/fraud/dt={DAY}/scored/"
LABELS_PREFIX = "labels/fraud/"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- the job entry point on moto ----------------------------------------------------------


class _Recorder:
    """A CloudWatch client that keeps the calls it is sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def _put_parquet(s3: Any, bucket: str, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def _register(s3: Any, sagemaker: Any, job: str, amounts: np.ndarray) -> str:
    """A version as the training workflow leaves it: its features under
    ``baselines/<model>/jobs/<job>/`` and a package naming them."""
    key = f"baselines/fraud/jobs/{job}/features.parquet"
    _put_parquet(s3, ARTIFACTS, key, pa.table({"order_amount": amounts,
                                               "score": np.linspace(0, 1, len(amounts))}))
    return sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://a/m"}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"mdlc:model": "fraud", "mdlc:training-job": job,
                                    "mdlc:drift-baseline": f"s3://{ARTIFACTS}/{key}"},
    )["ModelPackageArn"]


def _seed_day(s3: Any, sagemaker: Any) -> list[str]:
    """One day of two package versions and a variant name, with what makes the
    metrics hard: scores rounded to ties, a redelivered event in a second
    (CSV) file, labels that are duplicated, revised or match no prediction."""
    rng = np.random.default_rng(11)
    v1 = _register(s3, sagemaker, "j1", rng.gamma(2, 10.0, 800))
    v2 = _register(s3, sagemaker, "j2", rng.gamma(2, 100.0, 1200))
    # A decision whose serving lookup failed names the variant: the legacy
    # baseline file stands in for its package.
    _put_parquet(s3, ARTIFACTS, "baselines/fraud/features.parquet",
                 pa.table({"order_amount": rng.gamma(2, 50.0, 500)}))
    n = 600
    versions = [(v1, v2, "AllTraffic")[i % 3] for i in range(n)]
    scale = {v1: 10.0, v2: 140.0, "AllTraffic": 50.0}
    scores = np.round(rng.uniform(size=n), 2)
    table = pa.table({
        "event_id": [f"o{i}" for i in range(n)], "score": scores,
        "prediction_ts": pc.cast(pa.array([f"{DAY}T{i % 24:02d}:00:00Z" for i in range(n)]),
                                 pa.timestamp("us", "UTC")),
        "model_version": versions,
        "action": [("approve", "review", "block")[int(s * 3) % 3] for s in scores],
        "order_amount": [float(rng.gamma(2, scale[v])) for v in versions],
    })
    _put_parquet(s3, PREDICTIONS, f"{SCORED}part-0.parquet", table)
    # The same stored decisions of o0..o9 again, from a redelivered batch.
    again = table.slice(0, 10).to_pylist()
    lines = [",".join(table.column_names)] + [
        ",".join(r[c].isoformat() if c == "prediction_ts" else str(r[c])
                 for c in table.column_names) for r in again]
    s3.put_object(Bucket=PREDICTIONS, Key=f"{SCORED}part-1.csv",
                  Body=("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=PREDICTIONS, Key=f"{SCORED}_SUCCESS", Body=b"")
    labels = [f"o{i},{int(scores[i] > 0.4)},2024-05-20T00:00:00Z" for i in range(n) if i % 5]
    labels += ["o1,1,2024-05-21T00:00:00Z", "o2,0,2024-05-20T00:00:00Z",
               "ghost,1,2024-05-20T00:00:00Z"]
    s3.put_object(Bucket=PREDICTIONS, Key=f"{LABELS_PREFIX}dt={DAY}/labels.csv",
                  Body=("event_id,label,label_ts\n" + "\n".join(labels) + "\n").encode())
    return [v1, v2]


ENVIRON = {"PREDICTIONS_BUCKET": PREDICTIONS, "LABELS_BUCKET": PREDICTIONS,
           "LABELS_PREFIX": LABELS_PREFIX, "BASELINE_BUCKET": ARTIFACTS,
           "REPORT_BUCKET": ARTIFACTS, "METRICS_NAMESPACE": "MDLC/Test",
           "CLOSED_LOOP_LAG_DAYS": "0"}
JOB_ARGUMENTS = ["--predictions-bucket", PREDICTIONS, "--labels-bucket", PREDICTIONS,
                 "--labels-prefix", LABELS_PREFIX, "--baseline-bucket", ARTIFACTS,
                 "--report-bucket", ARTIFACTS, "--namespace", "MDLC/Test",
                 "--closed-loop-lag-days", "0"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (PREDICTIONS, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        sagemaker = boto3.client("sagemaker")
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield s3, sagemaker, boto3.client("kms").create_key()["KeyMetadata"]["Arn"]


def forbid_day_reads(monkeypatch: pytest.MonkeyPatch, day_prefixes: tuple[str, ...]) -> None:
    """In this process (the job's driver; the executors are PySpark's Python
    workers, other processes), every reader of the day's predictions and
    labels raises: the snapshot readers, ``monitor_job``'s concatenation,
    first-per-event and typing, and the shared object reader on any object
    under ``day_prefixes`` (it still reads the baselines, which stay on the
    driver)."""
    from mdlc_core import monitoring

    forbid_driver_reads(monkeypatch)
    read_table_bytes = monitoring.read_table_bytes

    def refuse(what: str) -> Any:
        def reader(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"the driver called {what}: the day went through the driver")
        return reader

    def baselines_only(data: bytes, name: str) -> Any:
        if any(prefix in name for prefix in day_prefixes):
            raise AssertionError(f"the driver read {name}: the day went through the driver")
        return read_table_bytes(data, name)

    monkeypatch.setattr(monitoring, "read_table_bytes", baselines_only)
    monkeypatch.setattr(monitoring, "concat_tables", refuse("monitoring.concat_tables"))
    monkeypatch.setattr(monitoring.Predictions, "from_table",
                        refuse("Predictions.from_table"))
    monkeypatch.setattr(monitoring.Labels, "from_table", refuse("Labels.from_table"))
    monkeypatch.setattr(monitor_job, "first_per_event", refuse("monitor_job.first_per_event"))
    monkeypatch.setattr(monitor_job.DayReader, "prefix", refuse("monitor_job.DayReader.prefix"))


def _report(s3: Any) -> dict[str, Any]:
    key = f"monitoring/fraud/dt={DAY}/report.json"
    return json.loads(s3.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read())


def test_the_job_writes_what_the_lambda_runner_writes(
    spark: Any, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: Any
) -> None:
    """spark_job.main --kind monitoring against monitor_job.run on DuckDB (whose
    answers are the retired NumPy engine's, recorded) on the same moto day: the
    same summary, report and metric data;
    the result object is SSE-KMS; each version was described and compared
    with its own training data. No prediction or label row went through the
    driver: in its process every reader of them raises and its S3 client
    read none of their objects (the executors did, through the EMRFS
    stand-in's own client), and nothing the executors persisted outlives the run."""
    from mdlc_core.spark_io import Downloaded

    s3, sagemaker, key = aws
    packages = _seed_day(s3, sagemaker)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(load_spec(FRAUD).as_config()))
    config = spark_job.load_config(str(config_file))
    runs: dict[str, tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = {}
    for engine in ("duckdb", "spark"):
        cloudwatch = _Recorder()
        if engine == "spark":
            result_key = "spark/fraud/monitoring/run-1/result.json"
            forbid_day_reads(monkeypatch, (SCORED, LABELS_PREFIX))
            job_s3 = RecordingS3(s3)
            spark.catalog.clearCache()
            # A backfill of DAY: the event's date wins over the day before --date.
            assert spark_job.main([
                "--kind", "monitoring", "--date", "2026-12-01",
                "--event", json.dumps({"date": DAY, "trigger": "backfill"}), *JOB_ARGUMENTS,
                "--result-bucket", ARTIFACTS, "--result-key", result_key, "--kms-key", key,
                "--read-from", "s3", "--config", str(config_file),
            ], spark=spark, s3=job_s3, cloudwatch=cloudwatch, scratch=tmp_path,
                store=Downloaded(boto3_s3(), tmp_path / "emrfs")) == 0
            monkeypatch.undo()
            # What the executors persisted for the run is freed (the session is shared).
            assert spark._jsparkSession.sharedState().cacheManager().isEmpty()
            day_objects = [k for k in job_s3.read if k.startswith((SCORED, LABELS_PREFIX))]
            assert day_objects == [], day_objects
            # The baselines (small) are read by the driver, as the other runners read them.
            assert {k for k in job_s3.read if k.startswith("baselines/")} == {
                "baselines/fraud/jobs/j1/features.parquet",
                "baselines/fraud/jobs/j2/features.parquet", "baselines/fraud/features.parquet"}
            stored = s3.get_object(Bucket=ARTIFACTS, Key=result_key)
            assert (stored["ServerSideEncryption"], stored["SSEKMSKeyId"]) == ("aws:kms", key)
            summary = json.loads(stored["Body"].read())
        else:
            summary = monitor_job.run({"date": DAY}, config, s3=s3, cloudwatch=cloudwatch,
                                      environ=ENVIRON, sagemaker=sagemaker, engine=engine)
            summary = json.loads(json.dumps(summary, sort_keys=True))  # as the result is
        runs[engine] = (summary, _report(s3), cloudwatch.calls)
    assert runs["duckdb"] == snapshot  # the NumPy engine's summary, report, metric calls
    summary, report, calls = runs["duckdb"]
    assert runs["spark"][0] == summary
    assert_same(runs["spark"][1], report, "report")
    assert [c["Namespace"] for c in runs["spark"][2]] == [c["Namespace"] for c in calls]
    assert_same([c["MetricData"] for c in runs["spark"][2]],
                [c["MetricData"] for c in calls], "metric data")
    summary, report, calls = runs["spark"]
    assert summary["predictions"] == 600 and report["duplicate_predictions"] == 10
    assert summary["unmatched_labels"] == 1 and report["closed_loop"]["duplicate_labels"] == 2
    assert summary["metrics_published"] == sum(len(c["MetricData"]) for c in calls) > 30
    sources = {b["model_version"]: b["source"] for b in report["open_loop"]["baselines"]}
    assert sources == {packages[0]: "model-package", packages[1]: "model-package",
                       "AllTraffic": "legacy", "all": "mixture"}
    by_version = {g["model_version"]: g for g in report["open_loop"]["by_version"]}
    assert by_version[packages[0]]["baseline_rows"] == 800
    assert by_version[packages[1]]["features"]["order_amount"]["psi"] is not None
    assert {g["auc"] is not None for g in report["closed_loop"]["by_version"]} == {True}


def boto3_s3() -> Any:
    """Another client of the same (moto) S3: the EMRFS stand-in's, not the job's."""
    import boto3

    return boto3.client("s3")


# --- the executors type each object as the shared reader and DuckDB do -----------------------


def _spark_day(s3: Any, spark: Any, folder: Path) -> tuple[dict[str, Any], dict[str, Any],
                                                           list[dict[str, Any]]]:
    """(summary, report, metric data) of the monitoring job on Spark for the
    day ``tests.test_monitoring_files`` lays out (its environment as flags),
    the executors reading through the EMRFS stand-in."""
    import os

    from mdlc_core import spark_monitoring
    from mdlc_core.runtime_config import load_config
    from mdlc_core.spark_io import Downloaded

    from .test_monitoring_files import BUCKET as DAY_BUCKET
    from .test_monitoring_files import DAY as FILES_DAY

    args = spark_job.parse_args([
        "--kind", "monitoring", "--date", "2026-12-01", "--event",
        json.dumps({"date": FILES_DAY}), "--predictions-bucket", DAY_BUCKET,
        "--labels-bucket", os.environ["LABELS_BUCKET"],
        "--labels-prefix", os.environ["LABELS_PREFIX"], "--baseline-bucket", DAY_BUCKET,
        "--baseline-key", os.environ["BASELINE_KEY"], "--report-bucket", DAY_BUCKET,
        "--result-bucket", DAY_BUCKET, "--result-key", "unused.json"])
    cloudwatch = _Recorder()
    summary = spark_monitoring.run(args, load_config(), spark=spark, s3=s3,
                                   cloudwatch=cloudwatch, store=Downloaded(s3, folder))
    key = f"monitoring/fraud/dt={FILES_DAY}/report.json"
    report = json.loads(s3.get_object(Bucket=DAY_BUCKET, Key=key)["Body"].read())
    sent = [datum for call in cloudwatch.calls for datum in call["MetricData"]]
    assert len(sent) == summary["metrics_published"]
    # As run_both gives them: of the report as stored (its keys sorted).
    return json.loads(json.dumps(summary)), report, monitor_job.metric_data("fraud", report)


@pytest.mark.parametrize("case", ["csv text, zoned", "csv text, zone-less", "csv dates",
                                  "parquet of other stored types", "parquet timestamps",
                                  "parquet text", "a dropped copy", "an empty day"])
def test_the_executors_type_the_day_as_the_shared_reader_and_duckdb(
    spark: Any, env: Any, tmp_path: Path, case: str, snapshot: Any  # noqa: F811
) -> None:
    """tests.test_monitoring_files' days (pyarrow's CSV inference value by
    value, Parquet's stored types, timestamps zoned and not, text numbers,
    booleans, a header-only file, a redelivered copy that would fail the day
    were it not dropped first, a day of no objects): the job on Spark gives
    the summary, report and metric data of DuckDB (the NumPy engine's, recorded)."""
    from .test_monitoring_files import (
        DAYS,
        HEADER,
        SCORED,
        baseline,
        parquet,
        put,
        put_day,
        run_day,
        ts_ms,
    )

    baseline(env)
    if case == "a dropped copy":
        put(env, f"{SCORED}a.csv", HEADER + "\ne1,0.5,2024-05-01T10:00:00Z,v1,approve,1,1\n")
        put(env, f"{SCORED}b.parquet", parquet(pa.table({
            "event_id": ["e1", "e2"], "score": [np.nan, 0.25],
            "prediction_ts": ts_ms("2024-05-01T10:00:00", "2024-05-01T11:00:00")})))
    elif case != "an empty day":
        put_day(env, DAYS[case])
    theirs = run_day(env, snapshot=snapshot)  # DuckDB's, the NumPy engine's recorded
    mine = _spark_day(env, spark, tmp_path / "emrfs")
    assert mine[0] == json.loads(json.dumps(theirs[0]))
    assert_same(mine[1], theirs[1], "report")
    assert_same(mine[2], theirs[2], "metric data")
    assert (mine[1]["predictions"] > 0) is (case != "an empty day")
    if case == "a dropped copy":
        assert mine[1]["duplicate_predictions"] == 1


#: tests.test_monitoring_files' bad days the executors must refuse as the others do.
BAD_CASES = ("missing", "null id", "no score", "text score", "NaN score", "bad time",
             "text feature", "not parquet", "label 2", "label text", "no label_ts")


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_object_fails_the_job_naming_it(spark: Any, env: Any, tmp_path: Path,  # noqa: F811
                                              case: str, snapshot: Any) -> None:
    """Each bad day fails the job with MonitoringInputError, saying what the
    shared reader says and naming the object as DuckDB does (the day's prefix
    for a column no object has, in the shared reader's words exactly)."""
    from mdlc_core.monitoring import MonitoringInputError

    from .test_monitoring_files import BAD, LABELS, SCORED, TRUTH, put, put_day
    from .test_monitoring_files import BUCKET as DAY_BUCKET

    _, files, phrase, named = next(b for b in BAD if b[0] == case)
    if all(name.startswith("labels:") for name in files):
        put(env, f"{SCORED}ok.csv", "event_id,score,prediction_ts\ne1,0.5,2024-05-01\n")
    put_day(env, files)
    with pytest.raises(MonitoringInputError) as raised:
        _spark_day(env, spark, tmp_path / "emrfs")
    message = str(raised.value)
    assert phrase in message, message
    if named is None:
        from mdlc_core.runtime_config import load_config

        with pytest.raises(MonitoringInputError) as duckdb:
            monitor_job.run({"date": "2024-05-01"}, load_config(), s3=env,
                            cloudwatch=_Recorder(), environ=__import__("os").environ,
                            engine="duckdb")
        assert str(duckdb.value) == snapshot  # the NumPy engine's (shared reader's) words
        assert message == str(duckdb.value)
    else:
        labels = any(n.startswith("labels:") for n in files)
        where = f"s3://{LABELS}/{TRUTH}" if labels else f"s3://{DAY_BUCKET}/{SCORED}"
        assert message.startswith(f"{where}{named}: "), message


def test_an_event_that_is_not_an_object_fails_the_job_naming_the_flag(spark: Any) -> None:
    from mdlc_core import spark_monitoring

    args = spark_job.parse_args(["--kind", "monitoring", "--date", "2026-12-01",
                                 "--event", "[1]", *JOB_ARGUMENTS, "--result-bucket", "b",
                                 "--result-key", "k"])
    with pytest.raises(ValueError, match=r"--event must be a JSON object, got '\[1\]'"):
        spark_monitoring.event_of(args)
    args.event = "{not json"
    with pytest.raises(ValueError, match="--event must be a JSON object"):
        spark_monitoring.event_of(args)
    args.event = '{"trigger": "schedule"}'
    assert spark_monitoring.event_of(args) == {"trigger": "schedule", "date": "2026-11-30"}
    assert date.fromisoformat(spark_monitoring.event_of(args)["date"]) < args.date


def test_spark_is_a_runner_not_a_monitoring_engine() -> None:
    with pytest.raises(ValueError, match=r"monitoring.engine must be one of .*'spark'.*runner"):
        monitor_job.engine_module("spark", {})


# --- mdlc monitor --engine spark -----------------------------------------------------------


def test_the_cli_prints_and_writes_the_same_report_on_spark(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labelled = write_cli_day(tmp_path, 400, 1000)
    outputs = monitor_on(("duckdb", "spark"), tmp_path, capsys, spec=FRAUD)
    assert outputs["spark"][:2] == outputs["duckdb"][:2]
    assert_same(outputs["spark"][2], outputs["duckdb"][2])
    _, printed, report = outputs["spark"]
    assert report["closed_loop"]["labels"] == labelled and "model version v2" in printed
    assert [g["model_version"] for g in report["open_loop"]["by_version"]] == ["all", "v1", "v2"]


def test_the_cli_says_what_spark_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdlc_constructs.cli import main

    pq.write_table(pa.table({"event_id": ["e0"], "score": [0.5],
                             "prediction_ts": ["2026-11-02T10:00:00Z"]}),
                   tmp_path / "p.parquet")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert main(["monitor", FRAUD, "--predictions", str(tmp_path / "p.parquet"),
                 "--engine", "spark"]) == 2
    assert "needs a Java runtime" in capsys.readouterr().err


# --- the EMR Serverless runner of monitoring, synthesized -----------------------------------

ENVIRONMENT = "s3://mdlc-envs-123/py311/env.tar.gz"


def spark_spec_data() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(FRAUD).read_text())
    data["monitoring"]["runner"] = "spark"
    data["monitoring"]["spark"] = {"python_environment": ENVIRONMENT, "max_runtime_minutes": 60}
    # Labels a day late: the second day's run measures the first day's accuracy.
    data["monitoring"]["closed_loop"]["label_delay_days"] = 1
    return data


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One synthesis for the template tests and the local run, with both cdk-nag
    packs (synthesis fails on a finding that is not acknowledged)."""
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.local.simulation import synthesize
    from mdlc_constructs.spec import parse_spec

    spec = parse_spec(spark_spec_data(), "fraud.yaml")
    outdir = tmp_path_factory.mktemp("spark-monitoring") / "cdk.out"
    stack = synthesized_or_fail(outdir, lambda: synthesize(spec, outdir))
    template = json.loads((outdir / f"{stack}.template.json").read_text())["Resources"]
    return {"spec": spec, "outdir": outdir, "stack": stack, "resources": template,
            "findings": read_findings(outdir)}






def test_the_spark_stack_has_no_unacknowledged_findings(assembly: dict[str, Any]) -> None:
    assert assembly["findings"] == []


def test_the_job_role_reads_this_models_prefixes_and_writes_its_reports_only(
    assembly: dict[str, Any]
) -> None:
    resources = assembly["resources"]
    role_id, role = _only(resources, "AWS::IAM::Role", "MonitoringSparkRole")
    application_id = _only(resources, "AWS::EMRServerless::Application", "MonitoringSpark")[0]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert trust["Condition"]["ArnEquals"] == {
        "aws:SourceArn": {"Fn::GetAtt": [application_id, "Arn"]}}
    statements = _statements(resources, role_id)
    lake = {part: _only(resources, "AWS::S3::Bucket", part)[0]
            for part in ("DataLakePredictions", "DataLakeArtifacts")}

    def objects(prefix: tuple[str, ...]) -> list[Any]:
        return [r for s in statements if _actions(s)[0].startswith(prefix)
                for r in _listed(s["Resource"])]

    reads = objects(("s3:GetObject",))
    # The model's predictions (scored/ of each day), labels and baselines, the
    # entry point and code assets, the Python environment: no more.
    expected = {(lake["DataLakePredictions"], "/predictions/fraud/dt=*/scored/*"),
                (lake["DataLakePredictions"], "/labels/fraud/*"),
                (lake["DataLakeArtifacts"], "/baselines/fraud/*")}
    found = {(r["Fn::Join"][1][0]["Fn::GetAtt"][0], r["Fn::Join"][1][1]) for r in reads
             if "Fn::GetAtt" in r["Fn::Join"][1][0]}
    assert found == expected
    others = [r["Fn::Join"][1][-1] for r in reads if "Fn::GetAtt" not in r["Fn::Join"][1][0]]
    assert sorted(o.rsplit(".", 1)[-1] for o in others) == ["gz", "py", "zip"]
    assert f":s3:::{ENVIRONMENT[5:]}" in others
    puts = objects(("s3:Abort", "s3:Put"))
    assert sorted(r["Fn::Join"][1][1] for r in puts) == ["/monitoring/fraud/*",
                                                         "/spark/fraud/monitoring/*"]
    assert {r["Fn::Join"][1][0]["Fn::GetAtt"][0] for r in puts} == {lake["DataLakeArtifacts"]}
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert [(s["Action"], s["Condition"]) for s in wildcard] == [
        ("cloudwatch:PutMetricData", {"StringEquals": {"cloudwatch:namespace": "MDLC"}})]
    (describe,) = [s for s in statements if "sagemaker:DescribeModelPackage" in _actions(s)]
    assert _actions(describe) == ["sagemaker:DescribeModelPackage"]
    assert describe["Resource"]["Fn::Join"][1][-1] == ":model-package/mdlc-fraud/*"
    assert not [s for s in statements if any(a.startswith("sagemaker:") for a in _actions(s))
                and s is not describe]
    key_id = _only(resources, "AWS::KMS::Key", "DataLakeKey")[0]
    kms = [s for s in statements if any(a.startswith("kms:") for a in _actions(s))]
    assert kms and all(s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]} for s in kms)
    _, application = _only(resources, "AWS::EMRServerless::Application", "MonitoringSpark")
    logging = application["Properties"]["MonitoringConfiguration"]
    assert logging["CloudWatchLoggingConfiguration"]["EncryptionKeyArn"] == {
        "Fn::GetAtt": [key_id, "Arn"]}


def test_the_schedule_starts_a_workflow_that_runs_the_job_and_reads_its_result(
    assembly: dict[str, Any]
) -> None:
    resources = assembly["resources"]
    machine_id, machine = _only(resources, "AWS::StepFunctions::StateMachine", "Monitoring")
    application_id = _only(resources, "AWS::EMRServerless::Application", "MonitoringSpark")[0]
    role_id = _only(resources, "AWS::IAM::Role", "MonitoringSparkRole")[0]
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    for needed in ("emr-serverless:startJobRun.sync", "'--kind', 'monitoring'",
                   "'--event', States.JsonToString($.event), '--date', $.started",
                   "States.StringSplit($$.Execution.StartTime, 'T')",
                   "'--read-from', 's3'", '\\"ExecutionTimeoutMinutes\\":60',
                   "spark.archives=" + ENVIRONMENT + "#environment",
                   '\\"InputPath\\":\\"$.summary.result\\"'):
        assert needed in definition, needed
    # The Lambda runner is not built; the schedule targets the workflow.
    assert not [k for k, v in resources.items()
                if v["Type"] == "AWS::Lambda::Function" and k.startswith("MonitoringJob")]
    (rule,) = [v for k, v in resources.items()
               if v["Type"] == "AWS::Events::Rule" and k.startswith("MonitoringSchedule")]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Ref": machine_id}
    statements = json.dumps(_statements(resources, machine["Properties"]["RoleArn"]
                                        ["Fn::GetAtt"][0]))
    for needed in ('"emr-serverless:StartJobRun"', "/jobruns/*",
                   "StepFunctionsGetEventsForEMRServerlessJobRule",
                   '"iam:PassedToService": "emr-serverless.amazonaws.com"',
                   json.dumps({"Fn::GetAtt": [application_id, "Arn"]}),
                   json.dumps({"Fn::GetAtt": [role_id, "Arn"]}), "/spark/fraud/monitoring/*"):
        assert needed in statements, needed


def test_a_spark_section_without_runner_spark_is_refused_naming_it() -> None:
    from mdlc_constructs.spec import SpecError, parse_spec

    data = spark_spec_data()
    data["monitoring"]["runner"] = "processing"
    with pytest.raises(SpecError, match=r"monitoring\.spark is set but monitoring\.runner is "
                       r"'processing'"):
        parse_spec(data, "fraud.yaml")
    del data["monitoring"]["spark"]
    assert "spark" not in parse_spec(data, "fraud.yaml").as_config()["monitoring"]
    data["monitoring"]["runner"] = "spark"
    with pytest.raises(SpecError, match=r"monitoring\.spark\.python_environment"):
        parse_spec(data, "fraud.yaml")


# --- runner: spark, executed locally ---------------------------------------------------------


def test_the_monitoring_workflow_runs_on_local_spark_and_its_metrics_drive_the_alarms(
    spark: Any, assembly: dict[str, Any], tmp_path: Path
) -> None:
    """Two simulated days: a trained, deployed model scores them; each day's
    scheduled workflow runs the job on the EMR Serverless stand-in (local
    PySpark, as the job role), reads its result back and succeeds; the
    reports are the monitored days', and the alarms evaluated on the metrics
    the job published fire where the reports cross the spec's caps, and the
    second day's closed loop reads the labels the simulation landed where the
    Spark job's arguments say."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    spec = assembly["spec"]
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=2, start=date(2026, 11, 1), rows_per_day=120, seed=7),
              orders)
    run = simulate(spec, orders, assembly=assembly["outdir"], stack=assembly["stack"],
                   out=tmp_path / "out")
    report = run.report
    assert report["denied_calls"] == []
    monitoring = [e for e in report["executions"] if e["workflow"] == "monitoring"]
    assert [e["status"] for e in monitoring] == ["SUCCEEDED"] * 2, monitoring
    jobs = report["functions"]["mdlc-local-sagemaker-emrServerlessStartJobRun"]["invocations"]
    assert jobs == len(monitoring)
    assert not [f for f in report["functions"] if f.startswith("MonitoringJob")]
    s3 = tmp_path / "out" / "s3"
    results = sorted((json.loads(p.read_text()) for p in
                      s3.glob("*/spark/fraud/monitoring/fraud-monitoring-*/result.json")),
                     key=lambda r: r["date"])
    # Each run monitored the day before it started ($$.Execution.StartTime).
    assert [r["date"] for r in results] == ["2026-11-01", "2026-11-02"]
    reports = {r["date"]: json.loads(next(s3.glob(
        f"*/monitoring/fraud/dt={r['date']}/report.json")).read_text()) for r in results}
    for result in results:
        day = reports[result["date"]]
        assert result["report"].endswith(f"monitoring/fraud/dt={result['date']}/report.json")
        assert result["predictions"] == day["predictions"] > 0
        assert result["alarms"] == [a["message"] for a in day["alarms"]]
    # The second run judged the accuracy of the day before it (label_delay_days 1).
    assert reports["2026-11-02"]["closed_loop_date"] == "2026-11-01"
    # Day 1's labels, landed where the Spark job reads them (day 1 was not
    # scored: the first version serves from day 2, so they match nothing yet).
    assert reports["2026-11-02"]["closed_loop"]["labels"] == 120
    # The alarms read what the job published: each share alarm that fired is
    # an action whose share in a report is above its cap, and one fired.
    caps = spec.monitoring.open_loop.max_action_share
    fired = {a["alarm"] for a in report["alarms"] if a["to"] == "ALARM"}
    over = {action for day in reports.values()
            for action, share in day["open_loop"]["by_version"][0]["actions"].items()
            if action in caps and share > caps[action]}
    alarmed = {action for action in caps if any(f"ActionShare{action}" in a for a in fired)}
    assert over and alarmed == over, (over, fired)
