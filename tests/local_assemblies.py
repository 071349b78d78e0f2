"""Small cloud assemblies for the local runtime's tests: one stack, real trust policies."""

from __future__ import annotations

import json
from pathlib import Path


def role(service: str, *statements: dict) -> dict:
    """A role ``service`` may assume, allowed ``statements`` (as a template resource)."""
    properties: dict = {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}}
    if statements:
        properties["Policies"] = [{"PolicyName": "grants", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": list(statements)}}]
    return {"Type": "AWS::IAM::Role", "Properties": properties}


def write_assembly(directory: Path, template: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "S.template.json").write_text(json.dumps(template))
    (directory / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {
        "S": {"type": "aws:cloudformation:stack",
              "properties": {"templateFile": "S.template.json"}}}}))
    return directory


def assembly_with_function(directory: Path, handler_code: str, extra: dict,
                            grants: tuple[dict, ...] = (),
                            environment: dict | None = None) -> Path:
    """A one-function assembly whose code asset is ``handler_code``; its role is
    allowed ``grants``."""
    asset = directory / "asset.handler"
    asset.mkdir(parents=True)
    (asset / "index.py").write_text(handler_code)
    template = {"Resources": {
        "Role": role("lambda.amazonaws.com", *grants),
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {
            "Code": {"S3Bucket": "assets", "S3Key": "handler.zip"}, "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Timeout": 30,
            "Environment": {"Variables": environment or {"GREETING": "hello"}}}},
        **extra,
    }}
    (directory / "S.template.json").write_text(json.dumps(template))
    (directory / "S.assets.json").write_text(json.dumps({"files": {"h": {
        "source": {"path": "asset.handler", "packaging": "zip"},
        "destinations": {"d": {"bucketName": "assets", "objectKey": "handler.zip"}}}}}))
    (directory / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {
        "S.assets": {"type": "cdk:asset-manifest", "properties": {"file": "S.assets.json"}},
        "S": {"type": "aws:cloudformation:stack", "dependencies": ["S.assets"],
              "properties": {"templateFile": "S.template.json"}}}}))
    return directory
