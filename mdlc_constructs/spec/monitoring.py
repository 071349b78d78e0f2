"""Spec section for model monitoring (stage 7)."""

from __future__ import annotations

from pydantic import Field

from .base import Fraction, NonNegative, PositiveInt, Schedule, SpecModel, duckdb_engine
from .data import ProcessingResources, ProcessingSection, Runner, ScaleOutSection, SparkSection

MonitoringEngine = duckdb_engine("monitoring", "(NumPy) monitoring",
                                 "the reports are the same")


class ClosedLoop(SpecModel):
    """Accuracy against labels that arrive later; alarms below these."""

    min_precision: Fraction | None = Field(default=0.5, description="alarm below; none: no alarm")
    min_recall: Fraction | None = Field(default=0.5, description="alarm below; none: no alarm")
    min_auc: Fraction | None = Field(default=0.75, description="alarm below; none: no alarm")
    min_label_coverage: Fraction | None = Field(
        default=None, description="alarm when fewer predictions have their label; none: no alarm"
    )
    label_delay_days: PositiveInt = Field(
        default=60, description="how long labels may take to arrive (e.g. chargebacks)"
    )
    decision_threshold: Fraction = Field(default=0.5, description="score that counts as positive")


class OpenLoop(SpecModel):
    """Consistency of outputs and inputs against the training baseline."""

    max_psi: NonNegative = Field(default=0.2, description="population stability index")
    ks_alpha: Fraction = Field(default=0.01, description="two-sample KS test significance")
    max_action_share: dict[str, Fraction] = Field(
        default_factory=dict,
        description="action -> highest share of decisions, e.g. block: 0.05; each an "
        "action the integration decides",
    )
    bins: int = Field(default=10, ge=2, le=100, description="bins of the PSI histograms")


def _monitoring_job() -> ProcessingResources:
    # On DuckDB (the only engine) a day takes at most DuckDB's memory limit,
    # 80% of the instance's memory, spilling to the volume past it: 10 million
    # predictions and 6 million labels peaked at 3.0 GiB unbounded, 2.3 GiB
    # under a 3 GB function's limit (2.2 GB), where the retired NumPy engine,
    # which held the day, took 4.8 GiB (the same report; tests/test_monitoring_files.py
    # runs the job, 1.5 million under a 128 MB limit). 32 GiB and 30 GB of
    # volume leave room for days many times that.
    return ProcessingResources(instance_type="ml.m5.2xlarge", volume_size_gb=30)


class MonitoringSpec(ScaleOutSection):
    """The daily model monitoring job, its alarms and what they trigger (stage 7)."""

    section = "monitoring"

    schedule: Schedule = Field(default="cron(0 7 * * ? *)", description="when the job runs (UTC)")
    runner: Runner = Field(
        default="embedded",
        description="embedded: the daily job in Lambda (on DuckDB 10 million predictions a "
        "day peaked at 2.3 GiB, within the function's memory); processing: a SageMaker "
        "Processing job running the same code, for more; spark: the same job with its "
        "metrics as Spark SQL on EMR Serverless",
    )
    processing: ProcessingSection = Field(
        default_factory=_monitoring_job,
        description="the job, when runner is processing (default ml.m5.2xlarge, 30 GB)",
    )
    spark: SparkSection
    engine: MonitoringEngine = Field(
        default="duckdb",
        description="DuckDB reads the day's files and baselines and runs the join and "
        "metrics compiled to SQL, within a memory limit, spilling to disk past it "
        "(docs/engines.md); the only engine since the NumPy one was retired",
    )
    closed_loop: ClosedLoop = Field(
        default=ClosedLoop(), description="accuracy against labels that arrive later"
    )
    open_loop: OpenLoop = Field(default=OpenLoop(), description="drift of outputs and inputs")
    retrain_on_alarm: bool = Field(
        default=True, description="an accuracy or drift alarm starts re-training (cooldown applies)"
    )
