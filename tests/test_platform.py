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


def test_references_go_from_models_to_the_platform_only(shared):
    built, templates, _ = shared
    platform = templates["Mdlc-Platform"]
    assert "Fn::ImportValue" not in json.dumps(platform)
    exports = {o["Export"]["Name"]["Fn::Join"][1][-1] if isinstance(o["Export"]["Name"], dict)
               else o["Export"]["Name"] for o in platform.get("Outputs", {}).values()}
    for model in MODELS:
        imports = json.dumps(templates[f"Mdlc-{model}"])
        assert "Fn::ImportValue" in imports
        stack = built.models[model]
        assert built.platform in stack.dependencies
        assert stack not in built.platform.dependencies
    # Each shared attribute is exported once, whatever the number of models.
    assert len(exports) == len(platform.get("Outputs", {}))


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
