"""cdk-nag: the example app has no unacknowledged finding (the session
fixture fails otherwise), and the check really fails on a bad resource."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from mdlc_constructs.compliance import acknowledge, read_findings
from mdlc_constructs.testing import make_app


def test_example_app_synthesizes_with_both_packs(synthesized):
    stack, assembly = synthesized
    assert assembly.get_stack_by_name(stack.stack_name).template["Resources"]


def test_a_non_compliant_bucket_fails_synthesis(tmp_path):
    app = make_app(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Careless")
    s3.Bucket(stack, "Open")  # no KMS, no TLS policy, no logging, no versioning
    with pytest.raises(RuntimeError) as failure:
        app.synth()
    assert str(failure.value).startswith("ValidationFailed")
    rules = {finding.rule for finding in read_findings(tmp_path)}
    assert {
        "AwsSolutions-S10",
        "PCI.DSS.321-S3DefaultEncryptionKMS",
        "PCI.DSS.321-S3BucketVersioningEnabled",
    } <= rules


def test_acknowledged_findings_do_not_fail(tmp_path):
    app = make_app(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Acknowledged")
    bucket = s3.Bucket(
        stack,
        "Bucket",
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        versioned=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
    )
    for rule in (
        "AwsSolutions-S1",
        "PCI.DSS.321-S3BucketLoggingEnabled",
        "PCI.DSS.321-S3BucketReplicationEnabled",
        "PCI.DSS.321-S3DefaultEncryptionKMS",
    ):
        acknowledge(bucket, rule, "acknowledged in a test of acknowledgments")
    app.synth()
    assert read_findings(tmp_path) == []


def test_an_acknowledgment_needs_a_real_reason():
    app = make_app(compliance=False)
    stack = cdk.Stack(app, "Lazy")
    with pytest.raises(ValueError, match="must explain it"):
        acknowledge(stack, "AwsSolutions-S1", "ok")


@pytest.mark.parametrize("env", [None, cdk.Environment(account="222222222222",
                                                       region="eu-west-1")],
                         ids=["agnostic", "explicit-environment"])
def test_printed_arn_names_a_format_arn_wildcard_as_cdk_nag_prints_it(tmp_path, env):
    """The helpers build an acknowledgment from the same parts the grant used:
    cdk-nag prints ``${AWS::Region}`` as ``<AWS::Region>``, or the literal of an
    explicit environment, and acknowledge() records both forms."""
    from aws_cdk import aws_iam as iam

    from mdlc_constructs.compliance import iam5_resource, printed_arn

    app = make_app(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Wildcards", env=env)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(
        actions=["sagemaker:DescribeTrainingJob"],
        resources=[stack.format_arn(service="sagemaker", resource="training-job",
                                    resource_name="mdlc-fraud-*")]))
    acknowledge(role, "PCI.DSS.321-IAMNoInlinePolicy", "one role's own policy in this test")
    acknowledge(role, iam5_resource(printed_arn("sagemaker", "training-job/mdlc-fraud-*")),
                "the jobs of one model, named per run")
    app.synth()
    assert read_findings(tmp_path) == []


@pytest.mark.parametrize(
    ("stack_name", "logical_id", "attribute"),
    [
        ("Mdlc-Platform", None, "Arn"),
        ("Mdlc-Platform", None, None),
        # Long enough that aws-cdk-lib cuts the export name to CloudFormation's 255.
        ("Mdlc-" + "p" * 120, "DataLake" + "Datasets" * 24 + "B08E7C7A", "Arn"),
    ],
)
def test_export_name_is_the_name_of_the_export_a_strong_reference_synthesizes(
    stack_name, logical_id, attribute
):
    """``compliance.export_name`` against a real strong cross-stack reference:
    the consumer's ``Fn::ImportValue`` and the producer's ``Export``."""
    from mdlc_constructs.compliance import export_name

    app = cdk.App(context={"@aws-cdk/core:defaultCrossStackReferences": "strong"})
    producer = cdk.Stack(app, "Producer", stack_name=stack_name)
    bucket = s3.Bucket(producer, "Bucket")
    if logical_id:
        bucket.node.default_child.override_logical_id(logical_id)
    else:
        logical_id = producer.get_logical_id(bucket.node.default_child)
    consumer = cdk.Stack(app, "Consumer")
    value = bucket.bucket_arn if attribute == "Arn" else bucket.bucket_name
    cdk.CfnOutput(consumer, "Used", value=value)
    assembly = app.synth()
    imported = assembly.get_stack_by_name("Consumer").template["Outputs"]["Used"]["Value"]
    exported = [o["Export"]["Name"]
                for o in assembly.get_stack_by_name(stack_name).template["Outputs"].values()]
    name = export_name(producer, logical_id, attribute)
    assert imported == {"Fn::ImportValue": name} and exported == [name]
    assert len(name) <= 255
