"""Where a model's data lives: every S3 key prefix and the names both sides agree on.

The constructs grant access to these prefixes and the handlers read and write
under them, so both import this one module (it ships in the wheel as
``mdlc_core`` and in every function's code). Each prefix ends in ``/``;
``Layout.everything(prefix)`` is the object pattern an IAM grant uses.

    datasets/<model>/dt=YYYY-MM-DD/          snapshots and their manifest (sourcing)
    features/<model>/dt=YYYY-MM-DD/          batch features (feature engineering)
    training-input/<model>/<job>/            train and validation channels
    training-output/<model>/                 SageMaker's model artifacts
    training-checkpoints/<model>/            spot training checkpoints
    baselines/<model>/jobs/<job>/features.parquet  one training job's features: the
                                             open-loop reference of the version it made
    batch-input/<model>/dt=.../{transform,ids}/  the batch transform's input
    predictions/<model>/dt=.../              transform output, decisions, scored/
    predictions/<model>/dt=.../scored/       monitoring's input (mdlc_core.predictions)
    labels/<model>/dt=.../                   ground truth (closed loop)
    quality-reports/<model>/dt=.../report.json  each snapshot's quality report
    monitoring/<model>/dt=.../report.json    the monitor's report
    capture/<model>/                         the endpoint's data capture
    dead-letters/<model>/<function>/         rejected records' payloads

Standard library only: the stream functions have no data layer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The real-time endpoint's one production variant: blue/green deployments
#: replace its fleet, never its name (alarms and dashboards name it).
VARIANT_NAME = "AllTraffic"


def package_group_name(model: str) -> str:
    """The model package group of the model's versions, ``mdlc-<model>`` (training
    registers into it; monitoring and serving describe its packages)."""
    return f"mdlc-{model}"


def endpoint_name(model: str) -> str:
    """The real-time endpoint's name, ``mdlc-<model>`` (the deployment workflow
    creates it; the consumer, alarms and dashboard name it)."""
    return f"mdlc-{model}"


@dataclass(frozen=True)
class Layout:
    """The S3 layout of one model (see the module docstring)."""

    model: str

    @staticmethod
    def everything(prefix: str) -> str:
        """The objects under ``prefix``, as an IAM resource pattern."""
        return f"{prefix}*"

    @staticmethod
    def _day(day: object) -> str:
        return f"dt={day}/"

    @property
    def datasets(self) -> str:
        return f"datasets/{self.model}/"

    def snapshot(self, day: object) -> str:
        return self.datasets + self._day(day)

    @property
    def features(self) -> str:
        return f"features/{self.model}/"

    def feature_snapshot(self, day: object) -> str:
        return self.features + self._day(day)

    @property
    def training_input(self) -> str:
        return f"training-input/{self.model}/"

    def training_job_input(self, job: str) -> str:
        return f"{self.training_input}{job}/"

    @property
    def training_output(self) -> str:
        return f"training-output/{self.model}/"

    @property
    def training_checkpoints(self) -> str:
        return f"training-checkpoints/{self.model}/"

    @property
    def baselines(self) -> str:
        return f"baselines/{self.model}/"

    @property
    def baseline_features(self) -> str:
        """The one baseline every training run replaced before per-version
        baselines; read only for versions registered before them."""
        return f"{self.baselines}features.parquet"

    @property
    def job_baselines(self) -> str:
        return f"{self.baselines}jobs/"

    def job_baseline(self, job: str) -> str:
        """The features training job ``job`` was trained on: the drift reference
        of the model version it registers (``mdlc:drift-baseline``)."""
        return f"{self.job_baselines}{job}/features.parquet"

    @property
    def batch_input(self) -> str:
        return f"batch-input/{self.model}/"

    def transform_input(self, day: object) -> str:
        return f"{self.batch_input}{self._day(day)}transform/"

    def transform_ids(self, day: object) -> str:
        return f"{self.batch_input}{self._day(day)}ids/"

    @property
    def predictions(self) -> str:
        return f"predictions/{self.model}/"

    def prediction_day(self, day: object) -> str:
        return self.predictions + self._day(day)

    def scored(self, day: object) -> str:
        return f"{self.prediction_day(day)}scored/"

    @property
    def scored_pattern(self) -> str:
        """Every day's ``scored/`` objects: what the monitor may read."""
        return f"{self.predictions}dt=*/scored/*"

    @property
    def labels(self) -> str:
        return f"labels/{self.model}/"

    @property
    def quality_reports(self) -> str:
        return f"quality-reports/{self.model}/"

    def quality_report(self, day: object) -> str:
        return f"{self.quality_reports}{self._day(day)}report.json"

    @property
    def monitoring(self) -> str:
        return f"monitoring/{self.model}/"

    def monitoring_report(self, day: object) -> str:
        return f"{self.monitoring}{self._day(day)}report.json"

    @property
    def capture(self) -> str:
        return f"capture/{self.model}/"

    def dead_letters(self, function: str) -> str:
        return f"dead-letters/{self.model}/{function}/"


__all__ = ["VARIANT_NAME", "Layout", "endpoint_name", "package_group_name"]
