"""The CI/CD pipeline: stages, approval, encryption, least privilege, cdk-nag.

One cross-account pipeline (pipeline 111..., staging 222..., production 333...)
over a spec with a custom training container is synthesized once per module,
with waves of at most 2 actions, so every test below also checks that
splitting a deployment into waves keeps its order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINE, STAGING, PRODUCTION = "111111111111", "222222222222", "333333333333"
CUSTOM = '{kind: custom, source: container}'
#: Actions per pipeline stage in the module's pipeline: staging (the stack and
#: its image step) fits one stage, production (approval, stack, image step)
#: takes two waves.
WAVE = 2


def _custom_models(folder: Path) -> Path:
    text = (ROOT / "models" / "fraud.yaml").read_text()
    (folder / "container").mkdir()
    (folder / "container" / "Dockerfile").write_text("FROM python:3.12-slim\n")
    custom = text.replace("name: fraud\n", "name: cust\n", 1).replace(
        'algorithm: {kind: builtin, name: xgboost, version: "1.7-1"}', f"algorithm: {CUSTOM}"
    )
    assert CUSTOM in custom
    (folder / "cust.yaml").write_text(custom)
    return folder


def _config(**overrides):
    from mdlc_constructs.pipeline import DeploymentTarget, PipelineConfig

    values = dict(
        repository="mdlc-models", create_repository=True, account=PIPELINE, region="eu-west-1",
        staging=DeploymentTarget(STAGING, "eu-west-1"),
        production=DeploymentTarget(PRODUCTION, "eu-west-1"),
        shared_platform=False, actions_per_stage=WAVE,
    )
    values.update(overrides)
    return PipelineConfig(**values)


@pytest.fixture(scope="module")
def synthesized_pipeline(tmp_path_factory):
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.pipeline import MdlcPipelineStack
    from tests.template_rules import rules_app

    outdir = tmp_path_factory.mktemp("pipeline-cdk.out")
    app = rules_app(outdir=str(outdir))
    stack = MdlcPipelineStack(
        app, "MdlcPipeline", config=_config(),
        models_dir=_custom_models(tmp_path_factory.mktemp("models")),
    )
    findings = []
    try:
        app.synth()
    except Exception as error:  # findings in the stages' stacks; templates are written anyway
        findings = read_findings(outdir)
        if not findings:  # not cdk-nag's: aws-cdk-lib's template rules, say
            raise error
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in outdir.rglob("*.template.json")
    }
    return stack, templates, findings


@pytest.fixture(scope="module")
def pipeline_template(synthesized_pipeline):
    return synthesized_pipeline[1]["MdlcPipeline"]


def _resources(template, kind):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _stages(template):
    (pipeline,) = _resources(template, "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]["Stages"]


def _stage(template, name):
    """Stage ``name``, or its waves ``name.1``, ``name.2``... as one stage whose
    ``RunOrder`` counts across them (a wave runs after the one before it)."""
    waves = [s for s in _stages(template) if s["Name"].split(".")[0] == name]
    assert waves, name
    actions = [{**action, "RunOrder": wave * 1000 + action["RunOrder"]}
               for wave, stage in enumerate(waves) for action in stage["Actions"]]
    return {"Name": name, "Actions": actions}


def test_pipeline_stack_passes_cdk_nag(synthesized_pipeline):
    _, _, findings = synthesized_pipeline
    own = [
        f for f in findings
        if f.construct_path.startswith("MdlcPipeline/")
        and not f.construct_path.startswith(("MdlcPipeline/Staging/", "MdlcPipeline/Production/"))
    ]
    assert own == [], "\n".join(map(str, own))


def test_stage_stacks_pass_cdk_nag(synthesized_pipeline):
    assert synthesized_pipeline[2] == []


def test_stages_in_order_with_self_mutation_and_approval(pipeline_template):
    names = [s["Name"] for s in _stages(pipeline_template)]
    assert names == ["Source", "Build", "UpdatePipeline", "Assets", "Staging",
                     "Production.1", "Production.2"]
    assert all(len(s["Actions"]) <= WAVE for s in _stages(pipeline_template))
    production = _stage(pipeline_template, "Production")["Actions"]
    approval = next(a for a in production if a["ActionTypeId"]["Category"] == "Approval")
    deploys = [a for a in production if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert deploys and all(a["RunOrder"] > approval["RunOrder"] for a in deploys)
    assert not any(
        a["ActionTypeId"]["Category"] == "Approval"
        for a in _stage(pipeline_template, "Staging")["Actions"]
    )


def test_stages_deploy_to_their_accounts(pipeline_template):
    for stage, account in (("Staging", STAGING), ("Production", PRODUCTION)):
        deploys = [a for a in _stage(pipeline_template, stage)["Actions"]
                   if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        assert deploys
        for action in deploys:
            assert account in json.dumps(action["RoleArn"])


def test_source_is_a_retained_encrypted_codecommit_repository(pipeline_template):
    (source,) = _stage(pipeline_template, "Source")["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeCommit"
    (repository,) = _resources(pipeline_template, "AWS::CodeCommit::Repository").values()
    assert repository["DeletionPolicy"] == "Retain"
    assert "KmsKeyId" in repository["Properties"]


def test_artifacts_are_encrypted_with_a_rotated_retained_key(pipeline_template):
    (key_id, key), = _resources(pipeline_template, "AWS::KMS::Key").items()
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    (pipeline,) = _resources(pipeline_template, "AWS::CodePipeline::Pipeline").values()
    store = pipeline["Properties"]["ArtifactStore"]
    assert store["EncryptionKey"]["Id"] == {"Fn::GetAtt": [key_id, "Arn"]}
    buckets = _resources(pipeline_template, "AWS::S3::Bucket")
    artifacts = buckets[store["Location"]["Ref"]]["Properties"]
    rule = artifacts["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "LoggingConfiguration" in artifacts
    # The target accounts may use the key (their deploy roles read the artifacts).
    policy = json.dumps(key["Properties"]["KeyPolicy"])
    assert STAGING in policy and PRODUCTION in policy
    # Every CodeBuild project encrypts its output with the same key.
    for project in _resources(pipeline_template, "AWS::CodeBuild::Project").values():
        assert project["Properties"]["EncryptionKey"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_synth_tests_and_passes_the_commit_id(pipeline_template):
    projects = _resources(pipeline_template, "AWS::CodeBuild::Project")
    synth = next(p for k, p in projects.items() if "Synth" in k)
    buildspec = json.loads(synth["Properties"]["Source"]["BuildSpec"])
    commands = buildspec["phases"]["build"]["commands"]
    assert "make test" in commands
    assert any("-c mdlc:codeVersion=\"$MDLC_CODE_VERSION\"" in c for c in commands)
    (build,) = _stage(pipeline_template, "Build")["Actions"]
    env = json.loads(build["Configuration"]["EnvironmentVariables"])
    commit = next(v for v in env if v["name"] == "MDLC_CODE_VERSION")
    assert commit["value"].endswith(".CommitId}")


def test_images_are_built_after_each_deployment(pipeline_template):
    for stage in ("Staging", "Production"):
        actions = _stage(pipeline_template, stage)["Actions"]
        build = next(a for a in actions if a["Name"] == "BuildImages-1")
        deploys = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        assert build["RunOrder"] > max(a["RunOrder"] for a in deploys)
        env = json.loads(build["Configuration"]["EnvironmentVariables"])
        # The project's name is a variable; the role's ARN is fixed, in the project.
        assert "PROJECT_1" in {v["name"] for v in env}


def test_image_step_may_assume_only_its_stage_role(pipeline_template):
    policies = _resources(pipeline_template, "AWS::IAM::Policy")
    projects = _resources(pipeline_template, "AWS::CodeBuild::Project")
    for stage, account in (("Staging", STAGING), ("Production", PRODUCTION)):
        (policy,) = [p for k, p in policies.items() if f"{stage}BuildImages1" in k]
        assume = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                  if s["Action"] == "sts:AssumeRole"]
        assert len(assume) == 1
        resource = json.dumps(assume[0]["Resource"])
        assert f"{account}:role/mdlc-cust-image-{stage.lower()}" in resource
        (project,) = [p for k, p in projects.items() if f"{stage}BuildImages1" in k]
        variables = project["Properties"]["Environment"]["EnvironmentVariables"]
        role = next(v for v in variables if v["Name"] == "ROLE_ARN_1")
        assert f"{account}:role/mdlc-cust-image-{stage.lower()}" in json.dumps(role["Value"])


def test_images_are_built_five_to_a_step_within_codepipelines_limits(tmp_path):
    """Every step is a project, role and policy in the pipeline stack and
    carries its images' variables in its action: 6 custom containers make a
    full step of 5 and one of 1 per stage, and no action configuration value
    (the full step's is the longest) passes 80% of CodePipeline's 1,000
    characters. Six, not more: each model is a stack per stage to synthesize."""
    from mdlc_constructs import quotas
    from mdlc_constructs.pipeline import IMAGES_PER_STEP, MdlcPipelineStack
    from mdlc_constructs.testing import make_app

    models = _custom_models(tmp_path)  # cust.yaml and its container folder
    spec = (models / "cust.yaml").read_text()
    (models / "cust.yaml").unlink()
    for n in range(6):
        (models / f"cust{n:02d}.yaml").write_text(
            spec.replace("name: cust\n", f"name: a-twenty-char-nam-{n:02d}\n", 1))
    app = make_app(compliance=False)
    stack = MdlcPipelineStack(app, "MdlcPipeline", config=_config(), models_dir=models)
    assert IMAGES_PER_STEP == 5
    assert [len(stack.image_steps[s]) for s in ("Staging", "Production")] == [2, 2]
    template = app.synth().get_stack_by_name("MdlcPipeline").template
    uses = {u.limit.name: u for u in quotas.limits({"MdlcPipeline": template})}
    assert uses["CodePipeline action configuration value (characters)"].headroom >= 0.2
    assert uses["CloudFormation resources per stack"].used < 60


def test_model_stack_trusts_the_pipeline_for_its_image_build_only(synthesized_pipeline):
    stack, templates, _ = synthesized_pipeline
    (template,) = [t for name, t in templates.items() if "Staging" in name and "cust" in name]
    roles = {k: v for k, v in _resources(template, "AWS::IAM::Role").items()
             if k.startswith("PipelineImageBuild")}
    (role,) = roles.values()
    assert role["Properties"]["RoleName"] == "mdlc-cust-image-staging"
    trust = json.dumps(role["Properties"]["AssumeRolePolicyDocument"])
    assert PIPELINE in trust
    (policy,) = [p for k, p in _resources(template, "AWS::IAM::Policy").items()
                 if k.startswith("PipelineImageBuild")]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["codebuild:BatchGetBuilds", "codebuild:StartBuild"]
    assert "Fn::GetAtt" in json.dumps(statement["Resource"])  # the one project, no wildcard
    assert stack.staging.images["cust"]


def test_connection_source_is_chosen_by_configuration(tmp_path):
    from aws_cdk.assertions import Match, Template

    from mdlc_constructs.pipeline import DeploymentTarget, MdlcPipelineStack
    from mdlc_constructs.testing import make_app

    arn = f"arn:aws:codestar-connections:eu-west-1:{PIPELINE}:connection/abc-123"
    config = _config(repository="payments/mdlc-models", create_repository=False,
                     connection_arn=arn, staging=DeploymentTarget(), production=DeploymentTarget())
    (tmp_path / "fraud.yaml").write_text((ROOT / "models" / "fraud.yaml").read_text())
    stack = MdlcPipelineStack(
        make_app(compliance=False), "MdlcPipeline", config=config, models_dir=tmp_path,
        # Empty stages: this test is about the source only.
        model_stack=lambda scope, id, spec, platform, env: __import__("aws_cdk").Stack(scope, id),
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::CodePipeline::Pipeline", {
        "Stages": Match.array_with([Match.object_like({
            "Name": "Source",
            "Actions": [Match.object_like({
                "ActionTypeId": Match.object_like({"Provider": "CodeStarSourceConnection"}),
                "Configuration": Match.object_like({"ConnectionArn": arn,
                                                    "FullRepositoryId": "payments/mdlc-models"}),
            })],
        })]),
    })
    template.resource_count_is("AWS::CodeCommit::Repository", 0)
    assert stack.repository is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"repository": "a/b/c", "connection_arn": "arn:aws:codestar-connections:eu-west-1:"
          "111111111111:connection/x"}, "repository: with a connection"),
        ({"connection_arn": "arn:aws:s3:::bucket"}, "connection_arn"),
        ({"account": "1234"}, "account: expected 12 digits"),
        ({"repository": "bad name!"}, "CodeCommit repository name"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_config_from_context_and_cross_account_needs_the_pipeline_account():
    from mdlc_constructs.pipeline import MdlcPipelineStack, PipelineConfig
    from mdlc_constructs.testing import make_app

    app = make_app(compliance=False, context={"mdlc:pipeline": {
        "repository": "mdlc-models", "staging": {"account": STAGING, "region": "eu-west-1"},
        "production": {"account": int(PRODUCTION)},
    }})
    config = PipelineConfig.from_context(app)
    assert config.staging.account == STAGING and config.production.account == PRODUCTION
    assert config.cross_account and config.source_kind == "codecommit"
    with pytest.raises(ValueError, match="pipeline's own account must be given"):
        MdlcPipelineStack(app, "P", config=config, models_dir=ROOT / "models")
    assert PipelineConfig.from_context(make_app(compliance=False)) is None
    with pytest.raises(ValueError, match="unknown fields"):
        PipelineConfig.from_mapping({"repository": "r", "stages": []})


@pytest.mark.slow
@pytest.mark.parametrize("partition_literals", [False, True], ids=["library-flags", "cdk-init"])
def test_documented_shared_platform_pipeline_synthesizes_clean(tmp_path, partition_literals):
    """The docs' example (two stages on a shared platform, cdk-nag on), given as
    the string the CDK CLI passes for ``-c``: each stage's model stacks must
    acknowledge findings against their own stage's platform, not the first one
    with the same logical ids (issue #12); and under ``cdk init``'s
    ``enablePartitionLiterals``, which writes ``aws`` for ``${AWS::Partition}``
    in stacks with an explicit environment. aws-cdk-lib's template rules report
    nothing either (tests/template_rules.py)."""
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.pipeline import MdlcPipelineStack, build
    from tests.cfn_lint import documented_pipeline_context, lint
    from tests.template_rules import rules_app

    context = documented_pipeline_context()
    assert json.loads(context)["shared_platform"] is True
    app = rules_app(outdir=str(tmp_path), context={
        "mdlc:pipeline": context, "@aws-cdk/core:enablePartitionLiterals": partition_literals})
    stack = build(app, ROOT / "models")
    assert isinstance(stack, MdlcPipelineStack)
    try:
        app.synth()
    except Exception as error:  # the findings say more than the error
        findings = read_findings(tmp_path)
        assert findings == [], "\n".join(map(str, findings[:20]))
        raise error
    assert read_findings(tmp_path) == []
    stacks = {p.name for p in tmp_path.rglob("*.template.json")}
    for stage in ("Staging", "Production"):
        assert any(name.startswith(f"MdlcPipeline{stage}") and "Platform" in name
                   for name in stacks), sorted(stacks)
    assert lint(tmp_path.rglob("*.template.json")) == []


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected an object"),
    ('{"repository": "r", "stages": 2}', "unknown fields"),
])
def test_pipeline_context_text_errors_name_what_was_wrong(text, message):
    from mdlc_constructs.pipeline import PipelineConfig
    from mdlc_constructs.testing import make_app

    with pytest.raises(ValueError, match=message):
        PipelineConfig.from_context(make_app(compliance=False, context={"mdlc:pipeline": text}))


def test_each_stack_deploys_in_one_action_by_default(pipeline_template):
    for stage in ("Staging", "Production"):
        deploys = [a for a in _stage(pipeline_template, stage)["Actions"]
                   if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        assert len(deploys) == 1  # the one model's stack
        assert {a["Configuration"]["ActionMode"] for a in deploys} == {"CREATE_UPDATE"}
        assert all(a["Configuration"]["TemplatePath"].endswith(".template.json") for a in deploys)


def test_waves_keep_every_variable_read_after_the_action_that_publishes_it(pipeline_template):
    """An image step reads its stack's outputs (``#{namespace.name}``): the
    action with that namespace must run before it, in an earlier wave or
    earlier in the same one."""
    import re

    for stage in ("Staging", "Production"):
        actions = _stage(pipeline_template, stage)["Actions"]
        published = {a["Namespace"]: a["RunOrder"] for a in actions if "Namespace" in a}
        reads = 0
        for action in actions:
            for namespace in re.findall(r"#\{([\w-]+)\.", json.dumps(action["Configuration"])):
                if namespace in published:
                    reads += 1
                    assert published[namespace] < action["RunOrder"], (stage, action["Name"])
        assert reads >= 1  # the image step's PROJECT_1


def test_the_pipeline_in_waves_is_cfn_lint_clean(pipeline_template, tmp_path):
    """The waves are an override of the pipeline's Stages: cfn-lint checks the
    result against CodePipeline's schema (names, run orders, artifacts)."""
    from tests.cfn_lint import lint

    path = tmp_path / "MdlcPipeline.template.json"
    path.write_text(json.dumps(pipeline_template, indent=1))
    assert lint([path]) == []
