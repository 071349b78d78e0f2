"""Without running anything: every integration the templates name is allowed to its role.

The stacks are deployed on the local cloud only to resolve their templates
(no workflow runs). Then, with the same policy reading and evaluation the
local run uses (`mdlc_constructs.local.permissions`):

* every Task state of every state machine: what its service integration
  needs, per the Step Functions service integration IAM pages (a
  ``.sync`` SageMaker job: create, describe, stop, the managed rule,
  ``iam:PassRole``; an AWS SDK task: its API; ``sns:publish`` with the
  topic's key), on the resources its parameters name;
* each machine's role: assumable by Step Functions, and allowed the key
  under its own ``aws:states:stateMachineArn``;
* each function's role: assumable by Lambda; its event source mapping's
  reads of the stream (and the stream's key) and writes of its on-failure
  destination; its asynchronous dead-letter queue; a rule's invocation of
  the function (its resource policy);
* each rule target's role: assumable by EventBridge, allowed to start its
  machine; each alarm action: the topic's and the key's policies let
  CloudWatch publish;
* each handler's own calls: every client method the code reachable from
  its ``index.py`` calls (read with ``ast``), on a resource of that kind its
  environment names (buckets under the keys its role's statements name,
  tables, queues, topics, the stream, the machine, the endpoint, the metric
  namespace), allowed to the function's role for at least one of them.

Parameters that are JSONPath (``Key.$``) name their resource at run time;
those calls are checked in the simulation tests (every call, zero denied).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mdlc_constructs.local.permissions import Need, needs

#: aws-sdk service names in task ARNs -> botocore's service ids.
SDK_SERVICES = {"applicationautoscaling": "application-auto-scaling"}


@pytest.fixture(scope="module")
def deployed(synthesized):
    from mdlc_constructs.local.runtime import LocalCloud

    stack, assembly = synthesized
    with LocalCloud(Path(assembly.directory), start=datetime(2026, 11, 2, tzinfo=UTC),
                    stacks=[stack.stack_name]) as cloud:
        yield cloud, cloud.deployed[stack.stack_name]


def _states(definition: dict[str, Any]):
    for name, state in definition.get("States", {}).items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _states(state[key])


def _static(parameters: Any) -> Any:
    """The parameters with the run-time (``.$``) ones left out."""
    if isinstance(parameters, dict):
        return {k: _static(v) for k, v in parameters.items() if not k.endswith(".$")}
    if isinstance(parameters, list):
        return [_static(v) for v in parameters]
    return parameters


def _task_needs(cloud, state: dict[str, Any]) -> tuple[list[Need], str] | None:
    """What the Task's integration needs, or None where its resource is chosen at run time."""
    resource = str(state["Resource"])
    parameters = state.get("Parameters") or state.get("Arguments") or {}
    static = _static(parameters)
    store = cloud.permissions
    if resource.startswith("arn:aws:lambda:"):
        return needs(store, "lambda", "Invoke", {"FunctionName": resource}), "lambda:invoke"
    integration = resource.split(":::", 1)[-1]
    if integration.startswith("lambda:invoke"):
        if "FunctionName" not in static:
            return None
        return needs(store, "lambda", "Invoke", static), integration
    if integration == "sns:publish":
        if "TopicArn" not in static:
            return None
        return needs(store, "sns", "Publish", static), integration
    if integration.startswith("sagemaker:") and integration.endswith(".sync"):
        kind = integration.split(":")[1][len("create"):-len("Job.sync")]
        name = static.get(f"{kind}JobName", "mdlc-static-check")
        job = static
        from mdlc_constructs.local.permissions import _sagemaker_arn, arn

        rule = arn("events", f"rule/StepFunctionsGetEventsForSageMaker{kind}JobsRule")
        required = [Need.of(f"events:{a}", rule) for a in ("PutTargets", "PutRule",
                                                             "DescribeRule")]
        if f"{kind}JobName" in static:  # else the job's name, so its ARN, is the run's
            required += [Need.of(f"sagemaker:{verb}{kind}Job", _sagemaker_arn(
                f"{kind.lower()}-job", name)) for verb in ("Create", "Describe", "Stop")]
        if job.get("RoleArn"):
            required.append(Need.of("iam:PassRole", job["RoleArn"],
                                    {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        return required, integration
    if integration.startswith("aws-sdk:"):
        _, service, api = integration.split(":")
        service = SDK_SERVICES.get(service, service)
        operation = api[0].upper() + api[1:]
        found = needs(store, service, operation, static)
        # A resource the parameters name at run time (the mapping then falls back to
        # "*", or to an ARN without a name): only the rest is known statically.
        return [n for n in found if not n.resource.endswith("/") and not (
            n.resource == "*" and service == "sagemaker" and not operation.startswith("List"))
                ], integration
    if integration == "s3:listObjectsV2":
        if "Bucket" not in static or "Prefix.$" in parameters:
            return None  # the prefix (what s3:prefix conditions judge) is the run's
        return needs(store, "s3", "ListObjectsV2", static), integration
    raise AssertionError(f"no static rule for the integration {resource}: add one here")


def _decide(cloud, principal: str, required: list[Need]) -> list[str]:
    failures = []
    for need in required:
        decision = cloud.authorizer.decide(principal, need)
        if not decision.allowed:
            failures.append(f"{need.action} on {need.resource}: {decision.reason}")
    return failures


def test_every_task_state_is_allowed_what_its_integration_needs(deployed):
    cloud, stack = deployed
    failures, checked, integrations = [], 0, set()
    for logical_id, props in stack.of_type("AWS::StepFunctions::StateMachine").items():
        import json

        definition = json.loads(props["DefinitionString"])
        role = props["RoleArn"]
        for name, state in _states(definition):
            for task in [state, state.get("ItemReader")]:
                if not task or "Resource" not in task or (task is state
                                                          and state["Type"] != "Task"):
                    continue
                found = _task_needs(cloud, task)
                if found is None:
                    continue
                required, integration = found
                integrations.add(integration)
                checked += len(required)
                failures += [f"{logical_id}/{name}: {f}" for f in _decide(cloud, role, required)]
    assert failures == []
    # The check is not vacuous: the library's integrations are all among them.
    assert {"sns:publish", "sagemaker:createTrainingJob.sync",
            "sagemaker:createTransformJob.sync", "aws-sdk:sagemaker:createModel",
            "aws-sdk:sagemaker:updateEndpoint", "lambda:invoke"} <= integrations
    assert checked > 50


def test_every_encrypted_log_group_lets_cloudwatch_logs_use_its_key(deployed):
    cloud, stack = deployed
    groups = [p for p in stack.of_type("AWS::Logs::LogGroup").values() if p.get("KmsKeyId")]
    # The deployment checked each (it fails on a key policy that refuses logs).
    assert groups and cloud.authorizer.callers["logs.us-east-1.amazonaws.com"] == 4 * len(
        groups)
    assert cloud.authorizer.denied == []


def test_every_machine_role_can_run_and_use_its_key(deployed):
    cloud, stack = deployed
    for logical_id in stack.of_type("AWS::StepFunctions::StateMachine"):
        machine = stack.physical[logical_id]
        cloud._check_execution_role(machine)  # raises the denial
    assert cloud.authorizer.denied == []


def test_every_function_role_can_be_used_by_its_integrations(deployed):
    cloud, stack = deployed
    failures = []
    functions = {stack.physical[lid]: (lid, props)
                 for lid, props in stack.of_type("AWS::Lambda::Function").items()}
    for lid, props in functions.values():
        cloud.authorizer.check_assume(props["Role"], "lambda.amazonaws.com",
                                      source=stack.resolver.attributes[lid]["Arn"])
        dead_letters = (props.get("DeadLetterConfig") or {}).get("TargetArn")
        if dead_letters:
            failures += [f"{lid} dead letters: {f}" for f in _decide(
                cloud, props["Role"], needs(cloud.permissions, "sqs", "SendMessage",
                                            {"QueueUrl": dead_letters}))]
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        lid, props = functions[mapping["FunctionName"]]
        for operation in ("DescribeStream", "GetShardIterator", "GetRecords", "ListShards"):
            failures += [f"{lid} reads: {f}" for f in _decide(cloud, props["Role"], needs(
                cloud.permissions, "kinesis", operation, {"StreamARN": mapping["EventSourceArn"]}))]
        destination = (mapping.get("DestinationConfig") or {}).get("OnFailure", {}).get(
            "Destination")
        if destination:
            failures += [f"{lid} on failure: {f}" for f in _decide(cloud, props["Role"], needs(
                cloud.permissions, "sqs", "SendMessage", {"QueueUrl": destination}))]
    assert failures == [] and cloud.authorizer.denied == []
    assert stack.of_type("AWS::Lambda::EventSourceMapping")


def test_every_rule_target_and_alarm_action_is_deliverable(deployed):
    cloud, stack = deployed
    targets = 0
    for logical_id, rule in stack.of_type("AWS::Events::Rule").items():
        rule_arn = stack.resolver.attributes[logical_id]["Arn"]
        for target in rule.get("Targets", []):
            arn, role = str(target["Arn"]), target.get("RoleArn")
            targets += 1
            if ":stateMachine:" in arn:
                assert role, f"{logical_id}: a machine target needs a role"
                cloud.authorizer.check_assume(role, "events.amazonaws.com", source=rule_arn)
                cloud.authorizer.check_params(role, "sfn", "StartExecution",
                                              {"stateMachineArn": arn})
            elif ":lambda:" in arn:
                cloud.authorizer.check_params("events.amazonaws.com", "lambda", "Invoke",
                                              {"FunctionName": arn}, source=rule_arn)
            elif ":sns:" in arn:
                cloud.authorizer.check_params("events.amazonaws.com", "sns", "Publish",
                                              {"TopicArn": arn}, source=rule_arn)
    actions = 0
    for kind in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"):
        for logical_id, alarm in stack.of_type(kind).items():
            for action in alarm.get("AlarmActions", []) + alarm.get("OKActions", []):
                if ":sns:" in str(action):
                    actions += 1
                    cloud.authorizer.check_params(
                        "cloudwatch.amazonaws.com", "sns", "Publish", {"TopicArn": action},
                        source=stack.resolver.attributes[logical_id]["Arn"])
    assert cloud.authorizer.denied == []
    assert targets >= 10 and actions >= 1


def test_a_missing_grant_is_found_without_a_run(deployed):
    """The check can fail: without the batch machine's PassRole, its transform task fails."""
    import copy
    import json

    cloud, stack = deployed
    logical_id = next(lid for lid in stack.of_type("AWS::StepFunctions::StateMachine")
                      if lid.startswith("BatchInference"))
    props = stack.properties[logical_id]
    role = cloud.permissions.roles[props["RoleArn"]]
    saved = copy.deepcopy(role.identity)
    try:
        cloud.authorizer.revoke(role.logical_id, "iam:PassRole")
        definition = json.loads(props["DefinitionString"])
        failures = []
        for _, state in _states(definition):
            if state.get("Type") == "Task":
                found = _task_needs(cloud, state)
                if found:
                    failures += _decide(cloud, props["RoleArn"], found[0])
    finally:
        role.identity[:] = saved
        cloud.authorizer._cache.clear()
    assert failures and all(f.startswith("iam:PassRole") for f in failures), failures


# -- the handlers' own calls ---------------------------------------------------------

#: Receivers that are never boto3 clients (``re.search`` is not SageMaker's Search).
_NOT_CLIENTS = {"re", "os", "json", "math", "np", "pa", "pq", "pc", "pacsv", "logger",
                "time", "hashlib", "itertools", "functools", "statistics", "random", "str"}
#: Services whose calls a handler makes on the resources its environment names.
_NAMED = ("s3", "dynamodb", "sqs", "sns", "kinesis", "stepfunctions", "sagemaker-runtime",
          "cloudwatch", "lambda")


@pytest.fixture(scope="module")
def api_methods():
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    return {service: {xform_name(op): op for op in session.get_service_model(
        service).operation_names} for service in _NAMED}


def _reachable(folder: Path) -> list[Path]:
    """The handler module and the modules of its package it imports, transitively."""
    import ast

    seen: list[Path] = []
    todo = [folder / "index.py"]
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen.append(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module if node.level == 0 else f"mdlc_core.{node.module}"
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            todo += [folder / (n.replace(".", "/") + ".py") for n in names
                     if n.startswith("mdlc_core")]
    return seen


def _calls(folder: Path, api_methods) -> set[tuple[str, str]]:
    """(service, operation) of every client method the reachable code calls."""
    import ast

    found = set()
    for path in _reachable(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and receiver.id in _NOT_CLIENTS:
                continue
            method = node.func.attr
            if method == "get_paginator" and node.args and isinstance(node.args[0],
                                                                        ast.Constant):
                method = node.args[0].value
            found |= {(s, ops[method]) for s, ops in api_methods.items() if method in ops}
    return found


def _named_resources(cloud, stack, environment: dict[str, str]) -> dict[str, list[str]]:
    """The function's environment, read as the resources it names, by service."""
    physical = {str(v) for v in stack.physical.values()}
    buckets = set(stack.physical[lid] for lid in stack.stack.of_type("AWS::S3::Bucket"))
    tables = set(stack.physical[lid] for lid in stack.stack.of_type("AWS::DynamoDB::Table"))
    named: dict[str, list[str]] = {service: [] for service in _NAMED}
    for name, value in environment.items():
        value = str(value)
        if value in buckets:
            named["s3"].append(value)
        elif value in tables:
            named["dynamodb"].append(value)
        elif value.startswith("https://sqs.") or ":sqs:" in value:
            named["sqs"].append(value)
        elif ":sns:" in value:
            named["sns"].append(value)
        elif ":stateMachine:" in value:
            named["stepfunctions"].append(value)
        elif ":kinesis:" in value and value in physical:
            named["kinesis"].append(value)
        elif name.endswith("ENDPOINT_NAME"):
            named["sagemaker-runtime"].append(value)
        elif name.endswith("NAMESPACE"):
            named["cloudwatch"].append(value)
    return named


def _s3_probes(role, bucket: str) -> list[str]:
    """Keys in ``bucket`` the role's statements name (a ``*`` read as one key)."""
    import json

    prefix = f"arn:aws:s3:::{bucket}/"
    text = json.dumps(role.identity)
    keys = {pattern[len(prefix):].replace("*", "probe").replace("?", "p")
            for pattern in re.findall(r'"(arn:aws:s3:::[^"]+)"', text)
            if pattern.startswith(prefix)}
    return sorted(keys) or ["probe"]


def _candidates(service: str, operation: str, resource: str, role) -> list[dict[str, Any]]:
    if service == "s3":
        if operation.startswith("List"):
            return [{"Bucket": resource, "Prefix": key.rsplit("probe", 1)[0]}
                    for key in _s3_probes(role, resource)]
        return [{"Bucket": resource, "Key": key} for key in _s3_probes(role, resource)]
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [{"RequestItems": {resource: {}}}]
        if operation == "TransactWriteItems":
            return [{"TransactItems": [{"Put": {"TableName": resource, "Item": {}}}]}]
        return [{"TableName": resource}]
    return [{"sqs": {"QueueUrl": resource}, "sns": {"TopicArn": resource},
             "kinesis": {"StreamARN": resource},
             "stepfunctions": {"stateMachineArn": resource},
             "sagemaker-runtime": {"EndpointName": resource},
             "cloudwatch": {"Namespace": resource},
             "lambda": {"FunctionName": resource}}[service]]


def _handler_failures(cloud, stack, api_methods) -> tuple[list[str], list[tuple]]:
    failures, checked = [], []
    for logical_id, props in stack.of_type("AWS::Lambda::Function").items():
        folder = stack.stack.assets.get(props["Code"]["S3Key"])
        role = cloud.permissions.roles[props["Role"]]
        named = _named_resources(cloud, stack, (props.get("Environment") or {}).get(
            "Variables", {}))
        for service, operation in sorted(_calls(folder, api_methods)):
            resources = named.get(service) or []
            if not resources:
                continue  # nothing of that kind configured: the call is not made
            if service == "s3" and operation not in (
                    "GetObject", "PutObject", "HeadObject", "ListObjectsV2", "ListObjects"):
                continue
            allowed = any(
                not _decide(cloud, props["Role"], needs(cloud.permissions, service, operation,
                                                        params))
                for resource in resources
                for params in _candidates(service, operation, resource, role))
            checked.append((logical_id, service, operation))
            if not allowed:
                failures.append(f"{logical_id}: {service} {operation} on none of {resources}")
    return failures, checked


def test_every_handler_call_is_allowed_on_a_resource_its_environment_names(
        deployed, api_methods):
    """Each client call the handler's code can reach, on a resource of that kind its
    environment names: allowed to the function's role for at least one of them
    (the calls' own keys and prefixes are the run's, checked by the simulation)."""
    cloud, stack = deployed
    failures, checked = _handler_failures(cloud, stack, api_methods)
    assert failures == []
    calls = {(lid[:12], s, o) for lid, s, o in checked}
    # Not vacuous: the stream path's and the batch path's calls are among them.
    assert {("DataFeatures", "dynamodb", "TransactWriteItems"),
            ("IntegrationC", "sagemaker-runtime", "InvokeEndpoint"),
            ("IntegrationC", "sqs", "SendMessage"),
            ("RetrainingTr", "stepfunctions", "StartExecution"),
            ("DataSourcing", "s3", "PutObject")} <= calls, sorted(calls)


def test_a_handlers_missing_grant_is_found_without_a_run(deployed, api_methods):
    import copy

    cloud, stack = deployed
    role = cloud.permissions.role_named("IntegrationConsumerServiceRole")
    saved = copy.deepcopy(role.identity)
    try:
        cloud.authorizer.revoke(role.logical_id, "dynamodb:BatchWriteItem")
        failures, _ = _handler_failures(cloud, stack, api_methods)
    finally:
        role.identity[:] = saved
        cloud.authorizer._cache.clear()
    assert len(failures) == 1 and failures[0].startswith(
        "IntegrationConsumer331918EF: dynamodb BatchWriteItem"), failures
