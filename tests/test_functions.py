"""The function factory's defaults, checked on a function it creates."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Match, Template

from mdlc_constructs.functions import POWERTOOLS_CONTEXT_KEY, python_function
from mdlc_constructs.testing import make_app

ECHO = Path(__file__).parent / "fixtures" / "handlers" / "echo"


@pytest.fixture(scope="module")
def function_stack():
    app = make_app(compliance=False)
    stack = cdk.Stack(app, "Functions")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    default = python_function(
        stack, "Default", handler=ECHO, description="echo", key=key, config={"name": "fraud"}
    )
    capped = python_function(
        stack,
        "Capped",
        handler=ECHO,
        description="capped",
        key=key,
        memory_size=1024,
        timeout=cdk.Duration.minutes(5),
        reserved_concurrent_executions=3,
        data_layer=True,
    )
    return stack, default, capped, Template.from_stack(stack)


def _function(template: Template, description: str) -> dict:
    found = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Description": description}}
    )
    assert len(found) == 1
    return next(iter(found.values()))["Properties"]


def test_latest_python_runtime_tracing_and_explicit_sizes(function_stack):
    *_, template = function_stack
    props = _function(template, "echo")
    assert props["Runtime"] == "python3.14"
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["MemorySize"] == 256
    assert props["Timeout"] == 60
    assert props["Handler"] == "index.handler"
    assert "ReservedConcurrentExecutions" not in props
    capped = _function(template, "capped")
    assert (capped["MemorySize"], capped["Timeout"], capped["ReservedConcurrentExecutions"]) == (
        1024,
        300,
        3,
    )


def test_powertools_layer_from_aws_managed_account_in_the_stacks_region(function_stack):
    *_, template = function_stack
    layers = _function(template, "echo")["Layers"]
    assert len(layers) == 1
    arn = json.dumps(layers[0])
    assert "017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:" in arn
    assert "AWS::Region" in arn
    # A data function has the stack's own data layer (Powertools inside), only.
    (layer,) = template.find_resources("AWS::Lambda::LayerVersion")
    assert _function(template, "capped")["Layers"] == [{"Ref": layer}]


def test_log_group_has_retention_and_kms(function_stack):
    *_, template = function_stack
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) == 2
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == 365
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"LoggingConfig": {"LogGroup": {"Ref": Match.string_like_regexp("DefaultLogs")}}},
    )


def test_environment_is_encrypted_and_names_the_service(function_stack):
    *_, template = function_stack
    props = _function(template, "echo")
    assert props["KmsKeyArn"]
    assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "echo"


def test_asset_holds_handler_core_and_config_without_docker(function_stack):
    stack, *_ = function_stack
    assembly = stack.node.root.synth()
    folders = [p for p in Path(assembly.directory).glob("asset.*") if p.is_dir()]
    with_config = [f for f in folders if (f / "mdlc_config.json").exists()]
    assert len(with_config) == 1, folders
    staged = with_config[0]
    assert (staged / "index.py").is_file()
    assert (staged / "mdlc_core" / "expressions.py").is_file()
    assert not list(staged.rglob("__pycache__"))
    assert json.loads((staged / "mdlc_config.json").read_text()) == {"name": "fraud"}


def test_layer_version_can_be_overridden_by_context():
    app = make_app(compliance=False, context={POWERTOOLS_CONTEXT_KEY: "99"})
    stack = cdk.Stack(app, "Override")
    key = kms.Key(stack, "Key")
    python_function(stack, "F", handler=ECHO, description="x", key=key)
    layers = json.dumps(Template.from_stack(stack).to_json())
    assert "python314-x86_64:99" in layers


def test_unknown_handler_is_a_clear_error():
    app = make_app(compliance=False)
    stack = cdk.Stack(app, "Missing")
    key = kms.Key(stack, "Key")
    with pytest.raises(ValueError, match=r"no Lambda handler 'nope': expected .*nope/index.py"):
        python_function(stack, "F", handler="nope", description="x", key=key)
