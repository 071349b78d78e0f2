"""`mdlc lineage` explains decisions and versions of a real (short) simulation.

One 3-day run of the fraud model (a version trained by hand after day 1, a
second one trained when its alarm fires on day 3): every fact the command
prints is checked against what the run itself produced, the served model
re-scores the decision's features to its score, the manifest in the
simulated S3 carries the content hash, and the account mode, run against the
simulated account while it is up, gives the same answers.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mdlc_constructs.cli import UsageError, main
from mdlc_constructs.cli.lineage import AccountReader, explain_event, explain_version
from mdlc_constructs.local.algorithms import stand_in_for_image
from mdlc_constructs.sampling import sample, write_csv
from tests.test_stream_consumer import (  # noqa: F401 - aws_env is a fixture
    Context,
    StubRuntime,
    aws_env,
    order,
    record,
)

pytestmark = pytest.mark.slow

START = date(2026, 11, 1)
#: The commit the stack is deployed from in this run (what `-c mdlc:codeVersion` sets).
COMMIT = "5eed1ea9e0c0ffee"


class _Session:
    """boto3's Session as the account mode uses it, on the simulated account."""

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud

    def client(self, service: str) -> Any:
        return self.cloud.client(service)


@pytest.fixture(scope="module")
def run(synthesized, fraud_spec, tmp_path_factory):
    from mdlc_constructs.local.simulation import simulate

    root = tmp_path_factory.mktemp("lineage")
    orders = root / "orders.csv"
    write_csv(fraud_spec, sample(fraud_spec, days=3, start=START, rows_per_day=250, seed=7),
              orders)

    def deploy_commit(cloud):
        # As a stack synthesized with -c mdlc:codeVersion=COMMIT: the training
        # input and re-training functions carry it (mdlc_constructs.lineage).
        for function in cloud.lambdas.functions.values():
            if "CODE_VERSION" in function.environment:
                function.environment["CODE_VERSION"] = COMMIT

    account: dict[str, Any] = {}

    def read_account(simulation, day):
        # The last day, the account still up: the same questions, read-only boto3.
        if day != START.replace(day=3):
            return
        reader = AccountReader(fraud_spec.name, session=_Session(simulation.cloud),
                               decisions_table=simulation._function_env(
                                   "DECISIONS_TABLE")["DECISIONS_TABLE"])
        decisions = {d["event_id"]: d for d in simulation._decisions()[0]}
        account["reader"] = reader
        account["events"] = {event: explain_event(reader, event) for event in decisions}
        account["versions"] = {v: explain_version(reader, v) for v in (1, 2)}

    result = simulate(fraud_spec, orders, assembly=Path(synthesized[1].directory),
                      stack="Mdlc-fraud", out=root / "out", configure=deploy_commit,
                      on_day=read_account)
    return result, root / "out", account


def _lineage(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["lineage", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _decisions(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]


def _s3(out: Path, uri_or_key: str) -> Path:
    """An object of the run's buckets under out/s3 (by s3:// URI or by key in any bucket)."""
    if uri_or_key.startswith("s3://"):
        return out / "s3" / uri_or_key[5:]
    found = list((out / "s3").glob(f"*/{uri_or_key}"))
    assert len(found) == 1, (uri_or_key, found)
    return found[0]


def _training_row(out: Path, spec, event_id: str) -> dict[str, Any]:
    """The event's training row, as the report's parity check reads it (its first day)."""
    for path in sorted((out / "s3").glob(f"*/features/{spec.name}/dt=*/features.parquet")):
        for row in pq.read_table(path).to_pylist():
            if str(row[spec.data.event_id]) == event_id:
                return row
    raise AssertionError(f"no training row for {event_id}")


def _rescore(out: Path, lineage: dict[str, Any], spec, features: dict[str, Any],
             scratch: Path) -> float:
    """Load the version's model artifact from the run's S3 and score the features."""
    folder = scratch / f"v{lineage['version']}"
    if not folder.exists():
        body = _s3(out, lineage["training"]["model_data"]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(folder, filter="data")
    predictor = stand_in_for_image(lineage["training"]["serving_image"]).load(folder)
    row = ",".join(repr(float(features[c])) for c in spec.feature_columns)
    return float(predictor.predict_csv(row.encode()).decode().split()[0])


def test_a_blocked_event_is_explained_end_to_end(run, fraud_spec, capsys, tmp_path):
    result, out, _ = run
    blocked = next(d for d in _decisions(out) if d["action"] == "block")
    code, text, _ = _lineage(capsys, str(out), "--event", blocked["event_id"], "--json")
    assert code == 0
    answer = json.loads(text)
    decision, lineage = answer["decision"], answer["lineage"]
    assert (decision["rule"], decision["action"]) == ("block_high_risk", "block")
    assert decision["score"] >= 0.9
    # The exact features scored are the event's training row (what parity compared).
    assert result.report["feature_parity"]["mismatches"] == 0
    row = _training_row(out, fraud_spec, blocked["event_id"])
    assert set(decision["features"]) == set(fraud_spec.feature_columns)
    for column in fraud_spec.feature_columns:
        assert math.isclose(decision["features"][column], row[column], rel_tol=1e-9), column
    # The version is a registered one, and its model gives this score to these features.
    assert lineage["version"] in [v["version"] for v in result.report["model_versions"]]
    # The consumer wrote the package the endpoint served (its describe calls allowed).
    assert answer["scored_by"] == {"version": lineage["version"], "how": "recorded in the "
                                   "decision", "recorded": lineage["model_package_arn"]}
    assert result.report["denied_calls"] == []
    assert math.isclose(_rescore(out, lineage, fraud_spec, decision["features"], tmp_path),
                        decision["score"], rel_tol=1e-6)
    # Its data: the manifest in the run's S3 carries the recorded hash and prefix.
    manifest = json.loads(_s3(out, lineage["dataset"]["manifest_key"]).read_text())
    assert manifest["content_hash"] == lineage["dataset"]["content_hash"]
    assert manifest["snapshot_prefix"] == lineage["dataset"]["snapshot_prefix"]
    assert manifest["date"] == lineage["dataset"]["date"]
    assert lineage["dataset"]["manifest_check"].startswith("matches s3/")
    assert _s3(out, lineage["feature_snapshot"]).is_file()
    # What its drift is measured against: its own training job's features.
    assert lineage["drift_baseline"].endswith(
        f"/baselines/fraud/jobs/{lineage['training']['job']}/features.parquet")
    assert _s3(out, lineage["drift_baseline"]).is_file()
    # Its code and training.
    assert lineage["code_version"] == result.report["code_version"] == COMMIT
    assert lineage["training"]["job"] in {v["training_job"]
                                          for v in result.report["model_versions"]}
    assert "sagemaker-xgboost" in lineage["training"]["algorithm_image"]
    assert lineage["training"]["hyperparameters"]["objective"] == "binary:logistic"
    assert lineage["evaluation"]["metric"] == fraud_spec.training.evaluation.metric
    assert lineage["evaluation"]["value"] >= lineage["evaluation"]["threshold"]
    assert lineage["approval"]["status"] == "Approved"
    # The human answer says the same.
    code, text, _ = _lineage(capsys, str(out), "--event", blocked["event_id"])
    assert code == 0
    assert text.startswith(f"event {blocked['event_id']}: block by rule block_high_risk")
    assert f"code commit:       {COMMIT}" in text
    assert lineage["dataset"]["content_hash"] in text


def test_each_decision_is_given_the_version_whose_model_gives_its_score(run, fraud_spec,
                                                                        tmp_path):
    result, out, _ = run
    from mdlc_constructs.cli.lineage import DirectoryReader

    reader = DirectoryReader(out)
    deployed = [d for d in result.report["endpoint"]["deployments"]
                if d["outcome"] == "deployed"]
    assert [d["version"] for d in deployed] == [1, 2], "the run must serve two versions"
    by_version: dict[int, list[dict[str, Any]]] = {}
    for decision in _decisions(out):
        answer = explain_event(reader, decision["event_id"])
        by_version.setdefault(answer["lineage"]["version"], []).append(answer)
        # A decision that named only the variant would be resolved to the same
        # version from the endpoint's deployments (the stand-in shifts at once).
        moment = datetime.fromisoformat(decision["decided_at"].replace("Z", "+00:00"))
        assert reader.serving_version_at(moment)[0] == answer["lineage"]["version"], decision
    assert set(by_version) == {1, 2}
    for answers in by_version.values():
        for answer in answers[::25]:
            score = _rescore(out, answer["lineage"], fraud_spec,
                             answer["decision"]["features"], tmp_path)
            assert math.isclose(score, answer["decision"]["score"], rel_tol=1e-6), answer


def test_a_version_is_explained_with_its_decisions(run, capsys):
    result, out, _ = run
    counts = {}
    for version in (1, 2):
        code, text, _ = _lineage(capsys, str(out), "--version", str(version), "--json")
        assert code == 0
        answer = json.loads(text)
        reported = next(v for v in result.report["model_versions"] if v["version"] == version)
        assert answer["lineage"]["training"]["job"] == reported["training_job"]
        assert answer["lineage"]["dataset"]["date"] == reported["dataset_date"]
        assert answer["lineage"]["evaluation"]["metrics"] == reported["metrics"]
        counts[version] = answer["decisions"]["stream"]
    assert counts[1] > 0 and counts[2] > 0
    assert sum(counts.values()) == result.report["decisions"]["stream"]["total"]
    code, text, _ = _lineage(capsys, str(out), "--version", "2")
    assert code == 0 and text.startswith("version 2: arn:aws:sagemaker:")
    assert f"decisions:         {counts[2]} stream decisions" in text


def test_the_account_mode_answers_as_the_output_directory(run):
    _, out, account = run
    from mdlc_constructs.cli.lineage import DirectoryReader

    reader = DirectoryReader(out)
    assert account["events"]
    for event, answer in account["events"].items():
        expected = explain_event(reader, event)
        assert answer["decision"]["features"] == pytest.approx(expected["decision"]["features"])
        assert answer["decision"]["rule"] == expected["decision"]["rule"]
        assert answer["scored_by"] == expected["scored_by"]
        for lineage in (answer["lineage"], expected["lineage"]):
            lineage["dataset"].pop("manifest_check")
        assert answer["lineage"] == expected["lineage"]
    for version, answer in account["versions"].items():
        expected = explain_version(reader, version)["lineage"]
        assert "not checked in --account mode" in answer["lineage"]["dataset"].pop(
            "manifest_check")
        expected["dataset"].pop("manifest_check")
        assert answer["lineage"] == expected
        assert answer["decisions"]["stream"] is None


def test_what_is_not_there_is_named_with_what_is(run, capsys, tmp_path):
    _, out, _ = run
    code, _, err = _lineage(capsys, str(out), "--version", "9")
    assert code == 2
    assert "no version 9" in err and "known versions: v1, v2" in err
    code, _, err = _lineage(capsys, str(out), "--event", "order-nope")
    assert code == 2
    first = _decisions(out)[0]["event_id"]
    assert "no decision for event 'order-nope'" in err and first in err
    code, _, err = _lineage(capsys, str(tmp_path), "--version", "1")
    assert code == 2 and "model_versions.json: missing" in err
    code, _, err = _lineage(capsys, "--version", "1", "--account")
    assert code == 2 and "--account needs --model" in err


IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def _moto_version(sagemaker: Any, version: int) -> str:
    """Version ``version`` of the group mdlc-fraud, with its model and endpoint
    configuration named as the deployment names them; returns the package ARN."""
    if version == 1:
        sagemaker.create_model_package_group(ModelPackageGroupName="mdlc-fraud")
    package = sagemaker.create_model_package(
        ModelPackageGroupName="mdlc-fraud", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": IMAGE,
                                                "ModelDataUrl": "s3://artifacts/m.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        MetadataProperties={"CommitId": COMMIT},
        CustomerMetadataProperties={"mdlc:training-job": f"job-{version}",
                                    "mdlc:dataset-content-hash": "ab" * 32,
                                    "mdlc:evaluation-metric": "validation:auc",
                                    "mdlc:evaluation-value": "0.91",
                                    "mdlc:evaluation-threshold": "0.8"})["ModelPackageArn"]
    name = f"mdlc-fraud-v{version}-0a1b2c3d"
    sagemaker.create_model(ModelName=name, PrimaryContainer={"ModelPackageName": package},
                           ExecutionRoleArn="arn:aws:iam::123456789012:role/r")
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    return package


def _moto_account(*, decided_at: str, model_version: str = "variant:AllTraffic") -> Any:
    """A model package group with one version, its endpoint and a decision, in moto."""
    import boto3

    session = boto3.Session(region_name="us-east-1")
    sagemaker, dynamodb = session.client("sagemaker"), session.client("dynamodb")
    _moto_version(sagemaker, 1)
    sagemaker.create_endpoint(EndpointName="mdlc-fraud",
                              EndpointConfigName="mdlc-fraud-v1-0a1b2c3d")
    dynamodb.create_table(TableName="decisions", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "event_id",
                                                 "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}])
    dynamodb.put_item(TableName="decisions", Item={
        "event_id": {"S": "e-1"}, "model_version": {"S": model_version},
        "rule_id": {"S": "block_high_risk"}, "action": {"S": "block"},
        "score": {"N": "0.97"}, "decided_at": {"S": decided_at},
        "features": {"M": {"order_amount": {"N": "684.84"}}}})
    return session


def test_the_account_mode_reads_moto_model_packages_and_the_decision_table():
    from moto import mock_aws

    with mock_aws():
        session = _moto_account(decided_at="2999-01-01T00:00:00.000Z")
        reader = AccountReader("fraud", session=session, decisions_table="decisions")
        answer = explain_event(reader, "e-1")
        assert answer["decision"]["features"] == {"order_amount": 684.84}
        assert answer["scored_by"]["version"] == 1
        assert "has not changed since" in answer["scored_by"]["how"]
        lineage = answer["lineage"]
        assert lineage["code_version"] == COMMIT  # MetadataProperties.CommitId
        assert lineage["dataset"]["content_hash"] == "ab" * 32
        assert lineage["evaluation"]["value"] == 0.91
        assert lineage["training"]["hyperparameters"] == {}  # the job is gone: not made up
        with pytest.raises(UsageError, match="no decision for event 'e-2' in the account"):
            explain_event(reader, "e-2")
        with pytest.raises(UsageError, match="known versions: v1"):
            explain_version(reader, 3)
        no_table = AccountReader("fraud", session=session)
        with pytest.raises(UsageError, match="--decisions-table"):
            explain_event(no_table, "e-1")


def test_the_account_mode_does_not_guess_across_a_later_deployment():
    from moto import mock_aws

    with mock_aws():
        # Decided before the endpoint last changed: which version served is unknown.
        session = _moto_account(decided_at="2001-01-01T00:00:00.000Z")
        answer = explain_event(AccountReader("fraud", session=session,
                                             decisions_table="decisions"), "e-1")
        assert answer["scored_by"]["version"] is None and answer["lineage"] is None
        assert "keeps no history" in answer["scored_by"]["how"]
        # Unless the decision names its version itself.
        session.client("dynamodb").update_item(
            TableName="decisions", Key={"event_id": {"S": "e-1"}},
            UpdateExpression="SET model_version = :v", ExpressionAttributeValues={
                ":v": {"S": "arn:aws:sagemaker:us-east-1:123456789012:model-package/"
                            "mdlc-fraud/1"}})
        answer = explain_event(AccountReader("fraud", session=session,
                                             decisions_table="decisions"), "e-1")
        assert answer["scored_by"] == {"version": 1, "recorded": answer["scored_by"]["recorded"],
                                       "how": "recorded in the decision"}


def test_a_manifest_that_does_not_carry_the_recorded_hash_is_called_out(run, capsys, tmp_path):
    _, out, _ = run
    import shutil

    for name in ("model_versions.json", "decisions.jsonl", "report.json"):
        shutil.copy(out / name, tmp_path / name)
    key = json.loads(_lineage(capsys, str(out), "--version", "1", "--json")[1])[
        "lineage"]["dataset"]["manifest_key"]
    source = _s3(out, key)
    target = tmp_path / source.relative_to(out)
    target.parent.mkdir(parents=True)
    manifest = json.loads(source.read_text())
    manifest["content_hash"] = "0" * 64  # the snapshot was rewritten after training
    target.write_text(json.dumps(manifest))
    code, text, _ = _lineage(capsys, str(tmp_path), "--version", "1")
    assert code == 0
    assert f"DIFFERS from {target.relative_to(tmp_path)} ({'0' * 64})" in text


def test_the_consumer_names_the_package_the_endpoint_serves(aws_env, monkeypatch):  # noqa: F811
    """Without MODEL_PACKAGE_VERSION the stream consumer writes the served package's
    ARN, looks it up once per TTL, and keeps the last answer when a lookup fails."""
    from tests.lambda_loader import load_handler

    monkeypatch.delenv("MODEL_PACKAGE_VERSION")
    monkeypatch.setenv("ENDPOINT_NAME", "mdlc-fraud")
    sagemaker = boto3_client("sagemaker")
    first = _moto_version(sagemaker, 1)
    sagemaker.create_endpoint(EndpointName="mdlc-fraud",
                              EndpointConfigName="mdlc-fraud-v1-0a1b2c3d")
    module = load_handler("stream_consumer")
    module.SCORER.scorer.client = StubRuntime()
    clock = {"now": 1_000_000.0}
    module.SERVING.clock = lambda: clock["now"]

    def decide(event_id: str) -> str:
        response = module.handler({"Records": [record(1, order(event_id, 950.0))]}, Context())
        assert response == {"batchItemFailures": []}
        item = aws_env["ddb"].get_item(TableName="decisions",
                                       Key={"event_id": {"S": event_id}})["Item"]
        return item["model_version"]["S"]

    assert decide("o-1") == first
    # A deployment of v2: within the TTL the cached v1 is still named (the caveat).
    second = _moto_version(sagemaker, 2)
    # (moto has no UpdateEndpoint: the endpoint is re-created on the new configuration.)
    sagemaker.delete_endpoint(EndpointName="mdlc-fraud")
    sagemaker.create_endpoint(EndpointName="mdlc-fraud",
                              EndpointConfigName="mdlc-fraud-v2-0a1b2c3d")
    clock["now"] += 59
    assert decide("o-2") == first
    clock["now"] += 2
    assert decide("o-3") == second
    # A failing lookup (throttled, denied) keeps the last version, never fails the batch.
    clock["now"] += 61
    sagemaker.delete_model(ModelName="mdlc-fraud-v2-0a1b2c3d")
    assert decide("o-4") == second
    # With nothing found yet, the decision names the variant, as before.
    module.SERVING._found, module.SERVING._at = None, None
    assert decide("o-5") == "variant:blue"  # the stub endpoint's variant


def boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1")


def test_the_state_machine_path_names_the_package_the_endpoint_serves(aws_env,  # noqa: F811
                                                                       monkeypatch):
    from tests.lambda_loader import load_handler

    monkeypatch.delenv("MODEL_PACKAGE_VERSION")
    monkeypatch.setenv("ENDPOINT_NAME", "mdlc-fraud")
    sagemaker = boto3_client("sagemaker")
    module = load_handler("integration_step")
    runtime = StubRuntime()
    module._scorer().client = runtime
    state = module.handler({"step": "collect_features", "event": order("o-1", 650.0)},
                           Context())
    # No endpoint to describe yet: the variant, and the step still succeeds.
    assert module.handler({**state, "step": "run_inference"}, Context())[
        "model_version"] == "variant:blue"
    module._serving()._at = None  # as after the TTL
    package = _moto_version(sagemaker, 1)
    sagemaker.create_endpoint(EndpointName="mdlc-fraud",
                              EndpointConfigName="mdlc-fraud-v1-0a1b2c3d")
    decided = module.handler({**state, "step": "run_inference"}, Context())
    assert decided["model_version"] == package
    decision = module.handler({**decided, "step": "execute_rules"}, Context())["decision"]
    assert decision["model_version"] == package


def test_the_account_mode_finds_the_decision_table_in_the_models_stack():
    """--stack: the decision log is the stack's Integration/Decisions table, found by
    its logical id (CDK's hash suffix aside); anything but one such table is named.
    botocore's Stubber checks the calls and answers against the CloudFormation model."""
    import boto3
    from botocore.stub import Stubber

    from mdlc_constructs.cli.lineage import decisions_table_of

    client = boto3.client("cloudformation", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")

    def summary(logical: str, physical: str, kind: str = "AWS::DynamoDB::Table") -> dict:
        return {"LogicalResourceId": logical, "PhysicalResourceId": physical,
                "ResourceType": kind, "LastUpdatedTimestamp": "2026-11-01T00:00:00Z",
                "ResourceStatus": "CREATE_COMPLETE"}

    class Session:
        def client(self, service: str) -> Any:
            assert service == "cloudformation"
            return client

    with Stubber(client) as stub:
        stub.add_response("list_stack_resources", {"StackResourceSummaries": [
            summary("PreparationFeaturesOnline0A1B2C3D", "features"),
            summary("IntegrationDecisionsQueue11AA22BB", "q", "AWS::SQS::Queue")],
            "NextToken": "page-2"}, {"StackName": "Mdlc-fraud"})
        stub.add_response("list_stack_resources", {"StackResourceSummaries": [
            summary("IntegrationDecisions4EEB2B00", "mdlc-fraud-decisions-x1")]},
            {"StackName": "Mdlc-fraud", "NextToken": "page-2"})
        assert decisions_table_of("Mdlc-fraud", session=Session()) == "mdlc-fraud-decisions-x1"
        stub.add_response("list_stack_resources", {"StackResourceSummaries": [
            summary("PreparationFeaturesOnline0A1B2C3D", "features")]}, {"StackName": "Other"})
        with pytest.raises(UsageError, match=r"stack 'Other' has 0 decision log table\(s\).*"
                                             r"--decisions-table"):
            decisions_table_of("Other", session=Session())
        stub.assert_no_pending_responses()
