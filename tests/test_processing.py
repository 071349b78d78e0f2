"""The scale-out runner: the Processing entry point against the Lambda handlers,
and the synthesized steps and permissions for a spec with every runner set to
``processing``.

The entry point (``lambdas/processing_job``) runs locally against moto S3 and
CloudWatch for each kind and must write exactly what the Lambda handler
writes for the same input: the same objects, the same metrics, the same
result. The stack is synthesized once for the module with both cdk-nag packs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
import yaml
from moto import mock_aws

from mdlc_constructs.spec import load_spec, parse_spec
from tests.conftest import FRAUD_SPEC
from tests.lambda_loader import load_handler

RAW, DATASETS, FEATURES, REPORTS = "raw-p", "datasets-p", "features-p", "reports-p"
PREDICTIONS, LABELS = "predictions-bucket", "labels-bucket"
START = datetime(2026, 3, 1, tzinfo=UTC)


class Recorder:
    """A CloudWatch client that records what is published (and still publishes)."""

    def __init__(self) -> None:
        self.client = boto3.client("cloudwatch")
        self.sent: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return self.client.put_metric_data(**kwargs)


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    config = tmp_path / "mdlc_config.json"
    config.write_text(json.dumps(load_spec(FRAUD_SPEC).as_config()))
    for name, value in {
        "MDLC_CONFIG_FILE": str(config), "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "RAW_BUCKET": RAW, "DATASETS_BUCKET": DATASETS, "FEATURES_BUCKET": FEATURES,
        "REPORT_BUCKET": REPORTS, "MODEL_NAME": "fraud",
        "POWERTOOLS_METRICS_NAMESPACE": "MDLC/DataQuality",
        "METRICS_NAMESPACE": "MDLC/DataQuality", "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    from mdlc_core.runtime_config import load_config

    load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (RAW, DATASETS, FEATURES, REPORTS, PREDICTIONS, LABELS):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        yield s3
    load_config.cache_clear()


def run_job(tmp_path: Path, args: list[str], cloudwatch: Recorder) -> dict[str, Any]:
    """The Processing entry as SageMaker runs it, with /opt/ml/processing at tmp_path."""
    entry = load_handler("processing_job")
    base = tmp_path / "opt-ml-processing"
    assert entry.main(args, base=base, s3=boto3.client("s3"), cloudwatch=cloudwatch) == 0
    return json.loads((base / "output" / "result.json").read_text())


def orders(day: int, rows: list[tuple[str, str, int, float, int]]) -> bytes:
    header = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"
    lines = [
        f"{o},{c},{(START + timedelta(days=day, hours=h)).isoformat()},{a},{t},0"
        for o, c, h, a, t in rows
    ]
    return ("\n".join([header, *lines]) + "\n").encode()


def snapshot_days(s3: Any) -> str:
    """Three snapshots (the windows reach back; tenure breaks consistency on the last)."""
    sourcing = load_handler("data_sourcing")
    days = {
        0: [("o1", "c1", 1, 10.0, 5), ("o2", "c2", 2, 5.0, 9)],
        20: [("o3", "c1", 3, 20.0, 25)],
        21: [("o4", "c1", 4, 40.0, 3), ("o5", "c3", 5, 1.0, 1), ("o3", "c1", 3, 20.0, 25)],
    }
    for day, rows in days.items():
        date = (START + timedelta(days=day)).date().isoformat()
        s3.put_object(Bucket=RAW, Key=f"orders/dt={date}/part.csv", Body=orders(day, rows))
        sourcing.handler({"date": date}, None)
    return (START + timedelta(days=21)).date().isoformat()


def _object(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _without_timestamps(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**call, "MetricData": [{k: v for k, v in d.items() if k != "Timestamp"}
                                for d in call["MetricData"]]}
        for call in calls
    ]  # fmt: skip


# -- the same outputs as the Lambda runner ------------------------------------------------


def test_features_job_writes_what_the_function_writes(aws: Any, tmp_path: Path) -> None:
    day = snapshot_days(aws)
    lambda_result = load_handler("feature_batch").handler({"date": day}, None)
    lambda_files = {
        key: pq.read_table(io.BytesIO(_object(aws, FEATURES, lambda_result[key]))).to_pylist()
        for key in ("features_key", "entities_key")
    }
    for key in ("features_key", "entities_key"):
        aws.delete_object(Bucket=FEATURES, Key=lambda_result[key])
    job_result = run_job(tmp_path, ["--kind", "features", "--date", day], Recorder())
    assert job_result == lambda_result
    assert job_result["rows"] == 2 and len(job_result["snapshots"]) == 3
    for key, rows in lambda_files.items():
        written = pq.read_table(io.BytesIO(_object(aws, FEATURES, job_result[key])))
        assert written.to_pylist() == rows


def test_quality_job_writes_the_same_report_and_metrics(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = snapshot_days(aws)
    prefix = f"datasets/fraud/dt={day}/"
    handler = load_handler("quality_check")
    context = type("Context", (), {"function_name": "q", "memory_limit_in_mb": 1024,
                                   "aws_request_id": "r", "invoked_function_arn": "arn"})()
    # The day before, checked as the workflow checks it: its passed report makes
    # it the snapshot both runners compare with.
    before = (START + timedelta(days=20)).date().isoformat()
    assert handler.handler({"bucket": DATASETS, "snapshot_prefix": f"datasets/fraud/dt={before}/",
                            "previous_prefix": "latest"}, context)["passed"] is True
    lambda_metrics = Recorder()
    monkeypatch.setattr(handler, "cloudwatch", lambda_metrics)
    lambda_result = handler.handler(
        {"bucket": DATASETS, "snapshot_prefix": prefix, "date": day, "previous_prefix": "latest"},
        context,
    )  # fmt: skip
    key = f"quality-reports/fraud/dt={day}/report.json"
    lambda_report = json.loads(_object(aws, REPORTS, key))
    job_metrics = Recorder()
    job_result = run_job(
        tmp_path, ["--kind", "quality", "--date", day, "--snapshot-prefix", prefix], job_metrics
    )
    job_report = json.loads(_object(aws, REPORTS, key))
    assert job_result == lambda_result
    # The consistency rules compared with the previous snapshot in both runners.
    assert job_report["previous_source"] == lambda_report["previous_source"]
    assert lambda_report["previous_source"] == f"s3://{DATASETS}/datasets/fraud/dt=2026-03-21/"
    assert job_result["failed_rules"] == ["tenure_grows_daily"]
    for report in (lambda_report, job_report):
        report.pop("checked_at")
    assert job_report == lambda_report
    assert _without_timestamps(job_metrics.sent) == _without_timestamps(lambda_metrics.sent)
    assert job_metrics.sent[0]["Namespace"] == "MDLC/DataQuality"


def test_monitoring_job_writes_the_same_report_and_metrics(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_model_monitor_handler import DAY, seed

    for name, value in {"PREDICTIONS_BUCKET": PREDICTIONS, "LABELS_BUCKET": LABELS,
                        "LABELS_PREFIX": "truth/fraud/", "REPORT_BUCKET": REPORTS,
                        "BASELINE_KEY": "snapshots/fraud/dt=2024-04-01/",
                        "METRICS_NAMESPACE": "MDLC"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    seed(aws)
    handler = load_handler("model_monitor")
    lambda_metrics = Recorder()
    monkeypatch.setattr(handler, "cloudwatch", lambda_metrics)
    event = {"date": DAY, "trigger": "schedule"}
    lambda_result = handler.handler(event, None)
    key = f"monitoring/fraud/dt={DAY}/report.json"
    lambda_report = _object(aws, REPORTS, key)
    job_metrics = Recorder()
    job_result = run_job(
        tmp_path, ["--kind", "monitoring", "--event", json.dumps(event)], job_metrics
    )
    assert job_result == lambda_result
    assert job_result["predictions"] == 200 and job_result["status"] == "ALARM"
    assert _object(aws, REPORTS, key) == lambda_report
    assert job_metrics.sent == lambda_metrics.sent
    assert sum(len(c["MetricData"]) for c in job_metrics.sent) == job_result["metrics_published"]


def test_a_failing_job_fails_the_process(aws: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no snapshot of 2026-04-05"):
        run_job(tmp_path, ["--kind", "features", "--date", "2026-04-05"], Recorder())
    with pytest.raises(SystemExit):
        run_job(tmp_path, ["--kind", "quality", "--date", "2026-04-05"], Recorder())


def test_container_bootstrap_unpacks_the_asset_and_runs_the_entry(tmp_path: Path) -> None:
    """The job's code input is the CDK asset, one zip: the entrypoint unpacks and runs it."""
    from mdlc_constructs import processing
    from mdlc_constructs.functions import stage_code

    folder = Path(stage_code("processing_job", load_spec(FRAUD_SPEC).as_config()))
    code_input, code_dir = tmp_path / "input" / "code", tmp_path / "mdlc"
    code_input.mkdir(parents=True)
    with zipfile.ZipFile(code_input / "asset.zip", "w") as archive:
        for path in folder.rglob("*"):
            archive.write(path, path.relative_to(folder))
    bootstrap = processing.BOOTSTRAP.replace(processing.CODE_INPUT, str(code_input)).replace(
        processing.CODE_DIR, str(code_dir)
    )
    # --kind features without --date: the entry's own argument check answers,
    # so the code was unpacked, imported (with mdlc_core) and given the arguments.
    done = subprocess.run(
        [sys.executable, "-c", bootstrap, "--kind", "features"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--kind features needs --date" in done.stderr
    assert (code_dir / "mdlc_core" / "feature_job.py").is_file()
    assert (code_dir / "mdlc_config.json").is_file()


# -- the synthesized runner ----------------------------------------------------------------


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from aws_cdk.assertions import Template

    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.testing import make_app

    data = yaml.safe_load(FRAUD_SPEC.read_text())
    data["name"] = "fraudscale"
    for section in ("quality", "features", "monitoring"):
        data.setdefault(section, {})["runner"] = "processing"
    data["monitoring"]["processing"] = {"instance_type": "ml.r5.2xlarge"}
    spec = parse_spec(data, "fraudscale.yaml")
    outdir = tmp_path_factory.mktemp("processing.out")
    app = make_app(outdir=str(outdir))
    stack = MdlcModelStack(app, "Mdlc-fraudscale", spec=spec)
    try:
        assembly = app.synth()
    except Exception as error:  # jsii raises with the report's path
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    template = Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)
    return {"stack": stack, "template": template, "findings": read_findings(outdir)}


def _text(value: Any) -> str:
    """A CloudFormation string; references become ``<{'Ref': ...}>`` (no double
    quotes, so a state machine definition stays valid JSON)."""
    if isinstance(value, dict) and "Fn::Join" in value:
        return "".join(
            p if isinstance(p, str) else "<" + json.dumps(p).replace('"', "'") + ">"
            for p in value["Fn::Join"][1]
        )
    return value if isinstance(value, str) else json.dumps(value).replace('"', "'")


def _machine(template: Any, comment_part: str) -> str:
    for machine in template.find_resources("AWS::StepFunctions::StateMachine").values():
        text = _text(machine["Properties"]["DefinitionString"])
        if comment_part in text:
            return text
    raise AssertionError(f"no state machine mentions {comment_part!r}")


def _states(text: str) -> dict[str, Any]:
    """The states of a definition, with CloudFormation tokens as strings."""
    found: dict[str, Any] = {}

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            found[name] = state
            for branch in state.get("Branches", []):
                walk(branch["States"])

    walk(json.loads(text)["States"])
    return found


def _policies_of(template: Any, logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _logical(construct: Any) -> str:
    from aws_cdk import Stack

    return Stack.of(construct).get_logical_id(construct.node.default_child)


def test_cdk_nag_reports_nothing_unacknowledged(scaled: dict[str, Any]) -> None:
    assert scaled["findings"] == []


def test_data_workflow_runs_quality_and_features_as_processing_jobs(scaled: dict[str, Any]) -> None:
    text = _machine(scaled["template"], "source, check and featurize")
    assert text.count(":states:::sagemaker:createProcessingJob.sync") == 2
    assert "States.Array('--kind', 'quality', '--date', $.data.snapshot.date, " in text
    assert "States.Array('--kind', 'features', '--date', $.data.snapshot.date)" in text
    states = _states(text)
    # Each result lands where the Lambda runner's would, for the steps after it.
    assert states["DailyCheckQualityResult"]["ResultPath"] == "$.data.quality"
    assert states["DailyComputeFeaturesResult"]["ResultPath"] == "$.data.features"
    assert states["DailyComputeFeaturesResult"]["InputPath"] == "$.data.features.result"
    read = states["DailyComputeFeaturesReadResult"]
    assert read["Resource"].endswith(":states:::aws-sdk:s3:getObject")
    assert read["ResultSelector"] == {"result.$": "States.StringToJson($.Body)"}
    assert "TimeoutSeconds" in read
    assert "DailyCheckQualityPassed" in states  # the gate is the same
    # The batch function is not invoked: the job replaces it.
    assert "lambda:invoke" not in json.dumps(states["DailyComputeFeaturesJob"])


def test_jobs_are_encrypted_named_per_run_and_bounded(scaled: dict[str, Any]) -> None:
    stack = scaled["stack"]
    key = _logical(stack.data_lake.key)
    for comment, state, kind in (
        ("source, check and featurize", "DailyComputeFeatures", "features"),
        ("source, check and featurize", "DailyCheckQuality", "quality"),
        ("daily model monitoring as a Processing job", "RunJob", "monitoring"),
    ):
        states = _states(_machine(scaled["template"], comment))
        job = states[f"{state}Job"]
        params = job["Parameters"]
        cluster = params["ProcessingResources"]["ClusterConfig"]
        assert key in cluster["VolumeKmsKeyId"], kind
        assert key in params["ProcessingOutputConfig"]["KmsKeyId"], kind
        assert params["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
        assert job["TimeoutSeconds"] > params["StoppingCondition"]["MaxRuntimeInSeconds"]
        assert f"States.Format('fraudscale-{kind}-{{}}'" in states[state]["Parameters"][
            "job_name.$"]
        assert params["ProcessingJobName.$"] == f"{states[state]['ResultPath']}.job_name"
        assert cluster["InstanceType"] == (
            "ml.r5.2xlarge" if kind == "monitoring" else "ml.m5.4xlarge"
        )
        assert [i["InputName"] for i in params["ProcessingInputs"]] == ["code"]
    # The longest job name SageMaker may see: a 20-character model, the longest kind.
    from mdlc_constructs.processing import KINDS

    assert len(f"{'m' * 20}-{max(KINDS, key=len)}-") + 12 <= 63


def test_monitoring_runs_as_a_scheduled_workflow_that_notifies(scaled: dict[str, Any]) -> None:
    stack, template = scaled["stack"], scaled["template"]
    monitoring = stack.monitoring
    assert monitoring.function is None and monitoring.state_machine is not None
    text = _machine(template, "daily model monitoring as a Processing job")
    states = _states(text)
    assert states["Monitor"]["Catch"][0]["Next"] == "MonitoringRunNotify"
    assert "States.JsonToString($.event)" in states["RunJobJob"]["Parameters"][
        "AppSpecification"]["ContainerArguments.$"]
    environment = states["RunJobJob"]["Parameters"]["Environment"]
    assert environment["METRICS_NAMESPACE"] == "MDLC"
    assert environment["LABELS_PREFIX"] == "labels/fraudscale/"
    (rule,) = [
        r["Properties"] for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"].get("Description", "").endswith("daily model monitoring")
    ]  # fmt: skip
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": _logical(monitoring.state_machine)}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    handlers = json.dumps(template.find_resources("AWS::Lambda::Function"))
    assert "model_monitor" not in handlers


def test_job_roles_read_and_write_only_their_prefixes(scaled: dict[str, Any]) -> None:
    stack, template = scaled["stack"], scaled["template"]
    runners = {
        "quality": stack.preparation.quality.processing_runner,
        "features": stack.preparation.features.processing_runner,
        "monitoring": stack.monitoring.processing_runner,
    }
    namespaces = {"quality": "MDLC/DataQuality", "features": None, "monitoring": "MDLC"}
    for kind, runner in runners.items():
        statements = _policies_of(template, _logical(runner.role))
        text = json.dumps(statements)
        assert "s3:Delete" not in text and '"s3:*"' not in text, kind
        assert f"processing/fraudscale/{kind}/*" in text, kind
        metrics = [s for s in statements if "cloudwatch:PutMetricData" in json.dumps(s["Action"])]
        conditions = [s["Condition"] for s in metrics]
        assert {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}} in conditions
        expected = namespaces[kind]
        mine = [c for c in conditions if "StringEquals" in c]
        assert mine == ([{"StringEquals": {"cloudwatch:namespace": expected}}] if expected else [])
        role = template.find_resources("AWS::IAM::Role")[_logical(runner.role)]
        principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        assert principal["Principal"] == {"Service": "sagemaker.amazonaws.com"}
        assert "aws:SourceAccount" in json.dumps(principal["Condition"])
    features = json.dumps(_policies_of(template, _logical(runners["features"].role)))
    assert "datasets/fraudscale/*" in features and "features/fraudscale/*" in features
    assert "quality-reports" not in features
    # The quality job reads the earlier reports: which snapshot last passed.
    quality = _policies_of(template, _logical(runners["quality"].role))
    assert any("s3:GetObject*" in json.dumps(st["Action"])
               and "quality-reports/fraudscale/*" in json.dumps(st["Resource"]) for st in quality)


def test_workflows_may_start_only_their_own_jobs(scaled: dict[str, Any]) -> None:
    stack, template = scaled["stack"], scaled["template"]
    for machine, kinds in (
        (stack.preparation.state_machine, {"quality", "features"}),
        (stack.training.state_machine, {"quality", "features"}),
        (stack.monitoring.state_machine, {"monitoring"}),
    ):
        statements = _policies_of(template, _logical(machine.role))
        text = json.dumps(statements)
        assert "sagemaker:*" not in text
        jobs = {
            _text(resource).rsplit("processing-job/fraudscale-", 1)[1].rstrip("-*")
            for s in statements
            if "sagemaker:CreateProcessingJob" in s["Action"]
            for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        }
        assert jobs == kinds, machine.node.path
        passes = [s for s in statements if s["Action"] == "iam:PassRole"]
        passed = {
            json.dumps(resource)
            for s in passes
            for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
            if "ProcessingRole" in json.dumps(resource)
        }
        assert len(passed) == len(kinds)  # exactly the job roles of its own jobs
        assert all(
            s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
            for s in passes if "ProcessingRole" in json.dumps(s)
        )  # fmt: skip
        assert "StepFunctionsGetEventsForSageMakerProcessingJobsRule" in text


def test_the_processing_image_runs_the_python_mdlc_core_needs():
    """The job runs mdlc_core in SageMaker's image: its Python must satisfy the
    package's requires-python (the 1.2-1 image ran 3.9, where mdlc_core's first
    import failed), and the wheels vendored for it are built for that Python."""
    import re
    import tomllib
    from pathlib import Path

    from sagemaker.core import image_uris

    from mdlc_constructs.processing import FRAMEWORK
    from mdlc_constructs.wheels import PROCESSING_TARGET

    framework, version = FRAMEWORK
    config = image_uris.config_for_framework(framework)
    assert version in config["training"]["versions"]  # the SDK's own image data
    match = re.fullmatch(r".*-py3(\d+)", version)
    assert match, f"{version}: the image's Python is not named in its version"
    image_python = (3, int(match.group(1)))
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    lowest = tuple(int(p) for p in project["project"]["requires-python"].removeprefix(">=")
                   .split("."))
    assert image_python >= lowest
    assert PROCESSING_TARGET.python == f"3.{match.group(1)}"
    assert PROCESSING_TARGET.architecture == "x86_64"  # the image is published for x86_64 only
