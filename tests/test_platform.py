"""Many models: a platform stack with the shared pieces and a small stack per model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("fraud", "fraud-b", "fraud-c")


def _models_dir(folder: Path) -> Path:
    text = (ROOT / "models" / "fraud.yaml").read_text()
    for name in MODELS:
        (folder / f"{name}.yaml").write_text(text.replace("name: fraud\n", f"name: {name}\n", 1))
    return folder


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Platform + three model stacks, both cdk-nag packs, synthesized once."""
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("shared-cdk.out")
    app = make_app(outdir=str(outdir))
    built = build_app(app, _models_dir(tmp_path_factory.mktemp("models")), shared_platform=True)
    error = None
    try:
        app.synth()
    except Exception as caught:  # unacknowledged findings: templates are written anyway
        error = caught
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.glob("*.template.json")
    }
    return built, templates, read_findings(outdir) if error else []


def _count(template, kind):
    return sum(1 for r in template["Resources"].values() if r["Type"] == kind)


def test_one_platform_and_one_stack_per_model(shared):
    built, templates, _ = shared
    assert set(templates) == {"Mdlc-Platform", *(f"Mdlc-{m}" for m in MODELS)}
    assert sorted(built.models) == sorted(MODELS)  # file-name order


def test_shared_resources_exist_once_in_the_platform(shared):
    _, templates, _ = shared
    platform = templates["Mdlc-Platform"]
    assert _count(platform, "AWS::KMS::Key") == 1
    assert _count(platform, "AWS::SNS::Topic") == 1
    assert _count(platform, "AWS::S3::Bucket") == 7  # six data lake buckets + access logs
    for model in MODELS:
        template = templates[f"Mdlc-{model}"]
        for kind in ("AWS::KMS::Key", "AWS::S3::Bucket"):
            assert _count(template, kind) == 0, f"Mdlc-{model} duplicates a {kind}"
        # A model may own topics of its own (e.g. an integration action's), but
        # not a second failure-and-approval topic.
        topics = [r["Properties"].get("DisplayName", "") for r in template["Resources"].values()
                  if r["Type"] == "AWS::SNS::Topic"]
        assert not [t for t in topics if "failures and approvals" in t], topics


def _stack_outputs_read(value, found=None):
    """``(stack name, output name)`` of every ``Fn::GetStackOutput`` in ``value``."""
    found = set() if found is None else found
    if isinstance(value, dict):
        if "Fn::GetStackOutput" in value:
            argument = value["Fn::GetStackOutput"]
            found.add((argument["StackName"], argument["OutputName"]))
        for item in value.values():
            _stack_outputs_read(item, found)
    elif isinstance(value, list):
        for item in value:
            _stack_outputs_read(item, found)
    return found


def test_references_go_from_models_to_the_platform_only(shared):
    """cdk.json's ``@aws-cdk/core:defaultCrossStackReferences`` is "both": models
    read the platform's published outputs (``Fn::GetStackOutput``), and the
    platform keeps exporting them for stacks deployed with strong references.
    tests/test_cross_stack_references.py covers "strong" and "weak"."""
    built, templates, _ = shared
    platform = templates["Mdlc-Platform"]
    assert "Fn::ImportValue" not in json.dumps(platform)
    assert _stack_outputs_read(platform) == set()
    outputs = platform.get("Outputs", {})
    for model in MODELS:
        template = templates[f"Mdlc-{model}"]
        assert "Fn::ImportValue" not in json.dumps(template)
        read = _stack_outputs_read(template)
        assert read and {stack for stack, _ in read} == {"Mdlc-Platform"}
        assert {name for _, name in read} <= set(outputs)
        stack = built.models[model]
        assert built.platform in stack.dependencies
        assert stack not in built.platform.dependencies
    # Each shared attribute is published once and exported once, whatever the
    # number of models.
    published = [json.dumps(o["Value"], sort_keys=True) for o in outputs.values()
                 if "Export" not in o]
    exported = [json.dumps(o["Value"], sort_keys=True) for o in outputs.values() if "Export" in o]
    assert len(set(published)) == len(published)
    assert sorted(published) == sorted(exported)


def test_every_model_stack_uses_the_platform_data_lake_and_topic(shared):
    built, _, _ = shared
    for stack in built.models.values():
        assert stack.data_lake is built.platform.data_lake
        assert stack.topic is built.platform.topic


def test_platform_stack_passes_cdk_nag(shared):
    _, _, findings = shared
    assert [f for f in findings if f.construct_path.startswith("Mdlc-Platform/")] == []


def test_model_stacks_pass_cdk_nag_on_a_shared_platform(shared):
    _, _, findings = shared
    assert findings == []


def test_a_self_contained_stack_per_model_stays_possible(tmp_path):
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False)
    built = build_app(app, _models_dir(tmp_path), shared_platform=False)
    assert built.platform is None
    for stack in built.models.values():
        assert stack.data_lake.node.scope is stack  # its own data lake, key and topic
        assert stack.topic.node.scope is stack


def test_build_app_rejects_an_empty_folder(tmp_path):
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.spec import SpecError
    from mdlc_constructs.testing import make_app

    with pytest.raises(SpecError, match=r"no \*\.yaml model specs"):
        build_app(make_app(compliance=False), tmp_path, shared_platform=True)


def test_code_version_comes_from_context_then_environment(monkeypatch):
    from mdlc_constructs.lineage import code_version
    from mdlc_constructs.testing import make_app

    monkeypatch.delenv("MDLC_CODE_VERSION", raising=False)
    assert code_version(make_app(compliance=False)) == "unknown"
    monkeypatch.setenv("MDLC_CODE_VERSION", "abc123")
    assert code_version(make_app(compliance=False)) == "abc123"
    app = make_app(compliance=False, context={"mdlc:codeVersion": "def456"})
    assert code_version(app) == "def456"


def test_only_builds_the_selected_models_but_validates_every_spec(tmp_path):
    """``-c mdlc:only=<name>``: one model of a big app is synthesized without the
    others' construction (CDK's stack selection still builds them all)."""
    from mdlc_constructs.pipeline import build
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.spec import SpecError
    from mdlc_constructs.testing import make_app

    text = (ROOT / "models" / "fraud.yaml").read_text()
    for name in ("alpha", "beta", "gamma"):
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: fraud\n", f"name: {name}\n", 1))
    app = make_app(compliance=False, context={"mdlc:only": "beta, gamma"})
    built = build(app, tmp_path)
    assert sorted(built.models) == ["beta", "gamma"] and built.platform is not None
    assert {spec.name for spec in built.specs} == {"beta", "gamma"}
    with pytest.raises(SpecError, match=r"no model spec named \['delta'\].*'alpha'"):
        build_app(make_app(compliance=False), tmp_path, shared_platform=True, only=["delta"])
    (tmp_path / "broken.yaml").write_text(text.replace("name: fraud\n", "name: Broken!\n", 1))
    with pytest.raises(SpecError, match=r"broken\.yaml"):  # every spec is still validated
        build_app(make_app(compliance=False), tmp_path, shared_platform=True, only=["beta"])


def test_a_pipeline_refuses_only(tmp_path):
    from mdlc_constructs.pipeline import build
    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False, context={
        "mdlc:only": "fraud", "mdlc:pipeline": {"repository": "r"}})
    with pytest.raises(ValueError, match="a pipeline deploys every model"):
        build(app, ROOT / "models")


def test_a_teams_factory_takes_what_the_platform_shares_network_included(tmp_path, monkeypatch):
    """The team example's factory and the default one share the platform through
    ``MdlcPlatformStack.model_stack_props``: a team model that asks for a
    network runs in the platform's, as a default model does (the team's copy
    of the wiring used to leave the network out)."""
    import yaml

    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from team_fraud.stack import TeamFraudStack, team_model_stack

    network = {"vpc_id": "vpc-0a1b2c3d4e5f60718", "vpc_cidr": "10.20.0.0/16",
               "availability_zones": ["eu-west-1a", "eu-west-1b"],
               "private_subnet_ids": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
               "route_table_ids": ["rtb-0a1b2c3d4e5f60718", "rtb-0f1e2d3c4b5a69788"],
               "security_group_ids": ["sg-0a1b2c3d4e5f60718"]}
    models = tmp_path / "models"
    models.mkdir()
    team = yaml.safe_load(next((ROOT / "examples" / "team_fraud" / "models").glob("*.yaml"))
                          .read_text())
    default = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    assert team["owner"] == "fraud_ops" and default["owner"] != "fraud_ops"
    default["name"] = "fraud-default"
    for document in (team, default):
        document["network"] = network
        (models / f"{document['name']}.yaml").write_text(yaml.safe_dump(document))

    built = build_app(make_app(compliance=False), models, shared_platform=True,
                      model_stack=team_model_stack)
    platform = built.platform
    assert platform is not None and platform.network is not None
    team_stack, default_stack = built.models[team["name"]], built.models["fraud-default"]
    assert isinstance(team_stack, TeamFraudStack)
    assert not isinstance(default_stack, TeamFraudStack)
    for stack in (team_stack, default_stack):
        assert stack.network is platform.network
        assert stack.data_lake is platform.data_lake
