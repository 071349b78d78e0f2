"""Splitting pipeline stages into waves (mdlc_constructs.pipeline_waves).

The packing is checked on rendered stages shaped as CDK Pipelines writes them;
tests/test_pipeline.py checks a synthesized pipeline deployed in waves, and
benchmarks/bench_synth.py --pipeline the 200-model one.
"""

from __future__ import annotations

import pytest

from mdlc_constructs.pipeline_waves import (
    CODEPIPELINE_MAX_ACTIONS,
    apply_waves,
    split_into_waves,
)


def _action(name: str, order: int) -> dict:
    return {"Name": name, "RunOrder": order, "ActionTypeId": {"Category": "Deploy"}}


def _cdk_overflow(name: str, tranches: list[int]) -> list[dict]:
    """What CDK Pipelines renders for one stage: tranches of the given widths
    (actions of one tranche run in parallel), chunked at 50 actions."""
    actions = [_action(f"{name}-{t}-{i}", t + 1) for t, width in enumerate(tranches)
               for i in range(width)]
    stages, stage, room = [], [], CODEPIPELINE_MAX_ACTIONS
    for action in actions:
        if room == 0:
            stages.append(stage)
            stage, room = [], CODEPIPELINE_MAX_ACTIONS
        stage.append(action)
        room -= 1
    stages.append(stage)
    named = [f"{name}.{i}" for i in range(1, len(stages) + 1)] if len(stages) > 1 else [name]
    result = []
    for stage_name, stage_actions in zip(named, stages, strict=True):
        orders = sorted({a["RunOrder"] for a in stage_actions})
        result.append({"Name": stage_name, "Actions": [
            {**a, "RunOrder": orders.index(a["RunOrder"]) + 1} for a in stage_actions]})
    return result


def _sequence(stages: list[dict], base: str) -> list[tuple[int, int, str]]:
    """(wave, run order, name) of every action of ``base``'s waves, in run order."""
    return sorted((wave, action["RunOrder"], action["Name"])
                  for wave, stage in enumerate(s for s in stages
                                               if s["Name"].split(".")[0] == base)
                  for action in stage["Actions"])


def _tranche_of(name: str) -> int:
    return int(name.split("-")[1])


def test_stages_within_the_limit_are_unchanged():
    stages = [{"Name": "Source", "Actions": [_action("s", 1)]},
              {"Name": "Staging", "Actions": [_action("p", 1), _action("m", 2)]}]
    assert split_into_waves(stages, 40) == stages


def test_an_overflowing_deployment_is_repacked_into_waves_of_at_most_the_size():
    # The platform, then 200 models in parallel, then one post step: 202 actions.
    stages = [{"Name": "Assets", "Actions": [_action("a", 1)]},
              *_cdk_overflow("Staging", [1, 200, 1])]
    assert [len(s["Actions"]) for s in stages[1:]] == [50, 50, 50, 50, 2]
    waves = split_into_waves(stages, 40)
    assert [s["Name"] for s in waves] == ["Assets"] + [f"Staging.{i}" for i in range(1, 7)]
    assert [len(s["Actions"]) for s in waves[1:]] == [40, 40, 40, 40, 40, 2]
    # Every action once, and never before an action of an earlier tranche.
    sequence = _sequence(waves, "Staging")
    assert sorted(n for *_, n in sequence) == sorted(
        a["Name"] for s in stages[1:] for a in s["Actions"])
    tranches = [_tranche_of(name) for *_, name in sequence]
    assert tranches == sorted(tranches)
    # Run orders start at 1 in every wave and have no gaps.
    for wave in waves[1:]:
        orders = sorted({a["RunOrder"] for a in wave["Actions"]})
        assert orders == list(range(1, len(orders) + 1))
    # The platform runs alone first; the post step after every model.
    assert waves[1]["Actions"][0]["Name"] == "Staging-0-0"
    assert waves[1]["Actions"][0]["RunOrder"] == 1
    assert {a["RunOrder"] for a in waves[1]["Actions"][1:]} == {2}
    assert waves[-1]["Actions"][-1]["Name"] == "Staging-2-0"
    assert waves[-1]["Actions"][-1]["RunOrder"] == 2


def test_a_stage_of_more_actions_than_the_wave_size_is_split_even_below_50():
    stages = [{"Name": "Production", "Actions": [
        _action("approve", 1), *[_action(f"m{i}", 2) for i in range(30)]]}]
    waves = split_into_waves(stages, 20)
    assert [(s["Name"], len(s["Actions"])) for s in waves] == [
        ("Production.1", 20), ("Production.2", 11)]
    assert waves[0]["Actions"][0] == _action("approve", 1)  # the approval stays first


def test_other_stage_properties_are_kept_on_every_wave():
    stages = [{"Name": "Staging", "OnFailure": {"Result": "ROLLBACK"},
               "Actions": [_action(f"m{i}", 1) for i in range(3)]}]
    waves = split_into_waves(stages, 2)
    assert [s.get("OnFailure") for s in waves] == [{"Result": "ROLLBACK"}] * 2


@pytest.mark.parametrize("size", [0, 51, -3])
def test_a_size_outside_codepipelines_limit_is_refused(size):
    with pytest.raises(ValueError, match=rf"actions_per_stage: expected 1 to 50.*got {size}"):
        split_into_waves([], size)


def test_more_waves_than_codepipeline_allows_fail_synthesis_with_the_remedy():
    import aws_cdk as cdk
    from aws_cdk import aws_codepipeline as codepipeline
    from aws_cdk import aws_codepipeline_actions as actions
    from aws_cdk import aws_s3 as s3

    stack = cdk.Stack(cdk.App(), "S")
    pipeline = codepipeline.Pipeline(stack, "P")
    source = codepipeline.Artifact()
    pipeline.add_stage(stage_name="Source", actions=[actions.S3SourceAction(
        action_name="s", bucket=s3.Bucket(stack, "B"), bucket_key="k", output=source)])
    pipeline.add_stage(stage_name="Approve", actions=[
        actions.ManualApprovalAction(action_name=f"a{i}") for i in range(50)])
    assert apply_waves(pipeline, 2) == 26  # Source + 25 waves of 2
    with pytest.raises(ValueError, match=r"51 stages .* more than CodePipeline's 50; raise "
                                         r"actions_per_stage"):
        apply_waves(pipeline, 1)
