"""RealtimeEndpoint: the rollback alarms, the execution role, the approval
rule and the deployment workflow, asserted on one synthesized template (with
both cdk-nag packs) and executed in moto's Step Functions interpreter.

moto runs the workflow's AWS SDK calls against its own SageMaker and
Application Auto Scaling; it has no UpdateEndpoint, so a stand-in plays
SageMaker's part of a blue/green update: either the new configuration ends
up served, or the endpoint rolls back and reports InService on the old one.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

MODEL = "fraud"
ENDPOINT = "mdlc-fraud"
GROUP = "mdlc-fraud"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory, fraud_spec):
    from aws_cdk import Stack
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.compliance import acknowledge, read_findings
    from mdlc_constructs.realtime import RealtimeEndpoint
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = make_app(outdir=str(outdir))
    stack = Stack(app, "Realtime")
    # What MdlcModelStack acknowledges for every stage.
    acknowledge(stack, "PCI.DSS.321-IAMNoInlinePolicy", "CDK grant methods attach a policy "
                "to exactly one role, scoped to the resources that role uses")
    lake = DataLake(stack, "DataLake")
    topic = sns.Topic(stack, "Notifications", master_key=lake.key, enforce_ssl=True)
    endpoint = RealtimeEndpoint(
        stack, "Realtime", spec=fraud_spec, data_lake=lake, topic=topic,
        model_package_group_name=GROUP,
    )
    try:
        assembly = app.synth()
    except Exception as error:  # jsii raises RuntimeError with the report path
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    template = assembly.get_stack_by_name(stack.stack_name).template
    return {"stack": stack, "endpoint": endpoint, "template": template, "lake": lake}


@pytest.fixture(scope="module")
def template(synthesized) -> Template:
    return Template.from_json(synthesized["template"])


def _logical_id(stack, construct) -> str:
    return stack.get_logical_id(construct.node.default_child)


def _definition_parts(raw: dict[str, Any]) -> list[Any]:
    machine = next(r for r in raw["Resources"].values()
                   if r["Type"] == "AWS::StepFunctions::StateMachine")
    body = machine["Properties"]["DefinitionString"]
    return body["Fn::Join"][1] if isinstance(body, dict) else [body]


def _render(parts: list[Any], refs: dict[str, str]) -> dict[str, Any]:
    """The ASL with CloudFormation references replaced (for moto)."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif "Ref" in part:
            out.append(refs.get(part["Ref"]) or pseudo.get(part["Ref"], "token"))
        else:
            logical_id = part["Fn::GetAtt"][0]
            out.append(refs.get(logical_id, f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"))
    return json.loads("".join(out))


def _states(asl: dict[str, Any]) -> dict[str, Any]:
    """Every state, the error boundary's branch included, by name."""
    states = dict(asl["States"])
    for state in asl["States"].values():
        for branch in state.get("Branches", []):
            states.update(_states(branch))
    return states


def _alarm_names(raw: dict[str, Any]) -> dict[str, str]:
    """``Ref`` of an alarm is its name."""
    return {k: r["Properties"]["AlarmName"] for k, r in raw["Resources"].items()
            if r["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.fixture(scope="module")
def asl(synthesized) -> dict[str, Any]:
    return _render(_definition_parts(synthesized["template"]),
                   _alarm_names(synthesized["template"]))


# -- the endpoint configuration --------------------------------------------------------


def test_endpoint_config_encrypts_volumes_and_capture(asl, synthesized):
    key_id = _logical_id(synthesized["stack"], synthesized["lake"].key)
    config = _states(asl)["CreateEndpointConfig"]["Parameters"]
    key_arn = f"arn:aws:iam::{ACCOUNT}:role/{key_id}"  # the rendered GetAtt of the key
    assert config["KmsKeyId"] == key_arn
    capture = config["DataCaptureConfig"]
    assert capture["KmsKeyId"] == key_arn
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"].endswith(f"/capture/{MODEL}/")
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}


def test_capture_goes_to_the_capture_bucket(synthesized):
    parts = _definition_parts(synthesized["template"])
    bucket = _logical_id(synthesized["stack"], synthesized["lake"].capture)
    index = parts.index({"Ref": bucket})
    assert parts[index - 1].endswith("s3://") and parts[index + 1].startswith(f"/capture/{MODEL}/")


def test_variant_from_the_spec(asl, fraud_spec):
    realtime = fraud_spec.inference.realtime
    (variant,) = _states(asl)["CreateEndpointConfig"]["Parameters"]["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["InstanceType"] == realtime.instance_type == "ml.m5.large"
    assert variant["InitialInstanceCount"] == realtime.initial_instance_count
    assert variant["ModelName.$"] == "$.deployment.name"


def test_model_from_the_package_with_network_isolation(asl, synthesized):
    params = _states(asl)["CreateModel"]["Parameters"]
    assert params["EnableNetworkIsolation"] is True
    assert params["PrimaryContainer"] == {"ModelPackageName.$": "$.package.arn"}
    role_id = _logical_id(synthesized["stack"], synthesized["endpoint"].execution_role)
    assert params["ExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{role_id}"


# -- guardrails ------------------------------------------------------------------------


def test_update_uses_canary_with_wait_bake_and_rollback_alarms(asl, fraud_spec):
    d = fraud_spec.inference.realtime.deployment
    update = _states(asl)["UpdateEndpoint"]["Parameters"]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": d.step_percent},
        "WaitIntervalInSeconds": d.wait_minutes * 60,
    }
    assert (d.step_percent, d.wait_minutes, d.bake_minutes) == (10, 5, 10)
    assert policy["TerminationWaitInSeconds"] == d.bake_minutes * 60
    assert 600 <= policy["MaximumExecutionTimeoutInSeconds"] <= 28800
    alarms = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert alarms == [{"AlarmName": f"{ENDPOINT}-5xx-error-rate"},
                      {"AlarmName": f"{ENDPOINT}-p99-model-latency"}]
    assert update["EndpointName"] == ENDPOINT
    assert update["EndpointConfigName.$"] == "$.deployment.name"


def test_error_rate_alarm(template, fraud_spec):
    d = fraud_spec.inference.realtime.deployment
    alarm = template.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": f"{ENDPOINT}-5xx-error-rate"}})
    (props,) = [a["Properties"] for a in alarm.values()]
    assert props["Threshold"] == d.max_error_rate
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["TreatMissingData"] == "notBreaching"
    expression = next(m for m in props["Metrics"] if "Expression" in m)
    assert expression["Expression"] == "IF(invocations > 0, errors / invocations, 0)"
    metrics = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    assert metrics["errors"]["Metric"]["MetricName"] == "Invocation5XXErrors"
    assert metrics["invocations"]["Metric"]["MetricName"] == "Invocations"
    for stat in metrics.values():
        assert stat["Metric"]["Namespace"] == "AWS/SageMaker"
        assert {"Name": "EndpointName", "Value": ENDPOINT} in stat["Metric"]["Dimensions"]
        assert {"Name": "VariantName", "Value": "AllTraffic"} in stat["Metric"]["Dimensions"]
    assert len(props["AlarmActions"]) == 1


def test_latency_alarm_in_microseconds(template, fraud_spec):
    d = fraud_spec.inference.realtime.deployment
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmName": f"{ENDPOINT}-p99-model-latency",
        "Namespace": "AWS/SageMaker",
        "MetricName": "ModelLatency",
        "ExtendedStatistic": "p99",
        "Threshold": d.max_p99_latency_ms * 1000,
        "ComparisonOperator": "GreaterThanThreshold",
        "Dimensions": Match.array_with([{"Name": "EndpointName", "Value": ENDPOINT}]),
    })


def test_linear_and_all_at_once_routing(fraud_spec, synthesized):
    """The routing block per strategy, without another synthesis."""
    from mdlc_constructs.realtime import RealtimeEndpoint

    endpoint = synthesized["endpoint"]

    def routing(strategy: str, step: int) -> dict[str, Any]:
        deployment = fraud_spec.inference.realtime.deployment.model_copy(
            update={"strategy": strategy, "step_percent": step})
        realtime = fraud_spec.inference.realtime.model_copy(update={"deployment": deployment})
        probe = object.__new__(RealtimeEndpoint)
        probe.__dict__.update({k: v for k, v in vars(endpoint).items()
                               if k not in ("realtime",)})
        probe.realtime = realtime
        config = RealtimeEndpoint.deployment_config(probe)
        return config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]

    assert routing("linear", 20) == {"Type": "LINEAR", "WaitIntervalInSeconds": 300,
                                     "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20}}
    assert routing("all_at_once", 10) == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300}


@pytest.mark.parametrize(
    ("strategy", "step", "initial", "message"),
    [
        ("canary", 60, 1, "step_percent.*at most 50"),
        ("linear", 5, 1, "step_percent.*10-50"),
        ("canary", 10, 9, "initial_instance_count.*outside"),
    ],
)
def test_invalid_deployment_settings_fail_early(fraud_spec, strategy, step, initial, message):
    from mdlc_constructs.realtime import validate_realtime

    realtime = fraud_spec.inference.realtime
    spec = fraud_spec.model_copy(update={"inference": fraud_spec.inference.model_copy(update={
        "realtime": realtime.model_copy(update={
            "initial_instance_count": initial,
            "deployment": realtime.deployment.model_copy(
                update={"strategy": strategy, "step_percent": step}),
        })
    })})
    with pytest.raises(ValueError, match=message):
        validate_realtime(spec)


# -- autoscaling -----------------------------------------------------------------------


def test_autoscaling_target_and_policy(asl, fraud_spec):
    a = fraud_spec.inference.realtime.autoscaling
    states = _states(asl)
    register = states["RegisterScalableTarget"]
    assert register["Resource"].endswith(":aws-sdk:applicationautoscaling:registerScalableTarget")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    assert register["Parameters"] == {**target, "MinCapacity": a.min_capacity,
                                      "MaxCapacity": a.max_capacity}
    policy = states["PutScalingPolicy"]["Parameters"]
    assert {k: policy[k] for k in target} == target
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == a.target_invocations_per_instance == 1000
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}


# -- trigger and workflow shape --------------------------------------------------------


def test_rule_matches_approved_versions_of_this_group(template, synthesized):
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": [GROUP], "ModelApprovalStatus": ["Approved"]},
        },
        "Targets": [Match.object_like({
            "Arn": {"Ref": _logical_id(synthesized["stack"],
                                       synthesized["endpoint"].state_machine)},
        })],
    })


def test_timeouts_are_notified(template):
    template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": Match.object_like({"detail": Match.object_like(
            {"status": ["TIMED_OUT"]})}),
    })


def test_workflow_shape(asl):
    assert asl["StartAt"] == "Deploy"
    boundary = asl["States"]["Deploy"]
    assert boundary["Type"] == "Parallel"
    (catch,) = boundary["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
    assert catch["Next"] == "DeploymentNotify"
    assert asl["States"]["DeploymentNotify"]["Next"] == "DeploymentFailed"
    states = _states(asl)
    assert states["CreateModel"]["Next"] == "CreateEndpointConfig"
    assert states["UpdateEndpoint"]["Next"] == states["CreateEndpoint"]["Next"] == "WaitForEndpoint"
    assert states["WaitForEndpoint"]["Next"] == "DescribeEndpoint"
    assert states["DescribeEndpoint"]["Next"] == "EndpointSettled"
    settled = states["EndpointSettled"]
    assert settled["Default"] == "VerifyDeployment"
    assert settled["Choices"][0]["Next"] == "WaitForEndpoint"
    verify = states["VerifyDeployment"]
    (check,) = verify["Choices"]
    assert check["Next"] == "RegisterScalableTarget"
    assert {"Variable": "$.endpoint.EndpointConfigName",
            "StringEqualsPath": "$.deployment.name"} in check["And"]
    assert {"Variable": "$.endpoint.EndpointStatus", "StringEquals": "InService"} in check["And"]
    assert verify["Default"] == "HasFailureReason"
    assert states["RolledBackFail"]["CausePath"] == "$.error.Cause"
    assert states["PutScalingPolicy"]["Next"] == "NotifyDeployed"
    for name, state in states.items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, name


def test_missing_endpoint_goes_straight_to_the_catch_and_throttling_retries(asl):
    """Retry runs before Catch: FindEndpoint must not retry on the name a missing
    endpoint's ValidationException carries (SageMaker's unmodeled-error name, in
    either spelling), or every first deployment retries four times first."""
    from mdlc_constructs.realtime import FIND_RETRIES, SAGEMAKER_UNMODELED

    states = _states(asl)
    find = states["FindEndpoint"]
    (retry,) = find["Retry"]
    assert not set(retry["ErrorEquals"]) & {*SAGEMAKER_UNMODELED, "States.ALL",
                                            "States.TaskFailed"}
    assert {"SageMaker.ThrottlingException", "ThrottlingException"} <= set(retry["ErrorEquals"])
    (catch,) = find["Catch"]
    assert catch == {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.lookup",
                     "Next": "EndpointMissing"}
    missing, throttled = states["EndpointMissing"]["Choices"]
    assert missing == {"Variable": "$.lookup.Cause",
                       "StringMatches": "*Could not find endpoint*", "Next": "NoEndpointYet"}
    assert {c["StringMatches"] for c in throttled["Or"]} == {"*Rate exceeded*",
                                                            "*ThrottlingException*"}
    assert throttled["Next"] == "FindRetriesLeft"
    assert states["EndpointMissing"]["Default"] == "FindEndpointFailed"
    # Throttled lookups back off and look again, a bounded number of times.
    first, more = states["FindRetriesLeft"]["Choices"]
    assert (first["Next"], more["Next"]) == ("CountFindRetry", "CountNextFindRetry")
    assert more["NumericLessThan"] == FIND_RETRIES
    assert states["FindRetriesLeft"]["Default"] == "FindEndpointFailed"
    assert states["CountFindRetry"]["Next"] == states["CountNextFindRetry"]["Next"] == (
        "FindEndpointAgain")
    assert states["FindEndpointAgain"]["SecondsPath"] == "$.find_retries.wait"
    assert states["FindEndpointAgain"]["Next"] == "FindEndpoint"
    # Reads of resources that exist still retry the unmodeled name (throttling there).
    for name in ("DescribeModelPackage", "DescribeEndpoint"):
        (read,) = states[name]["Retry"]
        assert set(SAGEMAKER_UNMODELED) <= set(read["ErrorEquals"]), name
        assert "SageMaker.ThrottlingException" in read["ErrorEquals"], name


# -- IAM -------------------------------------------------------------------------------


def _statements(raw: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for r in raw["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        and {"Ref": role_id} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def test_pass_role_only_for_the_execution_role(synthesized):
    stack, endpoint = synthesized["stack"], synthesized["endpoint"]
    statements = _statements(synthesized["template"],
                             _logical_id(stack, endpoint.state_machine.role))
    passes = [s for s in statements if "iam:PassRole" in _actions(s)]
    assert len(passes) == 1
    assert _resources(passes[0]) == [
        {"Fn::GetAtt": [_logical_id(stack, endpoint.execution_role), "Arn"]}]
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_sagemaker_actions_scoped_to_this_model(synthesized):
    stack, endpoint = synthesized["stack"], synthesized["endpoint"]
    statements = _statements(synthesized["template"],
                             _logical_id(stack, endpoint.state_machine.role))
    allowed = (f":model/{ENDPOINT}-v*", f":endpoint-config/{ENDPOINT}-v*",
               f":endpoint/{ENDPOINT}", f":model-package/{GROUP}/*")
    sagemaker = [s for s in statements if any(a.startswith("sagemaker:") for a in _actions(s))]
    assert sagemaker
    for statement in sagemaker:
        for resource in _resources(statement):
            text = json.dumps(resource)
            assert any(text.endswith(f'{a}"]]}}') or a + '"' in text for a in allowed), text
    actions = {a for s in sagemaker for a in _actions(s)}
    assert {"sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
            "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
            "sagemaker:DescribeEndpoint", "sagemaker:DescribeModelPackage"} <= actions
    assert not any(a.endswith("*") for a in actions)


def test_workflow_can_read_the_rollback_alarms(synthesized):
    stack, endpoint = synthesized["stack"], synthesized["endpoint"]
    for role in (endpoint.state_machine.role, endpoint.execution_role):
        statements = _statements(synthesized["template"], _logical_id(stack, role))
        describe = [s for s in statements if _actions(s) == ["cloudwatch:DescribeAlarms"]]
        assert len(describe) == 1
        assert {json.dumps(r) for r in _resources(describe[0])} == {
            json.dumps({"Fn::GetAtt": [_logical_id(stack, alarm), "Arn"]})
            for alarm in (endpoint.error_rate_alarm, endpoint.latency_alarm)
        }


def test_execution_role_reads_only_this_models_artifacts(synthesized):
    stack, endpoint, lake = synthesized["stack"], synthesized["endpoint"], synthesized["lake"]
    raw = synthesized["template"]
    role = raw["Resources"][_logical_id(stack, endpoint.execution_role)]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "sagemaker.amazonaws.com"}
    statements = _statements(raw, _logical_id(stack, endpoint.execution_role))
    s3_resources = [json.dumps(r) for s in statements if any(a.startswith("s3:")
                    for a in _actions(s)) for r in _resources(s)]
    artifacts = _logical_id(stack, lake.artifacts)
    capture = _logical_id(stack, lake.capture)
    objects = [r for r in s3_resources if "/*" in r or '*"' in r]
    assert objects and all(f"/training-output/{MODEL}/*" in r or f"/capture/{MODEL}/*" in r
                           for r in objects), objects
    assert any(artifacts in r for r in objects) and any(capture in r for r in objects)
    writes = [s for s in statements if "s3:PutObject" in _actions(s)]
    assert all(capture in json.dumps(s["Resource"]) for s in writes)


def test_attributes_and_grants(synthesized):
    from aws_cdk import Stack
    from aws_cdk import aws_iam as iam

    endpoint = synthesized["endpoint"]
    assert endpoint.endpoint_name == ENDPOINT
    assert endpoint.metric_invocations().metric_name == "Invocations"
    assert endpoint.metric_errors().metric_name == "Invocation5XXErrors"
    latency = endpoint.metric_latency()
    assert latency.metric_name == "ModelLatency" and latency.statistic == "p99"
    assert latency.dimensions == {"EndpointName": ENDPOINT, "VariantName": "AllTraffic"}
    # grant_invoke, on a fresh stack (the synthesized one is locked).
    from aws_cdk import App

    stack = Stack(App(), "Grantee")
    role = iam.Role(stack, "Client", assumed_by=iam.AccountRootPrincipal())
    grant = endpoint.grant_invoke(role)
    assert grant.success
    statement = grant.principal_statements[0].to_statement_json()
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert Stack.of(endpoint).resolve(endpoint.endpoint_arn)["Fn::Join"][1][-1] == (
        f":endpoint/{ENDPOINT}")


# -- the workflow, executed ------------------------------------------------------------


@pytest.fixture(scope="module")
def run(synthesized):
    """Start the deployment workflow in moto; ``run(version, outcome)``.

    ``outcome`` is what the UpdateEndpoint stand-in makes SageMaker do:
    ``serve`` (the new configuration ends up InService) or ``rollback``
    (an alarm fired: InService on the old configuration, with a reason).
    """
    import boto3
    from moto import mock_aws
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.sagemaker.responses import SageMakerResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service,
    )

    raw = synthesized["template"]
    topic_id = next(k for k, r in raw["Resources"].items() if r["Type"] == "AWS::SNS::Topic")
    outcome = {"value": "serve"}
    updates: list[dict[str, Any]] = []
    # DescribeEndpoint calls SageMaker throttles before it answers again.
    throttle = {"remaining": 0}
    describe_endpoint = SageMakerResponse.describe_endpoint

    def throttled_describe_endpoint(self: SageMakerResponse) -> ActionResult:
        if throttle["remaining"] > 0:
            throttle["remaining"] -= 1
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return describe_endpoint(self)

    def update_endpoint(self: SageMakerResponse) -> ActionResult:
        updates.append(dict(self._get_params()))
        fake = self.sagemaker_backend.endpoints[self._get_param("EndpointName")]
        if outcome["value"] == "serve":
            fake.endpoint_config_name = self._get_param("EndpointConfigName")
        else:
            fake.failure_reason = "Alarm mdlc-fraud-5xx-error-rate in ALARM; rolled back"
        return ActionResult({"EndpointArn": fake.arn})

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # moto knows no UpdateEndpoint, and maps the SDK integration's
        # 'applicationautoscaling' to no boto3 client: both are moto's gaps.
        SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]
        SageMakerResponse.describe_endpoint = throttled_describe_endpoint  # type: ignore[method-assign]
        overrides = state_task_service.StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES
        # Put back what was there: the local runtime (mdlc_constructs.local) maps
        # the same name for the rest of the process.
        previous = overrides.get("applicationautoscaling")
        overrides["applicationautoscaling"] = "application-autoscaling"
        try:
            sns = boto3.client("sns", region_name=REGION)
            sqs = boto3.client("sqs", region_name=REGION)
            sagemaker = boto3.client("sagemaker", region_name=REGION)
            topic = sns.create_topic(Name="notifications")["TopicArn"]
            queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(
                QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                          Attributes={"RawMessageDelivery": "true"})
            sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
            asl = _render(_definition_parts(raw), {topic_id: topic, **_alarm_names(raw)})
            for state in _states(asl).values():
                if state["Type"] == "Wait":
                    # The poll interval and backoffs, not worth waiting for here.
                    state.pop("SecondsPath", None)
                    state["Seconds"] = 0
            client = boto3.client("stepfunctions", region_name=REGION)
            machine = client.create_state_machine(
                name="deploy", definition=json.dumps(asl),
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn")["stateMachineArn"]
            runs: list[int] = []

            def register(status: str = "Approved") -> str:
                return sagemaker.create_model_package(
                    ModelPackageGroupName=GROUP,
                    ModelApprovalStatus=status,
                    InferenceSpecification={
                        "Containers": [{"Image": "123.dkr.ecr.eu-west-1.amazonaws.com/x:1",
                                        "ModelDataUrl": "s3://a/training-output/fraud/m.tar.gz"}],
                        "SupportedContentTypes": ["text/csv"],
                        "SupportedResponseMIMETypes": ["text/csv"],
                    },
                )["ModelPackageArn"]

            def execute(package_arn: str, result: str = "serve") -> tuple[dict, list[dict]]:
                outcome["value"] = result
                runs.append(1)
                arn = client.start_execution(
                    stateMachineArn=machine, name=f"run-{len(runs)}",
                    input=json.dumps({"detail-type": "SageMaker Model Package State Change",
                                      "detail": {"ModelPackageArn": package_arn,
                                                 "ModelPackageGroupName": GROUP,
                                                 "ModelApprovalStatus": "Approved"}}),
                )["executionArn"]
                for _ in range(400):
                    described = client.describe_execution(executionArn=arn)
                    if described["status"] != "RUNNING":
                        break
                    time.sleep(0.05)
                messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
                    "Messages", [])
                for m in messages:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
                return described, [json.loads(m["Body"]) for m in messages]

            yield {"execute": execute, "register": register, "sagemaker": sagemaker,
                   "updates": updates, "throttle": throttle, "stepfunctions": client,
                   "autoscaling": boto3.client("application-autoscaling", region_name=REGION)}
        finally:
            del SageMakerResponse.update_endpoint  # type: ignore[attr-defined]
            SageMakerResponse.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
            if previous is None:
                overrides.pop("applicationautoscaling", None)
            else:
                overrides["applicationautoscaling"] = previous


@pytest.fixture(scope="module")
def first_deployment(run):
    """Version 1 on a new endpoint: the CreateEndpoint path."""
    arn = run["register"]()
    result, messages = run["execute"](arn)
    return arn, result, messages


def test_first_version_creates_the_endpoint(run, first_deployment):
    arn, result, messages = first_deployment
    assert result["status"] == "SUCCEEDED", result
    served = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)
    assert served["EndpointStatus"] == "InService"
    assert served["EndpointConfigName"].startswith(f"{ENDPOINT}-v1-")
    config = run["sagemaker"].describe_endpoint_config(
        EndpointConfigName=served["EndpointConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == served["EndpointConfigName"]
    model = run["sagemaker"].describe_model(ModelName=served["EndpointConfigName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn
    assert [m["model_package"] for m in messages] == [arn]
    assert messages[0]["endpoint_config"] == served["EndpointConfigName"]
    assert run["updates"] == []


def test_autoscaling_is_registered(run, first_deployment):
    targets = run["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")
    (target,) = targets["ScalableTargets"]
    assert target["ResourceId"] == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    policies = run["autoscaling"].describe_scaling_policies(ServiceNamespace="sagemaker")
    assert [p["PolicyType"] for p in policies["ScalingPolicies"]] == ["TargetTrackingScaling"]


def test_repeated_event_for_the_served_version_does_nothing(run, first_deployment):
    arn, _, _ = first_deployment
    before = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    result, messages = run["execute"](arn)
    assert result["status"] == "SUCCEEDED", result
    assert run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)[
        "EndpointConfigName"] == before
    assert messages == [] and run["updates"] == []


def test_new_version_updates_blue_green_and_is_verified(run, first_deployment):
    arn = run["register"]()
    result, messages = run["execute"](arn, "serve")
    assert result["status"] == "SUCCEEDED", result
    served = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    assert served.startswith(f"{ENDPOINT}-v2-")
    (update,) = run["updates"][-1:]
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"][
        "Type"] == "CANARY"
    assert [m["model_package"] for m in messages] == [arn]


def test_rolled_back_deployment_fails_and_notifies_the_reason(run, first_deployment):
    before = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    arn = run["register"]()
    result, messages = run["execute"](arn, "rollback")
    assert result["status"] == "FAILED"
    assert result.get("error") == "DeploymentFailed"
    served = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)
    assert served["EndpointStatus"] == "InService"  # what makes a rollback look healthy
    assert served["EndpointConfigName"] == before
    (message,) = messages
    assert message["error"] == "DeploymentRolledBack"
    assert f"serves {before} instead of {ENDPOINT}-v3-" in message["cause"]
    assert "5xx-error-rate in ALARM" in message["cause"]


def test_unapproved_version_is_not_deployed(run, first_deployment):
    before = run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    arn = run["register"]("PendingManualApproval")
    result, messages = run["execute"](arn)
    assert result["status"] == "FAILED"
    (message,) = messages
    assert message["error"] == "ModelPackageNotDeployable"
    assert "PendingManualApproval" in message["cause"]
    assert run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)[
        "EndpointConfigName"] == before


def test_throttled_lookup_backs_off_looks_again_and_gives_up_bounded(run, first_deployment):
    """SageMaker throttles FindEndpoint: the deployment looks again after a backoff
    and goes on; throttled past FIND_RETRIES, it fails and notifies the cause."""
    from mdlc_constructs.realtime import FIND_RETRIES

    def waits(result: dict[str, Any]) -> int:
        events = run["stepfunctions"].get_execution_history(
            executionArn=result["executionArn"], maxResults=1000)["events"]
        return sum(1 for e in events if e["type"] == "WaitStateEntered"
                   and e["stateEnteredEventDetails"]["name"] == "FindEndpointAgain")

    arn = run["register"]()
    run["throttle"]["remaining"] = 2
    result, messages = run["execute"](arn, "serve")
    assert result["status"] == "SUCCEEDED", result
    assert waits(result) == 2
    assert run["sagemaker"].describe_endpoint(EndpointName=ENDPOINT)[
        "EndpointConfigName"].startswith(f"{ENDPOINT}-v5-")
    assert [m["model_package"] for m in messages] == [arn]

    arn = run["register"]()
    run["throttle"]["remaining"] = FIND_RETRIES + 1
    result, messages = run["execute"](arn, "serve")
    assert result["status"] == "FAILED"
    assert waits(result) == FIND_RETRIES
    (message,) = messages
    assert "Rate exceeded" in message["cause"]
    run["throttle"]["remaining"] = 0
