"""The part hooks of the scale-out runners and the dashboard, swapped and run; and the
Processing runner of every stage in the local execution (the job's code asset runs).

``DataQuality.processing_runner_class``, ``FeatureEngineering.processing_runner_class``,
``ModelMonitoring.processing_runner_class`` and ``ModelMonitoring.dashboard_class``: a
team's subclass is built under the library's id with the library's wiring,
changes what it says it changes in the template, and the workflows that run
the swapped runners still succeed in the local execution (quality, features
and monitoring as Processing jobs, real handlers). ``DataQuality.spark_runner_class``
likewise, synthesized (tests/test_spark.py runs the Spark runner itself).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk import aws_cloudwatch as cloudwatch

from mdlc_constructs.dashboard import ModelDashboard
from mdlc_constructs.features import FeatureEngineering
from mdlc_constructs.model_stack import MdlcModelStack
from mdlc_constructs.monitoring import ModelMonitoring
from mdlc_constructs.preparation import DataPreparation
from mdlc_constructs.processing import ProcessingRunner
from mdlc_constructs.quality import DataQuality
from mdlc_constructs.spark import SparkRunner
from mdlc_constructs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TEAM_VARIABLE = "TEAM_RUNNER"


class TeamRunner(ProcessingRunner):
    """Every job it starts carries one more environment variable."""

    def __init__(self, scope: Any, construct_id: str, *, environment: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id,
                         environment={**(environment or {}), TEAM_VARIABLE: "1"}, **kwargs)


class TeamDashboard(ModelDashboard):
    """The library's dashboard plus the team's runbook."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown="# Team runbook", width=24))


class TeamFeatures(FeatureEngineering):
    processing_runner_class = TeamRunner


class TeamQuality(DataQuality):
    processing_runner_class = TeamRunner


class TeamPreparation(DataPreparation):
    features_class = TeamFeatures
    quality_class = TeamQuality


class TeamMonitoring(ModelMonitoring):
    processing_runner_class = TeamRunner
    dashboard_class = TeamDashboard


class TeamStack(MdlcModelStack):
    data_preparation_class = TeamPreparation
    monitoring_class = TeamMonitoring


@pytest.fixture(scope="module")
def swapped(tmp_path_factory):
    from mdlc_constructs.local.simulation import synthesize

    root = tmp_path_factory.mktemp("runners")
    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document["quality"]["runner"] = "processing"
    document["features"]["runner"] = "processing"
    document["monitoring"]["runner"] = "processing"
    (root / "fraud.yaml").write_text(yaml.safe_dump(document))
    spec = load_spec(root / "fraud.yaml")
    name = synthesize(spec, root / "cdk.out", stack_class=TeamStack)
    template = json.loads((root / "cdk.out" / f"{name}.template.json").read_text())
    return spec, root, name, template


def _processing_tasks(template: dict[str, Any]) -> list[str]:
    """The definitions (as JSON text) of the state machines that start Processing jobs."""
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::StepFunctions::StateMachine":
            text = json.dumps(resource["Properties"]["DefinitionString"])
            if "createProcessingJob" in text:
                found.append(text)
    return found


def test_the_swapped_parts_are_built_under_the_librarys_ids(swapped):
    _, _, _, template = swapped
    paths = {r.get("Metadata", {}).get("aws:cdk:path", "") for r in template["Resources"].values()}
    assert any("/Data/Features/Processing/" in p for p in paths)
    assert any("/Data/Quality/Processing/" in p for p in paths)
    assert any("/Monitoring/Processing/" in p for p in paths)
    assert any(p.endswith("/Monitoring/Dashboard/Dashboard/Resource") for p in paths), sorted(
        p for p in paths if "Dashboard" in p)


def test_the_swapped_parts_change_what_they_say(swapped):
    _, _, _, template = swapped
    machines = _processing_tasks(template)
    # Monitoring's own, and every workflow that runs data preparation's chain
    # (its features job): each job they start carries the team's variable.
    assert any("daily model monitoring" in text for text in machines)
    assert len(machines) >= 2 and all(TEAM_VARIABLE in text for text in machines)
    (dashboard,) = [r for r in template["Resources"].values()
                    if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert "Team runbook" in json.dumps(dashboard["Properties"]["DashboardBody"])


@pytest.mark.slow
def test_the_swapped_runners_run_their_jobs_locally(swapped):
    from mdlc_constructs.local.simulation import simulate
    from mdlc_constructs.sampling import sample, write_csv

    spec, root, name, _ = swapped
    orders = root / "orders.csv"
    write_csv(spec, sample(spec, days=2, start=date(2026, 11, 1), rows_per_day=200, seed=3),
              orders)
    run = simulate(spec, orders, assembly=root / "cdk.out", stack=name, out=root / "out")
    report = run.report
    failed = [(e["workflow"], e["date"], e["cause"]) for e in report["executions"]
              if e["status"] != "SUCCEEDED"]
    assert failed == []
    assert {e["workflow"] for e in report["executions"]} >= {"data_preparation", "monitoring"}
    prepared = [(e["date"], e["status"]) for e in report["executions"]
                if e["workflow"] == "data_preparation"]
    assert prepared == [("2026-11-01", "SUCCEEDED"), ("2026-11-02", "SUCCEEDED")]
    # The checks ran in the jobs, not in the stages' functions.
    assert "DataQualityFunctionC5BA9E4D" not in report["functions"]
    assert report["denied_calls"] == []
    jobs = report["functions"]["mdlc-local-sagemaker-createProcessingJob"]["invocations"]
    assert jobs >= 6  # two days of quality, features and monitoring, each a Processing job
    s3 = root / "out" / "s3"
    assert list(s3.glob("*/quality-reports/fraud/dt=2026-11-02/report.json"))
    assert list(s3.glob("*/features/fraud/dt=2026-11-02/features.parquet"))
    assert list(s3.glob("*/monitoring/fraud/dt=2026-11-01/report.json"))


class TeamSpark(SparkRunner):
    """The library's Spark runner with the team's larger driver."""

    def __init__(self, scope: Any, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, arguments={**kwargs.pop("arguments", {}),
                                                         "--team": "1"}, **kwargs)


def test_the_spark_runner_class_is_swapped_under_the_librarys_id(tmp_path):
    from aws_cdk import Stack

    from mdlc_constructs.spec import parse_spec
    from mdlc_constructs.storage import DataLake
    from mdlc_constructs.testing import make_app

    class SparkQuality(DataQuality):
        spark_runner_class = TeamSpark

    document = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    document["quality"]["runner"] = "spark"
    document["quality"]["spark"] = {"python_environment": "s3://team-envs/mdlc/env.tar.gz"}
    spec = parse_spec(document, "fraud.yaml")
    app = make_app(compliance=False, outdir=str(tmp_path))
    stack = Stack(app, "SparkQuality")
    quality = SparkQuality(stack, "Quality", spec=spec, data_lake=DataLake(stack, "DataLake"))
    assert type(quality.spark_runner) is TeamSpark and quality.spark_runner.node.id == "Spark"
    assert quality.spark_runner.arguments["--team"] == "1"
    assert quality.spark_runner.arguments["--report-bucket"]  # the library's wiring kept
