"""Spec section for model monitoring (stage 7)."""

from __future__ import annotations

from pydantic import Field

from .base import Fraction, NonNegative, PositiveInt, Schedule, SpecModel
from .data import ProcessingResources, Runner


class ClosedLoop(SpecModel):
    """Accuracy against labels that arrive later; alarms below these."""

    min_precision: Fraction | None = 0.5
    min_recall: Fraction | None = 0.5
    min_auc: Fraction | None = 0.75
    min_label_coverage: Fraction | None = None
    label_delay_days: PositiveInt = Field(
        default=60, description="how long labels may take to arrive (e.g. chargebacks)"
    )
    decision_threshold: Fraction = Field(default=0.5, description="score that counts as positive")


class OpenLoop(SpecModel):
    """Consistency of outputs and inputs against the training baseline."""

    max_psi: NonNegative = Field(default=0.2, description="population stability index")
    ks_alpha: Fraction = Field(default=0.01, description="two-sample KS test significance")
    max_action_share: dict[str, Fraction] = Field(
        default_factory=dict, description="action -> highest share of decisions, e.g. block: 0.05"
    )
    bins: int = Field(default=10, ge=2, le=100)


def _monitoring_job() -> ProcessingResources:
    # 10 million predictions take about 3.5 GiB in the engine
    # (benchmarks/bench_monitoring.py): 32 GiB leaves room for several times that.
    return ProcessingResources(instance_type="ml.m5.2xlarge", volume_size_gb=30)


class MonitoringSpec(SpecModel):
    schedule: Schedule = "cron(0 7 * * ? *)"
    runner: Runner = Field(
        default="embedded",
        description="embedded: the daily job in Lambda (up to about 2 million predictions a "
        "day); processing: a SageMaker Processing job running the same code, for more",
    )
    processing: ProcessingResources = Field(
        default_factory=_monitoring_job,
        description="the job, when runner is processing (default ml.m5.2xlarge, 30 GB)",
    )
    closed_loop: ClosedLoop = ClosedLoop()
    open_loop: OpenLoop = OpenLoop()
    retrain_on_alarm: bool = True
