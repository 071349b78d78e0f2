"""TrainingWorkflow: definition shape, security, and execution of its own logic in moto.

Three stacks in one app, synthesized once for the module with both cdk-nag
packs: the workflow as shipped (with a stand-in data preparation chain), a
test subclass whose SageMaker steps are Pass stand-ins (executed in moto's
Step Functions interpreter), and the custom-evaluation example.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from aws_cdk.assertions import Template

ROOT = Path(__file__).resolve().parents[1]
FEATURES_KEY = "features/fraud/dt=2026-11-01/features.parquet"


class StandInPreparation:
    """A :class:`PreparationSteps` whose chain is :func:`stand_in_prepare`."""

    def chain(self, scope, prefix):
        return stand_in_prepare(scope, prefix)

    def grant_to(self, machine):
        from aws_cdk import aws_iam as iam

        return iam.Grant.drop(machine, "a Pass state needs nothing")


def stand_in_prepare(scope, construct_id) -> sfn.IChainable:
    """The data preparation chain's contract: ``$.data`` with snapshot, quality, features."""
    return sfn.Pass(
        scope,
        construct_id,
        result=sfn.Result.from_object(
            {
                "snapshot": {
                    "date": "2026-11-01",
                    "version": "v1",
                    "snapshot_prefix": "datasets/fraud/dt=2026-11-01/v1/",
                    "manifest_key": "datasets/fraud/dt=2026-11-01/v1/manifest.json",
                    "rows": 100,
                    "content_hash": "sha256:abc",
                },
                "quality": {"passed": True, "violations": [], "report_uri": "s3://q/r.json"},
                "features": {"date": "2026-11-01", "features_key": FEATURES_KEY,
                             "entities_key": "e", "rows": 100},
            }
        ),
        result_path="$.data",
    )


def _definition(template: dict[str, Any], logical_id: str | None = None) -> tuple[str, dict]:
    machines = {
        k: r for k, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    }
    logical_id = logical_id or next(k for k in machines if k.startswith("TrainingStateMachine"))
    body = machines[logical_id]["Properties"]["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return logical_id, parts


def _render(parts: list[Any], refs: dict[str, str]) -> dict[str, Any]:
    """The ASL with CloudFormation references replaced (for moto)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif "Ref" in part and part["Ref"] in refs:
            out.append(refs[part["Ref"]])
        elif "Ref" in part and part["Ref"] == "AWS::Partition":
            out.append("aws")
        else:
            out.append("<token>")
    return json.loads("".join(out))


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory, fraud_spec):
    sys.path.insert(0, str(ROOT))
    from examples.team_fraud.stack import TeamTrainingWorkflow
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.testing import make_app
    from mdlc_constructs.training import TrainingWorkflow
    from tests.training_fixtures import TrainingTestStack

    class StandInWorkflow(TrainingWorkflow):
        """SageMaker and the input Lambda replaced: moto cannot run them."""

        def build_input_step(self):
            return sfn.Pass(self, "PrepareTrainingInput", input_path="$.stand_in.training",
                            result_path="$.training")

        def build_training_step(self):
            # A DynamoDB read of a missing table fails like a failed job would.
            fails = tasks.DynamoGetItem(
                self, "TrainFails", table=_MissingTable.of(self),
                key={"model": tasks.DynamoAttributeValue.from_string("x")},
                result_path="$.ignored",
            )
            self.catch(fails)
            ok = sfn.Pass(self, "Train", input_path="$.stand_in.job", result_path="$.job")
            return (
                sfn.Choice(self, "TrainOutcome")
                .when(sfn.Condition.boolean_equals("$.stand_in.fail", True), fails)
                .otherwise(ok)
                .afterwards()
            )

        def build_registration(self):
            return sfn.Pass(
                self, "Register",
                parameters={"model_package_arn": "arn:aws:sagemaker:eu-west-1:123456789012:"
                            "model-package/mdlc-fraud/1",
                            "image": self.algorithm.image_uri,
                            # What the real Register reads besides the lineage.
                            "client_token": sfn.JsonPath.string_at("$.training.client_token"),
                            "lineage": self.lineage_properties()},
                result_path="$.registration",
            )

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = make_app(outdir=str(outdir))
    shipped = TrainingTestStack(app, "Training-shipped")
    workflow = TrainingWorkflow(shipped, "Training", spec=fraud_spec, data_lake=shipped.data_lake,
                                topic=shipped.topic, preparation=StandInPreparation())
    stand_in = TrainingTestStack(app, "Training-standin")
    standin_workflow = StandInWorkflow(stand_in, "Training", spec=fraud_spec,
                                       data_lake=stand_in.data_lake, topic=stand_in.topic)
    example = TrainingTestStack(app, "Training-example")
    TeamTrainingWorkflow(example, "Training", spec=fraud_spec, data_lake=example.data_lake,
                         topic=example.topic, preparation=StandInPreparation())
    try:
        assembly = app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    templates = {
        name: assembly.get_stack_by_name(name).template
        for name in ("Training-shipped", "Training-standin", "Training-example")
    }
    return {"templates": templates, "workflow": workflow, "standin": standin_workflow,
            "shipped": shipped, "standin_stack": stand_in}


class _MissingTable:
    @staticmethod
    def of(scope):
        from aws_cdk import aws_dynamodb as dynamodb

        return dynamodb.Table.from_table_name(scope, "MissingTable", "no-such-table")


@pytest.fixture(scope="module")
def shipped(synthesized):
    template = synthesized["templates"]["Training-shipped"]
    _, parts = _definition(template)
    return template, _render(parts, {})


# -- definition shape -------------------------------------------------------------


def test_steps_in_order(shipped):
    _, asl = shipped
    states = asl["States"]
    path, name = [], asl["StartAt"]
    while name and states[name]["Type"] not in ("Choice", "Succeed", "Fail"):
        path.append(name)
        name = states[name].get("Next")
    assert path == ["PrepareData", "PrepareTrainingInput", "Train"]
    assert name == "MetricsReported"
    gate = states["MeetsThreshold"]
    rule = gate["Choices"][0]
    assert rule["Next"] == "Register"
    assert gate["Default"] == "NotifyBelowThreshold"
    assert {"Variable": "$.evaluation.value",
            "NumericGreaterThanEqualsPath": "$.training.parameters.threshold"} in rule["And"]
    assert states["Register"]["Next"] == "NotifyRegistered"
    assert states["NotifyRegistered"]["Next"] == "Registered"
    assert states["NotifyBelowThreshold"]["Next"] == "BelowThreshold"
    assert states["BelowThreshold"]["Error"] == "ModelBelowThreshold"


def test_every_task_catches_into_the_failure_notification(shipped):
    _, asl = shipped
    for name, state in asl["States"].items():
        if state["Type"] != "Task" or name == "TrainingNotify":
            continue
        assert state["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TrainingNotify"}
        ], name
        assert "TimeoutSeconds" in state, f"{name} has no timeout"
    assert asl["States"]["TrainingNotify"]["Next"] == "TrainingFailed"
    assert asl["States"]["MetricNotReported"]["Next"] == "TrainingNotify"


def test_training_job(shipped, fraud_spec):
    _, asl = shipped
    train = asl["States"]["Train"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    p = train["Parameters"]
    assert p["TrainingJobName.$"] == "$.training.job_name"
    assert p["HyperParameters.$"] == "$.training.parameters.hyperparameters"
    assert p["ResourceConfig"]["InstanceType.$"] == "$.training.parameters.instance_type"
    assert p["ResourceConfig"]["VolumeKmsKeyId"] == "<token>"
    assert p["OutputDataConfig"]["KmsKeyId"] == "<token>"
    assert p["EnableNetworkIsolation"] is True
    assert [c["ChannelName"] for c in p["InputDataConfig"]] == ["train", "validation"]
    assert p["StoppingCondition"] == {"MaxRuntimeInSeconds": 120 * 60}
    assert "EnableManagedSpotTraining" not in p  # fraud.yaml does not ask for spot
    assert train["TimeoutSeconds"] == (120 + 30) * 60
    retry = train["Retry"]
    assert len(retry) == 1 and "States.ALL" not in retry[0]["ErrorEquals"]
    assert "SageMaker.ThrottlingException" in retry[0]["ErrorEquals"]


def test_registration_records_lineage(shipped):
    _, asl = shipped
    register = asl["States"]["Register"]
    assert register["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createModelPackage"
    p = register["Parameters"]
    assert p["ModelPackageGroupName"] == "mdlc-fraud"
    assert p["ModelApprovalStatus"] == "PendingManualApproval"
    assert p["ClientToken.$"] == "$.training.client_token"
    meta = p["CustomerMetadataProperties"]
    assert meta["mdlc:dataset-snapshot.$"] == "$.training.lineage.dataset_snapshot"
    assert meta["mdlc:dataset-manifest.$"] == "$.training.lineage.dataset_manifest"
    assert meta["mdlc:dataset-content-hash.$"] == "$.training.lineage.dataset_content_hash"
    assert meta["mdlc:feature-snapshot.$"] == "$.training.lineage.feature_snapshot"
    assert meta["mdlc:training-job.$"] == "$.job.TrainingJobName"
    assert meta["mdlc:evaluation-metric.$"] == "$.evaluation.metric"
    assert meta["mdlc:evaluation-value.$"] == "States.Format('{}', $.evaluation.value)"
    assert meta["mdlc:code-version.$"] == "$.training.lineage.code_version"
    container = p["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl.$"] == "$.job.ModelArtifacts.S3ModelArtifacts"


def test_machine_logging_tracing_timeout(shipped):
    template, _ = shipped
    t = Template.from_json(template)
    machine = next(iter(t.find_resources("AWS::StepFunctions::StateMachine").values()))
    props = machine["Properties"]
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    assert _render(_definition(template)[1], {})["TimeoutSeconds"] == (150 + 90) * 60


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_pass_role_only_for_the_training_role(shipped):
    template, _ = shipped
    passes = [s for s in _statements(template) if "iam:PassRole" in _actions(s)]
    assert len(passes) == 1
    assert _actions(passes[0]) == ["iam:PassRole"]
    resource = passes[0]["Resource"]
    assert resource["Fn::GetAtt"][0].startswith("TrainingTrainingRole")
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def test_sagemaker_actions_scoped_to_this_model(shipped):
    template, _ = shipped
    for statement in _statements(template):
        if not any(a.startswith("sagemaker:") for a in _actions(statement)):
            continue
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        text = json.dumps(resources)
        assert text.count('"Fn::Join"') == len(resources), text
        for resource in resources:
            tail = resource["Fn::Join"][1][-1]
            assert tail in (
                ":training-job/mdlc-fraud-*",
                ":model-package-group/mdlc-fraud",
                ":model-package/mdlc-fraud/*",
            ), tail


def test_model_package_group_retained(shipped):
    template, _ = shipped
    t = Template.from_json(template)
    group = next(iter(t.find_resources("AWS::SageMaker::ModelPackageGroup").values()))
    assert group["Properties"]["ModelPackageGroupName"] == "mdlc-fraud"
    assert group["DeletionPolicy"] == "Retain"


def test_timeouts_are_notified(shipped):
    template, _ = shipped
    t = Template.from_json(template)
    rules = t.find_resources("AWS::Events::Rule")
    patterns = [r["Properties"].get("EventPattern", {}) for r in rules.values()]
    assert any(p.get("detail", {}).get("status") == ["TIMED_OUT"] for p in patterns)


def test_attributes(synthesized):
    workflow = synthesized["workflow"]
    assert workflow.model_package_group_name == "mdlc-fraud"
    assert workflow.job_prefix == "mdlc-fraud-"
    assert workflow.training_role is not None
    assert workflow.metric_failed().metric_name == "ExecutionsFailed"


# -- the example subclass -----------------------------------------------------------


def test_custom_evaluation_replaces_the_default(synthesized):
    template = synthesized["templates"]["Training-example"]
    asl = _render(_definition(template)[1], {})
    states = asl["States"]
    assert "MetricsReported" not in states and "SelectMetric" not in states
    assert states["Train"]["Next"] == "EvaluateGeneralization"
    assert states["EvaluateGeneralization"]["Next"] == "MeetsThreshold"
    assert states["EvaluateGeneralization"]["ResultPath"] == "$.evaluation"
    assert states["EvaluateGeneralization"]["Catch"][0]["Next"] == "TrainingNotify"


def test_hooks_are_called_in_the_order_the_workflow_runs_them(fraud_spec, tmp_path):
    """A hook may use what an earlier step's hook made: build_registration sees the
    input function build_input_step created (it used to run first)."""
    from mdlc_constructs.testing import make_app
    from mdlc_constructs.training import TrainingWorkflow
    from tests.training_fixtures import TrainingTestStack

    calls: list[str] = []

    class Recording(TrainingWorkflow):
        def build_input_step(self):
            calls.append("input")
            return super().build_input_step()

        def build_training_step(self):
            calls.append("training")
            return super().build_training_step()

        def build_evaluation(self):
            calls.append("evaluation")
            return super().build_evaluation()

        def build_registration(self):
            calls.append("registration")
            assert self.input_function is not None  # AttributeError before the fix
            return super().build_registration()

        def build_gate(self, *, passed, failed):
            calls.append("gate")
            return super().build_gate(passed=passed, failed=failed)

    stack = TrainingTestStack(make_app(outdir=str(tmp_path)), "Training-order")
    Recording(stack, "Training", spec=fraud_spec, data_lake=stack.data_lake, topic=stack.topic,
              preparation=StandInPreparation())
    assert calls == ["input", "training", "evaluation", "registration", "gate"]


# -- execution in moto --------------------------------------------------------------


def _job(training: dict[str, Any], value: float | None) -> dict[str, Any]:
    """DescribeTrainingJob as SageMaker reports it (moto cannot run the job)."""
    job = {
        "TrainingJobName": training["job_name"],
        "ModelArtifacts": {"S3ModelArtifacts": f"{training['output_uri']}m/model.tar.gz"},
    }
    if value is not None:
        job["FinalMetricDataList"] = [
            {"MetricName": "train:auc", "Value": 0.99},
            {"MetricName": "validation:auc", "Value": value},
        ]
    return job


@pytest.fixture(scope="module")
def trainings(fraud_spec, fraud_config_file) -> dict[str, Any]:
    """What PrepareTrainingInput returns, from the real handler on the real
    feature step's output (moto), for the spec's threshold and for a run whose
    input overrides it."""
    from tests import producers

    execution = "arn:aws:states:eu-west-1:123456789012:execution:training:run"
    return producers.training_outputs(fraud_spec, fraud_config_file, {
        "default": (f"{execution}-1", {"code_version": "abc123"}),
        "threshold_0.6": (f"{execution}-2", {"code_version": "abc123", "threshold": 0.6}),
    })


@pytest.fixture(scope="module")
def run(synthesized, trainings):
    import boto3
    from moto import mock_aws

    template = synthesized["templates"]["Training-standin"]
    topic_id = next(
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::SNS::Topic"
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        region = "eu-west-1"
        sns = boto3.client("sns", region_name=region)
        sqs = boto3.client("sqs", region_name=region)
        topic = sns.create_topic(Name="notifications")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                      Attributes={"RawMessageDelivery": "true"})
        asl = _render(_definition(template)[1], {topic_id: topic})
        client = boto3.client("stepfunctions", region_name=region)
        machine = client.create_state_machine(
            name="training", definition=json.dumps(asl),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]

        runs: list[dict[str, Any]] = []

        def execute(stand_in: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            import time

            runs.append(stand_in)
            arn = client.start_execution(
                stateMachineArn=machine, name=f"run-{len(runs)}",
                input=json.dumps({"stand_in": stand_in})
            )["executionArn"]
            for _ in range(200):
                result = client.describe_execution(executionArn=arn)
                if result["status"] != "RUNNING":
                    break
                time.sleep(0.05)
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
                "Messages", [])
            for m in messages:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return result, [json.loads(m["Body"]) for m in messages]

        yield execute


def test_gate_passes_and_registers(run, trainings):
    training = trainings["default"]
    result, messages = run({"training": training, "job": _job(training, 0.91), "fail": False})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["evaluation"] == {"metric": "validation:auc", "source": "FinalMetricDataList",
                                    "value": 0.91}
    assert output["registration"]["client_token"] == training["client_token"]
    lineage = output["registration"]["lineage"]
    assert lineage["mdlc:evaluation-value"] == "0.91"
    assert lineage["mdlc:code-version"] == "abc123"
    assert lineage["mdlc:training-job"] == training["job_name"]
    assert lineage["mdlc:feature-snapshot"] == trainings["data"]["features"]["features_key"]
    assert [m["model_package"] for m in messages] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:model-package/mdlc-fraud/1"]


def test_gate_fails_below_threshold_without_registering(run, trainings):
    training = trainings["default"]
    result, messages = run({"training": training, "job": _job(training, 0.7), "fail": False})
    assert result["status"] == "FAILED"
    assert result.get("error") == "ModelBelowThreshold"
    assert [m["result"] for m in messages] == ["below threshold"]
    assert messages[0]["value"] == 0.7 and messages[0]["threshold"] == 0.8


def test_threshold_from_the_input(run, trainings):
    training = trainings["threshold_0.6"]
    assert training["parameters"]["threshold"] == 0.6
    result, _ = run({"training": training, "job": _job(training, 0.7), "fail": False})
    assert result["status"] == "SUCCEEDED"


def test_metric_not_reported_notifies_and_fails(run, trainings):
    training = trainings["default"]
    result, messages = run({"training": training, "job": _job(training, None), "fail": False})
    assert result["status"] == "FAILED"
    assert [m["error"] for m in messages] == ["MetricNotReported"]


def test_failed_step_notifies_with_the_reason(run, trainings):
    training = trainings["default"]
    result, messages = run({"training": training, "job": _job(training, 0.9), "fail": True})
    assert result["status"] == "FAILED"
    assert result.get("error") == "TrainingFailed"
    assert len(messages) == 1
    assert messages[0]["subject"] == "MDLC fraud: training failed"
    assert messages[0]["error"]
