"""cfn-lint finds no errors in the synthesized example templates.

The shared-platform and pipeline configurations are linted where their tests
synthesize them (tests/test_cross_stack_references.py, tests/test_pipeline.py);
``make cfn-lint`` lints all three in one run (tests/cfn_lint.py).
"""

from __future__ import annotations

import json

import pytest

from tests.cfn_lint import KNOWN_MISFIRES, lint


def test_templates_have_no_cfn_lint_errors(synthesized, tmp_path):
    stack, assembly = synthesized
    path = tmp_path / f"{stack.stack_name}.template.json"
    path.write_text(json.dumps(assembly.get_stack_by_name(stack.stack_name).template))
    assert lint([path]) == []


def test_a_real_error_of_a_rule_with_a_known_misfire_still_fails(tmp_path):
    """The misfire is ignored by its message, not its whole rule: a deploy action
    whose TemplatePath names an artifact it does not take is still an E3703."""
    assert "E3703" in KNOWN_MISFIRES
    action = {"Name": "Deploy", "RunOrder": 1,
              "ActionTypeId": {"Category": "Deploy", "Owner": "AWS",
                               "Provider": "CloudFormation", "Version": "1"},
              "Configuration": {"ActionMode": "CREATE_UPDATE", "StackName": "s",
                                "TemplatePath": "missing::template.json",
                                "RoleArn": "arn:aws:iam::123456789012:role/deploy"},
              "InputArtifacts": [{"Name": "src"}]}
    source = {"Name": "Source", "RunOrder": 1,
              "ActionTypeId": {"Category": "Source", "Owner": "AWS",
                               "Provider": "S3", "Version": "1"},
              "Configuration": {"S3Bucket": "b", "S3ObjectKey": "k"},
              "OutputArtifacts": [{"Name": "src"}]}
    template = {"Resources": {"Pipeline": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {
        "RoleArn": "arn:aws:iam::123456789012:role/p",
        "ArtifactStore": {"Type": "S3", "Location": "bucket"},
        "Stages": [{"Name": "Source", "Actions": [source]},
                   {"Name": "Deploy", "Actions": [action]}]}}}}
    path = tmp_path / "bad.template.json"
    path.write_text(json.dumps(template))
    errors = lint([path])
    assert any(":E3703:" in line for line in errors), errors


def test_no_templates_is_an_error():
    with pytest.raises(ValueError, match="no templates"):
        lint([])
