"""The shared platform under each cross-stack reference strength, and a model
stack in an app with no feature flags at all: cdk-nag clean every time.

``@aws-cdk/core:defaultCrossStackReferences`` decides how a model stack names
the platform's buckets, key and topic: ``Fn::ImportValue`` of an export
(``"strong"``), ``Fn::GetStackOutput`` of a published output (``"weak"``, what
``cdk init`` writes), or the weak form with the exports kept (``"both"``).
cdk-nag prints a granular finding's resource in that form, so each
acknowledgment must match all three.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from mdlc_constructs.compliance import apply_compliance_checks, read_findings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STRENGTH_FLAG = "@aws-cdk/core:defaultCrossStackReferences"
STRENGTHS = ("strong", "weak", "both")


def _synth(app: cdk.App, outdir: Path) -> tuple[dict[str, dict], list]:
    # Unacknowledged findings raise; the templates and the report are written.
    with contextlib.suppress(Exception):
        app.synth()
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return templates, read_findings(outdir)


@pytest.fixture(scope="module", params=STRENGTHS)
def shared_platform(request, tmp_path_factory):
    """``build_app(shared_platform=True)`` with the library's flags and one strength."""
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp(f"{request.param}-cdk.out")
    app = make_app(outdir=str(outdir), context={STRENGTH_FLAG: request.param})
    built = build_app(app, ROOT / "models", shared_platform=True)
    templates, findings = _synth(app, outdir)
    return request.param, built, templates, findings, outdir


def test_shared_platform_is_cdk_nag_clean_under_every_strength(shared_platform):
    strength, _, templates, findings, _ = shared_platform
    assert "Mdlc-Platform" in templates and "Mdlc-fraud" in templates
    assert [str(f) for f in findings] == [], strength


def test_model_stacks_reference_the_platform_in_the_chosen_form(shared_platform):
    from mdlc_constructs.compliance import export_name, stack_output_reference

    strength, built, templates, _, _ = shared_platform
    datasets = built.platform.data_lake.datasets.node.default_child
    logical_id = built.platform.get_logical_id(datasets)
    model = json.dumps(templates["Mdlc-fraud"], separators=(",", ":"))
    weak = stack_output_reference(built.platform, logical_id, "Arn")
    strong = json.dumps({"Fn::ImportValue": export_name(built.platform, logical_id, "Arn")},
                        separators=(",", ":"))
    # The forms the acknowledgments are written for are the ones CDK synthesizes.
    assert (weak in model) == (strength != "strong")
    assert (strong in model) == (strength == "strong")
    outputs = templates["Mdlc-Platform"].get("Outputs", {})
    assert any("Export" in o for o in outputs.values()) == (strength != "weak")


def test_the_local_runtime_deploys_the_shared_platform_under_every_strength(shared_platform):
    """The model stack's reference resolves to the platform's own bucket, read
    from its export (strong) or its published output (weak, both)."""
    from datetime import UTC, datetime

    from mdlc_constructs.compliance import export_name, stack_output_reference
    from mdlc_constructs.local.runtime import LocalCloud

    strength, built, _, _, outdir = shared_platform
    datasets = built.platform.data_lake.datasets.node.default_child
    logical_id = built.platform.get_logical_id(datasets)
    if strength == "strong":
        reference = {"Fn::ImportValue": export_name(built.platform, logical_id, "Arn")}
    else:
        reference = json.loads(stack_output_reference(built.platform, logical_id, "Arn"))
    with LocalCloud(outdir, start=datetime(2026, 11, 2, tzinfo=UTC)) as cloud:
        assert set(cloud.deployed) == {"Mdlc-Platform", "Mdlc-fraud"}
        bucket_arn = cloud.deployed["Mdlc-Platform"].resolver.attributes[logical_id]["Arn"]
        assert cloud.deployed["Mdlc-fraud"].resolver.resolve(reference) == bucket_arn


def test_a_model_stack_in_an_app_without_feature_flags_is_cdk_nag_clean(tmp_path):
    """A team's own app, none of the library's flags in its cdk.json."""
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.spec import load_spec

    app = cdk.App(outdir=str(tmp_path), analytics_reporting=False)
    apply_compliance_checks(app)
    MdlcModelStack(app, "Mdlc-fraud", spec=load_spec(ROOT / "models" / "fraud.yaml"))
    templates, findings = _synth(app, tmp_path)
    assert "Mdlc-fraud" in templates
    assert [str(f) for f in findings] == []


def test_weak_references_of_stacks_with_a_region_are_acknowledged(tmp_path):
    """With an explicit environment the published output's region is a literal."""
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_s3 as s3

    from mdlc_constructs.compliance import acknowledge_objects, stack_output_reference

    env = cdk.Environment(account="111122223333", region="eu-west-1")
    app = cdk.App(outdir=str(tmp_path), analytics_reporting=False,
                  context={STRENGTH_FLAG: "weak"})
    apply_compliance_checks(app)
    producer = cdk.Stack(app, "Producer", env=env)
    bucket = s3.Bucket(producer, "Data", enforce_ssl=True)
    consumer = cdk.Stack(app, "Consumer", env=env)
    role = iam.Role(consumer, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:GetObject"],
                                           resources=[bucket.arn_for_objects("data/*")]))
    acknowledge_objects(role, bucket, "data/*", "objects of one prefix need a wildcard")
    templates, findings = _synth(app, tmp_path)
    logical_id = producer.get_logical_id(bucket.node.default_child)
    reference = stack_output_reference(producer, logical_id, "Arn")
    assert '"Region":"eu-west-1"' in reference
    assert reference in json.dumps(templates["Consumer"], separators=(",", ":"))
    assert [f for f in findings if f.rule.startswith("AwsSolutions-IAM5")] == []


def test_shared_platform_templates_have_no_cfn_lint_errors(shared_platform):
    from tests.cfn_lint import lint

    strength, _, _, _, outdir = shared_platform
    assert lint(outdir.glob("*.template.json")) == [], strength
