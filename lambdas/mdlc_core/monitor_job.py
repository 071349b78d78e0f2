"""Scheduled model monitoring of one day: S3 in, report and metrics out.

The S3 and CloudWatch side of stage 7, shared by every runner: the
``model_monitor`` Lambda handler, the ``processing_job`` entry and the Spark
job (``--kind monitoring`` of each) call :func:`run` with their own boto3
clients and the same environment, so a day monitored by any runner has the
same report and the same metrics. The numbers come from the compiled SQL of
``mdlc_core.sql.monitoring``.

Event: ``{"date": "YYYY-MM-DD"}`` (absent: yesterday, UTC). Optional keys:
``closed_loop_lag_days`` (evaluate accuracy on the predictions of that many
days before ``date``, whose labels have had time to arrive) and ``baseline``
(``s3://bucket/key`` or a key; a key ending in ``/`` is a prefix of files),
which fixes one baseline for every version, as BASELINE_KEY does.

Without a fixed baseline, each model version's predictions are compared with
that version's own training data, found through its model package
(``mdlc_core.drift_baselines``); the report's ``open_loop.baselines`` says
which baseline each version was compared with.

Environment (``environ``):
    PREDICTIONS_BUCKET   predictions under ``predictions/<model>/dt=YYYY-MM-DD/scored/``
                         (``mdlc_core.predictions``: only .csv, .csv.gz and .parquet
                         files are read there; an event id is counted once a day)
    LABELS_BUCKET        default PREDICTIONS_BUCKET
    LABELS_PREFIX        default ``labels/<model>/``; labels under ``<prefix>dt=<event date>/``
    BASELINE_BUCKET      default PREDICTIONS_BUCKET; where bare baseline keys are
    BASELINE_KEY         one baseline for every version (unset: each version's own)
    REPORT_BUCKET        default PREDICTIONS_BUCKET; report at
                         ``monitoring/<model>/dt=<date>/report.json``
    METRICS_NAMESPACE    default ``MDLC``
    CLOSED_LOOP_LAG_DAYS default 0

The engine is the spec's ``monitoring.engine``, ``duckdb`` (the only one
since the NumPy engine was retired, issue #18): ``mdlc_core.sql.monitoring``'s
queries, with DuckDB reading the day's files itself,
``mdlc_core.sql.monitoring_files``. With ``monitoring.runner: spark`` the
same SQL rendered for Spark, on the
job's session (``mdlc_core.spark_monitoring``: the executors read and type
the day's objects, the driver holds only the baselines; it calls
:func:`monitor` with its own reader).
The same report, metrics and summary from each; the same errors for a bad
file, naming it.

On DuckDB the day's prediction and label objects, and the drift baselines,
are downloaded to a scratch folder (``scratch``: the Processing job's volume;
default the system's temporary folder, ``/tmp`` in Lambda) and typed into
DuckDB's own tables (a per-version mixture is a query over them, the rows
``drift_baselines.mixture`` takes), so what the day costs in memory is
DuckDB's ``memory_limit``, spilling to that folder past it, not the size of
the day or of its baselines: the limit is ``sql.quality.memory_limit_for`` of
the runner's memory (``memory_mb``, default the Lambda's
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, else the machine's); the spill at most
``temp_size_for(storage_mb)`` (default ``MDLC_EPHEMERAL_STORAGE_MB``, the
function's ephemeral storage).

Metrics: see :func:`metric_data` and docs/monitoring.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import monitoring
from . import spill as spill_folders
from .drift_baselines import VersionBaselines, mixture, split_uri
from .layout import Layout
from .monitoring import SCORE_COLUMN
from .predictions import is_prediction_file, scored_prefix

logger = logging.getLogger("mdlc.monitor_job")

# put_metric_data takes up to 1000 values per call; smaller batches keep each
# request far below the 1 MB payload limit.
_BATCH = 200


def run(
    event: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    s3: Any,
    cloudwatch: Any,
    environ: Mapping[str, str],
    sagemaker: Any = None,
    engine: str | None = None,
    spark: Any = None,
    scratch: str | os.PathLike[str] | None = None,
    memory_mb: int | None = None,
    storage_mb: int | None = None,
) -> dict[str, Any]:
    """Monitor one day; returns the summary (the full report goes to S3).

    ``sagemaker`` describes the model packages of per-version baselines
    (default: a boto3 client, made only when a package is described).
    ``engine`` overrides ``monitoring.engine``; ``"spark"`` runs the compiled
    SQL on ``spark`` (a SparkSession: the ``monitoring.runner: spark`` job,
    ``mdlc_core.spark_monitoring``), everything else unchanged. ``scratch``,
    ``memory_mb`` and ``storage_mb`` bound DuckDB (module docstring).
    """
    spec = config.get("monitoring", {})
    metrics = engine_module(engine or spec.get("engine") or DEFAULT_ENGINE, environ,
                            spark=spark, scratch=scratch, memory_mb=memory_mb,
                            storage_mb=storage_mb)
    reading = (metrics.reader(s3, feature_columns(config)) if isinstance(metrics, _DuckDB)
               else nullcontext(DayReader(s3)))
    with reading as reader:
        return monitor(event, config, reader, metrics, s3=s3, cloudwatch=cloudwatch,
                        environ=environ, sagemaker=sagemaker)


def monitor(event: Mapping[str, Any], config: Mapping[str, Any], reader: DayReader, metrics: Any,
            *, s3: Any, cloudwatch: Any, environ: Mapping[str, str], sagemaker: Any
            ) -> dict[str, Any]:
    """:func:`run` with its engine and reader chosen: the part every runner
    shares (the Spark job passes the executors' reader)."""
    model = config["name"]
    spec = config.get("monitoring", {})
    day = parse_date(event.get("date"))
    lag = int(event.get("closed_loop_lag_days", environ.get("CLOSED_LOOP_LAG_DAYS", 0)))
    closed_day = day - timedelta(days=lag)
    predictions_bucket = environ["PREDICTIONS_BUCKET"]
    features = feature_columns(config)

    today = reader.predictions(predictions_bucket, model, day, features)
    baseline_bucket = environ.get("BASELINE_BUCKET", predictions_bucket)
    fixed = event.get("baseline") or environ.get("BASELINE_KEY")
    if fixed:
        baseline = reader.baseline(fixed, baseline_bucket)
        per_version: dict[str, pa.Table | None] | None = None
        baselines = [{"model_version": monitoring.ALL_VERSIONS, "source": "fixed",
                      "uri": fixed, "rows": baseline.num_rows if baseline is not None else 0,
                      "package_version": None}]
    else:
        packages = VersionBaselines(
            read=reader.optional_table,
            describe=_describer(sagemaker),
            default_bucket=baseline_bucket,
            legacy_key=Layout(model).baseline_features,
            mix=reader.mixture,
        )
        per_version, baseline, baselines = packages.resolve(_versions(today))
    report: dict[str, Any] = {
        "model": model,
        "date": day.isoformat(),
        "closed_loop_date": closed_day.isoformat(),
        "predictions": len(today),
        # Extra copies of an event's prediction (a redelivered stream batch), counted once.
        "duplicate_predictions": reader.duplicates.get(day, 0),
    }
    report["open_loop"] = metrics.open_loop(
        today, baseline, int(spec.get("open_loop", {}).get("bins", 10)), features,
        baselines=per_version,
    )
    report["open_loop"]["baselines"] = baselines
    closed_predictions = (
        today if lag == 0 else reader.predictions(predictions_bucket, model, closed_day, features)
    )
    labels = reader.labels(
        environ.get("LABELS_BUCKET", predictions_bucket),
        environ.get("LABELS_PREFIX", Layout(model).labels),
        closed_day,
    )
    threshold = float(spec.get("closed_loop", {}).get("decision_threshold", 0.5))
    report["closed_loop"] = metrics.closed_loop(closed_predictions, labels, threshold)
    alarms = monitoring.evaluate_alarms(report, spec)
    report["alarms"] = alarms

    published = publish(cloudwatch, environ.get("METRICS_NAMESPACE", "MDLC"), model, report)
    report_key = Layout(model).monitoring_report(day.isoformat())
    report_bucket = environ.get("REPORT_BUCKET", predictions_bucket)
    s3.put_object(
        Bucket=report_bucket,
        Key=report_key,
        Body=json.dumps(report, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )
    summary = {
        "model": model,
        "date": day.isoformat(),
        "closed_loop_date": closed_day.isoformat(),
        "predictions": len(today),
        "labels": report["closed_loop"]["labels"],
        "unmatched_labels": report["closed_loop"]["unmatched_labels"],
        "metrics_published": published,
        "report": f"s3://{report_bucket}/{report_key}",
        "alarms": [a["message"] for a in alarms],
        "status": "ALARM" if alarms else ("NO_DATA" if not len(today) else "OK"),
    }
    logger.info("monitoring done: %s", json.dumps(summary))
    return summary


#: ``monitoring.engine`` values (``spark`` is a runner's, given its session).
ENGINES = ("duckdb",)
#: Engines a configuration synthesized before their retirement may still name.
RETIRED_ENGINES = ("embedded",)
#: The engine of a spec that names none (``MonitoringSpec.engine``'s default).
DEFAULT_ENGINE = "duckdb"


class _DuckDB:
    """The day read by DuckDB from its downloaded files, and the metrics computed
    there (``mdlc_core.sql.monitoring_files``): memory bounded by the limit."""

    def __init__(self, memory_mb: int | None, storage_mb: int | None,
                 scratch: str | os.PathLike[str] | None) -> None:
        from .sql import monitoring_files
        from .sql.quality import memory_limit_for, temp_size_for

        self._files = monitoring_files
        self._temp_size_for = temp_size_for
        self.memory_mb = memory_mb or _physical_memory_mb()
        self.storage_mb = storage_mb
        self.scratch = scratch
        # 80% of the runner's memory after Python's share: the day is DuckDB's.
        self.memory_limit = memory_limit_for(self.memory_mb) if self.memory_mb else "2GB"

    @contextmanager
    def reader(self, s3: Any, features: list[str]) -> Iterator[_FileReader]:
        """A reader whose days and baselines DuckDB holds, for the length of one
        run (``features``: the monitored ones, which a baseline is read for)."""
        if self.scratch is not None:
            Path(self.scratch).mkdir(parents=True, exist_ok=True)
        # The spill folder is the database's, kept with it for the process (a
        # warm run reuses both); the downloads are this run's.
        spill = spill_folders.folder("monitor", self.scratch)
        with tempfile.TemporaryDirectory(prefix="mdlc-monitor-", dir=self.scratch) as folder:
            temp_size = self._temp_size_for(self.storage_mb) if self.storage_mb else None
            logger.info("DuckDB: memory limit %s, spilling to %s (at most %s)",
                        self.memory_limit, spill, temp_size or "90% of the free disk")
            with self._files.DaySession(memory_limit=self.memory_limit, temp_directory=spill,
                                        max_temp_directory_size=temp_size) as session:
                yield _FileReader(s3, session, Path(folder), features)

    def open_loop(self, predictions: Any, baseline: Any, bins: int = 10,
                  feature_columns: Any = (), *,
                  baselines: Mapping[str, Any] | None = None) -> dict[str, Any]:
        # The baselines are the session's tables (_FileReader): inside its limit.
        return predictions.session.open_loop(predictions, baseline, bins, feature_columns,
                                             baselines=baselines)

    def closed_loop(self, predictions: Any, labels: Any, decision_threshold: float
                    ) -> dict[str, Any]:
        return predictions.session.closed_loop(predictions, labels, decision_threshold)


def _physical_memory_mb() -> int | None:
    """The machine's memory (a Processing instance, a laptop), when Lambda's is not known."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


class _Spark:
    """``mdlc_core.sql.monitoring``'s plans run by Spark SQL on one session: the
    same queries as DuckDB's, rendered for Spark (:func:`~mdlc_core.sql.monitoring.spark_run`)."""

    def __init__(self, spark: Any) -> None:
        from .sql import monitoring as sql_monitoring

        self._sql = sql_monitoring
        self.spark = spark

    def open_loop(self, predictions: monitoring.Predictions, baseline: pa.Table | None,
                  bins: int = 10, feature_columns: Any = (), *,
                  baselines: Mapping[str, pa.Table | None] | None = None) -> dict[str, Any]:
        plan = self._sql.prepare(predictions, None, baseline, None, feature_columns,
                                 baselines=baselines, bins=bins)
        return self._sql.spark_run(plan, lambda fetch: plan.open_loop(fetch, "spark"),
                                   self.spark)

    def closed_loop(self, predictions: monitoring.Predictions,
                    labels: monitoring.Labels | None, decision_threshold: float
                    ) -> dict[str, Any]:
        plan = self._sql.prepare(predictions, labels, None,
                                 decision_threshold=decision_threshold)
        return self._sql.spark_run(plan, lambda fetch: plan.closed_loop(fetch, "spark"),
                                   self.spark)


def engine_module(engine: str, environ: Mapping[str, str], *, spark: Any = None,
                  scratch: str | os.PathLike[str] | None = None, memory_mb: int | None = None,
                  storage_mb: int | None = None) -> Any:
    """The metrics engine: DuckDB's or, given a Spark session, Spark's (the
    same queries, the same report).

    ``spark`` is not a ``monitoring.engine``: it is what ``monitoring.runner:
    spark`` runs, the job handing its session in. DuckDB's memory is
    ``memory_mb`` (default: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` in ``environ``,
    else the machine's), its spill at most what ``storage_mb`` (default
    ``MDLC_EPHEMERAL_STORAGE_MB``) allows, under ``scratch``.
    """
    if engine == "spark" and spark is not None:
        return _Spark(spark)
    if engine in RETIRED_ENGINES:
        # A configuration synthesized for the retired NumPy engine: the spec
        # now refuses it, so only an old deployed function can carry one.
        raise ValueError(f"monitoring.engine must be one of {ENGINES}, got {engine!r}: the "
                         "embedded (NumPy) engine was retired (issue #18); synthesize and "
                         "deploy the stack again with monitoring.engine removed or set to "
                         "duckdb (the same report)")
    if engine not in ENGINES:
        hint = (" (Spark runs the job with monitoring.runner: spark, which brings its own "
                "session)" if engine == "spark" else "")
        raise ValueError(f"monitoring.engine must be one of {ENGINES}, got {engine!r}{hint}")
    try:
        return _DuckDB(memory_mb or _megabytes(environ, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                       storage_mb or _megabytes(environ, "MDLC_EPHEMERAL_STORAGE_MB"), scratch)
    except ImportError as error:
        raise ValueError(
            f"monitoring.engine is duckdb but this runtime cannot import DuckDB ({error}); "
            "install duckdb and sqlglot where the job runs (the data layer has them)"
            ) from error


def _megabytes(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"{name} must be a whole number of MB, got {value!r}") from error


def parse_date(value: Any) -> date:
    """The monitored day: ``value`` (YYYY-MM-DD) or, when None, yesterday (UTC)."""
    if value is None:
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"event 'date' must be YYYY-MM-DD, got {value!r}") from error


def _versions(predictions: Any) -> dict[str, int]:
    """Each model version in the day's predictions, with its number of predictions
    (in order of first appearance)."""
    if not len(predictions):
        return {}
    if hasattr(predictions, "version_counts"):  # a day DuckDB holds
        return predictions.version_counts()
    codes, counts = np.unique(predictions.version_codes, return_counts=True)
    return {predictions.versions[c]: int(n) for c, n in zip(codes, counts, strict=True)}


def _describer(client: Any) -> Any:
    """DescribeModelPackage through ``client``, or a boto3 client made on first use."""
    made: list[Any] = [client]

    def describe(arn: str) -> dict[str, Any]:
        if made[0] is None:
            import boto3

            made[0] = boto3.client("sagemaker")
        return made[0].describe_model_package(ModelPackageName=arn)

    return describe


def feature_columns(config: Mapping[str, Any]) -> list[str]:
    """The monitored features: the same rule as ``ModelSpec.feature_columns``,
    on the JSON form of the spec."""
    data = config.get("data", {})
    roles = {data.get(k) for k in ("entity_key", "event_id", "timestamp", "label")}
    raw = [
        c["name"]
        for c in data.get("columns", [])
        if c["name"] not in roles and c.get("type") != "string"
    ]
    features = config.get("features", {})
    derived = [f["name"] for f in features.get("aggregates", [])]
    derived += [f["name"] for f in features.get("expressions", [])]
    return raw + derived


class DayReader:
    """Reads the day's tables from S3 with one client."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.duplicates: dict[date, int] = {}

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """Every CSV (.csv, .csv.gz) and Parquet (.parquet, .pq) object under ``prefix``,
        in listing order; anything else (markers such as _SUCCESS, manifests, a
        transform's .out, JSON lines) is skipped, and logged."""
        keys = []
        skipped = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not item["Size"] or key.endswith("/"):
                    continue
                if not is_prediction_file(key):
                    skipped.append(key)
                    continue
                keys.append(key)
        if skipped:
            logger.info("skipped %d object(s) under s3://%s/%s that are not CSV or Parquet, "
                        "e.g. %s", len(skipped), bucket, prefix, skipped[0])
        return keys

    def fetch(self, bucket: str, key: str) -> Any:
        """One object, read into Arrow by the shared reader. Raises what
        ``get_object`` raises."""
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return monitoring.read_table_bytes(body, f"s3://{bucket}/{key}")

    def prefix(self, bucket: str, prefix: str) -> list[Any]:
        """The objects of :meth:`keys`, each :meth:`fetch` ed."""
        return [self.fetch(bucket, key) for key in self.keys(bucket, prefix)]

    def combine(self, parts: list[Any], what: str) -> Any:
        """One baseline of a location's fetched objects (Arrow; several
        concatenated)."""
        return parts[0] if len(parts) == 1 else monitoring.concat_tables(parts, what)

    def predictions(
        self, bucket: str, model: str, day: date, features: list[str]
    ) -> monitoring.Predictions:
        prefix = scored_prefix(model, day.isoformat())
        tables = self.prefix(bucket, prefix)
        if not tables:
            logger.warning("no predictions under s3://%s/%s", bucket, prefix)
            empty = pa.table(
                {c: pa.array([], pa.string()) for c in monitoring.PREDICTION_COLUMNS}
            )
            return monitoring.Predictions.from_table(empty)
        table = monitoring.concat_tables(tables, f"s3://{bucket}/{prefix}")
        table, self.duplicates[day] = first_per_event(table)
        return monitoring.Predictions.from_table(table, features, what=f"s3://{bucket}/{prefix}")

    def labels(self, bucket: str, prefix: str, day: date) -> monitoring.Labels | None:
        prefix = f"{prefix.rstrip('/')}/dt={day.isoformat()}/"
        tables = self.prefix(bucket, prefix)
        if not tables:
            return None
        table = monitoring.concat_tables(tables, f"s3://{bucket}/{prefix}")
        return monitoring.Labels.from_table(table, what=f"s3://{bucket}/{prefix}")

    def optional_table(self, bucket: str, key: str) -> Any:
        """The baseline at ``s3://bucket/key``, or None when there is no such object."""
        try:
            part = self.fetch(bucket, key)
        except Exception as error:
            if getattr(error, "response", {}).get("Error", {}).get("Code") in (
                    "NoSuchKey", "404"):
                return None
            raise
        return self.combine([part], f"s3://{bucket}/{key}")

    def mixture(self, weighted: list[tuple[Any, int]]) -> Any:
        """The ``all`` group's mixture of the versions' baselines (Arrow)."""
        return mixture(weighted)

    def baseline(self, location: str | None, default_bucket: str) -> Any:
        """The baseline at ``location`` (``s3://bucket/key``, a key, or a prefix
        ending in ``/``), or None when none is given or the prefix is empty."""
        if not location:
            return None
        bucket, key = split_uri(location, default_bucket)
        parts = self.prefix(bucket, key) if key.endswith("/") else [self.fetch(bucket, key)]
        if not parts:
            # A model's first days come before any baseline exists: the
            # closed loop and action shares still run; drift is not compared.
            logger.warning("no baseline files under s3://%s/%s; drift is not compared",
                           bucket, key)
            return None
        return self.combine(parts, f"s3://{bucket}/{key}")


class _FileReader(DayReader):
    """Reads a day's predictions and labels, and the baselines, into one DuckDB
    session, from files.

    Each object is streamed to ``folder`` (never whole in memory) and DuckDB
    reads it (``mdlc_core.sql.monitoring_files``), removing it once its rows
    are in DuckDB's tables. A baseline keeps only the score and ``features``
    (the monitored ones), the columns drift compares.
    """

    def __init__(self, s3: Any, session: Any, folder: Path, features: list[str]) -> None:
        super().__init__(s3)
        self.session = session
        self.folder = folder
        self.compared = [SCORE_COLUMN, *features]
        self._downloads = 0

    def fetch(self, bucket: str, key: str) -> Any:
        """One object streamed to :attr:`folder`: its ``DataFile`` (local path,
        ``s3://`` name). Raises what ``get_object`` raises."""
        from .sql.monitoring_files import DataFile

        self.folder.mkdir(parents=True, exist_ok=True)
        self._downloads += 1
        name = key.rsplit("/", 1)[-1].lower()
        suffix = ".csv.gz" if name.endswith(".csv.gz") else Path(name).suffix
        target = self.folder / f"{self._downloads:06d}{suffix}"
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with target.open("wb") as handle:
                shutil.copyfileobj(body, handle, 1 << 20)
        finally:
            getattr(body, "close", lambda: None)()
        return DataFile(target, f"s3://{bucket}/{key}")

    def predictions(self, bucket: str, model: str, day: date, features: list[str]) -> Any:
        prefix = scored_prefix(model, day.isoformat())
        files = self.prefix(bucket, prefix)
        if not files:
            logger.warning("no predictions under s3://%s/%s", bucket, prefix)
        read = self.session.read_predictions(files, features, what=f"s3://{bucket}/{prefix}")
        self.duplicates[day] = read.duplicates
        return read

    def labels(self, bucket: str, prefix: str, day: date) -> Any:
        prefix = f"{prefix.rstrip('/')}/dt={day.isoformat()}/"
        files = self.prefix(bucket, prefix)
        if not files:
            return None
        return self.session.read_labels(files, what=f"s3://{bucket}/{prefix}")

    def combine(self, parts: list[Any], what: str) -> Any:
        """One baseline of a location's downloaded objects, in DuckDB (only
        the compared columns)."""
        return self.session.read_baseline(parts, self.compared, what=what)

    def mixture(self, weighted: list[tuple[Any, int]]) -> Any:
        """The ``all`` group's mixture, a query over the session's baselines."""
        return self.session.mixture(weighted)


def first_per_event(table: pa.Table) -> tuple[pa.Table, int]:
    """The first row of each ``event_id`` and how many rows were dropped.

    The writers are at least once: a stream batch redelivered from another
    sequence number writes its events' (identical, stored) decisions into a
    second file, which must not count twice. A table without usable ids is
    returned as is, for ``Predictions.from_table`` to refuse with the reason.
    """
    if "event_id" not in table.column_names or table.column("event_id").null_count:
        return table, 0
    ids = table.column("event_id").cast(pa.string()).combine_chunks()
    codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    if len(first) == len(codes):
        return table, 0
    dropped = len(codes) - len(first)
    logger.warning("%d duplicate prediction row(s) of the same event ids counted once", dropped)
    return table.take(pa.array(np.sort(first))), dropped


#: The dimension value of an empty version or action: CloudWatch refuses an
#: empty one (and botocore before the call), which would lose the whole day's
#: metrics for one careless producer's blank cell.
EMPTY_DIMENSION = "(empty)"


def metric_data(model: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CloudWatch datums for a report; None values are left out.

    Dimensions Model and ModelVersion (``all`` aggregates every version and is
    what alarms watch): Predictions, Precision, Recall, F1, AUC, LabelCoverage,
    UnmatchedLabels (``all`` only), ScorePSI, KSPValue, FeaturePSI and
    FeatureKSPValue (+ Feature), ActionShare (+ Action).
    """
    data: list[dict[str, Any]] = []

    def add(name: str, value: Any, version: str, unit: str = "None", **extra: str) -> None:
        if value is None:
            return
        dimensions = [{"Name": "Model", "Value": model},
                      {"Name": "ModelVersion", "Value": version or EMPTY_DIMENSION}]
        dimensions += [{"Name": k, "Value": v or EMPTY_DIMENSION} for k, v in extra.items()]
        data.append(
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}
        )

    closed = report.get("closed_loop")
    if closed:
        for group in closed["by_version"]:
            version = group["model_version"]
            add("Precision", group["precision"], version)
            add("Recall", group["recall"], version)
            add("F1", group["f1"], version)
            add("AUC", group["auc"], version)
            add("LabelCoverage", group["label_coverage"], version)
        add("UnmatchedLabels", closed["unmatched_labels"], monitoring.ALL_VERSIONS, "Count")
    opened = report.get("open_loop")
    if opened:
        for group in opened["by_version"]:
            version = group["model_version"]
            add("Predictions", group["rows"], version, "Count")
            if group["score"]:
                add("ScorePSI", group["score"]["psi"], version)
                add("KSPValue", group["score"]["ks_pvalue"], version)
            for feature, drift in group["features"].items():
                add("FeaturePSI", drift["psi"], version, Feature=feature)
                add("FeatureKSPValue", drift["ks_pvalue"], version, Feature=feature)
            for action, share in group["actions"].items():
                add("ActionShare", share, version, Action=action)
    return data


def publish(cloudwatch: Any, namespace: str, model: str, report: Mapping[str, Any]) -> int:
    """Publish the report's metrics; returns how many values were sent."""
    data = metric_data(model, report)
    for start in range(0, len(data), _BATCH):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + _BATCH])
    return len(data)
