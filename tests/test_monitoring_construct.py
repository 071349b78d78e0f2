"""ModelMonitoring: job, schedule, alarms, re-training wiring, dashboard, IAM, cdk-nag.

Two stacks in one app, synthesized once for the module with both cdk-nag
packs: ``Monitored`` (the fraud spec, wired to the real ``Retraining``, a
workflow, the event stream and a consumer) and ``Minimal`` (a spec variant:
label coverage alarm, KS disabled, no endpoint, a callable re-training
target, an imported labels bucket, a 30-day lag).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

FEATURES = ["order_amount", "account_tenure", "order_total_30d", "order_count_30d",
            "amount_to_30d_mean"]  # fmt: skip
RETRAINING = {"Precision", "Recall", "AUC", "ScorePSI", "KSPValue", "FeaturePSI"}


def _variant(fraud_spec, **monitoring: Any):
    from mdlc_constructs.spec.loader import parse_spec

    data = fraud_spec.as_config()
    for section, values in monitoring.items():
        data["monitoring"].setdefault(section, {})
        if isinstance(values, dict):
            data["monitoring"][section].update(values)
        else:
            data["monitoring"][section] = values
    # No endpoint to monitor; the integration that would need one is off too
    # (its rules still name the actions the caps refer to).
    data["inference"]["realtime"]["enabled"] = False
    data["integration"]["enabled"] = False
    return parse_spec(data)


def _base(stack):
    from aws_cdk import aws_sns as sns

    from mdlc_constructs.compliance import acknowledge
    from mdlc_constructs.storage import DataLake

    lake = DataLake(stack, "DataLake")
    topic = sns.Topic(stack, "Topic", master_key=lake.key, enforce_ssl=True)
    acknowledge(
        stack,
        "PCI.DSS.321-IAMNoInlinePolicy",
        "As in MdlcModelStack: each grant attaches to exactly one role, scoped to its resources",
    )
    return lake, topic


@pytest.fixture(scope="module")
def built(tmp_path_factory, fraud_spec):
    from aws_cdk import Duration, Stack
    from aws_cdk import aws_kinesis as kinesis
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_stepfunctions as sfn

    from mdlc_constructs.compliance import acknowledge, read_findings
    from mdlc_constructs.functions import python_function
    from mdlc_constructs.monitoring import ModelMonitoring
    from mdlc_constructs.retraining import Retraining
    from mdlc_constructs.testing import make_app
    from mdlc_constructs.workflow import state_machine

    outdir = tmp_path_factory.mktemp("monitoring.out")
    app = make_app(outdir=str(outdir))

    monitored = Stack(app, "Monitored")
    lake, topic = _base(monitored)
    machine = state_machine(
        monitored, "Training", definition=sfn.Pass(monitored, "StandIn"), key=lake.key,
        timeout=Duration.hours(1), comment="stand-in training workflow",
    )  # fmt: skip
    retraining = Retraining(
        monitored, "Retraining", spec=fraud_spec, state_machine=machine, key=lake.key
    )
    stream = kinesis.Stream(
        monitored, "Events", encryption=kinesis.StreamEncryption.KMS, encryption_key=lake.key
    )
    acknowledge(stream, "AwsSolutions-KDS3", "The model's customer-managed key, on purpose")
    consumer = python_function(
        monitored, "Consumer", handler="feature_update", description="stand-in consumer",
        key=lake.key,
    )  # fmt: skip
    full = ModelMonitoring(
        monitored, "Monitoring", spec=fraud_spec, data_lake=lake, topic=topic,
        retrain=retraining, state_machines=[machine], stream=stream, stream_consumers=[consumer],
    )  # fmt: skip
    full.add_workflow(machine)  # again: must not chart it twice

    minimal = Stack(app, "Minimal")
    lake2, topic2 = _base(minimal)
    spec2 = _variant(fraud_spec, closed_loop={"min_label_coverage": 0.3},
                     open_loop={"ks_alpha": 0.0})  # fmt: skip
    requested: list[Any] = []
    labels = s3.Bucket.from_bucket_name(minimal, "Labels", "team-labels")
    small = ModelMonitoring(
        minimal, "Monitoring", spec=spec2, data_lake=lake2, topic=topic2,
        retrain=requested.append, labels_bucket=labels, closed_loop_lag_days=30,
        alarm_on_missing_predictions=False, baseline_key="pinned/features.parquet",
    )  # fmt: skip
    try:
        assembly = app.synth()
    except Exception as error:  # jsii raises with the report's path
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return {
        "full": full,
        "small": small,
        "requested": requested,
        "retraining": retraining,
        "findings": read_findings(outdir),
        "monitored": Template.from_json(assembly.get_stack_by_name("Monitored").template),
        "minimal": Template.from_json(assembly.get_stack_by_name("Minimal").template),
        "stacks": (monitored, minimal),
    }


def _logical_id(construct) -> str:
    from aws_cdk import Stack

    return Stack.of(construct).get_logical_id(construct.node.default_child)


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {
        k: r["Properties"]
        for k, r in template.find_resources("AWS::CloudWatch::Alarm").items()
    }


def _dims(props: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


def _dashboard_widgets(template: Template) -> list[dict[str, Any]]:
    (dashboard,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))["widgets"]


def _charted(widgets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out = set()
    for widget in widgets:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric[0], str):
                out.add((metric[0], metric[1]))
    return out


def _job_policy(template: Template, construct) -> list[dict[str, Any]]:
    role = _logical_id(construct.function.role)
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    return [s for statements in policies for s in statements]


# -- cdk-nag -------------------------------------------------------------------------


def test_cdk_nag_reports_nothing_unacknowledged(built):
    assert built["findings"] == []


# -- alarms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "extra", "threshold", "comparison", "statistic"),
    [
        ("Precision", {}, 0.5, "LessThanThreshold", "Minimum"),
        ("Recall", {}, 0.4, "LessThanThreshold", "Minimum"),
        ("AUC", {}, 0.75, "LessThanThreshold", "Minimum"),
        ("ScorePSI", {}, 0.2, "GreaterThanThreshold", "Maximum"),
        ("KSPValue", {}, 0.01, "LessThanThreshold", "Minimum"),
        *[("FeaturePSI", {"Feature": f}, 0.2, "GreaterThanThreshold", "Maximum")
          for f in FEATURES],
        ("ActionShare", {"Action": "block"}, 0.05, "GreaterThanThreshold", "Maximum"),
        ("ActionShare", {"Action": "review"}, 0.15, "GreaterThanThreshold", "Maximum"),
    ],
)  # fmt: skip
def test_alarm_on_each_threshold(built, metric, extra, threshold, comparison, statistic):
    topic = _logical_id(built["full"].topic)
    dims = {"Model": "fraud", "ModelVersion": "all", **extra}
    matches = [
        a for a in _alarms(built["monitored"]).values()
        if a.get("MetricName") == metric and _dims(a) == dims
    ]  # fmt: skip
    assert len(matches) == 1, f"one alarm on {metric} {dims}"
    alarm = matches[0]
    assert alarm["Namespace"] == "MDLC"
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == comparison
    assert alarm["Statistic"] == statistic
    assert alarm["Period"] == 86400
    # A metric the job could not compute that day is not published: not a breach.
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["EvaluationPeriods"] == 2 and alarm["DatapointsToAlarm"] == 1
    assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_no_predictions_and_failed_runs_alarm(built):
    alarms = _alarms(built["monitored"])
    (predictions,) = [a for a in alarms.values() if a.get("MetricName") == "Predictions"]
    assert predictions["TreatMissingData"] == "breaching"
    assert predictions["ComparisonOperator"] == "LessThanThreshold"
    assert predictions["Threshold"] == 1
    queue = _logical_id(built["full"].dead_letter_queue)
    (failed,) = [
        a for a in alarms.values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
    ]  # fmt: skip
    assert failed["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert failed["Threshold"] == 1
    assert failed["AlarmActions"] == [{"Ref": _logical_id(built["full"].topic)}]


def test_every_alarm_notifies_the_topic(built):
    for name in ("monitored", "minimal"):
        construct = built["full" if name == "monitored" else "small"]
        topic = {"Ref": _logical_id(construct.topic)}
        alarms = _alarms(built[name])
        assert alarms
        for logical_id, alarm in alarms.items():
            assert alarm.get("AlarmActions") == [topic], logical_id


def test_spec_variant_alarms(built):
    alarms = _alarms(built["minimal"])
    names = [a.get("MetricName") for a in alarms.values()]
    (coverage,) = [a for a in alarms.values() if a.get("MetricName") == "LabelCoverage"]
    assert coverage["Threshold"] == 0.3
    assert coverage["ComparisonOperator"] == "LessThanThreshold"
    assert "KSPValue" not in names, "ks_alpha 0 disables the KS alarm"
    assert "Predictions" not in names, "alarm_on_missing_predictions=False"
    monitored = [a.get("MetricName") for a in _alarms(built["monitored"]).values()]
    assert "LabelCoverage" not in monitored, "min_label_coverage is None in the fraud spec"


# -- re-training ---------------------------------------------------------------------


def _composite_children(template: Template) -> tuple[str, set[str]]:
    (logical_id, composite), *rest = template.find_resources(
        "AWS::CloudWatch::CompositeAlarm"
    ).items()
    assert not rest
    rule = composite["Properties"]["AlarmRule"]["Fn::Join"][1]
    children = {p["Fn::GetAtt"][0] for p in rule if isinstance(p, dict)}
    return logical_id, children


def test_accuracy_and_drift_alarms_start_retraining(built):
    template = built["monitored"]
    composite, children = _composite_children(template)
    alarms = _alarms(template)
    retraining = {k for k, a in alarms.items() if a.get("MetricName") in RETRAINING}
    assert children == retraining
    assert len(children) == 5 + len(FEATURES)
    # ... through the Retraining trigger (its rule, its cooldown function).
    function = _logical_id(built["retraining"].function)
    rules = [
        r["Properties"] for r in template.find_resources("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("resources")
        == [{"Fn::GetAtt": [composite, "Arn"]}]
    ]  # fmt: skip
    assert len(rules) == 1
    assert rules[0]["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    assert rules[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function, "Arn"]}


def test_notify_only_alarms_do_not_retrain(built):
    _, children = _composite_children(built["minimal"])
    alarms = _alarms(built["minimal"])
    for logical_id, alarm in alarms.items():
        if alarm.get("MetricName") in ("LabelCoverage", "ActionShare",
                                       "ApproximateNumberOfMessagesVisible"):  # fmt: skip
            assert logical_id not in children


def test_callable_retrain_target_gets_the_composite_alarm(built):
    assert built["requested"] == [built["small"].retrain_alarm]
    assert built["small"].retrain_alarm is not None


def test_retrain_on_alarm_false_connects_nothing(fraud_spec):
    from aws_cdk import Stack

    from mdlc_constructs.monitoring import ModelMonitoring
    from mdlc_constructs.testing import make_app

    stack = Stack(make_app(compliance=False), "Off")
    lake, topic = _base(stack)
    requested: list[Any] = []
    spec = _variant(fraud_spec, retrain_on_alarm=False)
    monitoring = ModelMonitoring(
        stack, "Monitoring", spec=spec, data_lake=lake, topic=topic, retrain=requested.append
    )
    assert requested == [] and monitoring.retrain_alarm is None
    assert monitoring.retrain_alarms  # the alarms still exist and notify


# -- the job and its schedule --------------------------------------------------------


def test_job_settings(built):
    template, full = built["monitored"], built["full"]
    lake = full.data_lake
    function = template.find_resources("AWS::Lambda::Function")[_logical_id(full.function)]
    props = function["Properties"]
    assert props["MemorySize"] == 4096 and props["Timeout"] == 900
    assert props["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": [_logical_id(full.dead_letter_queue), "Arn"]}
    }
    assert props["Layers"] == [{"Ref": next(iter(template.find_resources(
        "AWS::Lambda::LayerVersion")))}]  # the stack's data layer
    env = props["Environment"]["Variables"]
    assert env["PREDICTIONS_BUCKET"] == {"Ref": _logical_id(lake.predictions)}
    assert env["LABELS_BUCKET"] == {"Ref": _logical_id(lake.predictions)}
    assert env["LABELS_PREFIX"] == "labels/fraud/"
    assert env["BASELINE_BUCKET"] == {"Ref": _logical_id(lake.artifacts)}
    # No fixed baseline: each version is compared with the data its package names.
    assert "BASELINE_KEY" not in env
    assert env["REPORT_BUCKET"] == {"Ref": _logical_id(lake.artifacts)}
    assert env["METRICS_NAMESPACE"] == "MDLC"
    # One run: open loop for yesterday, closed loop for the day whose labels are in.
    assert env["CLOSED_LOOP_LAG_DAYS"] == "60"
    assert built["minimal"].find_resources("AWS::Lambda::Function")[
        _logical_id(built["small"].function)
    ]["Properties"]["Environment"]["Variables"]["CLOSED_LOOP_LAG_DAYS"] == "30"
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": _logical_id(full.function)}, "MaximumRetryAttempts": 2},
    )
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {"KmsMasterKeyId": {"Fn::GetAtt": [_logical_id(lake.key), "Arn"]}},
    )


def test_schedule_invokes_the_job_with_retries_and_dead_letters(built):
    full, template = built["full"], built["monitored"]
    rules = template.find_resources("AWS::Events::Rule")
    rule = rules[_logical_id(full.schedule_rule)]["Properties"]
    assert rule["ScheduleExpression"] == "cron(0 7 * * ? *)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_logical_id(full.function), "Arn"]}
    assert "date" not in json.loads(target["Input"]), "the job monitors yesterday"
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": [_logical_id(full.dead_letter_queue), "Arn"]}
    }
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1


# -- IAM -----------------------------------------------------------------------------


def _resources(statement: dict[str, Any]) -> list[str]:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    return [json.dumps(r, sort_keys=True) for r in resources]


def test_job_reads_its_inputs_and_only_puts_its_reports(built):
    full = built["full"]
    lake = full.data_lake
    statements = _job_policy(built["monitored"], full)

    def objects(bucket, pattern: str) -> str:
        value = {"Fn::Join": ["", [{"Fn::GetAtt": [_logical_id(bucket), "Arn"]}, f"/{pattern}"]]}
        return json.dumps(value, sort_keys=True)

    writes = [s for s in statements if any(a.startswith(("s3:Put", "s3:Delete"))
                                           for a in _actions(s))]  # fmt: skip
    assert len(writes) == 1
    assert _resources(writes[0]) == [objects(lake.artifacts, "monitoring/fraud/*")]
    assert not any(a.startswith("s3:Delete") for s in statements for a in _actions(s))
    (read,) = [s for s in statements if "s3:GetObject*" in _actions(s)]
    object_reads = {r for r in _resources(read) if "Fn::Join" in r}
    assert object_reads == {
        objects(lake.predictions, "predictions/fraud/dt=*/scored/*"),
        objects(lake.predictions, "labels/fraud/*"),
        objects(lake.artifacts, "baselines/fraud/*"),
    }
    (metrics,) = [s for s in statements if "cloudwatch:PutMetricData" in _actions(s)]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MDLC"}}
    # It may describe this model's package versions (each names its drift
    # baseline), and nothing else in SageMaker.
    (describe,) = [s for s in statements if any(a.startswith("sagemaker:") for a in _actions(s))]
    assert _actions(describe) == ["sagemaker:DescribeModelPackage"]
    assert ":model-package/mdlc-fraud/*" in json.dumps(describe["Resource"])
    wildcard = {a for s in statements if s["Resource"] == "*" for a in _actions(s)}
    assert wildcard <= {"cloudwatch:PutMetricData", "xray:PutTraceSegments",
                        "xray:PutTelemetryRecords"}  # fmt: skip


def test_a_fixed_baseline_is_read_alone_and_no_package_is_described(built):
    small = built["small"]
    statements = _job_policy(built["minimal"], small)
    env = built["minimal"].find_resources("AWS::Lambda::Function")[
        _logical_id(small.function)]["Properties"]["Environment"]["Variables"]
    assert env["BASELINE_KEY"] == "pinned/features.parquet"
    reads = {r for s in statements if "s3:GetObject*" in _actions(s) for r in _resources(s)}
    assert any("/pinned/features.parquet" in r for r in reads)
    assert not any("baselines/" in r for r in reads)
    assert not any(a.startswith("sagemaker:") for s in statements for a in _actions(s))
    assert not small.grant_describe_packages(small.function).success


def test_imported_labels_bucket_is_read_by_prefix(built):
    statements = _job_policy(built["minimal"], built["small"])
    reads = {r for s in statements if "s3:GetObject*" in _actions(s) for r in _resources(s)}
    assert any("team-labels/labels/fraud/*" in r for r in reads)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


# -- dashboard -----------------------------------------------------------------------


def test_dashboard_charts_every_stage(built):
    widgets = _dashboard_widgets(built["monitored"])
    charted = _charted(widgets)
    expected = {
        # closed and open loop
        *[("MDLC", name) for name in ("Precision", "Recall", "F1", "AUC", "LabelCoverage",
                                      "UnmatchedLabels", "ScorePSI", "KSPValue", "FeaturePSI",
                                      "ActionShare", "Predictions")],
        ("MDLC/DataQuality", "QualityViolations"),  # data quality
        ("AWS/SageMaker", "Invocations"),  # endpoint
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"),  # stream
        ("AWS/Lambda", "IteratorAge"),  # its consumer
        ("AWS/States", "ExecutionsStarted"),  # workflows
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/Lambda", "Errors"),  # the job itself
    }  # fmt: skip
    assert expected <= charted, expected - charted
    text = json.dumps(widgets)
    assert '"EndpointName", "mdlc-fraud", "VariantName", "AllTraffic"' in text
    assert '"Model", "fraud", "ModelVersion", "all"' in text
    assert '"MDLC/DataQuality", "QualityViolations", "Model", "fraud"' in text
    failures = [w for w in widgets
                if "ExecutionsFailed" in json.dumps(w.get("properties", {}).get("metrics"))]
    assert len(failures) == 1, "a workflow added twice is charted once"  # fmt: skip
    (status,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(status["properties"]["alarms"]) == len(_alarms(built["monitored"]))
    feature_widget = next(w for w in widgets if w["properties"].get("title") ==
                          "Open loop: feature PSI")  # fmt: skip
    assert len(feature_widget["properties"]["metrics"]) == len(FEATURES)


def test_dashboard_without_other_stages(built):
    charted = _charted(_dashboard_widgets(built["minimal"]))
    assert ("MDLC", "AUC") in charted and ("MDLC/DataQuality", "QualityViolations") in charted
    assert not {ns for ns, _ in charted} & {"AWS/SageMaker", "AWS/Kinesis", "AWS/States"}
    (dashboard,) = built["minimal"].find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "mdlc-fraud"


# -- validation (no synthesis) -------------------------------------------------------


@pytest.fixture
def bare(fraud_spec):
    from aws_cdk import Stack

    from mdlc_constructs.testing import make_app

    stack = Stack(make_app(compliance=False), "Bare")
    lake, topic = _base(stack)
    return stack, lake, topic


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"closed_loop_lag_days": -1}, "closed_loop_lag_days"),
        ({"alarm_evaluation_periods": 8}, "7 days"),
        ({"alarm_evaluation_periods": 0}, "alarm_evaluation_periods"),
        ({"labels_prefix": "/labels/"}, "labels_prefix"),
    ],
)
def test_bad_props_are_rejected(bare, fraud_spec, kwargs, message):
    from mdlc_constructs.monitoring import ModelMonitoring

    stack, lake, topic = bare
    with pytest.raises(ValueError, match=message):
        ModelMonitoring(stack, "M", spec=fraud_spec, data_lake=lake, topic=topic, **kwargs)


def test_action_cap_must_name_a_decided_action(bare, fraud_spec):
    from mdlc_constructs.monitoring import ModelMonitoring

    stack, lake, topic = bare
    match = r"monitoring\.open_loop\.max_action_share.*decline"
    with pytest.raises(ValueError, match=match):  # the spec's validation rejects it
        _variant(fraud_spec, open_loop={"max_action_share": {"decline": 0.1}})
    # and so does the construct, given a spec that skipped validation
    monitoring = fraud_spec.monitoring
    open_loop = monitoring.open_loop.model_copy(update={"max_action_share": {"decline": 0.1}})
    spec = fraud_spec.model_copy(update={
        "monitoring": monitoring.model_copy(update={"open_loop": open_loop})})
    with pytest.raises(ValueError, match=match):
        ModelMonitoring(stack, "M", spec=spec, data_lake=lake, topic=topic)


def test_retrain_target_must_be_usable(bare, fraud_spec):
    from mdlc_constructs.monitoring import ModelMonitoring

    stack, lake, topic = bare
    with pytest.raises(TypeError, match="trigger_on_alarm"):
        ModelMonitoring(stack, "M", spec=fraud_spec, data_lake=lake, topic=topic, retrain=42)
