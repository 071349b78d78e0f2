"""Quota and hard-limit accounting (mdlc_constructs.quotas, `mdlc quotas`).

Counted on the session's synthesized example stack, so a new rule, role or
bigger policy shows in the figures the docs quote (docs/scaling.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdlc_constructs import quotas

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def templates(synthesized):
    stack, assembly = synthesized
    return {stack.stack_name: assembly.get_stack_by_name(stack.stack_name).template}


def _use(uses, name):
    return next(u for u in uses if u.quota.name == name)


def test_counts_follow_the_template(templates):
    (template,) = templates.values()
    resources = template["Resources"].values()
    uses = quotas.usage(templates)
    rules = [r for r in resources if r["Type"] == "AWS::Events::Rule"]
    assert _use(uses, "EventBridge rules per event bus").used == len(rules) > 0
    assert _use(uses, "IAM roles").used == sum(r["Type"] == "AWS::IAM::Role" for r in resources)
    assert _use(uses, "CloudFormation stacks").used == 1
    assert _use(uses, "Kinesis Data Streams shards").used == 4  # one on-demand stream


def test_a_rule_on_a_custom_bus_does_not_count_against_the_default_bus():
    template = {"Resources": {
        "OnDefault": {"Type": "AWS::Events::Rule",
                      "Properties": {"ScheduleExpression": "rate(1 day)"}},
        "OnCustom": {"Type": "AWS::Events::Rule", "Properties": {"EventBusName": "mine"}},
    }}
    assert _use(quotas.usage({"S": template}), "EventBridge rules per event bus").used == 1


def test_role_policies_are_summed_per_role_and_the_largest_is_reported(templates):
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x" * 6000}
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "One": {"Type": "AWS::IAM::Policy", "Properties": {
            "Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement": [statement]}}},
        "Two": {"Type": "AWS::IAM::Policy", "Properties": {
            "Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement": [statement]}}},
    }}
    (use,) = [u for u in quotas.limits({"S": template})
              if u.limit.name.startswith("IAM inline")]
    assert use.used > 12000 and use.where == "S/Role" and use.headroom < 0
    assert quotas.headroom({"S": template}) < 0


def test_the_example_stack_has_20_percent_headroom_on_every_hard_limit(templates):
    short = [(u.limit.name, u.used, u.where) for u in quotas.limits(templates)
             if u.headroom < 0.2]
    assert short == []


def test_pipeline_actions_per_stage_are_counted():
    template = {"Resources": {"P": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {
        "Stages": [{"Name": "Source", "Actions": [{}]}, {"Name": "Prod", "Actions": [{}] * 48}],
    }}}}
    uses = {u.limit.name: u for u in quotas.limits({"S": template})
            if "CodePipeline" in u.limit.name}
    actions = uses["CodePipeline actions per stage"]
    assert (actions.used, actions.where) == (48, "S/P/Prod")
    assert actions.headroom == pytest.approx(0.04)
    stages = uses["CodePipeline stages per pipeline"]
    assert (stages.used, stages.where, stages.limit.limit) == (2, "S/P", 50)


def test_report_prints_every_quota_and_limit(templates):
    report = quotas.format_report(templates, model_stacks=list(templates))
    for quota in quotas.QUOTAS:
        assert quota.name in report
    assert "per model" in report and "headroom" in report
    json.dumps([u.used for u in quotas.usage(templates)])


def test_cli_on_an_empty_folder_is_a_usage_error(tmp_path, capsys):
    from mdlc_constructs.cli import main

    assert main(["quotas", str(tmp_path)]) == 2
    assert "model specs found" in capsys.readouterr().err


def test_a_wave_of_40_actions_leaves_exactly_the_20_percent_asked_for():
    # The pipeline's default waves (mdlc_constructs.pipeline_waves): 40 of 50.
    template = {"Resources": {"P": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {
        "Stages": [{"Name": "Staging.1", "Actions": [{}] * 40}]}}}}
    (use,) = [u for u in quotas.limits({"S": template})
              if u.limit.name == "CodePipeline actions per stage"]
    assert use.headroom >= 0.2
