"""Spec sections for the data stages: schema, sources, quality rules, features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from .base import (
    Fraction,
    Identifier,
    InstanceType,
    NonNegative,
    PositiveInt,
    Schedule,
    SpecModel,
    duckdb_engine,
)

ColumnType = Literal["string", "int", "float", "bool", "timestamp"]
TimestampUnit = Literal["s", "ms", "us", "ns"]
QualityEngine = duckdb_engine("quality", "(pyarrow) quality", "the reports are the same")
FeaturesEngine = duckdb_engine("features", "(NumPy) feature",
                               "the training and entity tables are the same")


class Column(SpecModel):
    """One column of the model's dataset."""

    name: Identifier = Field(description="the column's name in the data (a CSV header)")
    type: ColumnType = Field(description="how values are read and checked")
    description: str = Field(default="", description="for people; not used")
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
    name: Identifier = Field(description="the source's name in manifests and errors")
    prefix: str = Field(min_length=1, description="key prefix, e.g. 'orders/'")
    bucket: str | None = Field(
        default=None, description="default: the data lake's raw bucket"
    )
    format: Literal["csv", "parquet"] = Field(
        default="csv", description="the objects' file format (CSV may be gzipped)"
    )


Source = Annotated[S3Source, Field(discriminator="kind")]


class DataSpec(SpecModel):
    """What one row is, where it comes from, and when snapshots are taken."""

    entity_key: Identifier = Field(description="the entity the model scores, e.g. customer_id")
    event_id: Identifier = Field(description="the producer's unique id of a row or event")
    timestamp: Identifier = Field(description="when the event happened")
    label: Identifier = Field(description="the ground-truth column (training only)")
    columns: list[Column] = Field(
        min_length=1,
        description="every column of a row; the four roles above must be among them, "
        "the timestamp of type timestamp",
    )
    sources: list[Source] = Field(
        min_length=1, description="where each day's snapshot is copied from"
    )
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

#: Where a stage's job runs: in Lambda, a SageMaker Processing job, or EMR Serverless.
Runner = Literal["embedded", "processing", "spark"]


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


class SparkResources(SpecModel):
    """The EMR Serverless application and job of a stage whose ``runner`` is ``spark``.

    The job runs the stage's rules compiled to Spark SQL (docs/engines.md,
    "Spark"); the application scales its workers within the maximum below
    and stops when idle.
    """

    release_label: str = Field(
        default="emr-7.12.0", pattern=r"^emr-\d+\.\d+\.\d+$",
        description="the EMR Serverless release (its Spark version); default emr-7.12.0 "
        "(Spark 3.5)",
    )
    python_environment: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+\.(tar\.gz|tgz)$",
        description="s3://.../env.tar.gz: a packed Python 3.11+ with pyarrow, numpy, duckdb, "
        "sqlglot and boto3 for the driver and the executors (they check and parse the "
        "snapshot objects with mdlc_core's reader; the release's own Python is older than "
        "mdlc_core needs); required with runner spark, see docs/engines.md",
    )
    max_vcpu: int = Field(default=64, ge=1, le=4000, description="the application's most vCPU")
    max_memory_gb: int = Field(
        default=256, ge=2, le=16000, description="the application's most memory, GB"
    )
    max_disk_gb: int = Field(
        default=1000, ge=20, le=200000, description="the application's most disk, GB"
    )
    max_runtime_minutes: int = Field(
        default=120, ge=1, le=7 * 24 * 60, description="the job is cancelled after this long"
    )
    idle_timeout_minutes: int = Field(
        default=15, ge=1, le=10080,
        description="the application stops (and bills nothing) after this long without jobs",
    )


#: A stage's ``processing`` field: its job, read only with ``runner: processing``.
ProcessingSection = Annotated[ProcessingResources, Field(
    default_factory=ProcessingResources, description="the job, when runner is processing")]
#: A stage's ``spark`` field: its application, allowed only with ``runner: spark``.
SparkSection = Annotated[SparkResources, Field(
    default_factory=SparkResources,
    description="the application, when runner is spark (set it only then; "
    "python_environment is required)")]

#: The fields of a section whose job may scale out (:class:`ScaleOutSection`).
SCALE_OUT_FIELDS = ("runner", "processing", "spark")


class ScaleOutSection(SpecModel):
    """A stage section whose job runs where its ``runner`` says (quality,
    features, monitoring): the rules the three share, written once.

    A subclass declares ``runner: Runner`` (with its stage's meaning of each
    runner), ``processing: ProcessingSection`` and ``spark: SparkSection``
    among its own fields, in its own order, and names its spec key in
    :attr:`section`. It then refuses a ``spark`` section with another runner,
    and dumps ``spark`` (into every asset's ``mdlc_config.json``) only with
    ``runner: spark``, so a spec without it synthesizes as before it existed.
    (The fields are declared by each stage, not here, because a base's fields
    would come first and move each stage's own, e.g. ``monitoring.schedule``,
    in the JSON schema and docs/spec.md.)
    """

    #: The section's key in a spec (``quality``, ``features``, ``monitoring``):
    #: errors name its fields by it.
    section: ClassVar[str]
    if TYPE_CHECKING:  # each subclass declares them (see above)
        runner: Runner
        processing: ProcessingResources
        spark: SparkResources

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = [name for name in SCALE_OUT_FIELDS if name not in cls.model_fields]
        if missing or not getattr(cls, "section", None):
            raise TypeError(f"{cls.__name__}: a ScaleOutSection declares the fields "
                            f"{list(SCALE_OUT_FIELDS)} and a `section` name; missing "
                            f"{missing or ['section']}")

    @model_validator(mode="after")
    def _spark_only_with_its_runner(self) -> Self:
        # A spark section that no runner reads is a spec that says one thing
        # and deploys another (the job would run elsewhere): refuse it.
        if "spark" in self.model_fields_set and self.runner != "spark":
            section = self.section
            raise ValueError(
                f"{section}.spark is set but {section}.runner is {self.runner!r}: the spark "
                "section configures the EMR Serverless job of runner spark only; set "
                f"{section}.runner: spark, or remove {section}.spark")
        return self

    # return_type given: pydantic before 2.11 resolves a base's serializer
    # annotations in each subclass's module, which need not import Any.
    @model_serializer(mode="wrap", return_type=dict)
    def _without_unused_spark(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if self.runner != "spark":
            data.pop("spark", None)
        return data


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
    column: Identifier = Field(description="a column of data.columns")
    min: Fraction = Field(default=1.0, description="the lowest share of non-null values")


class TypeRule(_Rule):
    """Every non-null value of ``column`` parses as ``type``."""

    kind: Literal["type"]
    column: Identifier = Field(description="a column of data.columns")
    type: ColumnType = Field(description="the type every non-null value must parse as")


class RangeRule(_Rule):
    """Every non-null value of ``column`` lies in [min, max]."""

    kind: Literal["range"]
    column: Identifier = Field(description="a column of data.columns")
    min: float | None = Field(default=None, description="lowest allowed value; min, max or both")
    max: float | None = Field(default=None, description="highest allowed value")

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
    column: Identifier = Field(description="a column of data.columns")
    values: list[str | int | float | bool] = Field(
        min_length=1, description="the values allowed"
    )


class UniqueRule(_Rule):
    """No two rows share the same values of ``columns``."""

    kind: Literal["unique"]
    columns: list[Identifier] = Field(
        min_length=1, description="columns of data.columns whose values together are unique"
    )


class RowCountRule(_Rule):
    """The snapshot has between ``min`` and ``max`` rows."""

    kind: Literal["row_count"]
    min: int = Field(default=1, ge=0, description="fewest rows")
    max: int | None = Field(default=None, ge=1, description="most rows; default: no maximum")


class FreshnessRule(_Rule):
    """The newest ``column`` value is at most ``max_age_hours`` before the snapshot date ends."""

    kind: Literal["freshness"]
    column: Identifier = Field(description="a timestamp column of data.columns")
    max_age_hours: NonNegative = Field(
        description="how long before the end of the snapshot's day its newest value may be"
    )


class ConsistencyRule(_Rule):
    """Across two snapshots, per ``entity``: ``column`` grows by exactly the days
    between them (``change: days``, e.g. account tenure) or stays the same
    (``change: constant``), within ``tolerance``."""

    kind: Literal["consistency"]
    column: Identifier = Field(description="a numeric column of data.columns")
    entity: Identifier = Field(description="the column that identifies the entity compared")
    change: Literal["days", "constant"] = Field(
        default="days",
        description="days: grows by the days between the snapshots; constant: unchanged",
    )
    tolerance: NonNegative = Field(default=0.0, description="allowed difference")


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


class QualitySpec(ScaleOutSection):
    """Data quality rules checked on every snapshot before it is used."""

    section = "quality"

    runner: Runner = Field(
        default="embedded",
        description="embedded: in Lambda; processing: a SageMaker Processing job, for data "
        "that does not fit a Lambda; spark: the rules as Spark SQL on EMR Serverless, "
        "beyond one machine",
    )
    processing: ProcessingSection
    spark: SparkSection
    engine: QualityEngine = Field(
        default="duckdb",
        description="the rules compiled to SQL, run on DuckDB with a memory limit and "
        "spilling to disk (docs/engines.md); the only engine since the pyarrow one was "
        "retired",
    )
    sample_size: PositiveInt = Field(default=20, description="offending keys kept per failed rule")
    rules: list[QualityRule] = Field(
        min_length=1,
        description="checked in order; each rule's id (default kind_column) must be unique; "
        "see docs/quality.md",
    )



# --- feature engineering --------------------------------------------------------


class AggregateFeature(SpecModel):
    """``function`` of ``column`` over the last ``window_days`` days per entity."""

    name: Identifier = Field(description="the feature's name; not a column's")
    function: Literal["sum", "count", "mean", "min", "max"] = Field(
        description="how the window's values are combined"
    )
    column: Identifier | None = Field(default=None, description="not needed for count")
    window_days: int = Field(
        ge=1, le=366, description="days in the window, the day of the event included"
    )
    entity: Identifier | None = Field(default=None, description="default: data.entity_key")

    @model_validator(mode="after")
    def _column(self) -> AggregateFeature:
        if self.function != "count" and self.column is None:
            raise ValueError(f"a {self.function} aggregate needs a column")
        return self


class ExpressionFeature(SpecModel):
    """An arithmetic expression of raw columns and earlier features."""

    name: Identifier = Field(description="the feature's name; not a column's")
    expression: str = Field(
        min_length=1,
        description="e.g. 'order_amount / (account_tenure + 1)': + - * / and abs, min, "
        "max, log1p of columns and earlier features; division by zero gives null",
    )


class FeaturesSpec(ScaleOutSection):
    """Derived features, computed in batch and incrementally online."""

    section = "features"

    runner: Runner = Field(
        default="embedded",
        description="embedded: the batch features in Lambda; processing: a SageMaker "
        "Processing job, for windows of days that do not fit a Lambda; spark: the features "
        "compiled to Spark SQL on EMR Serverless, beyond one machine",
    )
    processing: ProcessingSection
    spark: SparkSection
    engine: FeaturesEngine = Field(
        default="duckdb",
        description="the features compiled to SQL (mdlc_core.sql.features), run on DuckDB, "
        "which reads the window's objects itself within its memory limit, spilling to disk "
        "(docs/engines.md); the only engine since the NumPy one was retired",
    )
    aggregates: list[AggregateFeature] = Field(
        default_factory=list, description="windowed aggregates per entity"
    )
    expressions: list[ExpressionFeature] = Field(
        default_factory=list, description="computed in order, after the aggregates"
    )
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
