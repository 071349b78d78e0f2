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
    name: Literal[BUILTIN_ALGORITHMS]  # type: ignore[valid-type]
    version: str = Field(default="1", description="e.g. '1.7-1' for xgboost; '1' for the others")


class MarketplaceAlgorithm(SpecModel):
    """An AWS Marketplace algorithm the account has subscribed to."""

    kind: Literal["marketplace"]
    arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:algorithm/[A-Za-z0-9-]+$"
    )


class CustomAlgorithm(SpecModel):
    """A container built by CodeBuild from ``source`` (a folder with a Dockerfile)."""

    kind: Literal["custom"]
    source: str = Field(min_length=1, description="folder, relative to the spec file")
    tag: str = Field(default="latest", pattern=r"^[A-Za-z0-9_.-]{1,128}$")


Algorithm = Annotated[
    BuiltinAlgorithm | MarketplaceAlgorithm | CustomAlgorithm, Field(discriminator="kind")
]


class Evaluation(SpecModel):
    """The gate between training and registration."""

    metric: str = Field(min_length=1, description="e.g. 'validation:auc'")
    threshold: float = Field(ge=0.0)
    goal: Literal["maximize", "minimize"] = "maximize"


class Spot(SpecModel):
    enabled: bool = False
    max_wait_minutes: PositiveInt = 240


class TrainingSpec(SpecModel):
    """How the model is trained, judged and registered, and how often."""

    algorithm: Algorithm
    instance_type: InstanceType = "ml.m5.xlarge"
    instance_count: PositiveInt = 1
    volume_size_gb: int = Field(default=30, ge=1, le=16384)
    max_runtime_minutes: int = Field(default=120, ge=1, le=40320)
    spot: Spot = Spot()
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    validation_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="share of events held out for validation, chosen by a hash of the event id",
    )
    content_type: Literal[
        "text/csv", "application/x-parquet", "application/x-recordio-protobuf"
    ] = "text/csv"
    evaluation: Evaluation
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
