"""An existing VPC with ``endpoints: false`` (issue #16): synthesis looks its
endpoints up through the CDK CLI's Cloud Control API context provider when the
stack has an account and region, and warns naming each missing one.

The lookup's answer is fed as ``cdk.context.json`` would hold it, under the key
aws-cdk-lib itself builds (``ContextProvider.get_key``); without it the
assembly asks the CLI for exactly that lookup (its ``missing`` context).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_kms as kms

from mdlc_constructs.network import (
    MISSING_ENDPOINTS_WARNING,
    REQUIRED_ENDPOINTS,
    ModelNetwork,
    endpoint_lookup_props,
)
from mdlc_constructs.spec.network import NetworkSpec
from mdlc_constructs.testing import make_app

ROOT = Path(__file__).resolve().parents[1]
ENV = cdk.Environment(account="123456789012", region="eu-west-1")
VPC_ID = "vpc-0a1b2c3d4e5f60718"
EXISTING: dict[str, Any] = {
    "vpc_id": VPC_ID, "availability_zones": ["eu-west-1a", "eu-west-1b"],
    "private_subnet_ids": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
    "endpoints": False,
}


def lookup_key(env: cdk.Environment = ENV) -> str:
    """The context key aws-cdk-lib gives the VPC's endpoint lookup in a stack of ``env``."""
    stack = cdk.Stack(cdk.App(), "KeyOnly", env=env)
    return cdk.ContextProvider.get_key(stack, provider="cc-api-provider",
                                       props=endpoint_lookup_props(VPC_ID)).key


def answer(*tails: str, region: str = "eu-west-1") -> list[dict[str, str]]:
    """What the CLI stores for a VPC whose endpoints are these services."""
    return [{"ServiceName": f"com.amazonaws.{region}.{tail}", "Identifier": f"vpce-{i:017x}"}
            for i, tail in enumerate(tails)]


def synth(network: dict[str, Any], *, env: cdk.Environment | None = ENV,
          context: dict[str, Any] | None = None):
    app = make_app(compliance=False, context=context)
    stack = cdk.Stack(app, "Net", env=env)
    ModelNetwork.from_spec(stack, "Network", NetworkSpec.model_validate(network),
                           key=kms.Key(stack, "Key"))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    # the network's own messages (aws-cdk-lib warns about imported subnets apart)
    messages = [(m.level.value.lower(), str(m.entry.data)) for m in artifact.messages
                if m.id == "/Net/Network"]
    manifest = json.loads((Path(assembly.directory) / "manifest.json").read_text())
    # only this lookup: a created VPC in an account also asks for its zones
    return messages, [m for m in manifest.get("missing", []) if m["provider"] == "cc-api-provider"]


def warnings(messages) -> list[str]:
    return [text for level, text in messages if level == "warning"]


def named_missing(warning: str) -> list[str]:
    return warning.split(" has no VPC endpoint for ", 1)[1].split(" (found in ", 1)[0].split(", ")


def test_the_warning_names_exactly_the_missing_endpoints():
    missing = ["dynamodb", "sagemaker.runtime", "ecr.dkr"]
    present = [e for e in REQUIRED_ENDPOINTS if e not in missing]
    # An endpoint of the right service in another region provides nothing here.
    found = [*answer(*present), *answer("ssm"), *answer("ecr.dkr", region="us-east-1")]
    messages, requested = synth(EXISTING, context={lookup_key(): found})
    (warning,) = warnings(messages)
    assert named_missing(warning) == missing
    assert f"[ack: {MISSING_ENDPOINTS_WARNING}]" in warning and VPC_ID in warning
    assert requested == []


def test_a_vpc_without_endpoints_lacks_every_one():
    messages, _ = synth(EXISTING, context={lookup_key(): []})
    (warning,) = warnings(messages)
    assert named_missing(warning) == list(REQUIRED_ENDPOINTS)
    assert "found in 123456789012/eu-west-1: none" in warning


def test_a_vpc_with_every_endpoint_has_no_warning():
    messages, _ = synth(EXISTING, context={lookup_key(): answer(*REQUIRED_ENDPOINTS)})
    assert warnings(messages) == []
    assert any(level == "info" and "has every endpoint" in text for level, text in messages)


def test_without_the_answer_the_assembly_asks_the_cli_for_the_lookup():
    """First synthesis (or one without the CLI): the dummy value, no warning, and
    the one missing context the CLI looks up before it synthesizes again."""
    messages, requested = synth(EXISTING)
    assert warnings(messages) == []
    assert any("looked up by the CDK CLI" in text for _, text in messages)
    (entry,) = requested
    assert (entry["key"], entry["provider"]) == (lookup_key(), "cc-api-provider")
    props = entry["props"]
    assert {k: props[k] for k in ("typeName", "propertyMatch", "propertiesToReturn",
                                  "account", "region")} == {
        "typeName": "AWS::EC2::VPCEndpoint", "propertyMatch": {"VpcId": VPC_ID},
        "propertiesToReturn": ["ServiceName"], "account": "123456789012",
        "region": "eu-west-1"}
    # the CLI looks up as the bootstrap's lookup role, with the dummy as the
    # protocol wants it (an array of objects)
    assert "lookup-role" in props["lookupRoleArn"]
    assert isinstance(props["dummyValue"], list) and all(
        isinstance(e, dict) for e in props["dummyValue"])


@pytest.mark.parametrize("network, env", [
    (EXISTING, None),
    ({**EXISTING, "endpoints": True, "vpc_cidr": "10.20.0.0/16",
      "route_table_ids": ["rtb-0a1b2c3d4e5f60718", "rtb-0f1e2d3c4b5a69788"]}, ENV),
    ({"create": True, "endpoints": False}, ENV),
], ids=["no-env", "endpoints-created", "created-vpc"])
def test_no_lookup_without_an_environment_or_with_endpoints_created(network, env):
    messages, requested = synth(network, env=env)
    assert requested == [] and warnings(messages) == []
    if env is None:
        assert any(level == "info" and "needs the stack's account and region" in text
                   for level, text in messages)


def test_a_malformed_answer_names_the_lookup():
    with pytest.raises(Exception, match=r"Net/Network: the VPC endpoint lookup \(cc-api-provider"
                       r"\) returned .*expected a list of objects with a ServiceName"):
        synth(EXISTING, context={lookup_key(): [{"Identifier": "vpce-1"}]})


def test_a_shared_platform_in_an_account_looks_up_its_network_once(tmp_path):
    """Through the spec and build_app: the platform owns the network, so the
    platform stack alone warns."""
    from mdlc_constructs.platform import build_app

    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document["network"] = EXISTING
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(document))
    app = make_app(compliance=False, context={lookup_key(): answer(*REQUIRED_ENDPOINTS[1:])})
    build_app(app, tmp_path, shared_platform=True, env=ENV)
    assembly = app.synth()
    found = {s.stack_name: [str(m.entry.data) for m in s.messages
                            if m.level.value == "WARNING"
                            and MISSING_ENDPOINTS_WARNING in str(m.entry.data)]
             for s in assembly.stacks}
    assert {name: [named_missing(w) for w in ws] for name, ws in found.items() if ws} == {
        "Mdlc-Platform": [["s3"]]}


def test_the_warning_is_acknowledged_by_its_id_where_endpoints_are_elsewhere():
    """docs/network.md's acknowledgment for a VPC shared from another account,
    whose endpoints this account's lookup cannot see."""
    app = make_app(compliance=False, context={lookup_key(): []})
    stack = cdk.Stack(app, "Net", env=ENV)
    network = ModelNetwork.from_spec(stack, "Network", NetworkSpec.model_validate(EXISTING),
                                     key=kms.Key(stack, "Key"))
    cdk.Annotations.of(network).acknowledge_warning(
        MISSING_ENDPOINTS_WARNING, "endpoints are in the network account")
    artifact = app.synth().get_stack_artifact(stack.artifact_id)
    assert [m for m in artifact.messages
            if m.id == "/Net/Network" and m.level.value == "WARNING"] == []
