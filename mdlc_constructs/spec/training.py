"""Spec sections for model development and training (stages 4 and 5)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import InstanceType, PositiveInt, Schedule, SpecModel

BUILTIN_ALGORITHMS = (
    "blazingtext",
    "forecasting-deepar",
    "factorization-machines",
    "image-classification",
    "ipinsights",
    "kmeans",
    "knn",
    "lda",
    "linear-learner",
    "ntm",
    "object2vec",
    "object-detection",
    "pca",
    "randomcutforest",
    "semantic-segmentation",
    "seq2seq",
    "xgboost",
)


class BuiltinAlgorithm(SpecModel):
    """A SageMaker built-in algorithm, by the SageMaker SDK's framework name."""

    kind: Literal["builtin"] = "builtin"
    name: Literal[BUILTIN_ALGORITHMS] = Field(  # type: ignore[valid-type]
        description="the SageMaker SDK's framework name"
    )
    version: str = Field(
        default="1",
        description="e.g. '1.7-1' for xgboost; '1' for the others; one the installed "
        "SageMaker SDK has images of",
    )


class MarketplaceAlgorithm(SpecModel):
    """An AWS Marketplace algorithm the account has subscribed to."""

    kind: Literal["marketplace"]
    arn: str = Field(
        description="the algorithm's ARN (arn:aws:sagemaker:<region>:<account>:algorithm/<name>)",
        pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:algorithm/[A-Za-z0-9-]+$"
    )


class CustomAlgorithm(SpecModel):
    """A container built by CodeBuild from ``source`` (a folder with a Dockerfile)."""

    kind: Literal["custom"]
    source: str = Field(
        min_length=1, description="a folder with a Dockerfile, relative to the spec file"
    )
    tag: str = Field(
        default="latest",
        pattern=r"^[A-Za-z0-9_.-]{1,128}$",
        description="the image is tagged <tag>-<hash of the source folder> (ECR tags "
        "are immutable)",
    )


Algorithm = Annotated[
    BuiltinAlgorithm | MarketplaceAlgorithm | CustomAlgorithm, Field(discriminator="kind")
]


class Evaluation(SpecModel):
    """The gate between training and registration."""

    metric: str = Field(
        min_length=1, description="e.g. 'validation:auc', as the algorithm reports it; no quote"
    )
    threshold: float = Field(
        ge=0.0,
        description="the value the metric must reach; at most 1 for metrics in [0, 1] "
        "(auc, f1, accuracy, precision, recall, ...)",
    )
    goal: Literal["maximize", "minimize"] = Field(
        default="maximize",
        description="maximize: register when metric >= threshold; minimize: when <=",
    )


class Spot(SpecModel):
    """Managed spot training."""

    enabled: bool = Field(default=False, description="train on spot capacity")
    max_wait_minutes: PositiveInt = Field(
        default=240, description="at least max_runtime_minutes: waiting for capacity included"
    )


class TrainingSpec(SpecModel):
    """How the model is trained, judged and registered, and how often."""

    algorithm: Algorithm = Field(description="a built-in, a Marketplace or a custom algorithm")
    instance_type: InstanceType = Field(default="ml.m5.xlarge", description="the training job's")
    instance_count: PositiveInt = Field(default=1, description="instances of the training job")
    volume_size_gb: int = Field(
        default=30, ge=1, le=16384, description="KMS-encrypted training volume, GB"
    )
    max_runtime_minutes: int = Field(
        default=120, ge=1, le=40320, description="the job is stopped after this long"
    )
    spot: Spot = Field(default=Spot(), description="off by default")
    hyperparameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="passed to the algorithm as strings"
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of events held out for validation, chosen by a hash of the event id",
    )
    content_type: Literal[
        "text/csv", "application/x-parquet", "application/x-recordio-protobuf"
    ] = Field(
        default="text/csv",
        description="the training channels' format; the input step writes text/csv and "
        "application/x-parquet",
    )
    evaluation: Evaluation = Field(description="the gate before registration")
    approval: Literal["manual", "automatic"] = Field(
        default="manual", description="manual: registered as PendingManualApproval"
    )
    schedule: Schedule | None = Field(
        default=None, description="scheduled re-training; none by default"
    )
    cooldown_hours: float = Field(
        default=24.0, ge=0.0, description="minimum time between two event-driven re-trainings"
    )

    @model_validator(mode="after")
    def _spot(self) -> TrainingSpec:
        if self.spot.enabled and self.spot.max_wait_minutes < self.max_runtime_minutes:
            raise ValueError(
                f"spot.max_wait_minutes ({self.spot.max_wait_minutes}) must be at least "
                f"max_runtime_minutes ({self.max_runtime_minutes})"
            )
        return self
