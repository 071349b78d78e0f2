"""The model spec: one YAML file per model, the single source of every default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from . import rules
from .base import Identifier, ModelName, SpecModel
from .data import DataSpec, FeaturesSpec, QualitySpec
from .inference import InferenceSpec, IntegrationSpec
from .monitoring import MonitoringSpec
from .network import NetworkSpec
from .training import TrainingSpec


class ModelSpec(SpecModel):
    """Everything the constructs need to know about one model."""

    name: ModelName = Field(
        description="part of resource names (Mdlc-<name> stack, mdlc-<name> endpoint, "
        "SageMaker job names of at most 63 characters)"
    )
    description: str = Field(default="", description="for people; not used")
    owner: Identifier = Field(
        description="the team that owns the model; tagged on every resource (mdlc:owner)"
    )
    data: DataSpec = Field(description="stage 1: the dataset and its daily snapshots")
    quality: QualitySpec = Field(description="stage 2: checks of every snapshot")
    features: FeaturesSpec = Field(
        default=FeaturesSpec(), description="stage 3: derived features; none by default"
    )
    training: TrainingSpec = Field(description="stages 4-5: algorithm, training, evaluation")
    inference: InferenceSpec = Field(
        default=InferenceSpec(), description="stage 6: batch and real-time, both on by default"
    )
    integration: IntegrationSpec | None = Field(
        default=None, description="stage 8: rules and actions per event; none: no integration"
    )
    monitoring: MonitoringSpec = Field(default=MonitoringSpec(), description="stage 7")
    network: NetworkSpec | None = Field(
        default=None, description="run every function, job and endpoint in private subnets "
        "(docs/network.md); none: AWS's public endpoints over TLS")

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file the spec was read from, if any."""
        return self._source

    @property
    def feature_columns(self) -> list[str]:
        """The model's inputs, in training order: raw columns, then derived features."""
        roles = {self.data.entity_key, self.data.event_id, self.data.timestamp, self.data.label}
        raw = [c.name for c in self.data.columns if c.name not in roles and c.type != "string"]
        return raw + self.features.names

    @model_validator(mode="after")
    def _cross_field(self) -> ModelSpec:
        # One message line per problem, each starting with the field's path,
        # so the loader can report them like pydantic's own errors. The same
        # checks run from the loader when a field fails (rules.py says why).
        problems = rules.cross_field_problems(self.model_dump(), self)
        if problems:
            raise ValueError("\n".join(f"{path}: {message}" for path, message in problems))
        return self

    def as_config(self) -> dict[str, Any]:
        """The spec as plain JSON data, for handlers and workflow inputs."""
        return self.model_dump(mode="json")
