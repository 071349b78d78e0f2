"""Network isolation (issue #16): the spec's ``network`` section puts every
function, job and endpoint in private subnets, and the lifecycle still runs.

Template assertions check what no run shows (no public path, security groups,
endpoints, scoped ENI permissions, cdk-nag); the local run checks that the
workflows succeed with the VpcConfig they now send and that SageMaker's
network-interface permissions are really needed and granted.
"""

from __future__ import annotations

import contextlib
import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from mdlc_constructs.spec import SpecError, load_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXISTING = {
    "vpc_id": "vpc-0a1b2c3d4e5f60718", "vpc_cidr": "10.20.0.0/16",
    "availability_zones": ["eu-west-1a", "eu-west-1b"],
    "private_subnet_ids": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
    "route_table_ids": ["rtb-0a1b2c3d4e5f60718", "rtb-0f1e2d3c4b5a69788"],
    "security_group_ids": ["sg-0a1b2c3d4e5f60718"],
}


def _spec_file(folder: Path, network: dict | None, name: str = "fraud") -> Path:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document["name"] = name
    if network is not None:
        document["network"] = network
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _synth(tmp_path: Path, models: Path, *, shared: bool) -> tuple[dict[str, dict], list]:
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    out = tmp_path / "cdk.out"
    app = make_app(outdir=str(out), context={"aws:cdk:enable-path-metadata": True})
    build_app(app, models, shared_platform=shared)
    with contextlib.suppress(Exception):  # findings: read below
        app.synth()
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text())
                 for p in out.glob("*.template.json")}
    return templates, read_findings(out)


def _of(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """A self-contained model stack with ``network: {create: true}``."""
    root = tmp_path_factory.mktemp("created")
    (root / "models").mkdir()
    _spec_file(root / "models", {"create": True})
    templates, findings = _synth(root, root / "models", shared=False)
    return templates["Mdlc-fraud"], findings, root


def test_created_network_is_cdk_nag_clean(created):
    _, findings, _ = created
    assert [str(f) for f in findings] == []


def test_created_vpc_has_no_public_path(created):
    template, _, _ = created
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::EC2::VPC" in kinds
    assert not kinds & {"AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP"}
    subnets = _of(template, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(not s["Properties"].get("MapPublicIpOnLaunch") for s in subnets.values())
    (flow_log,) = _of(template, "AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["TrafficType"] == "ALL"


def test_every_function_runs_in_the_private_subnets(created):
    template, _, _ = created
    functions = _of(template, "AWS::Lambda::Function")
    ours = {k: f for k, f in functions.items() if "POWERTOOLS_SERVICE_NAME" in json.dumps(f)}
    assert len(ours) >= 8
    for logical_id, function in ours.items():
        config = function["Properties"].get("VpcConfig")
        assert config, logical_id
        assert len(config["SubnetIds"]) == 2
        (group,) = config["SecurityGroupIds"]
        group_id = group["Fn::GetAtt"][0]
        properties = template["Resources"][group_id]["Properties"]
        assert "SecurityGroupIngress" not in properties, "functions take nothing inbound"
        assert properties["SecurityGroupEgress"] == [{
            "CidrIp": "0.0.0.0/0", "Description": properties["SecurityGroupEgress"][0][
                "Description"], "FromPort": 443, "IpProtocol": "tcp", "ToPort": 443}]


def test_every_sagemaker_job_and_model_names_the_network(created):
    template, _, _ = created
    machines = {k: json.dumps(m) for k, m in
                _of(template, "AWS::StepFunctions::StateMachine").items()}
    training = next(d for k, d in machines.items() if k.startswith("Training"))
    assert "createTrainingJob.sync" in training and "VpcConfig" in training
    assert "EnableInterContainerTrafficEncryption\\\":true" in training
    for prefix in ("RealtimeDeploymentWorkflow", "BatchInference"):
        definition = next(d for k, d in machines.items() if k.startswith(prefix))
        assert "createModel" in definition and "VpcConfig" in definition, prefix


def _definition(machine: dict) -> dict:
    """A state machine's definition as JSON, each CloudFormation token of its
    Fn::Join (an ARN, a name) written as the text TOKEN."""
    body = machine["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    return json.loads(body)


def _task_states(states: dict):
    for state in states.values():
        yield state
        for branch in state.get("Branches", []):
            yield from _task_states(branch["States"])
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _task_states(state[key]["States"])


#: SageMaker calls that take a VpcConfig, and where it goes in their parameters.
_VPC_CALLS = {"createTrainingJob": ("VpcConfig",), "createModel": ("VpcConfig",),
              "createProcessingJob": ("NetworkConfig", "VpcConfig")}


def test_every_sagemaker_call_that_takes_a_vpc_config_has_one(created):
    template, _, _ = created
    seen = []
    for logical_id, machine in _of(template, "AWS::StepFunctions::StateMachine").items():
        for state in _task_states(_definition(machine)["States"]):
            resource = str(state.get("Resource", ""))
            call = resource.rsplit(":", 1)[-1].removesuffix(".sync")
            if ":sagemaker:" in resource and call in _VPC_CALLS:
                value = state["Parameters"]
                for key in _VPC_CALLS[call]:
                    value = value.get(key) or {}
                assert value.get("Subnets") and value.get("SecurityGroupIds"), (
                    logical_id, call)
                seen.append(call)
    assert {"createTrainingJob", "createModel"} <= set(seen) and seen.count("createModel") >= 2


def test_endpoints_cover_what_the_code_calls_and_accept_only_the_vpc(created):
    from mdlc_constructs.network import INTERFACE_ENDPOINTS

    template, _, _ = created
    endpoints = _of(template, "AWS::EC2::VPCEndpoint").values()
    gateways = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    interfaces = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    assert len(gateways) == 2 and len(interfaces) == len(INTERFACE_ENDPOINTS)
    assert all(e["Properties"]["PrivateDnsEnabled"] for e in interfaces)
    groups = {g["Fn::GetAtt"][0] for e in interfaces for g in e["Properties"]["SecurityGroupIds"]}
    (group,) = groups
    ingress = template["Resources"][group]["Properties"]["SecurityGroupIngress"]
    assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in ingress] == [
        ("10.80.0.0/16", 443, 443)]
    for endpoint in endpoints:
        (statement,) = endpoint["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": {
            "Ref": "AWS::AccountId"}}}


def test_only_cdks_deploy_time_provider_runs_outside_the_vpc(created):
    template, _, _ = created
    outside = {k: f for k, f in _of(template, "AWS::Lambda::Function").items()
               if "VpcConfig" not in f["Properties"]}
    assert list(outside) == [next(k for k in outside
                                  if k.startswith("CustomVpcRestrictDefaultSG"))]
    (skip,) = next(iter(outside.values()))["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_117" and len(skip["comment"]) > 40


def test_sagemaker_roles_may_manage_interfaces_only_in_the_vpc(created):
    template, _, _ = created
    policies = _of(template, "AWS::IAM::Policy").values()
    roles = {"TrainingTrainingRole", "RealtimeExecutionRole", "BatchInferenceModelRole"}
    found = set()
    for policy in policies:
        role = policy["Properties"]["Roles"][0]["Ref"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [
                statement["Action"]]
            if "ec2:DeleteNetworkInterface" in actions:
                assert "ArnEquals" in statement["Condition"], role
                assert "ec2:Vpc" in statement["Condition"]["ArnEquals"]
                found |= {r for r in roles if role.startswith(r)}
    assert found == roles


@pytest.fixture(scope="module")
def shared_existing(tmp_path_factory):
    """Two models on a shared platform in an existing VPC, taken by its ids."""
    root = tmp_path_factory.mktemp("existing")
    (root / "models").mkdir()
    _spec_file(root / "models", EXISTING)
    _spec_file(root / "models", EXISTING, name="fraud2")
    templates, findings = _synth(root, root / "models", shared=True)
    return templates, findings, root


def test_an_existing_vpc_is_used_by_its_ids_and_owned_by_the_platform(shared_existing):
    templates, findings, _ = shared_existing
    assert [str(f) for f in findings] == []
    platform = templates["Mdlc-Platform"]
    assert not _of(platform, "AWS::EC2::VPC") and not _of(platform, "AWS::EC2::Subnet")
    from mdlc_constructs.network import INTERFACE_ENDPOINTS

    assert len(_of(platform, "AWS::EC2::VPCEndpoint")) == 2 + len(INTERFACE_ENDPOINTS)
    for name in ("Mdlc-fraud", "Mdlc-fraud2"):
        template = templates[name]
        assert not _of(template, "AWS::EC2::VPCEndpoint")
        for function in _of(template, "AWS::Lambda::Function").values():
            config = function["Properties"]["VpcConfig"]
            assert config["SubnetIds"] == EXISTING["private_subnet_ids"]
            assert config["SecurityGroupIds"] == EXISTING["security_group_ids"]


def test_models_of_one_platform_must_describe_the_same_network(tmp_path):
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app

    _spec_file(tmp_path, EXISTING)
    _spec_file(tmp_path, {"create": True}, name="other")
    with pytest.raises(SpecError, match="different networks"):
        build_app(make_app(compliance=False), tmp_path, shared_platform=True)


@pytest.mark.parametrize("network, message", [
    ({"create": True, "vpc_id": "vpc-0a1b2c3d4e5f60718"}, "either create: true or vpc_id"),
    ({}, "either create: true or vpc_id"),
    ({**EXISTING, "vpc_id": "vpc-xyz"}, "vpc_id: expected vpc-<hex>"),
    ({**EXISTING, "availability_zones": ["eu-west-1a"]}, "one zone per private subnet"),
    ({**EXISTING, "vpc_cidr": None}, "vpc_cidr: needed to create the endpoints"),
    ({**EXISTING, "security_group_ids": ["group"]}, "security_group_ids: expected sg-<hex>"),
    ({**EXISTING, "route_table_ids": []}, "route_table_ids: the gateway endpoints"),
    ({"create": True, "cidr": "10.0.0.0/8"}, "cidr: expected an IPv4 range"),
    ({"create": True, "private_subnet_ids": ["subnet-0a1b2c3d"]}, "describe an existing VPC"),
])
def test_bad_network_sections_name_the_field(tmp_path, network, message):
    path = _spec_file(tmp_path, network)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert any("network" in p and message in p for p in error.value.problems), (
        error.value.problems)


def test_the_lifecycle_runs_in_the_network_and_needs_its_interface_grants(created, tmp_path):
    """Two days on the local runtime: every workflow sends its VpcConfig and
    succeeds; without ec2:CreateNetworkInterface the batch model's role cannot
    place the transform's interfaces, and exactly that is refused."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    _, _, root = created
    spec = load_spec(root / "models" / "fraud.yaml")
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=2, start=date(2026, 11, 1), rows_per_day=200, seed=1),
              orders)
    run = simulate(spec, orders, assembly=root / "cdk.out", stack="Mdlc-fraud",
                   scratch=tmp_path / "run", configure=lambda cloud: cloud.authorizer.revoke(
                       "BatchInferenceModelRole", "ec2:CreateNetworkInterface"))
    report = run.report
    denied = {(d["action"], d["principal"].rsplit("/", 1)[-1].split("-")[2])
              for d in report["denied_calls"]}
    assert denied == {("ec2:CreateNetworkInterface", "BatchInferenceModelRole18321C27")}
    failed = {e["workflow"] for e in report["executions"] if e["status"] != "SUCCEEDED"}
    assert failed == {"batch_inference"}
    assert report["model_versions"] and report["decisions"]["stream"]["total"] > 0


# -- checkov (tests/checkov.py; its own virtual environment, built by make test) --------


@pytest.fixture(scope="module")
def checkov_run(created, shared_existing):
    """checkov (every CloudFormation check) on the four templates of both modes:
    the self-contained stack in a created VPC, and the platform and its two models
    in an existing one. Fails, not skips, without build/venv-checkov/."""
    from tests import checkov

    paths = [created[2] / "cdk.out" / "Mdlc-fraud.template.json",
             *sorted((shared_existing[2] / "cdk.out").glob("*.template.json"))]
    assert len(paths) == 4
    return checkov.run(paths), checkov.load(paths)


def test_checkov_shows_every_function_inside_the_vpc(checkov_run):
    """Issue #16's must-reach: no CKV_AWS_117 finding with a network. Each of
    the library's functions passes the check; only aws-cdk-lib's deploy-time
    provider skips it, with its reason."""
    from tests.checkov import functions_outside_a_vpc

    report, templates = checkov_run
    assert [str(f) for f in report.failed if f.check_id == "CKV_AWS_117"] == []
    assert functions_outside_a_vpc(report, templates) == []
    inside = [f for f in report.passed if f.check_id == "CKV_AWS_117"]
    per_template = {p: sum(f.template == p for f in inside) for p in templates}
    model_templates = [p for p in templates if "Platform" not in p.name]
    assert len(model_templates) == 3 and all(per_template[p] >= 8 for p in model_templates)
    (skip,) = report.skipped
    assert (skip.check_id, skip.logical_id.startswith("CustomVpcRestrictDefaultSG")) == (
        "CKV_AWS_117", True)


def test_checkov_reports_nothing_the_allow_list_does_not_explain(checkov_run):
    """Every other failed check is one of tests/checkov.py's ALLOWED, each by its
    rule on the resource, and every allowance is still needed (no stale entry)."""
    from tests.checkov import ALLOWED, explain

    report, templates = checkov_run
    accepted, unexplained = explain(report.failed, templates)
    assert [str(f) for f in unexplained] == []
    assert {ALLOWED.index(a) for a in accepted.values()} == set(range(len(ALLOWED)))
    assert report.summary["passed"] > 1000


def test_checkov_and_its_allow_list_catch_what_they_are_about(created, tmp_path):
    """The self-contained template with one fault of each kind the allow-list
    rules limit: a function out of the VPC, another out with a checkov skip, an
    asynchronous invoker of a function without a dead-letter queue, a stream's
    event source mapping without its on-failure destination, a write action on
    '*' that has resource-level permissions, a bucket that stops logging.
    checkov and the rules report exactly those."""
    from tests import checkov

    template = json.loads((created[2] / "cdk.out" / "Mdlc-fraud.template.json").read_text())
    resources = template["Resources"]

    def one(prefix: str, kind: str = "AWS::Lambda::Function") -> str:
        (logical_id,) = [k for k, r in resources.items()
                         if k.startswith(prefix) and r["Type"] == kind]
        return logical_id

    quality, decisions, sourcing = (one("DataQualityFunction"), one("BatchInferenceDecisions"),
                                    one("DataSourcingFunction"))
    del resources[quality]["Properties"]["VpcConfig"]
    del resources[decisions]["Properties"]["VpcConfig"]
    resources[decisions]["Metadata"] = {"checkov": {"skip": [{
        "id": "CKV_AWS_117", "comment": "a team's reason that is long enough but is no provider"}]}}
    resources["InjectedInvoke"] = {"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [sourcing, "Arn"]},
        "Principal": "events.amazonaws.com", "SourceAccount": {"Ref": "AWS::AccountId"},
        "SourceArn": {"Fn::Sub": "arn:aws:events:${AWS::Region}:${AWS::AccountId}:rule/x"}}}
    policy = one("RealtimeDeploymentWorkflowRoleDefaultPolicy", "AWS::IAM::Policy")
    (wildcard,) = [s for s in resources[policy]["Properties"]["PolicyDocument"]["Statement"]
                   if s["Resource"] == "*" and "xray:PutTraceSegments" in s["Action"]]
    wildcard["Action"].append("s3:PutObject")
    consumer = one("IntegrationConsumer")
    mapping = one("IntegrationConsumerKinesisEventSource", "AWS::Lambda::EventSourceMapping")
    del resources[mapping]["Properties"]["DestinationConfig"]
    raw = one("DataLakeRaw", "AWS::S3::Bucket")
    del resources[raw]["Properties"]["LoggingConfiguration"]
    path = tmp_path / "faults.template.json"
    path.write_text(json.dumps(template))

    report = checkov.run([path])
    templates = checkov.load([path])
    _, unexplained = checkov.explain(report.failed, templates)
    assert sorted((f.check_id, f.logical_id) for f in unexplained) == sorted([
        ("CKV_AWS_117", quality), ("CKV_AWS_116", sourcing), ("CKV_AWS_116", consumer),
        ("CKV_AWS_111", policy), ("CKV_AWS_18", raw)])
    assert checkov.functions_outside_a_vpc(report, templates) == [
        f"CKV_AWS_117 {path.name} {decisions}: skipped without a deploy-time provider's reason",
        f"CKV_AWS_117 {path.name} {quality}: not in a VPC",
        f"CKV_AWS_117 {path.name} {decisions}: not in a VPC"]
