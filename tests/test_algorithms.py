"""Algorithms: built-in image mapping equals the SageMaker SDK; Marketplace and custom paths."""

from __future__ import annotations

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from mdlc_constructs.algorithms import (
    BUILTIN_TITLES,
    BuiltinImage,
    CustomImage,
    builtin_image_uris,
    training_algorithm,
)
from mdlc_constructs.spec.training import BUILTIN_ALGORITHMS

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")
XGBOOST = ("xgboost", "1.7-1")


def _version(name: str) -> str:
    return XGBOOST[1] if name == "xgboost" else "1"


def test_every_builtin_the_issue_lists():
    assert set(BUILTIN_ALGORITHMS) == set(BUILTIN_TITLES)
    assert len(BUILTIN_ALGORITHMS) == 17


@pytest.mark.parametrize("name", BUILTIN_ALGORITHMS)
def test_mapping_equals_the_sdk(name):
    from sagemaker.core import image_uris

    uris = builtin_image_uris(name, _version(name))
    for region in REGIONS:
        if region not in uris:
            continue
        assert uris[region] == image_uris.retrieve(
            name, region=region, version=_version(name), image_scope="training"
        )
    assert "eu-west-1" in uris and "us-east-1" in uris


def test_unknown_version_names_the_field_and_the_versions():
    with pytest.raises(ValueError, match=r"training\.algorithm\.version.*'1\.7-1'"):
        builtin_image_uris("xgboost", "9.9")


@pytest.fixture(scope="module")
def builtin_template():
    """No cdk-nag app needed: a mapping and a rule have no findings; synthesis is cheap."""
    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False)
    stack = Stack(app, "Algorithms")
    image = BuiltinImage(stack, "Xgboost", name=XGBOOST[0], version=XGBOOST[1])
    # Something to use the image, as the training job does (a template needs a resource).
    from aws_cdk import aws_ssm as ssm

    ssm.StringParameter(stack, "Image", string_value=image.image_uri)
    return image, Template.from_stack(stack).to_json()


def test_builtin_mapping_and_region_rule(builtin_template):
    _, template = builtin_template
    (mapping,) = template["Mappings"].values()
    sdk = builtin_image_uris(*XGBOOST)
    assert {region: row["image"] for region, row in mapping.items()} == sdk
    rule = next(
        r for k, r in template["Rules"].items() if k.startswith("XgboostRegionHasImage"))
    assertion = rule["Assertions"][0]
    assert assertion["Assert"]["Fn::Contains"] == [sorted(sdk), {"Ref": "AWS::Region"}]
    assert "not available in this region" in assertion["AssertDescription"]
    assert "XGBoost" in assertion["AssertDescription"]


def test_known_region_is_checked_at_synthesis():
    from aws_cdk import Environment

    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False)
    stack = Stack(app, "Lda", env=Environment(account="123456789012", region="eu-south-2"))
    with pytest.raises(ValueError, match="has no image in eu-south-2"):
        BuiltinImage(stack, "Lda", name="lda", version="1")


def _spec(fraud_spec, algorithm):
    training = fraud_spec.training.model_copy(update={"algorithm": algorithm})
    return fraud_spec.model_copy(update={"training": training})


def test_marketplace(fraud_spec):
    from aws_cdk import aws_kms as kms

    from mdlc_constructs.spec.training import MarketplaceAlgorithm
    from mdlc_constructs.testing import make_app

    arn = "arn:aws:sagemaker:eu-west-1:123456789012:algorithm/vendor-fraud-1"
    spec = _spec(fraud_spec, MarketplaceAlgorithm(kind="marketplace", arn=arn))
    stack = Stack(make_app(compliance=False), "Marketplace")
    algorithm = training_algorithm(stack, "Algorithm", spec=spec, key=kms.Key(stack, "K"))
    assert algorithm.algorithm_specification() == {
        "TrainingInputMode": "File", "AlgorithmName": arn}
    assert algorithm.image_uri is None and algorithm.network_isolation
    (statement,) = algorithm.workflow_statements()
    assert statement.to_statement_json() == {
        "Action": "sagemaker:DescribeAlgorithm", "Effect": "Allow", "Resource": arn}


@pytest.fixture(scope="module")
def custom_template(tmp_path_factory, fraud_spec):
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.spec.training import CustomAlgorithm
    from mdlc_constructs.testing import make_app
    from tests.training_fixtures import TrainingTestStack

    source = tmp_path_factory.mktemp("image")
    (source / "Dockerfile").write_text("FROM public.ecr.aws/docker/library/python:3.12-slim\n")
    spec = _spec(fraud_spec, CustomAlgorithm(kind="custom", source=str(source), tag="v1"))
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = make_app(outdir=str(outdir))
    stack = TrainingTestStack(app, "Custom")
    algorithm = training_algorithm(stack, "Algorithm", spec=spec, key=stack.key)
    try:
        app.synth()
    except Exception as error:
        pytest.fail(f"{error}\n" + "\n".join(map(str, read_findings(outdir))))
    return algorithm, Template.from_stack(stack)


def test_custom_repository(custom_template):
    algorithm, template = custom_template
    assert algorithm.kind == "custom" and algorithm.build_project is not None
    template.has_resource(
        "AWS::ECR::Repository",
        {
            "Properties": {
                "ImageTagMutability": "IMMUTABLE",
                "ImageScanningConfiguration": {"ScanOnPush": True},
                "EncryptionConfiguration": {"EncryptionType": "KMS",
                                            "KmsKey": {"Fn::GetAtt": [
                                                template_key(template), "Arn"]}},
            },
            "DeletionPolicy": "Retain",
        },
    )


def template_key(template: Template) -> str:
    (key,) = template.find_resources("AWS::KMS::Key")
    return key


def test_custom_build_project(custom_template):
    algorithm, template = custom_template
    (project,) = template.find_resources("AWS::CodeBuild::Project").values()
    props = project["Properties"]
    assert props["Environment"]["PrivilegedMode"] is True
    assert props["Source"]["Type"] == "S3"
    assert props["EncryptionKey"] == {"Fn::GetAtt": [template_key(template), "Arn"]}
    assert props["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED"
    variables = {v["Name"]: v["Value"] for v in props["Environment"]["EnvironmentVariables"]}
    assert variables["IMAGE_TAG"].startswith("v1-") and len(variables["IMAGE_TAG"]) == 19
    assert "describe-images" in props["Source"]["BuildSpec"]
    resources = algorithm.resources
    assert isinstance(resources, CustomImage)
    assert algorithm.algorithm_specification()["TrainingImage"] == algorithm.image_uri


def test_custom_source_without_dockerfile(tmp_path):
    from aws_cdk import aws_kms as kms

    from mdlc_constructs.testing import make_app

    stack = Stack(make_app(compliance=False), "NoDockerfile")
    with pytest.raises(ValueError, match=r"training\.algorithm\.source"):
        CustomImage(stack, "Image", source=tmp_path, key=kms.Key(stack, "K"))
