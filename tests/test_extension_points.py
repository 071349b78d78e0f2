"""Every extension point of the model stack, swapped by a subclass that changes
something, synthesized once and run once.

One stack swaps every stage (``MdlcModelStack.<stage>_class``) and every part
of data preparation (``DataPreparation.<part>_class``) for a team's subclass
that changes one observable thing: a bucket lifecycle, a handler, an
environment variable, a model package property, a scaling target. The test
then checks, per hook, that

* the subclass is the one built, under the library's construct id;
* the synthesized template differs from the library's exactly where that
  subclass changed it (the same logical ids, nothing else moved); and
* the workflows the stage runs still execute end to end on the local
  runtime, with the real handlers, and show the change where it acts.

The run is two simulated days (the cheapest that runs every workflow: day
one trains and deploys, day two streams events and retrains).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from mdlc_constructs.batch_inference import BatchInferenceWorkflow
from mdlc_constructs.features import FeatureEngineering
from mdlc_constructs.integration import ClientIntegration
from mdlc_constructs.model_stack import MdlcModelStack
from mdlc_constructs.monitoring import ModelMonitoring
from mdlc_constructs.network import ModelNetwork
from mdlc_constructs.preparation import DataPreparation
from mdlc_constructs.quality import DataQuality
from mdlc_constructs.realtime import RealtimeEndpoint
from mdlc_constructs.retraining import RETRAIN_DETAIL_TYPE, Retraining
from mdlc_constructs.sourcing import DataSourcing
from mdlc_constructs.storage import BUCKET_KINDS, BucketOverrides, DataLake
from mdlc_constructs.training import TrainingWorkflow

TEAM_SOURCING = Path(__file__).parent / "fixtures" / "handlers" / "team_sourcing"
START = date(2026, 11, 1)
#: The team's Powertools log level (quieter than the library's INFO).
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
TEAM_TARGET_INVOCATIONS = 321.0
TEAM_ACTION_CONCURRENCY = 4


# -- the team's subclasses: each changes one thing --------------------------------------


class TeamDataLake(DataLake):
    """Current objects stay in S3 Standard: no transition to Infrequent Access."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        kwargs["overrides"] = BucketOverrides(transition_to_infrequent_access_days=None)
        super().__init__(scope, construct_id, **kwargs)


class TeamSourcing(DataSourcing):
    """The team's own handler folder (it also says who sourced the snapshot)."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, handler=TEAM_SOURCING, **kwargs)


class TeamQuality(DataQuality):
    """The check's logs at WARNING."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        for name, value in QUIET.items():
            self.function.add_environment(name, value)


class TeamFeatures(FeatureEngineering):
    """The batch features' logs at WARNING."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        for name, value in QUIET.items():
            self.batch_function.add_environment(name, value)


class TeamPreparation(DataPreparation):
    """Data preparation from the team's three parts."""

    sourcing_class = TeamSourcing
    quality_class = TeamQuality
    features_class = TeamFeatures


class TeamTraining(TrainingWorkflow):
    """Every registered version names the team that owns it."""

    def lineage_properties(self) -> dict[str, Any]:
        return {**super().lineage_properties(), "team:owner": "fraud-ops"}


class TeamRetraining(Retraining):
    """The trigger's logs at WARNING."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        for name, value in QUIET.items():
            self.function.add_environment(name, value)


class TeamRealtime(RealtimeEndpoint):
    """Scale out later: the team's invocations per instance."""

    def scaling_policy_parameters(self) -> dict[str, Any]:
        parameters = super().scaling_policy_parameters()
        tracking = parameters["TargetTrackingScalingPolicyConfiguration"]
        return {**parameters, "TargetTrackingScalingPolicyConfiguration": {
            **tracking, "TargetValue": TEAM_TARGET_INVOCATIONS}}


class TeamIntegration(ClientIntegration):
    """The acting function's logs at WARNING."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **QUIET}


class TeamBatchInference(BatchInferenceWorkflow):
    """Fewer actions in flight per part (the team's downstream is small)."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id,
                         **{**kwargs, "action_concurrency": TEAM_ACTION_CONCURRENCY})


class TeamMonitoring(ModelMonitoring):
    """The monitoring job's logs at WARNING."""

    def job_environment(self) -> dict[str, str]:
        return {**super().job_environment(), **QUIET}


class TeamStack(MdlcModelStack):
    data_lake_class = TeamDataLake
    data_preparation_class = TeamPreparation
    training_workflow_class = TeamTraining
    retraining_class = TeamRetraining
    realtime_endpoint_class = TeamRealtime
    client_integration_class = TeamIntegration
    batch_inference_class = TeamBatchInference
    monitoring_class = TeamMonitoring


#: Every class attribute of the constructs that build parts: the attribute,
#: the library's class, the team's subclass (None: swapped in
#: tests/test_extension_platform.py), where the built part is, its construct id.
HOOKS: dict[tuple[type, str], tuple[type, type | None, str, str]] = {
    (MdlcModelStack, "data_lake_class"): (DataLake, TeamDataLake, "data_lake", "DataLake"),
    (MdlcModelStack, "network_class"): (ModelNetwork, None, "network", "Network"),
    (MdlcModelStack, "data_preparation_class"):
        (DataPreparation, TeamPreparation, "preparation", "Data"),
    (MdlcModelStack, "training_workflow_class"):
        (TrainingWorkflow, TeamTraining, "training", "Training"),
    (MdlcModelStack, "retraining_class"): (Retraining, TeamRetraining, "retraining", "Retraining"),
    (MdlcModelStack, "realtime_endpoint_class"):
        (RealtimeEndpoint, TeamRealtime, "realtime", "Realtime"),
    (MdlcModelStack, "client_integration_class"):
        (ClientIntegration, TeamIntegration, "integration", "Integration"),
    (MdlcModelStack, "batch_inference_class"):
        (BatchInferenceWorkflow, TeamBatchInference, "batch_inference", "BatchInference"),
    (MdlcModelStack, "monitoring_class"):
        (ModelMonitoring, TeamMonitoring, "monitoring", "Monitoring"),
    (DataPreparation, "sourcing_class"):
        (DataSourcing, TeamSourcing, "preparation.sourcing", "Sourcing"),
    (DataPreparation, "quality_class"):
        (DataQuality, TeamQuality, "preparation.quality", "Quality"),
    (DataPreparation, "features_class"):
        (FeatureEngineering, TeamFeatures, "preparation.features", "Features"),
}
SWAPPED_HERE = sorted(f"{owner.__name__}.{name}" for (owner, name), (_, team, _, _)
                      in HOOKS.items() if team is not None)


def _hook(name: str) -> tuple[type, str]:
    owner, attribute = name.split(".")
    return next(key for key in HOOKS if key[0].__name__ == owner and key[1] == attribute)


def _part(stack: MdlcModelStack, path: str) -> Any:
    part: Any = stack
    for name in path.split("."):
        part = getattr(part, name)
    return part


@pytest.mark.parametrize("owner", [MdlcModelStack, DataPreparation])
def test_every_part_has_its_class_attribute_with_the_librarys_default(owner):
    attributes = {name for name in vars(owner) if name.endswith("_class")}
    assert attributes == {name for (o, name) in HOOKS if o is owner}
    for name in attributes:
        assert getattr(owner, name) is HOOKS[(owner, name)][0], name


# -- one synthesis of the team's stack ---------------------------------------------------


@pytest.fixture(scope="module")
def team(fraud_spec, tmp_path_factory):
    """The team's stack, synthesized as the session's library stack is (both
    cdk-nag packs, path metadata for the local run)."""
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.testing import make_app

    outdir = tmp_path_factory.mktemp("team-cdk.out")
    app = make_app(outdir=str(outdir), context={"aws:cdk:enable-path-metadata": True})
    stack = TeamStack(app, "Mdlc-fraud", spec=fraud_spec)
    try:
        assembly = app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis of the team's stack failed: {error}\n{findings}")
    return stack, assembly.get_stack_by_name(stack.stack_name).template, outdir


def _without_paths(resource: dict) -> str:
    resource = {k: v for k, v in resource.items() if k != "Metadata"}
    return json.dumps(resource, sort_keys=True)


@pytest.fixture(scope="module")
def changed(team, synthesized) -> dict[str, str]:
    """Logical id -> resource type of every resource the team's template
    changed, against the library's (metadata aside)."""
    library_stack, assembly = synthesized
    library = assembly.get_stack_by_name(library_stack.stack_name).template["Resources"]
    ours = team[1]["Resources"]
    assert sorted(set(ours) ^ set(library)) == [], "a swap added, removed or renamed a resource"
    return {k: ours[k]["Type"] for k in ours
            if _without_paths(ours[k]) != _without_paths(library[k])}


def _logical_id(stack: MdlcModelStack, construct: Any) -> str:
    return stack.get_logical_id(construct.node.default_child)


def _machine(template: dict, stack: MdlcModelStack, machine: Any) -> str:
    resource = template["Resources"][_logical_id(stack, machine)]
    return json.dumps(resource["Properties"]["DefinitionString"])


def _env(template: dict, stack: MdlcModelStack, function: Any) -> dict:
    resource = template["Resources"][_logical_id(stack, function)]
    return resource["Properties"]["Environment"]["Variables"]


#: Hook -> the resources its subclass changes (read from the team's stack).
def _expected_changes(stack: TeamStack) -> dict[str, set[str]]:
    lake = stack.data_lake
    preparation = stack.preparation
    return {
        "MdlcModelStack.data_lake_class": {  # every bucket it creates, access logs too
            _logical_id(stack, bucket) for bucket in
            (lake.log_bucket, *(lake.bucket(kind) for kind in BUCKET_KINDS))},
        "DataPreparation.sourcing_class": {_logical_id(stack, preparation.sourcing.function)},
        "DataPreparation.quality_class": {_logical_id(stack, preparation.quality.function)},
        "DataPreparation.features_class": {
            _logical_id(stack, preparation.features.batch_function)},
        "MdlcModelStack.data_preparation_class": set(),  # its parts are the change
        "MdlcModelStack.training_workflow_class": {
            _logical_id(stack, stack.training.state_machine)},
        "MdlcModelStack.retraining_class": {_logical_id(stack, stack.retraining.function)},
        "MdlcModelStack.realtime_endpoint_class": {
            _logical_id(stack, stack.realtime.state_machine)},
        "MdlcModelStack.client_integration_class": {
            _logical_id(stack, stack.integration.function)},
        "MdlcModelStack.batch_inference_class": {
            _logical_id(stack, stack.batch_inference.function)},
        "MdlcModelStack.monitoring_class": {_logical_id(stack, stack.monitoring.function)},
    }


def test_the_templates_differ_exactly_where_the_subclasses_changed_them(team, changed):
    stack, _, _ = team
    expected = set().union(*_expected_changes(stack).values())
    assert set(changed) == expected


@pytest.mark.parametrize("hook", SWAPPED_HERE)
def test_the_subclass_is_built_under_the_librarys_id_and_its_change_shows(
        team, changed, hook):
    stack, template, _ = team
    owner, attribute = _hook(hook)
    _, team_class, path, construct_id = HOOKS[(owner, attribute)]
    part = _part(stack, path)
    assert type(part) is team_class
    assert part.node.id == construct_id
    resources = _expected_changes(stack)[hook]
    assert resources <= set(changed)
    check = TEMPLATE_CHECKS[hook]
    check(stack, template)


def _no_infrequent_access(stack: TeamStack, template: dict) -> None:
    bucket = template["Resources"][_logical_id(stack, stack.data_lake.raw)]
    rules = json.dumps(bucket["Properties"]["LifecycleConfiguration"])
    assert "STANDARD_IA" not in rules and "NoncurrentVersionExpiration" in rules


def _team_sourcing_code(stack: TeamStack, template: dict) -> None:
    outdir = Path(stack.node.root.outdir)
    function = template["Resources"][_logical_id(stack, stack.preparation.sourcing.function)]
    key = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    code = (outdir / f"asset.{key}" / "index.py").read_text()
    assert "SOURCED_BY" in code


def _quiet(path: str) -> Any:
    def check(stack: TeamStack, template: dict) -> None:
        assert _env(template, stack, _part(stack, path)).items() >= QUIET.items()
    return check


def _team_owner_property(stack: TeamStack, template: dict) -> None:
    assert "team:owner" in _machine(template, stack, stack.training.state_machine)


def _team_scaling_target(stack: TeamStack, template: dict) -> None:
    definition = _machine(template, stack, stack.realtime.state_machine)
    assert f'\\"TargetValue\\":{TEAM_TARGET_INVOCATIONS:g}' in definition


def _team_concurrency(stack: TeamStack, template: dict) -> None:
    env = _env(template, stack, stack.batch_inference.function)
    assert env["ACTION_CONCURRENCY"] == str(TEAM_ACTION_CONCURRENCY)


def _team_parts(stack: TeamStack, template: dict) -> None:
    preparation = stack.preparation
    assert (type(preparation.sourcing), type(preparation.quality),
            type(preparation.features)) == (TeamSourcing, TeamQuality, TeamFeatures)


TEMPLATE_CHECKS = {
    "MdlcModelStack.data_lake_class": _no_infrequent_access,
    "MdlcModelStack.data_preparation_class": _team_parts,
    "DataPreparation.sourcing_class": _team_sourcing_code,
    "DataPreparation.quality_class": _quiet("preparation.quality.function"),
    "DataPreparation.features_class": _quiet("preparation.features.batch_function"),
    "MdlcModelStack.training_workflow_class": _team_owner_property,
    "MdlcModelStack.retraining_class": _quiet("retraining.function"),
    "MdlcModelStack.realtime_endpoint_class": _team_scaling_target,
    "MdlcModelStack.client_integration_class": _quiet("integration.function"),
    "MdlcModelStack.batch_inference_class": _team_concurrency,
    "MdlcModelStack.monitoring_class": _quiet("monitoring.function"),
}


def test_every_swapped_hook_has_its_checks():
    assert sorted(TEMPLATE_CHECKS) == SWAPPED_HERE == sorted(RUN_CHECKS)


# -- one local run of the team's stack ---------------------------------------------------


@pytest.fixture(scope="module")
def run(team, fraud_spec, tmp_path_factory):
    """Two days of the team's stack on the local runtime; each day, what the
    registry and autoscaling hold (read while the local cloud is up). After
    the last day a team asks for a re-training (the documented event), so the
    retraining trigger runs whatever the alarms do (a drift alarm the next
    morning then finds it cooling down: no third training run to pay for)."""
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    stack, _, outdir = team
    orders = tmp_path_factory.mktemp("team-orders") / "orders.csv"
    write_csv(fraud_spec, sample(fraud_spec, days=2, start=START, rows_per_day=200, seed=5),
              orders)
    seen: dict[str, Any] = {"packages": {}, "policies": []}

    def observe(simulation: Any, day: date) -> None:
        if day == START + timedelta(days=1):
            simulation.cloud.client("events").put_events(Entries=[{
                "Source": "team.fraud", "DetailType": RETRAIN_DETAIL_TYPE,
                "Detail": json.dumps({"model": fraud_spec.name, "reason": "new labels"})}])
            simulation.cloud.settle()
        sagemaker = simulation.cloud.client("sagemaker")
        for summary in sagemaker.list_model_packages(
                ModelPackageGroupName=stack.training.model_package_group_name)[
                    "ModelPackageSummaryList"]:
            arn = summary["ModelPackageArn"]
            seen["packages"][arn] = sagemaker.describe_model_package(
                ModelPackageName=arn).get("CustomerMetadataProperties", {})
        seen["policies"] = simulation.cloud.client(
            "application-autoscaling").describe_scaling_policies(
                ServiceNamespace="sagemaker")["ScalingPolicies"]

    simulation = simulate(fraud_spec, orders, assembly=outdir, stack=stack.stack_name,
                          on_day=observe)
    return simulation, seen


def _executions(simulation: Any, workflow: str) -> list[dict]:
    executions = [e for e in simulation.report["executions"] if e["workflow"] == workflow]
    assert executions, f"no {workflow} run"
    assert [e for e in executions if e["status"] != "SUCCEEDED"] == []
    return executions


def _function(simulation: Any, stack: TeamStack, function: Any) -> Any:
    """The deployed function (registered by name and by ARN), which ran at least
    once in the run and never failed."""
    logical_id = _logical_id(stack, function)
    (found,) = {id(f): f for f in simulation.cloud.lambdas.functions.values()
                if f.stack == stack.stack_name and f.logical_id == logical_id}.values()
    totals = simulation.report["functions"].get(logical_id)
    assert totals and totals["invocations"] > 0, f"{logical_id} never ran"
    assert totals["errors"] == 0, totals
    return found


def _ran_quiet(workflow: str, path: str) -> Any:
    def check(stack: TeamStack, simulation: Any, seen: dict) -> None:
        _executions(simulation, workflow)
        function = _function(simulation, stack, _part(stack, path))
        assert function.environment.items() >= QUIET.items()
    return check


def _every_workflow_ran(stack: TeamStack, simulation: Any, seen: dict) -> None:
    for workflow in ("data_preparation", "training", "deployment", "batch_inference",
                     "monitoring"):
        _executions(simulation, workflow)
    assert simulation.report["denied_calls"] == []


def _sourced_by_the_team(stack: TeamStack, simulation: Any, seen: dict) -> None:
    for execution in _executions(simulation, "data_preparation"):
        output = simulation.cloud.executions[execution["execution"]].output
        (branch,) = output["prepared"]
        assert branch["data"]["snapshot"]["sourced_by"] == "team-sourcing"
        assert branch["data"]["snapshot"]["rows"] > 0


def _versions_name_the_team(stack: TeamStack, simulation: Any, seen: dict) -> None:
    _executions(simulation, "training")
    assert seen["packages"]
    assert {p.get("team:owner") for p in seen["packages"].values()} == {"fraud-ops"}


def _scaled_at_the_team_target(stack: TeamStack, simulation: Any, seen: dict) -> None:
    _executions(simulation, "deployment")
    assert simulation.report["endpoint"]["serving_version"] is not None
    targets = {p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
               for p in seen["policies"]}
    assert targets == {TEAM_TARGET_INVOCATIONS}


def _decided_on_the_stream(stack: TeamStack, simulation: Any, seen: dict) -> None:
    function = _function(simulation, stack, stack.integration.function)
    assert function.environment.items() >= QUIET.items()
    assert simulation.report["decisions"]["stream"]["total"] > 0


def _decided_in_batch(stack: TeamStack, simulation: Any, seen: dict) -> None:
    _executions(simulation, "batch_inference")
    function = _function(simulation, stack, stack.batch_inference.function)
    assert function.environment["ACTION_CONCURRENCY"] == str(TEAM_ACTION_CONCURRENCY)
    assert simulation.report["decisions"]["batch"]["total"] > 0


def _triggered_retraining(stack: TeamStack, simulation: Any, seen: dict) -> None:
    function = _function(simulation, stack, stack.retraining.function)
    assert function.environment.items() >= QUIET.items()
    runs = [r for r in simulation.cloud.function_runs if r["function"] == function.logical_id]
    assert all(r["status"] == "SUCCEEDED" for r in runs), runs
    requested = [r for r in runs if r["started_by"] == "event"]
    assert requested, "the team's retrain request did not reach the trigger"


RUN_CHECKS = {
    "MdlcModelStack.data_lake_class": _every_workflow_ran,
    "MdlcModelStack.data_preparation_class": _sourced_by_the_team,
    "DataPreparation.sourcing_class": _sourced_by_the_team,
    "DataPreparation.quality_class": _ran_quiet("data_preparation",
                                                "preparation.quality.function"),
    "DataPreparation.features_class": _ran_quiet("data_preparation",
                                                 "preparation.features.batch_function"),
    "MdlcModelStack.training_workflow_class": _versions_name_the_team,
    "MdlcModelStack.retraining_class": _triggered_retraining,
    "MdlcModelStack.realtime_endpoint_class": _scaled_at_the_team_target,
    "MdlcModelStack.client_integration_class": _decided_on_the_stream,
    "MdlcModelStack.batch_inference_class": _decided_in_batch,
    "MdlcModelStack.monitoring_class": _ran_quiet("monitoring", "monitoring.function"),
}


@pytest.mark.slow
@pytest.mark.parametrize("hook", SWAPPED_HERE)
def test_the_swapped_stage_runs_end_to_end_with_its_change(team, run, hook):
    simulation, seen = run
    RUN_CHECKS[hook](team[0], simulation, seen)
