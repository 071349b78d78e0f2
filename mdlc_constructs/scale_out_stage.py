"""The runner choice of a batch stage: its job in Lambda, or scaled out.

Data quality, feature engineering and model monitoring each run one job a
day whose spec section says where (``runner: embedded | processing | spark``;
:class:`~mdlc_constructs.spec.data.ScaleOutSection`). The embedded runner is
the stage's own Lambda function. The other two are built here, the same way
for every stage (:class:`ScaleOutStage`): from the class the stage names for
it, under the construct id ``Processing`` or ``Spark``, with what the stage
says its job reads, writes and is passed (:class:`ScaleOutJob`). A stage adds
only what is its own (its function, its workflow steps, grants beyond S3).

This is a module of its own, not part of :mod:`mdlc_constructs.scale_out`,
because the runners it builds import that module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .processing import ProcessingRunner
from .scale_out import S3Access, ScaleOutProps, ScaleOutRunner, require_overrides
from .spark import SparkRunner
from .spec import ModelSpec
from .storage import DataLake


@dataclass(frozen=True)
class ScaleOutJob:
    """What a stage's scale-out job is given, whichever runner runs it.

    Attributes:
        reads: objects the job reads (each with the reason for its wildcard).
        writes: objects the job writes.
        environment: the job's settings as the Lambda runner's environment
            names them (bucket names, namespace); a Processing job gets them
            as they are.
        spark_flags: the Spark entry point's flag for each environment name
            (``{"REPORT_BUCKET": "--report-bucket"}``); the Spark job gets
            :attr:`arguments`. A name without a flag is not passed to Spark
            (its entry point refuses a flag it does not know).
        metrics_namespace: where the job may publish metrics. Default: none.
    """

    reads: Sequence[S3Access]
    writes: Sequence[S3Access]
    environment: Mapping[str, str]
    spark_flags: Mapping[str, str] = field(default_factory=dict)
    metrics_namespace: str | None = None

    @property
    def arguments(self) -> dict[str, str]:
        """The Spark entry point's flags: :attr:`environment` through :attr:`spark_flags`,
        in the environment's order."""
        return {self.spark_flags[name]: value for name, value in self.environment.items()
                if name in self.spark_flags}


class ScaleOutStage:
    """Mixin of a stage construct whose spec section chooses a ``runner``.

    The stage (a ``Construct`` with ``spec`` and ``data_lake`` attributes)
    sets :attr:`scale_out_kind`, implements :meth:`_scale_out_job` and calls
    :meth:`_create_scale_out_runner` from its constructor. The runner's job
    gets the data key, and puts its result in the artifacts bucket.

    Attributes:
        processing_runner: the runner when the section's ``runner`` is
            ``processing`` (else None).
        spark_runner: the runner when it is ``spark`` (else None).

    Extension points: :attr:`processing_runner_class`, :attr:`spark_runner_class`.
    """

    #: The Processing runner's class when the stage's ``runner`` is ``processing``,
    #: built as ``Processing`` with the job's reads, writes and environment.
    processing_runner_class: type[ProcessingRunner] = ProcessingRunner
    #: The Spark runner's class when the stage's ``runner`` is ``spark``, built as
    #: ``Spark`` with the job's reads, writes and environment as flags (arguments).
    spark_runner_class: type[SparkRunner] = SparkRunner

    #: The stage's spec section and its jobs' kind: ``quality``, ``features`` or
    #: ``monitoring``.
    scale_out_kind: ClassVar[str]

    spec: ModelSpec
    data_lake: DataLake
    processing_runner: ProcessingRunner | None
    spark_runner: SparkRunner | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        require_overrides(cls, ScaleOutStage, ("_scale_out_job",), marker="scale_out_kind")

    def _scale_out_job(self) -> ScaleOutJob:
        """What the stage's job reads, writes and is passed (called only when the
        spec chooses a scale-out runner). Abstract: a stage that sets
        :attr:`scale_out_kind` is refused at its definition without it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _scale_out_job")

    def _create_scale_out_runner(self) -> ScaleOutRunner | None:
        """Build the runner the spec section chooses, set :attr:`processing_runner`
        and :attr:`spark_runner` (the other, or both, None), and return it (None
        with ``runner: embedded``)."""
        self.processing_runner = None
        self.spark_runner = None
        kind = self.scale_out_kind
        runner = getattr(self.spec, kind).runner
        if runner == "embedded":
            return None
        job = self._scale_out_job()
        lake = self.data_lake
        props = ScaleOutProps(
            spec=self.spec, kind=kind, key=lake.key, output_bucket=lake.artifacts,
            reads=job.reads, writes=job.writes, metrics_namespace=job.metrics_namespace,
        )
        if runner == "processing":
            self.processing_runner = self.processing_runner_class(
                self, "Processing", **props, environment=job.environment)
            return self.processing_runner
        self.spark_runner = self.spark_runner_class(
            self, "Spark", **props, arguments=job.arguments)
        return self.spark_runner

    @property
    def _scale_out_runner(self) -> ScaleOutRunner | None:
        """The runner built by :meth:`_create_scale_out_runner` (None: embedded)."""
        if self.spark_runner is not None:
            return self.spark_runner
        return self.processing_runner


__all__ = ["ScaleOutJob", "ScaleOutStage"]
