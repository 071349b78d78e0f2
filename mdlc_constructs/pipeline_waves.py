"""Deployment waves: a pipeline stage of many stacks split into stages of at most N actions.

CDK Pipelines puts every action of a :class:`cdk.Stage` into one CodePipeline
stage and, past CodePipeline's hard limit of 50 actions per stage, splits it
into ``<Stage>.1``, ``<Stage>.2``, ... of exactly 50 (``chunkTranches(50, ...)``
in aws-cdk-lib; the size is not configurable). A stage filled to the limit
leaves no room: one more stack there fails the pipeline's update. This module
repacks those stages into *waves* of at most ``actions_per_stage`` actions
(40 by default, 20% below the limit), keeping the order CDK Pipelines chose:

* a *tranche* is the actions of one ``RunOrder`` in one stage (they run in
  parallel); tranches keep their order, and a tranche wider than the room left
  in a wave is split across waves, as CDK Pipelines itself does;
* a wave runs only after the wave before it succeeded, so every dependency
  CDK Pipelines expressed as a later run order still holds (the platform
  stack before its models, a stage's ``pre`` steps, the production approval,
  before any of its deployments, and ``post`` steps after them);
* variables an action publishes (``Namespace``) stay visible to actions of
  later stages, as CodePipeline documents, so image steps still read the
  outputs of stacks deployed in an earlier wave.

Written by hand: aws-cdk-lib has no option for the chunk size. It works on the
rendered ``Stages`` of the ``AWS::CodePipeline::Pipeline`` and is applied with
an override (:func:`apply_waves`); the pure function :func:`split_into_waves`
does the packing and is tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codepipeline as codepipeline

#: CodePipeline's hard limit on actions in one stage.
CODEPIPELINE_MAX_ACTIONS = 50
#: CodePipeline's hard limit on stages in one pipeline.
CODEPIPELINE_MAX_STAGES = 50
#: Default wave size: 20% below :data:`CODEPIPELINE_MAX_ACTIONS`.
DEFAULT_ACTIONS_PER_STAGE = 40

# CDK Pipelines names the overflow stages of stage "X" "X.1", "X.2", ...
_OVERFLOW = re.compile(r"^(?P<base>.+)\.(?P<index>\d+)$")

Stage = Mapping[str, Any]

__all__ = [
    "CODEPIPELINE_MAX_ACTIONS",
    "CODEPIPELINE_MAX_STAGES",
    "DEFAULT_ACTIONS_PER_STAGE",
    "apply_waves",
    "split_into_waves",
]


def _base_name(stage: Stage) -> str:
    name = str(stage["Name"])
    match = _OVERFLOW.match(name)
    return match.group("base") if match else name


def _groups(stages: Sequence[Stage]) -> list[tuple[str, list[Stage]]]:
    """Consecutive stages that CDK Pipelines made from one stage (``X`` or ``X.n``)."""
    groups: list[tuple[str, list[Stage]]] = []
    for stage in stages:
        base = _base_name(stage)
        if groups and groups[-1][0] == base and _OVERFLOW.match(str(stage["Name"])):
            groups[-1][1].append(stage)
        else:
            groups.append((base, [stage]))
    return groups


def _tranches(group: Sequence[Stage]) -> list[list[Mapping[str, Any]]]:
    """The group's actions by run order, stage after stage (stable within a tranche)."""
    tranches: list[list[Mapping[str, Any]]] = []
    for stage in group:
        by_order: dict[int, list[Mapping[str, Any]]] = {}
        for action in stage.get("Actions", []):
            by_order.setdefault(int(action.get("RunOrder", 1)), []).append(action)
        tranches.extend(by_order[order] for order in sorted(by_order))
    return tranches


def _pack(tranches: list[list[Mapping[str, Any]]], size: int) -> list[list[list[Any]]]:
    """Greedy, in order: whole tranches while they fit, else split the tranche."""
    waves: list[list[list[Any]]] = []
    wave: list[list[Any]] = []
    room = size
    for tranche in tranches:
        rest = list(tranche)
        while rest:
            if room == 0:
                waves.append(wave)
                wave, room = [], size
            part, rest = rest[:room], rest[room:]
            wave.append(part)
            room -= len(part)
    if wave:
        waves.append(wave)
    return waves


def split_into_waves(stages: Sequence[Stage], actions_per_stage: int) -> list[dict[str, Any]]:
    """``stages`` (a pipeline's rendered ``Stages``) with every stage of more than
    ``actions_per_stage`` actions, and every group CDK Pipelines already split,
    repacked into waves ``<Stage>.1``, ``<Stage>.2``, ... of at most that many.

    Stages within the limit come back unchanged. Raises ``ValueError`` for a
    size outside 1..50, naming it.
    """
    if not 1 <= actions_per_stage <= CODEPIPELINE_MAX_ACTIONS:
        raise ValueError(f"actions_per_stage: expected 1 to {CODEPIPELINE_MAX_ACTIONS} "
                         f"(CodePipeline's limit per stage), got {actions_per_stage}")
    result: list[dict[str, Any]] = []
    for base, group in _groups(stages):
        count = sum(len(stage.get("Actions", [])) for stage in group)
        if len(group) == 1 and count <= actions_per_stage:
            result.append(dict(group[0]))
            continue
        extra = {k: v for k, v in group[0].items() if k not in ("Name", "Actions")}
        waves = _pack(_tranches(group), actions_per_stage)
        for index, wave in enumerate(waves, start=1):
            actions = [
                {**action, "RunOrder": order}
                for order, tranche in enumerate(wave, start=1)
                for action in tranche
            ]
            name = base if len(waves) == 1 else f"{base}.{index}"
            result.append({"Name": name, **extra, "Actions": actions})
    return result


def _cloudformation_shape(value: Any) -> Any:
    """A resolved L1 value (``name``, ``actions``, ``runOrder``) in the template's
    shape (``Name``, ``Actions``, ``RunOrder``): an L1 property is its
    CloudFormation name with the first letter lowered. ``configuration`` is
    free-form (its keys are already CloudFormation's), and intrinsics
    (``Ref``, ``Fn::Join``) are already capitalized."""
    if isinstance(value, list):
        return [_cloudformation_shape(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    return {
        key[:1].upper() + key[1:]: item if key == "configuration" else _cloudformation_shape(item)
        for key, item in value.items()
    }


def apply_waves(pipeline: codepipeline.Pipeline, actions_per_stage: int) -> int:
    """Repack ``pipeline``'s stages (after ``pipelines.CodePipeline.build_pipeline()``,
    when every action exists) and return the number of stages.

    Raises ``ValueError`` when the pipeline would have more stages than
    CodePipeline allows, naming the count and the remedy.
    """
    cfn = pipeline.node.default_child
    assert isinstance(cfn, codepipeline.CfnPipeline)
    stages = _cloudformation_shape(cdk.Stack.of(pipeline).resolve(cfn.stages))
    waves = split_into_waves(stages, actions_per_stage)
    if len(waves) > CODEPIPELINE_MAX_STAGES:
        raise ValueError(
            f"pipeline {pipeline.node.path}: {len(waves)} stages of at most "
            f"{actions_per_stage} actions, more than CodePipeline's {CODEPIPELINE_MAX_STAGES}; "
            "raise actions_per_stage (at most 50) or split the models over two pipelines")
    if waves != stages:
        cfn.add_property_override("Stages", waves)
    return len(waves)
