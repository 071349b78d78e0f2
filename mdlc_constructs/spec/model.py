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
from .training import TrainingSpec


class ModelSpec(SpecModel):
    """Everything the constructs need to know about one model."""

    name: ModelName
    description: str = ""
    owner: Identifier = Field(description="the team that owns the model, for tags and alarms")
    data: DataSpec
    quality: QualitySpec
    features: FeaturesSpec = FeaturesSpec()
    training: TrainingSpec
    inference: InferenceSpec = InferenceSpec()
    integration: IntegrationSpec | None = None
    monitoring: MonitoringSpec = MonitoringSpec()

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
