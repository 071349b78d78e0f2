"""Spec sections for the data stages: schema, sources, quality rules, features."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import (
    Fraction,
    Identifier,
    InstanceType,
    NonNegative,
    PositiveInt,
    Schedule,
    SpecModel,
)

ColumnType = Literal["string", "int", "float", "bool", "timestamp"]
TimestampUnit = Literal["s", "ms", "us", "ns"]


class Column(SpecModel):
    """One column of the model's dataset."""

    name: Identifier
    type: ColumnType
    description: str = ""
    null_values: list[str] = Field(
        default_factory=lambda: [""],
        description="CSV fields (whole, as written) read as null in this column; default: "
        "only the empty field. Any other text is a value (an id 'NA', an amount 'nan')",
    )

    unit: TimestampUnit | None = Field(
        default=None,
        description="timestamp columns only: the unit of an integer timestamp (epoch "
        "seconds 's', milliseconds 'ms', microseconds 'us', nanoseconds 'ns'); "
        "default: none, an integer is not a timestamp and fails its row with the reason",
    )

    @model_validator(mode="after")
    def _distinct_null_values(self) -> Column:
        if len(set(self.null_values)) != len(self.null_values):
            raise ValueError(f"null_values lists a marker twice: {self.null_values}")
        if self.unit is not None and self.type != "timestamp":
            raise ValueError(f"unit applies to timestamp columns; {self.name!r} is {self.type}")
        return self


class S3Source(SpecModel):
    """Objects under an S3 prefix, copied into each dated snapshot.

    ``bucket`` defaults to the data lake's raw bucket. New source kinds are
    added by a subclass of ``DataSourcing`` together with a spec model that
    has its own ``kind``.
    """

    kind: Literal["s3"] = "s3"
    name: Identifier
    prefix: str = Field(min_length=1, description="key prefix, e.g. 'orders/'")
    bucket: str | None = None
    format: Literal["csv", "parquet"] = "csv"


Source = Annotated[S3Source, Field(discriminator="kind")]


class DataSpec(SpecModel):
    """What one row is, where it comes from, and when snapshots are taken."""

    entity_key: Identifier = Field(description="the entity the model scores, e.g. customer_id")
    event_id: Identifier = Field(description="the producer's unique id of a row or event")
    timestamp: Identifier = Field(description="when the event happened")
    label: Identifier = Field(description="the ground-truth column (training only)")
    columns: list[Column] = Field(min_length=1)
    sources: list[Source] = Field(min_length=1)
    schedule: Schedule = Field(description="when the daily snapshot is taken (EventBridge)")
    retention_days: PositiveInt | None = Field(
        default=None, description="expire snapshots after this many days; default: keep forever"
    )

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


# --- the scale-out runner ---------------------------------------------------------

Runner = Literal["embedded", "processing"]


class ProcessingResources(SpecModel):
    """The SageMaker Processing job of a stage whose ``runner`` is ``processing``.

    The job runs the same code as the embedded (Lambda) runner on one
    instance; pick one whose memory holds the day's data (see the stage's
    docs, "When to switch runners").
    """

    instance_type: InstanceType = Field(
        default="ml.m5.4xlarge", description="one instance of this type (default 16 vCPU, 64 GiB)"
    )
    volume_size_gb: int = Field(
        default=100, ge=1, le=16384, description="KMS-encrypted scratch volume, GB"
    )
    max_runtime_minutes: int = Field(
        default=120, ge=1, le=7 * 24 * 60, description="the job is stopped after this long"
    )


# --- data quality rules -------------------------------------------------------


class _Rule(SpecModel):
    id: Identifier | None = Field(
        default=None, description="the rule's name in reports and metrics; default: kind_column"
    )

    @property
    def rule_id(self) -> str:
        column = getattr(self, "column", None) or "_".join(getattr(self, "columns", []) or [])
        return self.id or (f"{self.kind}_{column}" if column else self.kind)  # type: ignore[attr-defined]


class CompletenessRule(_Rule):
    """The share of non-null values in ``column`` is at least ``min``."""

    kind: Literal["completeness"]
    column: Identifier
    min: Fraction = 1.0


class TypeRule(_Rule):
    """Every non-null value of ``column`` parses as ``type``."""

    kind: Literal["type"]
    column: Identifier
    type: ColumnType


class RangeRule(_Rule):
    """Every non-null value of ``column`` lies in [min, max]."""

    kind: Literal["range"]
    column: Identifier
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError("a range rule needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class AllowedValuesRule(_Rule):
    """Every non-null value of ``column`` is one of ``values``."""

    kind: Literal["allowed_values"]
    column: Identifier
    values: list[str | int | float | bool] = Field(min_length=1)


class UniqueRule(_Rule):
    """No two rows share the same values of ``columns``."""

    kind: Literal["unique"]
    columns: list[Identifier] = Field(min_length=1)


class RowCountRule(_Rule):
    """The snapshot has between ``min`` and ``max`` rows."""

    kind: Literal["row_count"]
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=1)


class FreshnessRule(_Rule):
    """The newest ``column`` value is at most ``max_age_hours`` before the snapshot date ends."""

    kind: Literal["freshness"]
    column: Identifier
    max_age_hours: NonNegative


class ConsistencyRule(_Rule):
    """Across two snapshots, per ``entity``: ``column`` grows by exactly the days
    between them (``change: days``, e.g. account tenure) or stays the same
    (``change: constant``), within ``tolerance``."""

    kind: Literal["consistency"]
    column: Identifier
    entity: Identifier
    change: Literal["days", "constant"] = "days"
    tolerance: NonNegative = 0.0


QualityRule = Annotated[
    CompletenessRule
    | TypeRule
    | RangeRule
    | AllowedValuesRule
    | UniqueRule
    | RowCountRule
    | FreshnessRule
    | ConsistencyRule,
    Field(discriminator="kind"),
]


class QualitySpec(SpecModel):
    """Data quality rules checked on every snapshot before it is used."""

    runner: Runner = Field(
        default="embedded",
        description="embedded: in Lambda; processing: a SageMaker Processing job, for data "
        "that does not fit a Lambda",
    )
    processing: ProcessingResources = Field(
        default_factory=ProcessingResources, description="the job, when runner is processing"
    )
    sample_size: PositiveInt = Field(default=20, description="offending keys kept per failed rule")
    rules: list[QualityRule] = Field(min_length=1)


# --- feature engineering --------------------------------------------------------


class AggregateFeature(SpecModel):
    """``function`` of ``column`` over the last ``window_days`` days per entity."""

    name: Identifier
    function: Literal["sum", "count", "mean", "min", "max"]
    column: Identifier | None = Field(default=None, description="not needed for count")
    window_days: int = Field(ge=1, le=366)
    entity: Identifier | None = Field(default=None, description="default: data.entity_key")

    @model_validator(mode="after")
    def _column(self) -> AggregateFeature:
        if self.function != "count" and self.column is None:
            raise ValueError(f"a {self.function} aggregate needs a column")
        return self


class ExpressionFeature(SpecModel):
    """An arithmetic expression of raw columns and earlier features."""

    name: Identifier
    expression: str = Field(min_length=1, description="e.g. 'order_amount / (account_tenure + 1)'")


class FeaturesSpec(SpecModel):
    """Derived features, computed in batch and incrementally online."""

    runner: Runner = Field(
        default="embedded",
        description="embedded: the batch features in Lambda; processing: a SageMaker "
        "Processing job, for windows of days that do not fit a Lambda",
    )
    processing: ProcessingResources = Field(
        default_factory=ProcessingResources, description="the job, when runner is processing"
    )
    aggregates: list[AggregateFeature] = Field(default_factory=list)
    expressions: list[ExpressionFeature] = Field(default_factory=list)
    online: bool = Field(
        default=True, description="keep running aggregates in DynamoDB for real-time serving"
    )
    max_clock_skew_seconds: int = Field(
        default=900,
        ge=0,
        le=86_400,
        description="how far (seconds) an event's timestamp may lie ahead of the processing "
        "clock; the online updater and the stream consumer dead-letter events further ahead "
        "(default 900: 15 minutes; at most one day)",
    )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.aggregates] + [f.name for f in self.expressions]
