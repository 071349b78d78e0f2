"""The whole example template, normalized, against the stored snapshot.

A change here is a change to what `cdk deploy` would do: review the diff, then
run `pytest tests/test_snapshot.py --snapshot-update` to accept it.
"""

from __future__ import annotations

from mdlc_constructs.testing import normalize_template


def test_fraud_stack_matches_snapshot(fraud_template, snapshot):
    assert normalize_template(fraud_template.to_json()) == snapshot


def test_normalization_removes_hashes_and_bootstrap_noise():
    template = {
        "Parameters": {"BootstrapVersion": {"Type": "String"}},
        "Rules": {"CheckBootstrapVersion": {}},
        "Resources": {
            "CDKMetadata": {"Type": "AWS::CDK::Metadata"},
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Metadata": {"aws:asset:path": "asset.x", "aws:cdk:path": "S/Fn"},
                "Properties": {"Code": {"S3Key": "0" * 40 + "abcdef0123456789abcdef01.zip"}},
            },
        },
    }
    template["Resources"]["Fn"]["Properties"]["Code"]["S3Key"] = "a" * 64 + ".zip"
    normalized = normalize_template(template)
    assert normalized == {
        "Resources": {
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Code": {"S3Key": "<asset-hash>.zip"}},
            }
        }
    }
