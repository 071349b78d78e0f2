"""The Spark runner's monitoring kind: the day's monitoring job with its metrics on Spark SQL.

``spark_job.py --kind monitoring`` (``monitoring.runner: spark``, run on EMR
Serverless by :class:`mdlc_constructs.spark.SparkRunner`) is
:func:`mdlc_core.monitor_job.run`, the job the Lambda and Processing runners
run, with one difference: the metrics (the join of predictions to labels,
precision, recall, F1, AUC with ties, PSI, KS, action shares, per model
version) are :mod:`mdlc_core.sql.monitoring`'s queries rendered for Spark and
run on the job's session. Everything around them is shared, so a day
monitored on Spark has the same report at
``monitoring/<model>/dt=<date>/report.json``, the same CloudWatch metrics and
the same summary as on the other runners: the same readers (only the
``scored/`` CSV and Parquet of the day, an event counted once), the same
per-version drift baselines (``sagemaker:DescribeModelPackage`` of each
version serving that day, ``mdlc_core.drift_baselines``), the same alarms.

Where the work happens: no prediction or label row goes through the
driver (:class:`ExecutorReader`). The driver lists the day's objects (S3
``ListObjectsV2``: the same keys the other runners read, only CSV, CSV.gz and
Parquet) and hands Spark their locations; the executors load each one
(:func:`mdlc_core.spark_io.read_objects`: ``binaryFile``, EMRFS on EMR) and
read it with the shared reader (``monitoring.read_table_bytes``: pyarrow's
types, text ids), then type it as ``Predictions.from_table`` and
``Labels.from_table`` do (ids as text, numbers as doubles, timestamps to UTC
microseconds and days, a missing version ``unknown``), recording per row what
those would refuse instead of raising, so that the checks run on the rows
that count. On the executors' frame, Spark SQL then keeps the first row of
each event in file order (objects in listing order, rows in object order:
``object * 2**32 + row``), counts the refused rows per object and check, and
the driver raises the first failed check in the shared reader's order
(ids, score, NaN score, timestamp, features; for labels ids, label, 0 or 1,
timestamp) naming the ``s3://`` object, as the DuckDB engine
(:mod:`mdlc_core.sql.monitoring_files`) does. The metrics' queries
(:func:`mdlc_core.sql.monitoring.prepare_frames`) run on those frames; only
small results come back (counts per version, order statistics, bin counts).
The baselines (each version's training features, which the training input
function wrote from its own memory: small next to a day) are read on the
driver as the other runners read them, and handed to Spark from there.

What bounds a day is therefore the executors' memory and disk (the typed day
is persisted, spilling to disk), not the driver's; one object is held by one
executor while it is parsed (``spark_io``'s limits).

Arguments (beside the entry point's common ones): the buckets and prefixes
the Lambda runner takes from its environment (``--predictions-bucket``,
``--labels-bucket``, ``--labels-prefix``, ``--baseline-bucket``,
``--baseline-key``, ``--report-bucket``, ``--namespace``,
``--closed-loop-lag-days``) and ``--event``, the Lambda runner's event as
JSON. ``--date`` is the day the run was started (UTC, the workflow passes its
execution's start): the monitored day is the event's ``date`` when it has
one (a backfill), else the day before ``--date``, yesterday, as the Lambda
runner's. ``--read-from`` says where the executors find the objects, as for
the other kinds (``s3``: EMRFS; ``local``: copied for local Spark).

``mdlc_core.spark_job`` lists :func:`arguments` and :func:`run` as its
``monitoring`` :class:`~mdlc_core.spark_job.Job`; this module does not import
it back (the SQL's Spark helper imports its session settings when it runs).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from mdlc_core import monitor_job, monitoring, spark_io
from mdlc_core.monitoring import (
    ID_NULL,
    LABEL_COLUMNS,
    PREDICTION_COLUMNS,
    SCORE_COLUMN,
    SCORE_NAN,
    TS_BAD,
    TS_NULL,
    UNKNOWN_VERSION,
    VALUE_BAD,
    VALUE_NULL,
    Check,
    MonitoringInputError,
    ReadDay,
    label_checks,
    prediction_checks,
)
from mdlc_core.predictions import scored_prefix

logger = logging.getLogger("mdlc.spark_monitoring")

#: The default of ``--namespace``: the monitoring metrics' (``METRICS_NAMESPACE``).
NAMESPACE = "MDLC"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The monitoring kind's arguments: the Lambda runner's environment, as flags."""
    parser.add_argument("--event", default="{}",
                        help="the Lambda runner's event as JSON (date, closed_loop_lag_days, "
                        "baseline); without a date, the day before --date")
    parser.add_argument("--predictions-bucket", required=True)
    parser.add_argument("--labels-bucket", required=True)
    parser.add_argument("--labels-prefix", required=True)
    parser.add_argument("--baseline-bucket", required=True)
    parser.add_argument("--baseline-key",
                        help="one fixed baseline for every version; default: each version's own")
    parser.add_argument("--report-bucket", required=True)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--closed-loop-lag-days", type=int, default=0)


def event_of(args: argparse.Namespace) -> dict[str, Any]:
    """``--event`` as the Lambda runner's event, its ``date`` defaulting to the
    day before ``--date``.

    Raises:
        ValueError: ``--event`` is not a JSON object (naming the flag and what it got).
    """
    try:
        event = json.loads(args.event or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"--event must be a JSON object, got {args.event!r}: {error}") from error
    if not isinstance(event, dict):
        raise ValueError(f"--event must be a JSON object, got {args.event!r}")
    if event.get("date") is None:
        event["date"] = (args.date - timedelta(days=1)).isoformat()
    return event


def environment(args: argparse.Namespace) -> dict[str, str]:
    """What :func:`mdlc_core.monitor_job.run` reads from the Lambda runner's
    environment, from the flags (the construct sets both from one place)."""
    environ = {
        "PREDICTIONS_BUCKET": args.predictions_bucket,
        "LABELS_BUCKET": args.labels_bucket,
        "LABELS_PREFIX": args.labels_prefix,
        "BASELINE_BUCKET": args.baseline_bucket,
        "REPORT_BUCKET": args.report_bucket,
        "METRICS_NAMESPACE": args.namespace,
        "CLOSED_LOOP_LAG_DAYS": str(args.closed_loop_lag_days),
    }
    if args.baseline_key:
        environ["BASELINE_KEY"] = args.baseline_key
    return environ


def run(args: argparse.Namespace, config: Mapping[str, Any], *, spark: Any, s3: Any,
        cloudwatch: Any, scratch: str | Path | None = None, sagemaker: Any = None,
        store: Any = None) -> dict[str, Any]:
    """Monitor the day on Spark; returns :func:`mdlc_core.monitor_job.run`'s
    summary (the small JSON result the workflow reads back).

    The day's prediction and label objects are read by the executors
    (:class:`ExecutorReader`, ``store``: where they find them, default EMRFS);
    the driver lists them, reads the baselines and runs the report's small
    queries. ``sagemaker`` describes the versions' model packages (default: a
    boto3 client as the job's role, made when a package is first described).
    ``scratch`` is unused: nothing is written locally.
    """
    del scratch
    reader = ExecutorReader(s3, spark, store or spark_io.Emrfs(),
                            monitor_job.feature_columns(config))
    try:
        return monitor_job.monitor(event_of(args), config, reader, ExecutorMetrics(spark),
                                    s3=s3, cloudwatch=cloudwatch, environ=environment(args),
                                    sagemaker=sagemaker)
    finally:
        reader.release()


# --------------------------------------------------------------------------- executors

#: The column of a row's bad-value mask (its bits: ``mdlc_core.monitoring``'s
#: ID_NULL ... TS_BAD, shared with DuckDB's reader): what the shared reader
#: would refuse in the row.
BAD = "_mdlc_bad"
#: Each object's rows at their place in the day, file order: ``object * 2**32 + row``.
ROW = "_mdlc_row"
_DAY_US = 86_400_000_000
_CSV = pacsv.ConvertOptions()
#: pyarrow's CSV null markers and booleans: a CSV column pyarrow left as text
#: because of one value is typed value by value with them, as its inference would.
NULL_MARKERS = frozenset(_CSV.null_values)
TRUE_VALUES, FALSE_VALUES = frozenset(_CSV.true_values), frozenset(_CSV.false_values)


def _raw_name(column: str) -> str:
    """The column holding, on a refused row only, the value as written (the examples)."""
    return f"_mdlc_raw_{column}"


def _converted(column: pa.Array, convert: Callable[[pa.Array], pa.Array], out: pa.DataType,
               *, csv: bool, booleans: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """``convert(column)`` (the shared reader's conversion of a whole column),
    with which rows are null and which it refuses: ``(values, null, bad)``,
    ``values`` null on both.

    When the whole column does not convert (one bad value makes pyarrow leave
    a CSV column as text), each distinct value is converted alone, so a row is
    refused only for its own value; a CSV text value is then stripped of
    blanks and read with pyarrow's null markers (and, for numbers, its
    booleans), as its type inference reads a column of such values."""
    null = column.is_null().to_numpy(zero_copy_only=False)
    try:
        return convert(column), null, np.zeros(len(column), dtype=bool)
    except (pa.ArrowException, ValueError, TypeError):
        pass
    uniques = pc.unique(column)
    index = pc.index_in(column, value_set=uniques, skip_nulls=False).to_numpy(
        zero_copy_only=False)
    values: list[Any] = []
    unique_null = np.zeros(len(uniques), dtype=bool)
    unique_bad = np.zeros(len(uniques), dtype=bool)
    for i in range(len(uniques)):
        item = uniques.slice(i, 1)
        text = item[0].as_py()
        if text is None:
            unique_null[i] = True
            values.append(None)
            continue
        if csv and isinstance(text, str):
            text = text.strip(" \t")
            if text in NULL_MARKERS:
                unique_null[i] = True
                values.append(None)
                continue
            if booleans and (text in TRUE_VALUES or text in FALSE_VALUES):
                values.append(1.0 if text in TRUE_VALUES else 0.0)
                continue
            item = pa.array([text], item.type)
        try:
            values.append(convert(item)[0].as_py())
        except (pa.ArrowException, ValueError, TypeError):
            unique_bad[i] = True
            values.append(None)
    typed = pa.array(values, out).take(pa.array(index))
    return typed, unique_null[index], unique_bad[index]


def _numbers(column: pa.Array, csv: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """A column as the shared reader's doubles (``monitoring.floats``)."""
    return _converted(column, lambda a: pc.cast(a, pa.float64()), pa.float64(), csv=csv,
                      booleans=True)


def _parse_micros(column: pa.Array) -> pa.Array:
    """``monitoring._timestamps_us`` of a column without nulls to refuse."""
    kind = column.type
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.int64())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        cast = pc.cast(column, pa.timestamp("us", tz=getattr(kind, "tz", None)))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        cast = monitoring.parse_timestamps(pa.chunked_array([column])).combine_chunks()
    else:
        raise TypeError(f"not a timestamp type: {kind}")
    return cast.cast(pa.int64())


def _micros(column: pa.Array, csv: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """A column as the shared reader's UTC microseconds (zone-less read as UTC)."""
    if not (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)
            or pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_null(column.type)):
        # monitoring._timestamps_us: "must be an ISO-8601 timestamp, got type ..."
        null = column.is_null().to_numpy(zero_copy_only=False)
        return pa.nulls(len(column), pa.int64()), null, ~null
    return _converted(column, _parse_micros, pa.int64(), csv=csv, booleans=False)


def _text(table: pa.Table, name: str, what: str) -> pa.Array:
    """``monitoring.text_column``: the column as text (null where the object has no such column)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    return monitoring.text_column(table, name, what).combine_chunks().cast(pa.string())


def _column(table: pa.Table, name: str, kind: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, kind)
    return table.column(name).combine_chunks()


def _raw(column: pa.Array, bad: np.ndarray) -> pa.Array:
    """The values as written on the refused rows, null elsewhere."""
    if not bad.any():
        return pa.nulls(len(column), pa.string())
    try:
        text = pc.cast(column, pa.string())
    except pa.ArrowException:
        text = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
    return pc.if_else(pa.array(bad), text, pa.scalar(None, pa.string()))


def _bits(*parts: tuple[int, np.ndarray]) -> pa.Array:
    out = np.zeros(len(parts[0][1]), dtype=np.int64)
    for bit, mask in parts:
        out |= np.where(mask, bit, 0)
    return pa.array(out)


def _read(body: bytes, stored: spark_io.StoredObject) -> tuple[pa.Table, bool, dict[str, Any]]:
    """One object read by the shared reader, whether it is CSV, and what its
    summary says of it: its columns in order and their stored types."""
    table = monitoring.read_table_bytes(body, stored.name)
    csv = monitoring.table_format(stored.name, body[:4]) == "csv"
    return table, csv, {"columns": table.column_names,
                        "types": {f.name: str(f.type) for f in table.schema}}


def predictions_schema(features: Sequence[str]) -> pa.Schema:
    """What the executors yield per prediction row: the predictions relation's
    columns (``f<j>``: the ``j``-th monitored feature), :data:`BAD` and the
    raw values of refused rows."""
    fields = [pa.field("event_id", pa.string()), pa.field("score", pa.float64()),
              pa.field("day", pa.int64()), pa.field("model_version", pa.string()),
              pa.field("action", pa.string())]
    fields += [pa.field(f"f{j}", pa.float64()) for j in range(len(features))]
    fields.append(pa.field(BAD, pa.int64()))
    fields += [pa.field(_raw_name(n), pa.string())
               for n in ("score", "prediction_ts", *(f"f{j}" for j in range(len(features))))]
    return pa.schema(fields)


def predictions_parser(features: Sequence[str]) -> spark_io.Parser:
    """On an executor: one prediction object typed as ``Predictions.from_table``
    types a day (before its checks), each refusal a bit of :data:`BAD`."""
    features = [f for f in features if f != SCORE_COLUMN]

    def parse(body: bytes, stored: spark_io.StoredObject) -> tuple[pa.Table, dict[str, Any]]:
        table, csv, summary = _read(body, stored)
        n = table.num_rows
        ids = _text(table, "event_id", stored.name)
        score, score_null, score_bad = _numbers(_column(table, "score", pa.float64()), csv)
        nan = np.isnan(score.fill_null(0.0).to_numpy(zero_copy_only=False))
        micros, ts_null, ts_bad = _micros(_column(table, "prediction_ts", pa.null()), csv)
        us = micros.fill_null(0).to_numpy(zero_copy_only=False)
        day = pa.array(us // _DAY_US, mask=micros.is_null().to_numpy(zero_copy_only=False))
        version = pc.fill_null(_text(table, "model_version", stored.name), UNKNOWN_VERSION)
        data: dict[str, pa.Array] = {
            "event_id": ids, "score": score, "day": day, "model_version": version,
            "action": _text(table, "action", stored.name)}
        raws = {"score": _raw(_column(table, "score", pa.float64()), score_bad),
                "prediction_ts": _raw(_column(table, "prediction_ts", pa.null()), ts_bad)}
        for j, name in enumerate(features):
            values, null, bad = _numbers(_column(table, name, pa.float64()), csv)
            # NaN where the reader has a null (missing to every metric), null where
            # the value is not a number (refused).
            data[f"f{j}"] = pc.if_else(pa.array(null), np.nan, values)
            raws[f"f{j}"] = _raw(_column(table, name, pa.float64()), bad)
        data[BAD] = _bits((ID_NULL, ids.is_null().to_numpy(zero_copy_only=False)),
                          (VALUE_NULL, score_null), (VALUE_BAD, score_bad),
                          (SCORE_NAN, nan & ~score_null & ~score_bad),
                          (TS_NULL, ts_null), (TS_BAD, ts_bad)) if n else pa.array(
                              [], pa.int64())
        for name, raw in raws.items():
            data[_raw_name(name)] = raw
        return pa.table(data), summary

    return parse


def labels_schema() -> pa.Schema:
    return pa.schema([pa.field("event_id", pa.string()), pa.field("label", pa.float64()),
                      pa.field("label_ts", pa.int64()), pa.field(BAD, pa.int64()),
                      pa.field(_raw_name("label"), pa.string()),
                      pa.field(_raw_name("label_ts"), pa.string())])


def labels_parser() -> spark_io.Parser:
    """On an executor: one label object typed as ``Labels.from_table`` types
    labels (before its checks), each refusal a bit of :data:`BAD`."""

    def parse(body: bytes, stored: spark_io.StoredObject) -> tuple[pa.Table, dict[str, Any]]:
        table, csv, summary = _read(body, stored)
        ids = _text(table, "event_id", stored.name)
        raw_label = _column(table, "label", pa.float64())
        label, label_null, label_bad = _numbers(raw_label, csv)
        micros, ts_null, ts_bad = _micros(_column(table, "label_ts", pa.null()), csv)
        data = {"event_id": ids, "label": label, "label_ts": micros,
                BAD: _bits((ID_NULL, ids.is_null().to_numpy(zero_copy_only=False)),
                           (VALUE_NULL, label_null), (VALUE_BAD, label_bad), (TS_NULL, ts_null),
                           (TS_BAD, ts_bad)) if table.num_rows else pa.array([], pa.int64()),
                _raw_name("label"): _raw(raw_label, label_bad),
                _raw_name("label_ts"): _raw(_column(table, "label_ts", pa.null()), ts_bad)}
        return pa.table(data), summary

    return parse


# ------------------------------------------------------------------------------ driver


@dataclass(kw_only=True)
class ExecutorPredictions(ReadDay):
    """A day's predictions on the executors, one row per event (the first in
    file order), persisted: what ``sql.monitoring.prepare_frames`` takes."""

    frame: Any
    versions: dict[str, int] = field(default_factory=dict)

    def version_counts(self) -> dict[str, int]:
        """Each model version and its predictions, in order of first appearance."""
        return dict(self.versions)

    def view(self, names: Sequence[str]) -> Any:
        """The predictions relation of :mod:`mdlc_core.sql.monitoring`, as a frame."""
        from mdlc_core.sql import monitoring as sql_monitoring
        from pyspark.sql import functions as F

        columns = [F.col("event_id"), F.col("score"), F.col("day"), F.col("model_version"),
                   F.col(ROW).alias(sql_monitoring.ROW)]
        if self.has_actions:
            columns.append(F.coalesce(F.col("action"), F.lit("")).alias("action"))
        for index, name in enumerate(names):
            source = "score" if name == SCORE_COLUMN else self.feature_columns[name]
            columns.append(F.col(source).alias(sql_monitoring.relation_column(index)))
        return self.frame.select(*columns)


@dataclass
class ExecutorLabels:
    """Labels on the executors, every row as it arrived, persisted."""

    frame: Any
    rows: int

    def __len__(self) -> int:
        return self.rows

    def view(self) -> Any:
        from mdlc_core.sql import monitoring as sql_monitoring
        from pyspark.sql import functions as F

        return self.frame.select(F.col("event_id"), F.col("label").cast("bigint").alias("label"),
                                 F.col("label_ts"), F.col(ROW).alias(sql_monitoring.ROW))


#: (condition on a row, kind, column named) in the shared reader's order.


class ExecutorReader(monitor_job.DayReader):
    """``monitor_job``'s reader with the day's objects read by Spark's executors.

    :meth:`keys` (the listing) is the shared one, so the same objects are
    read; :meth:`predictions` and :meth:`labels` hand their locations to
    :func:`mdlc_core.spark_io.read_objects` and return frames, never rows.
    The baselines are read as the other runners read them, on the driver.
    :meth:`release` frees what the executors persisted."""

    def __init__(self, s3: Any, spark: Any, store: Any, features: Sequence[str]) -> None:
        super().__init__(s3)
        self.spark = spark
        self.store = store
        self.features = [f for f in features if f != SCORE_COLUMN]
        self._persisted: list[Any] = []
        self._reads: list[spark_io.Objects] = []

    def release(self) -> None:
        """Free what the executors persisted for this run (the session may be shared)."""
        for frame in self._persisted:
            frame.unpersist()
        for read in self._reads:
            read.release()
        self._persisted.clear()
        self._reads.clear()

    def _objects(self, bucket: str, prefix: str, schema: pa.Schema,
                 parser: spark_io.Parser) -> spark_io.Objects | None:
        objects = [spark_io.StoredObject(bucket, key) for key in self.keys(bucket, prefix)]
        if not objects:
            return None
        with spark_io.executor_errors():
            read = spark_io.read_objects(self.spark, self.store, objects, schema, parser)
        self._reads.append(read)
        logger.info("the executors read %d object(s) under s3://%s/%s, %d rows",
                    len(objects), bucket, prefix, read.rows)
        return read

    def predictions(self, bucket: str, model: str, day: date, features: list[str]
                    ) -> ExecutorPredictions:
        from pyspark.sql import functions as F

        prefix = scored_prefix(model, day.isoformat())
        what = f"s3://{bucket}/{prefix}"
        schema = predictions_schema(self.features)
        read = self._objects(bucket, prefix, schema, predictions_parser(self.features))
        if read is None:
            logger.warning("no predictions under %s", what)
            self.duplicates[day] = 0
            empty = self.spark.createDataFrame([], spark_io.spark_schema(
                pa.schema([*schema, pa.field(ROW, pa.int64())])))
            return ExecutorPredictions(frame=empty, rows=0, duplicates=0, features=(),
                                       has_actions=False)
        found = _found(read)
        _require(found, PREDICTION_COLUMNS, what)
        present = tuple(n for n in self.features if n in found)
        columns = {name: f"f{self.features.index(name)}" for name in present}
        frame = read.frame.withColumn(
            ROW, F.col(spark_io.OBJECT) * (2 ** 32) + F.col(spark_io.LOCAL_ROW))
        checks = prediction_checks(BAD, columns)
        with spark_io.executor_errors():
            # The shared reader's order: ids first (no first-per-event without them)...
            self._refuse(read, frame, _counts(frame, checks[:1]), checks[:1], columns)
            first = frame.groupBy("event_id").agg(F.min(ROW).alias(ROW)).select(ROW)
            kept = frame.join(first, ROW, "left_semi").persist(_storage())
            self._persisted.append(kept)
            # ...then the rows that count: a dropped copy cannot fail the day.
            rows = self._refuse(read, kept, _counts(kept, checks), checks, columns)
            versions = [(r["model_version"], int(r["n"])) for r in sorted(
                kept.groupBy("model_version").agg(F.min(ROW).alias("first"),
                                                  F.count(F.lit(1)).alias("n")).collect(),
                key=lambda r: r["first"])]
        # The first rows are persisted (and were counted): the read objects can go.
        read.release()
        self._reads.remove(read)
        dropped = read.rows - rows
        if dropped:
            logger.warning("%d duplicate prediction row(s) of the same event ids counted once",
                           dropped)
        self.duplicates[day] = dropped
        return ExecutorPredictions(frame=kept, rows=rows, duplicates=dropped, features=present,
                                   has_actions="action" in found, feature_columns=columns,
                                   versions={str(v): n for v, n in versions})

    def labels(self, bucket: str, prefix: str, day: date) -> ExecutorLabels | None:
        from pyspark.sql import functions as F

        prefix = f"{prefix.rstrip('/')}/dt={day.isoformat()}/"
        read = self._objects(bucket, prefix, labels_schema(), labels_parser())
        if read is None:
            return None
        _require(_found(read), LABEL_COLUMNS, f"s3://{bucket}/{prefix}")
        frame = read.frame.withColumn(
            ROW, F.col(spark_io.OBJECT) * (2 ** 32) + F.col(spark_io.LOCAL_ROW))
        checks = label_checks(BAD)
        with spark_io.executor_errors():
            rows = self._refuse(read, frame, _counts(frame, checks), checks, {})
        return ExecutorLabels(frame, rows)

    def _refuse(self, read: spark_io.Objects, frame: Any, counts: Sequence[Any],
                checks: Sequence[Check], columns: Mapping[str, str]) -> int:
        """Raise for the first of ``checks`` that a row fails, naming the first
        object with such rows, how many, and examples, in the shared reader's
        (and the DuckDB engine's) words; else return the rows."""
        from pyspark.sql import functions as F

        for i, (_, kind, column) in enumerate(checks):
            for row in counts:
                count = int(row[f"c{i}"])
                if not count:
                    continue
                index = int(row[spark_io.OBJECT])
                stored = read.objects[index]
                if kind == "null":
                    text = f"{count} row(s) without {column}"
                elif kind == "nan":
                    text = f"{count} {column}(s) are NaN"
                elif kind == "label":
                    text = _labels_not_0_or_1(frame, index, count)
                else:
                    raw = _raw_name(columns.get(column, column))
                    values = [r[0] for r in frame.where(
                        (F.col(spark_io.OBJECT) == index) & F.col(raw).isNotNull())
                        .orderBy(ROW).select(raw).limit(3).collect()]
                    stored_as = read.summaries[index]["types"].get(column, "null")
                    what = "timestamps" if kind == "timestamp" else "numbers"
                    detail = (f"{count} value(s) are not {what}, e.g. {values} "
                              f"(stored as {stored_as})")
                    text = (f"{column} is not an ISO-8601 timestamp: {detail}"
                            if kind == "timestamp" else f"{column} is not numeric: {detail}")
                raise MonitoringInputError(f"{stored.name}: {text}")
        return sum(int(row["rows"]) for row in counts)


def _storage() -> Any:
    from pyspark import StorageLevel

    return StorageLevel.MEMORY_AND_DISK


def _found(read: spark_io.Objects) -> list[str]:
    """Every object's columns, in order of first appearance (pyarrow's permissive concat)."""
    names: dict[str, None] = {}
    for summary in read.summaries:
        names.update(dict.fromkeys(summary["columns"]))
    return list(names)


def _require(found: Sequence[str], columns: Sequence[str], what: str) -> None:
    """``monitoring._require`` of the day's columns."""
    missing = [c for c in columns if c not in found]
    if missing:
        raise MonitoringInputError(f"{what}: missing column(s) {missing}; found {list(found)}")


def _counts(frame: Any, checks: Sequence[Check]) -> list[Any]:
    """Per object: its rows, then how many fail each check (one pass over ``frame``)."""
    from pyspark.sql import functions as F

    parts = [F.count(F.lit(1)).alias("rows")] + [
        F.count(F.when(F.expr(condition), 1)).alias(f"c{i}")
        for i, (condition, _, _) in enumerate(checks)]
    return frame.groupBy(spark_io.OBJECT).agg(*parts).orderBy(spark_io.OBJECT).collect()


def _labels_not_0_or_1(frame: Any, index: int, count: int) -> str:
    """The shared reader's refusal of labels other than 0 and 1, with five of them."""
    from pyspark.sql import functions as F

    values = [r[0] for r in frame.where(
        (F.col(spark_io.OBJECT) == index)
        & F.expr("label IS NOT NULL AND (isnan(label) OR label NOT IN (0, 1))"))
        .orderBy(ROW).select("label").limit(5).collect()]
    examples = sorted({str(np.float64(v)) for v in values})
    return f"label must be 0 or 1; {count} row(s) are not, e.g. {examples}"


class ExecutorMetrics:
    """The metrics of :mod:`mdlc_core.sql.monitoring` on the executors' frames
    (:func:`~mdlc_core.sql.monitoring.prepare_frames`, then
    :func:`~mdlc_core.sql.monitoring.spark_run`): the same queries, the same report."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def open_loop(self, predictions: ExecutorPredictions, baseline: pa.Table | None,
                  bins: int = 10, feature_columns: Any = (), *,
                  baselines: Mapping[str, pa.Table | None] | None = None) -> dict[str, Any]:
        from mdlc_core.sql import monitoring as sql_monitoring

        plan = sql_monitoring.prepare_frames(predictions, None, baseline, None, feature_columns,
                                             baselines=baselines, bins=bins)
        versions = list(predictions.version_counts().items())
        with spark_io.executor_errors():
            return sql_monitoring.spark_run(
                plan, lambda fetch: plan.open_loop(fetch, "spark", versions=versions),
                self.spark)

    def closed_loop(self, predictions: ExecutorPredictions, labels: ExecutorLabels | None,
                    decision_threshold: float) -> dict[str, Any]:
        from mdlc_core.sql import monitoring as sql_monitoring

        plan = sql_monitoring.prepare_frames(predictions, labels, None,
                                             decision_threshold=decision_threshold)
        versions = list(predictions.version_counts().items())
        with spark_io.executor_errors():
            return sql_monitoring.spark_run(
                plan, lambda fetch: plan.closed_loop(fetch, "spark", versions=versions),
                self.spark)


__all__ = ["ExecutorLabels", "ExecutorMetrics", "ExecutorPredictions", "ExecutorReader",
           "arguments", "environment", "event_of", "labels_parser", "labels_schema",
           "predictions_parser", "predictions_schema", "run"]
