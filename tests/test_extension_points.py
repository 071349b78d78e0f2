"""Every stage of MdlcModelStack is swapped the same way: its class attribute.

A subclass of each stage, set on a subclass of the stack, must be the one
built, under the library's construct id, with the library's wiring: with
subclasses that change nothing, the template is the library's own.
"""

from __future__ import annotations

import json

import pytest

from mdlc_constructs.batch_inference import BatchInferenceWorkflow
from mdlc_constructs.integration import ClientIntegration
from mdlc_constructs.model_stack import MdlcModelStack
from mdlc_constructs.monitoring import ModelMonitoring
from mdlc_constructs.preparation import DataPreparation
from mdlc_constructs.realtime import RealtimeEndpoint
from mdlc_constructs.retraining import Retraining
from mdlc_constructs.training import TrainingWorkflow

#: stack attribute -> (the library's class, the attribute of the built stage, its id)
HOOKS = {
    "data_preparation_class": (DataPreparation, "preparation", "Data"),
    "training_workflow_class": (TrainingWorkflow, "training", "Training"),
    "retraining_class": (Retraining, "retraining", "Retraining"),
    "realtime_endpoint_class": (RealtimeEndpoint, "realtime", "Realtime"),
    "client_integration_class": (ClientIntegration, "integration", "Integration"),
    "batch_inference_class": (BatchInferenceWorkflow, "batch_inference", "BatchInference"),
    "monitoring_class": (ModelMonitoring, "monitoring", "Monitoring"),
}
SWAPPED = {name: type(f"Team{base.__name__}", (base,), {}) for name, (base, _, _) in
           HOOKS.items()}


#: The stack with every stage's class swapped (built with type() to set them all).
SwappedStack = type("SwappedStack", (MdlcModelStack,), dict(SWAPPED))


@pytest.fixture(scope="module")
def swapped(fraud_spec, synthesized, tmp_path_factory):
    from mdlc_constructs.testing import make_app

    app = make_app(outdir=str(tmp_path_factory.mktemp("swapped")))
    stack = SwappedStack(app, "Mdlc-fraud", spec=fraud_spec)
    assembly = app.synth()
    return stack, assembly.get_stack_by_name(stack.stack_name).template


def test_every_stage_has_a_class_attribute():
    stages = {name for name in vars(MdlcModelStack) if name.endswith("_class")}
    assert stages == set(HOOKS)


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_the_swapped_class_is_built_under_the_librarys_id(swapped, hook):
    stack, _ = swapped
    _, attribute, construct_id = HOOKS[hook]
    stage = getattr(stack, attribute)
    assert type(stage) is SWAPPED[hook]
    assert stage.node.id == construct_id


def test_swapping_every_stage_keeps_the_template(swapped, synthesized):
    library_stack, assembly = synthesized
    library = assembly.get_stack_by_name(library_stack.stack_name).template
    _, template = swapped

    def resources(t):
        return {k: json.dumps(v.get("Properties"), sort_keys=True)
                for k, v in t["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}

    assert resources(template).keys() == resources(library).keys()
    changed = [k for k, v in resources(template).items() if v != resources(library)[k]]
    assert changed == []
