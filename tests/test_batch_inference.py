"""BatchInferenceWorkflow: synthesized once (cdk-nag on); the workflow's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template


@pytest.fixture(scope="module")
def template(tmp_path_factory, fraud_spec) -> Template:
    from aws_cdk import Stack
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.batch_inference import BatchInferenceWorkflow
    from mdlc_constructs.compliance import acknowledge, read_findings
    from mdlc_constructs.preparation import DataPreparation
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("batch.out")
    app = make_app(outdir=str(outdir))
    stack = Stack(app, "Batch")
    acknowledge(stack, "PCI.DSS.321-IAMNoInlinePolicy", "Grants attach one scoped policy "
                "per role, as the model stack acknowledges")
    lake = DataLake(stack, "DataLake")
    topic = sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True)
    stream = kinesis.Stream(stack, "Events", encryption=kinesis.StreamEncryption.KMS,
                            encryption_key=lake.key)
    acknowledge(stream, "AwsSolutions-KDS3", "The test stream uses the customer key")
    preparation = DataPreparation(stack, "Data", spec=fraud_spec, data_lake=lake, topic=topic,
                                  stream=stream)
    BatchInferenceWorkflow(stack, "BatchInference", spec=fraud_spec, data_lake=lake, topic=topic,
                           model_package_group_name="mdlc-fraud", preparation=preparation)
    try:
        assembly = app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return Template.from_json(assembly.get_stack_by_name("Batch").template)


def _definition(template: Template) -> dict[str, Any]:
    machines = template.find_resources("AWS::StepFunctions::StateMachine")
    (machine,) = [m for k, m in machines.items() if k.startswith("BatchInference")]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))


def test_the_run_prepares_finds_the_model_transforms_decides_and_notifies(template):
    definition = _definition(template)
    run = definition["States"]["Run"]
    states = run["Branches"][0]["States"]
    assert run["Branches"][0]["StartAt"] == "BatchSourceSnapshot"
    # The data preparation chain (its quality gate branches), then the batch steps.
    edges = {
        "BatchComputeFeatures": "PrepareTransformInput",
        "PrepareTransformInput": "FindApprovedModel",
        "FindApprovedModel": "ModelFound",
        "CreateModel": "Transform",
        "Transform": "DecideParts",
        "DecideParts": "NotifyDone",
    }
    for state, following in edges.items():
        assert states[state]["Next"] == following, state
    assert states["ModelFound"]["Choices"][0]["Next"] == "CreateModel"
    assert "BatchCheckQuality" in states
    assert run["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    for name, state in states.items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, name


def test_the_newest_approved_package_is_looked_up_and_its_absence_notifies(template):
    states = _definition(template)["States"]["Run"]["Branches"][0]["States"]
    find = states["FindApprovedModel"]
    assert find["Resource"].endswith(":states:::aws-sdk:sagemaker:listModelPackages")
    assert find["Parameters"] == {"ModelPackageGroupName": "mdlc-fraud",
                                  "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
                                  "SortOrder": "Descending", "MaxResults": 1}
    assert states["ModelFound"]["Default"] == "NoApprovedModel"
    assert states["NoApprovedModel"]["Next"] == "NoModelNotify"
    assert states["NoModelFailed"]["Type"] == "Fail"
    create = states["CreateModel"]["Parameters"]
    assert create["EnableNetworkIsolation"] is True
    assert "States.UUID()" in create["ModelName.$"]


def test_the_transform_waits_and_encrypts_volume_and_output(template):
    transform = _definition(template)["States"]["Run"]["Branches"][0]["States"]["Transform"]
    assert transform["Resource"].endswith(":states:::sagemaker:createTransformJob.sync")
    params = transform["Parameters"]
    assert params["TransformOutput"]["KmsKeyId"]
    assert params["TransformResources"]["VolumeKmsKeyId"]
    assert params["TransformResources"]["InstanceType"] == "ml.m5.xlarge"
    assert params["TransformInput"]["ContentType"] == "text/csv"
    assert {r["ErrorEquals"][0] for r in transform["Retry"]} <= {
        "SageMaker.ThrottlingException", "SageMaker.AmazonSageMakerException",
        "ThrottlingException"}


def test_decisions_run_in_a_distributed_map_over_the_output(template):
    decide = _definition(template)["States"]["Run"]["Branches"][0]["States"]["DecideParts"]
    assert decide["Type"] == "Map"
    assert decide["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert decide["ItemReader"]["Resource"].endswith(":states:::s3:listObjectsV2")
    # Only the run's own day: the prefix comes from the prepare step.
    assert decide["ItemReader"]["Parameters"] == {
        "Bucket": "TOKEN", "Prefix.$": "$.batch.output_key_prefix"}
    assert decide["ItemSelector"]["step"] == "decide"
    assert decide["MaxConcurrency"] == 50


def test_the_schedule_is_the_specs(template, fraud_spec):
    template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "cron(0 6 * * ? *)",
        "Description": "MDLC fraud: daily batch inference",
        "Targets": Match.any_value(),
    })
    assert fraud_spec.inference.batch.schedule == "cron(0 6 * * ? *)"


def test_batch_decisions_handler_round_trip(tmp_path, monkeypatch, fraud_config_file):
    """prepare_input writes feature-ordered CSV parts; decide applies the rules per part."""
    import io

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mdlc_core import runtime_config
    from moto import mock_aws

    from tests.lambda_loader import load_handler

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "MDLC_CONFIG_FILE":
                        str(fraud_config_file), "FEATURES_BUCKET": "features",
                        "PREDICTIONS_BUCKET": "predictions", "MODEL_NAME": "fraud"}.items():
        monkeypatch.setenv(name, value)
    runtime_config.load_config.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("features", "predictions"):
            s3.create_bucket(Bucket=bucket)
        buffer = io.BytesIO()
        pq.write_table(pa.table({"customer_id": ["c1", "c2"], "order_total_30d": [1000.0, 5.0],
                                 "order_count_30d": [4, 1],
                                 "amount_to_30d_mean": [None, 1.0]}), buffer)
        key = "features/fraud/dt=2026-11-27/entities.parquet"
        s3.put_object(Bucket="features", Key=key, Body=buffer.getvalue())
        module = load_handler("batch_decisions")

        out = module.handler({"step": "prepare_input", "date": "2026-11-27",
                              "entities_key": key}, None)

        assert out["rows"] == 2 and out["parts"] == 1
        prefix = "batch-input/fraud/dt=2026-11-27/"
        body = s3.get_object(Bucket="predictions", Key=f"{prefix}part-00000.csv")["Body"]
        # order_amount, account_tenure (per event: missing), total, count, ratio.
        assert body.read().decode().splitlines() == [",,1000.0,4.0,", ",,5.0,1.0,1.0"]
        # The transform's output for that part: one score per line.
        output = "predictions/fraud/dt=2026-11-27/part-00000.csv.out"
        s3.put_object(Bucket="predictions", Key=output, Body=b"0.95\n0.1\n")

        result = module.handler({"step": "decide", "date": "2026-11-27", "Key": output,
                                 "model": "mdlc-fraud-b-1"}, None)

        assert result["actions"] == {"block": 1, "approve": 1}
        lines = s3.get_object(Bucket="predictions", Key=result["key"])["Body"].read()
        records = [json.loads(line) for line in lines.decode().splitlines()]
        assert [(r["event_id"], r["action"]) for r in records] == [
            ("2026-11-27#c1", "block"), ("2026-11-27#c2", "approve")]
