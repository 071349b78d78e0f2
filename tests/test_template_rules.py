"""aws-cdk-lib's CloudFormation rules in the suite (tests/template_rules.py):
errors where a test claims templates are clean, skipped everywhere else."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs


def _queue_outside_its_limits(app: cdk.App) -> None:
    stack = cdk.Stack(app, "Probe")
    # SQS allows 60 s to 14 days of retention and at most 900 s of delay.
    sqs.CfnQueue(stack, "Queue", message_retention_period=10, delay_seconds=2000)


def test_a_rules_app_fails_on_a_template_outside_cloudformations_limits(tmp_path: Path) -> None:
    from tests.template_rules import rules_app

    app = rules_app(compliance=False, outdir=str(tmp_path))
    _queue_outside_its_limits(app)
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "DelaySeconds" in report and "MessageRetentionPeriod" in report


def test_the_suites_other_syntheses_skip_the_automatic_validation(tmp_path: Path) -> None:
    from mdlc_constructs.testing import make_app

    value = os.environ.get("CDK_VALIDATION")
    assert value is not None, "conftest sets CDK_VALIDATION before the jsii kernel starts"
    if value != "false":
        pytest.skip(f"CDK_VALIDATION={value} was set for this run: the automatic plugin runs")
    app = make_app(compliance=False, outdir=str(tmp_path))
    _queue_outside_its_limits(app)
    app.synth()
    assert not (tmp_path / "validation-report.json").exists()
