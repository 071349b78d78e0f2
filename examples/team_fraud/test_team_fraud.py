"""The team package's tests: they run in the library's suite (pyproject testpaths).

One synthesis of the team's stack for the module; the action and the
evaluation handler are tested as plain Python.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SPEC = HERE / "models" / "fraud-team.yaml"


def _load_evaluation():
    path = HERE / "handlers" / "overfit_evaluation" / "index.py"
    module_spec = importlib.util.spec_from_file_location("team_overfit_evaluation", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# -- the evaluation handler -------------------------------------------------------


def test_evaluation_penalizes_only_the_gap_beyond_the_tolerance():
    evaluation = _load_evaluation()
    metrics = [
        {"MetricName": "train:auc", "Value": 0.99},
        {"MetricName": "validation:auc", "Value": 0.85},
    ]
    result = evaluation.evaluate(metrics, "validation:auc", 0.05)
    assert result["gap"] == pytest.approx(0.14)
    assert result["value"] == pytest.approx(0.85 - 0.09)
    # Within the tolerance the validation metric stands as it is.
    close = [{"MetricName": "train:auc", "Value": 0.88}, *metrics[1:]]
    assert evaluation.evaluate(close, "validation:auc", 0.05)["value"] == pytest.approx(0.85)


def test_evaluation_fails_when_the_metric_is_missing():
    evaluation = _load_evaluation()
    with pytest.raises(ValueError, match="did not report validation:auc"):
        evaluation.handler({"metrics": [{"MetricName": "train:auc", "Value": 1}],
                            "metric": "validation:auc"}, None)


# -- the custom action ------------------------------------------------------------


class _Events:
    def __init__(self, fail: bool = False) -> None:
        self.entries: list[dict] = []
        self.fail = fail

    def put_events(self, Entries):
        self.entries.extend(Entries)
        if self.fail:
            return {"FailedEntryCount": 1,
                    "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}]}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]}


def _decision(action: str = "review"):
    from mdlc_core.decisions import Decision

    return Decision(event_id="order-42", entity_id="customer-7", model_version="v3",
                    score=0.7, rule_id="review_medium_risk", action=action)


@pytest.fixture
def bundled(monkeypatch):
    """The package folder on sys.path, as the Lambda bundle puts team_actions.py at the top."""
    monkeypatch.syspath_prepend(str(HERE))
    import team_actions

    return team_actions


@pytest.fixture(scope="module")
def team_config():
    from mdlc_constructs.spec import load_spec

    return load_spec(SPEC).as_config()


def test_spec_names_the_custom_action_and_dispatch_uses_it(team_config, bundled):
    from mdlc_core.actions import Clients, Dispatcher, Targets

    team_actions = bundled

    events = _Events()
    dispatcher = Dispatcher.from_config(team_config, Clients(events=events), Targets())
    assert isinstance(dispatcher.actions["review"], team_actions.CaseManagementAction)
    receipt = dispatcher.perform(_decision())
    assert receipt == {"action": "review", "kind": "case_management",
                       "case_id": "fraud-team:order-42", "event_id": "e-1"}
    (entry,) = events.entries
    assert entry["DetailType"] == team_actions.DETAIL_TYPE
    detail = json.loads(entry["Detail"])
    assert detail["queue"] == "high-touch"
    assert detail["decision"]["event_id"] == "order-42"


def test_a_refused_case_raises_so_the_event_is_retried(team_config, bundled):
    from mdlc_core.actions import ActionError, Clients, Dispatcher, Targets

    dispatcher = Dispatcher.from_config(team_config, Clients(events=_Events(fail=True)), Targets())
    with pytest.raises(ActionError, match="InternalFailure"):
        dispatcher.perform(_decision())


# -- the stack --------------------------------------------------------------------


@pytest.fixture(scope="module")
def team_stack(tmp_path_factory):
    from mdlc_constructs.compliance import read_findings
    from mdlc_constructs.platform import build_app
    from mdlc_constructs.testing import make_app
    from team_fraud.stack import team_model_stack

    outdir = tmp_path_factory.mktemp("team-cdk.out")
    # Both cdk-nag packs (the team's code must pass too), and path metadata as
    # `cdk synth` writes it, for the local run below.
    app = make_app(outdir=str(outdir), context={"aws:cdk:enable-path-metadata": True})
    built = build_app(app, HERE / "models", shared_platform=False, model_stack=team_model_stack)
    try:
        app.synth()
    except Exception as error:
        findings = "\n".join(str(f) for f in read_findings(outdir))
        pytest.fail(f"synthesis failed: {error}\n{findings}")
    return built.models["fraud-team"]


@pytest.fixture(scope="module")
def team_template(team_stack):
    from mdlc_constructs.testing import normalized_template

    return normalized_template(team_stack)


def test_the_team_stack_is_the_subclass_with_the_team_workflow(team_stack):
    from team_fraud.stack import (
        TeamBatchInference,
        TeamFraudStack,
        TeamIntegration,
        TeamTrainingWorkflow,
    )

    assert isinstance(team_stack, TeamFraudStack)
    assert isinstance(team_stack.training, TeamTrainingWorkflow)
    assert isinstance(team_stack.integration, TeamIntegration)
    assert isinstance(team_stack.batch_inference, TeamBatchInference)
    # Same construct ids as the library's: swapping the classes keeps the resources.
    assert (team_stack.training.node.id, team_stack.integration.node.id,
            team_stack.batch_inference.node.id) == ("Training", "Integration", "BatchInference")


def test_the_team_swaps_three_stages_by_class_and_never_reaches_into_children():
    """Issue #17's bar for the example: at least three stages changed through
    the library's extension points, none by finding a construct's child (which
    breaks when the library's internals move)."""
    import ast

    from mdlc_constructs.model_stack import MdlcModelStack
    from team_fraud.stack import TeamFraudStack

    swapped = [name for name in vars(MdlcModelStack) if name.endswith("_class")
               and getattr(TeamFraudStack, name) is not getattr(MdlcModelStack, name)]
    assert len(swapped) >= 3, swapped
    reaching = {"children", "find_child", "try_find_child", "find_all", "default_child"}
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("test_"):
            continue
        found = [f"{path.name}:{node.lineno} .{node.attr}"
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr in reaching]
        assert found == [], found


def _training_definition(template) -> str:
    machines = {
        k: v for k, v in template["Resources"].items()
        if v["Type"] == "AWS::StepFunctions::StateMachine" and k.startswith("Training")
    }
    (machine,) = machines.values()
    return json.dumps(machine["Properties"]["DefinitionString"])


def test_evaluation_is_swapped_and_the_gate_still_reads_its_result(team_template):
    definition = _training_definition(team_template)
    assert "EvaluateGeneralization" in definition
    assert "SelectMetric" not in definition  # the library's default evaluation is gone
    assert "MeetsThreshold" in definition
    functions = [
        v for v in team_template["Resources"].values()
        if v["Type"] == "AWS::Lambda::Function"
        and "overfitting" in v["Properties"].get("Description", "")
    ]
    assert len(functions) == 1


def test_the_team_alarm_notifies_the_model_topic(team_template):
    alarms = {
        k: v for k, v in team_template["Resources"].items()
        if v["Type"] == "AWS::CloudWatch::Alarm" and k.startswith("TrainingFailures")
    }
    (alarm,) = alarms.values()
    props = alarm["Properties"]
    assert props["Threshold"] == 2
    assert props["EvaluationPeriods"] == 7
    assert props["AlarmActions"] == [{"Ref": next(
        k for k, v in team_template["Resources"].items() if v["Type"] == "AWS::SNS::Topic")}]


def test_team_parts_snapshot(team_template, snapshot):
    """What the team owns (its workflow's definition and its alarm), against the snapshot.

    Update after an intended change: ``pytest examples --snapshot-update``.
    """
    resources = team_template["Resources"]
    owned = {
        k: v for k, v in resources.items()
        if k.startswith(("TrainingFailures", "TrainingOverfitEvaluation"))
        and v["Type"] in ("AWS::CloudWatch::Alarm", "AWS::Lambda::Function")
    }
    assert owned
    assert {"definition": _training_definition(team_template), "resources": owned} == snapshot


def test_the_custom_action_ships_with_the_acting_functions_and_may_put_events(team_stack):
    from aws_cdk.assertions import Template

    template = Template.from_stack(team_stack).to_json()
    outdir = Path(team_stack.node.root.outdir)
    acting = {
        "acting": team_stack.integration.function.node.default_child,
        "batch": team_stack.batch_inference.function.node.default_child,
    }
    for name, function in acting.items():
        resource = template["Resources"][team_stack.get_logical_id(function)]
        asset_hash = resource["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        code = outdir / f"asset.{asset_hash}"
        assert (code / "team_actions.py").is_file(), name
        assert (code / "index.py").is_file() and (code / "mdlc_core").is_dir(), name
    policies = json.dumps(template["Resources"])
    assert '"events:PutEvents"' in policies
    assert "event-bus/default" in policies


# -- the team's stack, run locally ---------------------------------------------------


@pytest.mark.slow
def test_the_team_stack_runs_its_lifecycle_locally(team_stack, tmp_path):
    """The team's own evaluation step and case-management action, executed."""
    from datetime import date

    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv
    from mdlc_constructs.spec import load_spec
    from team_fraud import team_actions

    spec = load_spec(SPEC)
    orders = tmp_path / "orders.csv"
    write_csv(spec, sample(spec, days=3, start=date(2026, 11, 1), rows_per_day=300, seed=5),
              orders)
    run = simulate(spec, orders, assembly=Path(team_stack.node.root.outdir),
                   stack=team_stack.stack_name)
    report = run.report
    assert [e for e in report["executions"] if e["status"] != "SUCCEEDED"] == []
    # Every call ran as its role, the team's action included, and none was refused.
    assert report["denied_calls"] == []
    versions = report["model_versions"]
    assert versions and all(v["metrics"]["validation:auc"] > 0.8 for v in versions)
    assert report["endpoint"]["serving_version"] == versions[-1]["version"]
    # The team's evaluation (train/validation gap) judged the version.
    training = next(e for e in report["executions"] if e["workflow"] == "training")
    output = run.cloud.executions[training["execution"]].output
    assert output["evaluation"]["gap"] >= 0
    # Orders sent to review opened a case through the team's action, once each.
    reviews = [d for d in run.stream_decisions if d["action"] == "review"]
    cases = [e for e in run.cloud.bus.history if e.get("detail-type") == team_actions.DETAIL_TYPE]
    assert reviews and len(cases) >= len(reviews)
    assert len({c["detail"]["decision"]["event_id"] for c in cases}) == len(cases)
