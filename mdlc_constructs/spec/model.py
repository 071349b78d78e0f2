"""The model spec: one YAML file per model, the single source of every default."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from .base import Identifier, ModelName, SpecModel
from .data import DataSpec, FeaturesSpec, QualitySpec
from .inference import InferenceSpec, IntegrationSpec
from .monitoring import MonitoringSpec
from .training import TrainingSpec

_lambdas = Path(__file__).resolve().parents[2] / "lambdas"
try:  # the installed distribution, or the source tree when run from a checkout
    from mdlc_core import expressions
except ImportError:  # pragma: no cover - only without `pip install`
    sys.path.insert(0, str(_lambdas))
    from mdlc_core import expressions


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
    def _references(self) -> ModelSpec:
        # One message line per problem, each starting with the field's path,
        # so the loader can report them like pydantic's own errors.
        problems = list(self._reference_problems())
        if problems:
            raise ValueError("\n".join(f"{path}: {message}" for path, message in problems))
        return self

    def _reference_problems(self) -> Iterator[tuple[str, str]]:
        columns = set(self.data.column_names)
        for index, rule in enumerate(self.quality.rules):
            for field in ("column", "entity", "columns"):
                value = getattr(rule, field, None)
                for column in [value] if isinstance(value, str) else value or []:
                    if column not in columns:
                        yield (
                            f"quality.rules[{index}].{field}",
                            f"{column!r} is not one of data.columns {sorted(columns)}",
                        )
        known = set(columns)
        for index, feature in enumerate(self.features.aggregates):
            for field in ("column", "entity"):
                column = getattr(feature, field)
                if column is not None and column not in columns:
                    yield (
                        f"features.aggregates[{index}].{field}",
                        f"{column!r} is not one of data.columns {sorted(columns)}",
                    )
            known.add(feature.name)
        for index, feature in enumerate(self.features.expressions):
            try:
                expressions.parse(feature.expression, known=known)
            except expressions.ExpressionError as error:
                yield f"features.expressions[{index}].expression", str(error)
            known.add(feature.name)
        for name in sorted(set(self.features.names) & columns):
            yield "features", f"feature {name!r} has the name of a column"
        if self.integration is not None:
            variables = {"score", *self.feature_columns}
            for index, rule in enumerate(self.integration.rules):
                try:
                    expressions.parse(rule.when, known=variables, boolean=True)
                except expressions.ExpressionError as error:
                    yield f"integration.rules[{index}].when", str(error)

    def as_config(self) -> dict[str, Any]:
        """The spec as plain JSON data, for handlers and workflow inputs."""
        return self.model_dump(mode="json")
