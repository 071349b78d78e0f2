"""One naming and signature convention across the constructs (issue #17).

As in aws-cdk-lib's L2 modules: every ``grant_*`` returns an ``iam.Grant``,
every ``metric_*`` takes ``cloudwatch.MetricOptions`` as keyword arguments,
a construct's workflow is ``state_machine`` and its schedule
``schedule_rule``. Renamed attributes keep their old name as a warning alias.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pytest

import mdlc_constructs


def _library_classes():
    for info in pkgutil.iter_modules(mdlc_constructs.__path__):
        module = importlib.import_module(f"mdlc_constructs.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and not cls.__name__.startswith("_"):
                yield cls


def _methods(prefix: str):
    for cls in _library_classes():
        for name, method in vars(cls).items():
            if name.startswith(prefix) and inspect.isfunction(method):
                yield f"{cls.__module__}.{cls.__name__}.{name}", method


def test_every_grant_method_returns_an_iam_grant():
    wrong = {name: method.__annotations__.get("return")
             for name, method in _methods("grant_")
             if method.__annotations__.get("return") not in ("iam.Grant", "Grant")}
    assert wrong == {}


def test_every_metric_method_takes_metric_options_as_keywords():
    def takes_props(method) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(method).parameters.values())

    wrong = [name for name, method in _methods("metric_") if not takes_props(method)]
    assert wrong == []


@pytest.fixture(scope="module")
def stack(fraud_spec):
    from mdlc_constructs.model_stack import MdlcModelStack
    from mdlc_constructs.testing import make_app

    return MdlcModelStack(make_app(compliance=False), "Api", spec=fraud_spec)


@pytest.mark.parametrize("construct, old, new", [
    ("realtime", "deployment_workflow", "state_machine"),
    ("realtime", "rule", "approval_rule"),
    ("preparation", "rule", "schedule_rule"),
    ("batch_inference", "rule", "schedule_rule"),
    ("monitoring", "schedule", "schedule_rule"),
])
def test_a_renamed_attribute_warns_and_is_the_same_object(stack, construct, old, new):
    owner = getattr(stack, construct)
    with pytest.warns(DeprecationWarning, match=rf"\.{old} is deprecated: use {new}"):
        assert getattr(owner, old) is getattr(owner, new)
    assert getattr(owner, new) is not None


def test_workflows_and_schedules_have_the_same_names_everywhere(stack):
    from aws_cdk import aws_events as events
    from aws_cdk import aws_stepfunctions as sfn

    for name in ("preparation", "training", "realtime", "batch_inference"):
        assert isinstance(getattr(stack, name).state_machine, sfn.StateMachine), name
    # Monitoring's workflow exists with the Processing runner only.
    assert stack.monitoring.state_machine is None
    for name in ("preparation", "batch_inference", "monitoring", "retraining"):
        assert isinstance(getattr(stack, name).schedule_rule, events.Rule), name


def test_grants_succeed_and_a_grant_of_nothing_says_so(stack):
    from aws_cdk import aws_iam as iam

    role = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    granted = [
        stack.preparation.features.grant_read_online(role),
        stack.preparation.sourcing.grant_sources(role),
        stack.realtime.grant_invoke(role),
        stack.batch_inference.grant_start_execution(role),
        stack.data_lake.grant_read(role, "raw", "features"),
        stack.integration.action_targets.grant_send(role),
    ]
    for grant in granted:
        assert isinstance(grant, iam.Grant)
        grant.assert_success()
    # A built-in algorithm and Lambda-run quality need nothing more: a dropped
    # grant, as aws-cdk-lib returns for an imported resource.
    for grant in (stack.training.algorithm.grant_training_role(role),
                  stack.preparation.grant_to(stack.training.state_machine)):
        assert isinstance(grant, iam.Grant) and not grant.success


def test_prepare_data_still_works_with_a_warning(fraud_spec):
    from aws_cdk import aws_stepfunctions as sfn

    from mdlc_constructs.testing import make_app
    from mdlc_constructs.training import TrainingWorkflow
    from tests.training_fixtures import TrainingTestStack

    stack = TrainingTestStack(make_app(compliance=False), "Deprecated")
    with pytest.warns(DeprecationWarning, match=r"prepare_data=\.\.\.\) is deprecated"):
        workflow = TrainingWorkflow(
            stack, "Training", spec=fraud_spec, data_lake=stack.data_lake, topic=stack.topic,
            prepare_data=lambda scope, prefix: sfn.Pass(scope, prefix))
    assert workflow.preparation is not None
    with warnings.catch_warnings(), pytest.raises(ValueError, match="not both"):
        warnings.simplefilter("ignore", DeprecationWarning)
        TrainingWorkflow(stack, "Both", spec=fraud_spec, data_lake=stack.data_lake,
                         topic=stack.topic, preparation=workflow.preparation,
                         prepare_data=lambda scope, prefix: sfn.Pass(scope, prefix))
