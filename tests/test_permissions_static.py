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
  CloudWatch publish.

Parameters that are JSONPath (``Key.$``) name their resource at run time;
those calls are checked in the simulation tests (every call, zero denied).
"""

from __future__ import annotations

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
