"""The platform's, the stage's and the pipeline's class attributes, and the
model stack's network, swapped by subclasses that change something.

One app holds a shared platform built from ``build_app(platform_class=...)``
whose data lake and network are the team's subclasses, its model, and a
self-contained model stack whose network is the team's. It is synthesized
once (both cdk-nag packs); each swap must show in its template, and the data
preparation workflow of both model stacks (every function in the team's
network, every object in the team's buckets) runs on the local runtime with
the real handlers. The pipeline's ``stage_class`` and the stage's
``platform_class`` are checked on a pipeline built over the same classes
(a pipeline does not run locally: its stages' stacks are what runs, above).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mdlc_constructs.model_stack import MdlcModelStack
from mdlc_constructs.network import ModelNetwork
from mdlc_constructs.pipeline import MdlcPipelineStack, MdlcStage
from mdlc_constructs.platform import MdlcPlatformStack
from mdlc_constructs.storage import BucketOverrides, DataLake

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 1)
ROWS = 120
#: The team keeps noncurrent object versions two years (the library: one).
TEAM_NONCURRENT_DAYS = 730


class TeamLake(DataLake):
    """Noncurrent object versions kept two years."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        kwargs["overrides"] = BucketOverrides(
            noncurrent_version_expiration_days=TEAM_NONCURRENT_DAYS)
        super().__init__(scope, construct_id, **kwargs)


class TeamNetwork(ModelNetwork):
    """One availability zone, whatever the spec says (a development account)."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        if kwargs.get("vpc") is None:
            kwargs["max_azs"] = 1
        super().__init__(scope, construct_id, **kwargs)


class TeamPlatform(MdlcPlatformStack):
    data_lake_class = TeamLake
    network_class = TeamNetwork


class SoloStack(MdlcModelStack):
    """A self-contained model stack in the team's network."""

    network_class = TeamNetwork


class TeamStage(MdlcStage):
    platform_class = TeamPlatform


class TeamPipeline(MdlcPipelineStack):
    stage_class = TeamStage


def _spec_file(folder: Path, name: str) -> Path:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document["name"] = name
    document["network"] = {"create": True}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.spec import load_spec
    from mdlc_constructs.testing import make_app

    root = tmp_path_factory.mktemp("team-platform")
    (root / "models").mkdir()
    _spec_file(root / "models", "fraud")
    solo_spec = load_spec(_spec_file(root, "solo"))
    outdir = root / "cdk.out"
    cdk_app = make_app(outdir=str(outdir), context={"aws:cdk:enable-path-metadata": True})
    built = build_app(cdk_app, root / "models", shared_platform=True,
                      platform_class=TeamPlatform)
    solo = SoloStack(cdk_app, "Mdlc-solo", spec=solo_spec)
    try:
        cdk_app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text())
                 for p in outdir.glob("*.template.json")}
    return built, solo, templates, outdir


def _of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_the_platform_is_the_teams_with_the_teams_parts_under_the_librarys_ids(app):
    built, solo, _, _ = app
    platform = built.platform
    assert type(platform) is TeamPlatform and platform.node.id == "Mdlc-Platform"
    assert type(platform.data_lake) is TeamLake and platform.data_lake.node.id == "DataLake"
    assert type(platform.network) is TeamNetwork and platform.network.node.id == "Network"
    # The model on the platform uses the platform's network; the solo stack builds its own.
    assert built.models["fraud"].network is platform.network
    assert type(solo.network) is TeamNetwork and solo.network.node.id == "Network"


def test_the_platform_buckets_keep_noncurrent_versions_as_the_team_set(app):
    _, _, templates, _ = app
    buckets = _of(templates["Mdlc-Platform"], "AWS::S3::Bucket")
    expirations = {
        rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for bucket in buckets.values()
        for rule in bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        if "NoncurrentVersionExpiration" in rule
    }
    assert expirations == {TEAM_NONCURRENT_DAYS}


@pytest.mark.parametrize("stack", ["Mdlc-Platform", "Mdlc-solo"])
def test_the_teams_network_has_one_zone(app, stack):
    _, _, templates, _ = app
    subnets = _of(templates[stack], "AWS::EC2::Subnet")
    assert len(subnets) == 1
    assert "Mdlc-fraud" in templates and not _of(templates["Mdlc-fraud"], "AWS::EC2::VPC")


def _prepare(cloud: Any, stack: MdlcModelStack, spec: Any, raw: tuple[str, str]) -> Any:
    """Land a day of sampled orders in the raw bucket, run the stack's data
    preparation workflow for that day, and return its execution."""
    from mdlc_constructs.sampling import sample, to_csv

    bucket = cloud.physical(*raw)
    body = to_csv(spec, sample(spec, days=1, start=DAY, rows_per_day=ROWS, seed=3))
    cloud.client("s3").put_object(
        Bucket=bucket, Key=f"{spec.data.sources[0].prefix}dt={DAY.isoformat()}/part-00000.csv",
        Body=body.encode())
    machine = stack.get_logical_id(stack.preparation.state_machine.node.default_child)
    return cloud.wait(cloud.start_execution(stack.stack_name, machine,
                                            {"date": DAY.isoformat()}))


def test_data_preparation_runs_in_the_teams_network_and_buckets(app):
    """Both model stacks: the platform's (its buckets are the team's lake, in
    another stack) and the solo one (its own lake, the team's network)."""
    from mdlc_constructs.local.runtime import LocalCloud

    built, solo, templates, outdir = app
    model = built.models["fraud"]
    platform = built.platform

    def raw_of(stack: Any, lake: DataLake) -> tuple[str, str]:
        return stack.stack_name, stack.get_logical_id(lake.raw.node.default_child)

    with LocalCloud(outdir, start=datetime(2026, 11, 2, 3, tzinfo=UTC)) as cloud:
        runs = {
            "fraud": _prepare(cloud, model, model.spec, raw_of(platform, platform.data_lake)),
            "solo": _prepare(cloud, solo, solo.spec, raw_of(solo, solo.data_lake)),
        }
        for name, run in runs.items():
            assert run.status == "SUCCEEDED", (name, run.error, run.cause)
            (branch,) = run.output["prepared"]
            snapshot = branch["data"]["snapshot"]
            assert snapshot["rows"] == ROWS, name
            assert branch["data"]["quality"]["passed"] is True, name
        assert cloud.authorizer.report() == []
    # Every function of both model stacks runs in the team's (one-zone) network
    # (but CDK's own provider that empties the VPC's default security group).
    for name in ("Mdlc-fraud", "Mdlc-solo"):
        functions = {k: v for k, v in _of(templates[name], "AWS::Lambda::Function").items()
                     if "/Custom::" not in v["Metadata"]["aws:cdk:path"]}
        assert functions
        for logical_id, function in functions.items():
            subnets = function["Properties"]["VpcConfig"]["SubnetIds"]
            assert len(subnets) == 1, (name, logical_id)


def test_the_pipeline_builds_its_stages_and_their_platform_from_the_teams_classes(tmp_path):
    from mdlc_constructs.pipeline import DeploymentTarget, PipelineConfig
    from mdlc_constructs.testing import make_app

    config = PipelineConfig(
        repository="mdlc-models", create_repository=True, account="111111111111",
        region="eu-west-1", staging=DeploymentTarget("222222222222", "eu-west-1"),
        production=DeploymentTarget("333333333333", "eu-west-1"), shared_platform=True)
    pipeline = TeamPipeline(make_app(outdir=str(tmp_path)), "MdlcPipeline", config=config,
                            models_dir=ROOT / "models")
    for stage, construct_id in ((pipeline.staging, "Staging"),
                                (pipeline.production, "Production")):
        assert type(stage) is TeamStage and stage.node.id == construct_id
        platform = stage.app.platform
        assert type(platform) is TeamPlatform and platform.node.id == "Mdlc-Platform"
        assert type(platform.data_lake) is TeamLake
        assert stage.app.models["fraud"].data_lake is platform.data_lake
