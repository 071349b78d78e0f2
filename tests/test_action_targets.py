"""One construct for the action targets of the stream and batch paths."""

from __future__ import annotations

import json
from types import SimpleNamespace

import aws_cdk as cdk
from aws_cdk import assertions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

from mdlc_constructs.action_targets import ActionTargets


def _stack():
    stack = cdk.Stack(cdk.App(), "S")
    return stack, kms.Key(stack, "Key", enable_key_rotation=True)


def test_each_used_kind_gets_one_encrypted_target_and_its_variable_and_grant():
    stack, key = _stack()
    targets = ActionTargets.create(stack, kinds=["sns", "sqs", "eventbridge", "log", "custom"],
                                   key=key, purpose="MDLC fraud: decisions")
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    targets.grant_send(role)
    template = assertions.Template.from_stack(stack)
    template.has_resource_properties("AWS::SNS::Topic", {
        "DisplayName": "MDLC fraud: decisions", "KmsMasterKeyId": assertions.Match.any_value()})
    template.resource_count_is("AWS::SQS::Queue", 2)  # the queue and its redrive queue
    template.has_resource_properties("AWS::SQS::Queue", {
        "RedrivePolicy": {"maxReceiveCount": 5,
                          "deadLetterTargetArn": assertions.Match.any_value()}})
    template.has_resource_properties("AWS::Events::EventBus", {
        "KmsKeyIdentifier": assertions.Match.any_value()})
    assert set(targets.environment()) == {"ACTION_TOPIC_ARN", "ACTION_QUEUE_URL",
                                          "ACTION_EVENT_BUS_NAME"}
    actions = json.dumps(template.find_resources("AWS::IAM::Policy"))
    for action in ("sns:Publish", "sqs:SendMessage", "events:PutEvents"):
        assert action in actions, action
    assert targets.for_kind("custom") is None and targets.for_kind("sns") is targets.topic


def test_unused_kinds_get_nothing():
    stack, key = _stack()
    targets = ActionTargets.create(stack, kinds=["log"], key=key, purpose="MDLC fraud: x")
    assert targets == ActionTargets() and targets.environment() == {}
    assertions.Template.from_stack(stack).resource_count_is("AWS::SNS::Topic", 0)


def test_of_reads_an_integrations_targets_however_they_were_built():
    topic = object()
    integration = SimpleNamespace(topic_target=topic, queue_target=None, event_bus_target=None)
    assert ActionTargets.of(integration) == ActionTargets(topic=topic)
