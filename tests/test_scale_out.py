"""What the two scale-out runners share, written once in ``mdlc_constructs.scale_out``.

``ProcessingRunner`` and ``SparkRunner`` take the same props
(``ScaleOutProps``), refuse the same bad input, grant their job roles the
stage's reads, writes and metrics namespace the same way, and run a job as the
same three steps. Each check runs against both runners, so a runner that
drifts from the other fails here; tests/test_processing.py and
tests/test_spark.py check each service's own part.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Template

from mdlc_constructs.processing import ProcessingRunner
from mdlc_constructs.scale_out import S3Access, ScaleOutRunner
from mdlc_constructs.spark import SparkRunner
from mdlc_constructs.spec import parse_spec
from mdlc_constructs.testing import make_app
from tests.conftest import FRAUD_SPEC

RUNNERS = [ProcessingRunner, SparkRunner]
NAMESPACE = "MDLC/DataQuality"


@pytest.fixture(scope="module")
def spec() -> Any:
    document = yaml.safe_load(FRAUD_SPEC.read_text())
    # A spark section needs runner spark (the spec refuses it otherwise); the
    # Processing runner built from this spec takes quality.processing all the same.
    document["quality"]["runner"] = "spark"
    document["quality"]["spark"] = {"python_environment": "s3://team-envs/mdlc/env.tar.gz"}
    return parse_spec(document, "fraud.yaml")


def _stack() -> tuple[Stack, kms.Key, s3.Bucket]:
    stack = Stack(make_app(compliance=False), "Runners")
    return stack, kms.Key(stack, "Key"), s3.Bucket(stack, "Artifacts")


@pytest.mark.parametrize("runner_class", RUNNERS)
def test_bad_props_are_refused_with_their_names(runner_class: type[ScaleOutRunner],
                                                 spec: Any) -> None:
    stack, key, bucket = _stack()
    props: dict[str, Any] = {"spec": spec, "kind": "quality", "key": key,
                             "output_bucket": bucket}
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['output_buckt'\]"):
        runner_class(stack, "Typo", **{**props, "output_buckt": bucket})
    without_key = {k: v for k, v in props.items() if k != "key"}
    with pytest.raises(TypeError, match=r"missing keyword arguments \['key'\]"):
        runner_class(stack, "NoKey", **without_key)
    with pytest.raises(ValueError, match=r"kind must be one of .*, got 'training'"):
        runner_class(stack, "Kind", **{**props, "kind": "training"})


@pytest.mark.parametrize("runner_class", RUNNERS)
def test_a_result_path_that_is_not_a_jsonpath_is_refused(
        synthesized: dict[str, Any], runner_class: type[ScaleOutRunner]) -> None:
    runner = synthesized["runners"][runner_class.__name__]
    for result_path in ("data.x", "$.data."):
        with pytest.raises(ValueError, match="result_path must be a JSONPath"):
            runner.run(synthesized["stack"], f"Bad{len(result_path)}", arguments={},
                       result_path=result_path)


@pytest.fixture(scope="module")
def synthesized(spec: Any) -> dict[str, Any]:
    """Both runners in one stack, each with a run in its own state machine; the
    Processing runner with the stage's namespace, the Spark runner without."""
    stack, key, bucket = _stack()
    datasets = s3.Bucket(stack, "Datasets")
    runners: dict[str, ScaleOutRunner] = {}
    for runner_class, namespace in ((ProcessingRunner, NAMESPACE), (SparkRunner, None)):
        name = runner_class.__name__
        runner = runner_class(
            stack, name, spec=spec, kind="quality", key=key, output_bucket=bucket,
            reads=[S3Access(datasets, "datasets/fraud/*", "Snapshots named at run time")],
            writes=[S3Access(bucket, "quality-reports/fraud/*", "Reports named at run time")],
            metrics_namespace=namespace,
        )
        steps = runner.run(stack, f"{name}Check", arguments={"--date": "$.date", "--n": "7"},
                           result_path="$.data.quality")
        sfn.StateMachine(stack, f"{name}Machine",
                         definition_body=sfn.DefinitionBody.from_chainable(steps))
        runners[name] = runner
    template = Template.from_stack(stack).to_json()
    return {"stack": stack, "runners": runners, "template": template}


def _role_statements(synthesized: dict[str, Any], runner: ScaleOutRunner) -> list[dict[str, Any]]:
    role_id = synthesized["stack"].resolve(runner.role.role_arn)["Fn::GetAtt"][0]
    statements = []
    for resource in synthesized["template"]["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and \
                {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _definition(synthesized: dict[str, Any], name: str) -> dict[str, Any]:
    for logical_id, resource in synthesized["template"]["Resources"].items():
        if resource["Type"] == "AWS::StepFunctions::StateMachine" and logical_id.startswith(
                f"{name}Machine"):
            parts = resource["Properties"]["DefinitionString"]["Fn::Join"][1]
            return json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    raise AssertionError(f"no state machine of {name}")


@pytest.mark.parametrize("runner_class", RUNNERS)
def test_the_job_role_gets_the_stages_prefixes_and_only_its_namespace(
        synthesized: dict[str, Any], runner_class: type[ScaleOutRunner]) -> None:
    runner = synthesized["runners"][runner_class.__name__]
    statements = _role_statements(synthesized, runner)
    text = json.dumps(statements)
    for pattern in ("datasets/fraud/*", "quality-reports/fraud/*", f"{runner.output_prefix}*"):
        assert pattern in text, pattern
    assert runner.output_prefix == f"{runner.output_root}/fraud/quality/"
    stage = [s for s in statements if s["Action"] == "cloudwatch:PutMetricData"
             and "StringEquals" in s.get("Condition", {})]
    if runner.metrics_namespace:
        assert [s["Condition"]["StringEquals"] for s in stage] == [
            {"cloudwatch:namespace": NAMESPACE}]
    else:
        assert stage == []


@pytest.mark.parametrize("runner_class", RUNNERS)
def test_a_run_names_the_job_and_reads_its_result_back_where_the_lambda_step_puts_it(
        synthesized: dict[str, Any], runner_class: type[ScaleOutRunner]) -> None:
    name = runner_class.__name__
    runner = synthesized["runners"][name]
    states = _definition(synthesized, name)["States"]
    check = f"{name}Check"
    assert list(states) == [check, f"{check}Job", f"{check}ReadResult", f"{check}Result"]
    assert runner.name_prefix == "fraud-quality-"
    assert f"'{runner.name_prefix}{{}}'" in states[check]["Parameters"]["job_name.$"]
    assert states[check]["ResultPath"] == "$.data.quality"
    assert states[check]["Comment"].endswith(f"on {runner.runs_on}")
    # The run's arguments: a JSONPath as it is, anything else a literal.
    arguments = json.dumps(states[f"{check}Job"]["Parameters"])
    assert "'--date', $.date" in arguments and "'--n', '7'" in arguments
    read = states[f"{check}ReadResult"]
    assert read["Parameters"]["Key.$"] == (
        f"States.Format('{runner.output_prefix}{{}}/result.json', $.data.quality.job_name)")
    assert read["Retry"] and read["TimeoutSeconds"] == 60
    assert states[f"{check}Result"]["InputPath"] == "$.data.quality.result"
    assert states[f"{check}Result"]["ResultPath"] == "$.data.quality"


def test_a_runner_or_stage_without_its_hooks_is_refused_where_it_is_written() -> None:
    """The bases' abstract hooks: a concrete runner (it sets ``kinds``) or stage
    (it sets ``scale_out_kind``) that leaves one as the base wrote it is a
    TypeError naming the hook at class definition, not a failure mid-synthesis;
    a subclass of a complete class (a team's runner) inherits its hooks."""
    from mdlc_constructs.scale_out_stage import ScaleOutStage

    with pytest.raises(TypeError, match=r"GlueRunner sets kinds but does not implement "
                                        r"_grant_service, _job_state, start_statements, "
                                        r"acknowledge_start_resources"):
        class GlueRunner(ScaleOutRunner):
            kinds = ("quality",)

    with pytest.raises(TypeError, match=r"HalfRunner .* does not implement _job_state \("):
        class HalfRunner(SparkRunner):
            _job_state = ScaleOutRunner._job_state

    with pytest.raises(TypeError, match=r"Stage sets scale_out_kind but does not implement "
                                        r"_scale_out_job"):
        class Stage(ScaleOutStage):
            scale_out_kind = "quality"

    class TeamSpark(SparkRunner):  # inherits every hook: accepted
        pass

    class Base(ScaleOutRunner):  # not concrete (no kinds): accepted
        pass

    assert TeamSpark.kinds == SparkRunner.kinds and not hasattr(Base, "kinds")
