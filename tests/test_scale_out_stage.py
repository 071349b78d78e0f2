"""One runner choice for the three batch stages (issue #17, the duplicates of
``runner: embedded | processing | spark``).

The spec side (``ScaleOutSection``): quality, features and monitoring refuse
a ``spark`` section without ``runner: spark`` alike, naming the fields (quality
used to keep it silently), and dump it only when it is used. The construct
side (``ScaleOutStage``): each stage builds the runner its section chooses
from its own class attribute, under the library's id and with the stage's
wiring; the Spark job gets every setting the Processing job gets, under a
flag its entry point (``mdlc_core.spark_job``) takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk import Stack
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sns as sns

from mdlc_constructs.cli import EXIT_USAGE, main
from mdlc_constructs.features import FeatureEngineering
from mdlc_constructs.monitoring import ModelMonitoring
from mdlc_constructs.processing import ProcessingRunner
from mdlc_constructs.quality import DataQuality
from mdlc_constructs.scale_out_stage import ScaleOutStage
from mdlc_constructs.spark import SparkRunner
from mdlc_constructs.spec import SpecError, parse_spec
from mdlc_constructs.spec.data import ProcessingSection, Runner, ScaleOutSection
from mdlc_constructs.storage import DataLake
from mdlc_constructs.testing import make_app

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("quality", "features", "monitoring")
ENVIRONMENT = "s3://team-envs/mdlc/env.tar.gz"


def _document(stage: str, runner: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document.setdefault(stage, {})["runner"] = runner
    if runner == "spark":
        document[stage]["spark"] = {"python_environment": ENVIRONMENT}
    return document


# --- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["embedded", "processing"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_spark_section_without_runner_spark_is_refused_naming_it(stage: str,
                                                                   runner: str) -> None:
    document = _document(stage, runner)
    document[stage]["spark"] = {"max_vcpu": 8}
    with pytest.raises(SpecError, match=(
            rf"fraud\.yaml: {stage}: {stage}\.spark is set but {stage}\.runner is '{runner}'"
            rf".*set {stage}\.runner: spark, or remove {stage}\.spark")):
        parse_spec(document, "fraud.yaml")


def test_mdlc_validate_refuses_a_stray_quality_spark_section(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """Quality used to drop it and run in Lambda: the file and field are named now."""
    document = _document("quality", "embedded")
    document["quality"]["spark"] = {"python_environment": ENVIRONMENT}
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["validate", str(path)]) == EXIT_USAGE
    assert f"{path}: quality: quality.spark is set but quality.runner is 'embedded'" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("stage", STAGES)
def test_the_spark_section_is_dumped_only_with_runner_spark(stage: str) -> None:
    assert "spark" not in parse_spec(_document(stage, "processing")).as_config()[stage]
    assert "spark" not in parse_spec(_document(stage, "embedded")).as_config()[stage]
    spark = parse_spec(_document(stage, "spark")).as_config()[stage]["spark"]
    assert spark["python_environment"] == ENVIRONMENT
    assert "processing" in parse_spec(_document(stage, "embedded")).as_config()[stage]


def test_a_section_without_one_of_the_runner_fields_is_refused_where_it_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Partial: .*missing \['spark'\]"):
        class Partial(ScaleOutSection):
            section = "partial"
            runner: Runner = "embedded"
            processing: ProcessingSection

    with pytest.raises(TypeError, match=r"Unnamed: .*missing \['section'\]"):
        class Unnamed(ScaleOutSection):
            runner: Runner = "embedded"
            processing: ProcessingSection
            spark: ProcessingSection


# --- the constructs ------------------------------------------------------------------------


class TeamProcessing(ProcessingRunner):
    """A team's Processing runner: what the stage built it with is kept."""


class TeamSpark(SparkRunner):
    """A team's Spark runner."""


def _team(cls: type[ScaleOutStage]) -> type[Any]:
    return type(f"Team{cls.__name__}", (cls,), {"processing_runner_class": TeamProcessing,
                                                "spark_runner_class": TeamSpark})


def _build(stage: str, runner: str, *, team: bool = False) -> tuple[Stack, DataLake, Any]:
    spec = parse_spec(_document(stage, runner), "fraud.yaml")
    stack = Stack(make_app(compliance=False), "Stage")
    lake = DataLake(stack, "DataLake")
    classes: dict[str, type[Any]] = {"quality": DataQuality, "features": FeatureEngineering,
                                     "monitoring": ModelMonitoring}
    cls = _team(classes[stage]) if team else classes[stage]
    props: dict[str, Any] = {"spec": spec, "data_lake": lake}
    if stage == "features":
        props["stream"] = kinesis.Stream(stack, "Events")
    if stage == "monitoring":
        props["topic"] = sns.Topic(stack, "Topic")
    return stack, lake, cls(stack, stage.title(), **props)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_builds_the_runner_its_section_chooses_from_its_class(stage: str) -> None:
    for runner, built, other, runner_class in (
            ("processing", "processing_runner", "spark_runner", TeamProcessing),
            ("spark", "spark_runner", "processing_runner", TeamSpark)):
        _, lake, construct = _build(stage, runner, team=True)
        job = getattr(construct, built)
        assert type(job) is runner_class, (stage, runner)
        assert job.node.id == runner.title() and job.node.scope is construct
        assert (job.kind, job.key, job.output_bucket) == (stage, lake.key, lake.artifacts)
        assert getattr(construct, other) is None
    _, _, embedded = _build(stage, "embedded", team=True)
    assert (embedded.processing_runner, embedded.spark_runner) == (None, None)
    assert not [c for c in embedded.node.children if isinstance(c, (ProcessingRunner,
                                                                    SparkRunner))]


def _entry_point_flags(kind: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every option ``spark_job --kind <kind>`` takes (its own parser, captured)."""
    from mdlc_core import spark_job

    parsers: list[argparse.ArgumentParser] = []
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                        lambda self, *args, **kwargs: parsers.append(self))
    spark_job.parse_args(["--kind", kind])
    (parser,) = parsers
    return {flag for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("stage", STAGES)
def test_the_spark_job_gets_every_setting_of_the_processing_job_as_a_flag_it_takes(
        stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    processing_stack, _, processing = _build(stage, "processing")
    spark_stack, _, spark = _build(stage, "spark")
    environment = processing_stack.resolve(processing.processing_runner.environment)
    arguments = spark_stack.resolve(spark.spark_runner.arguments)
    assert environment and len(arguments) == len(environment)
    assert sorted(map(str, arguments.values())) == sorted(map(str, environment.values()))
    unknown = set(arguments) - _entry_point_flags(stage, monkeypatch)
    assert unknown == set(), f"{stage}: spark_job --kind {stage} takes no {sorted(unknown)}"


def test_a_variable_of_a_subclass_without_a_spark_flag_stays_out_of_the_spark_job() -> None:
    """A subclass's ``job_environment`` reaches the Spark job through the flags
    its entry point knows; a variable without one is left out (the entry point
    would refuse an unknown flag), and the library's own are all passed."""

    class Extended(ModelMonitoring):
        def job_environment(self) -> dict[str, str]:
            return {**super().job_environment(), "TEAM_SETTING": "1"}

    spec = parse_spec(_document("monitoring", "spark"), "fraud.yaml")
    stack = Stack(make_app(compliance=False), "Stage")
    monitoring = Extended(stack, "Monitoring", spec=spec, data_lake=DataLake(stack, "DataLake"),
                          topic=sns.Topic(stack, "Topic"))
    arguments = monitoring.spark_runner.arguments
    assert "1" not in arguments.values()
    assert len(arguments) == len(monitoring.job_environment()) - 1
    assert arguments["--labels-prefix"] == monitoring.labels_prefix
