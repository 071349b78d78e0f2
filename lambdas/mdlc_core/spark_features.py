"""The Spark runner's features kind: the day's batch features as Spark SQL, on the executors.

``spark_job.py --kind features --date D --datasets-bucket B --features-bucket F``
(EMR Serverless, ``features.runner: spark``; PySpark in local mode for the
local execution) computes what :func:`mdlc_core.feature_job.run` computes
for the other runners: the same snapshots (the newest committed version of
the day and of each day before it that the longest window needs; a missing
earlier day is skipped and logged, a missing day itself is an error), the
same two Parquet objects (``features/<model>/dt=<date>/features.parquet``
and ``entities.parquet``: the same columns, types, rows and order) and the
same result (``date``, ``features_key``, ``entities_key``, ``rows``,
``entities``, ``snapshots``), which the workflow reads back to
``$.data.features`` as it does the Lambda function's return value.

Where the work happens (:func:`run_job`): no row of the window goes through
the driver. It reads the manifests (small JSON) and hands Spark the objects'
locations; the executors check each object against its manifest's SHA-256
and type its events with the shared reader and the SQL engine's own typing
(:func:`mdlc_core.sql.features.events_relation`, per object: the same
values and errors as every engine), :mod:`mdlc_core.spark_io`. The per-event
and as-of queries of :mod:`mdlc_core.sql.features` (the plans DuckDB runs)
run in their Spark dialect over those typed events, and the executors write
the two tables (:func:`mdlc_core.spark_io.write_parquet`: one part file
under the run's staging prefix, ``<result key's folder>/staging/``, copied
server-side to its key, SSE-KMS with ``--kms-key``). Only the small JSON
result is the driver's.

Positions: an event's input position (which delivery of a redelivered id is
its first, and the training rows' order) is ``object index * 2**32 + its row
in the object``, objects numbered oldest day first and in manifest order:
the order of the positions the other engines number one by one.

:func:`tables` and :func:`run_plan` compute the two tables of events already
in the driver's memory on Spark (``feature_job.engine_tables("spark")``).

This module imports :mod:`mdlc_core.spark_job` only inside functions: the
entry point imports this module to list the kind (no import cycle).
"""

from __future__ import annotations

import argparse
import logging
import posixpath
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import spark_io
from .batch_features import FeatureError, FeatureSet
from .layout import Layout

logger = logging.getLogger("mdlc.spark_features")

KIND = "features"


def run_plan(plan: Any, spark: Any) -> Any:
    """A compiled feature plan (:class:`mdlc_core.sql.features.Plan`) run on
    ``spark``, as the Arrow table :meth:`~mdlc_core.sql.features.Plan.finish`
    and ``Plan.columns`` take, on Spark 4 (the tests, local mode) and on Spark
    3.5 (EMR 7's release), whose frames go through pandas.

    The events are the temporary view ``events`` (the name the SQL reads),
    dropped afterwards; the session gets the runner's settings
    (``spark_job.SESSION_CONF``: UTC, no NaN-blind pushdown, Arrow).
    """
    from mdlc_core.spark_job import SESSION_CONF, arrow_frame
    from mdlc_core.sql import features as sql_features

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    arrow_frame(spark, plan.relation.table).createOrReplaceTempView(sql_features.EVENTS)
    try:
        return _to_arrow(spark.sql(plan.sql("spark")))
    finally:
        spark.catalog.dropTempView(sql_features.EVENTS)


def _to_arrow(frame: Any) -> Any:
    """A Spark frame as an Arrow table, in the frame's row order. Spark 4 has
    ``toArrow``; Spark 3.5 (EMR 7's) ``toPandas`` (Arrow-backed with
    SESSION_CONF), whose NaN of a nullable double column is a null again in
    Arrow (the features' values are never NaN: not finite is null in the SQL).
    The same version switch as ``spark_job.arrow_frame``."""
    import pyarrow as pa
    import pyspark

    if int(pyspark.__version__.split(".")[0]) >= 4:
        return frame.toArrow()
    return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)


def tables(spark: Any) -> tuple[Callable[..., dict[str, list[Any]]],
                                 Callable[..., dict[str, list[Any]]]]:
    """``(training_table, entity_table)`` computed on ``spark``: what
    :func:`mdlc_core.feature_job.engine_tables` gives for the ``spark`` engine."""
    from mdlc_core.sql import features as sql_features

    def engine(plan: Any) -> Any:
        return run_plan(plan, spark)

    def training(events: Any, features: FeatureSet) -> dict[str, list[Any]]:
        return sql_features.training_table(events, features, engine=engine)

    def entities(events: Any, features: FeatureSet, day: date) -> dict[str, list[Any]]:
        return sql_features.entity_table(events, features, day, engine=engine)

    return training, entities


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The kind's own arguments (beside the entry point's ``--date`` and result)."""
    parser.add_argument("--datasets-bucket", required=True,
                        help="the data lake's datasets bucket (the snapshots)")
    parser.add_argument("--features-bucket", required=True,
                        help="where features/<model>/dt=<date>/ is written")
    parser.add_argument("--model", help="the model's name in the layout; default: the spec's")


def run_job(args: argparse.Namespace, config: Mapping[str, Any], *, spark: Any, s3: Any,
            cloudwatch: Any, scratch: str | Path | None, store: Any = None) -> dict[str, Any]:
    """The features of ``--date`` on Spark (``spark_job.Job.run``); returns the
    result :func:`mdlc_core.feature_job.run` returns. No metrics are published
    (the Lambda runner publishes none either) and nothing is written to scratch.
    ``store``: where the executors read and write (default: EMRFS)."""
    del cloudwatch, scratch  # the common signature; this kind needs neither
    staging = posixpath.join(posixpath.dirname(args.result_key), "staging")
    return run(config, args.date, spark=spark, s3=s3, store=store or spark_io.Emrfs(),
               datasets_bucket=args.datasets_bucket, features_bucket=args.features_bucket,
               model=args.model, staging_bucket=args.result_bucket, staging_prefix=staging,
               kms_key=args.kms_key)


def run(config: Mapping[str, Any], day: date, *, spark: Any, s3: Any, store: Any,
        datasets_bucket: str, features_bucket: str, staging_bucket: str, staging_prefix: str,
        model: str | None = None, kms_key: str | None = None) -> dict[str, Any]:
    """Compute and write the features of ``day`` on ``spark``'s executors (see
    the module docstring); ``staging_*``: where the executors write before
    each table is copied to its key."""
    from mdlc_core.spark_job import SESSION_CONF
    from mdlc_core.sql import features as sql_features
    from pyspark.sql import functions as F

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    features = FeatureSet.from_config(config)
    model = model or config["name"]
    objects, manifests = _window(s3, datasets_bucket, model, day, features)
    declared = {c["name"]: c["type"] for c in config["data"].get("columns") or []}
    columns = features.entity_table_columns
    label = features.label if features.label not in (None, *columns) else None
    # The plans' SQL depends on the columns only: compiled once from no events.
    empty = pa.table({c: pa.array([], pa.string()) for c in columns})
    per_event = sql_features.prepare_per_event(empty, features, inputs=features.inputs,
                                               positions=True)
    as_of = sql_features.prepare_as_of(empty, features, day, inputs=features.inputs)
    label_type = declared.get(label, "string") if label else None
    schema = _events_schema(per_event.relation.table.schema, label, label_type)
    read = spark_io.read_objects(spark, store, objects, schema,
                                 _parser(features, columns, label, label_type))
    try:
        events = read.frame.withColumn(
            sql_features.ROW, F.col(spark_io.OBJECT) * (2 ** 32) + F.col(spark_io.LOCAL_ROW))
        labelled = bool(label) and any(
            s["label"] for s, o in zip(read.summaries, read.objects, strict=True) if o.group == 0)
        events.createOrReplaceTempView(sql_features.EVENTS)
        try:
            training = _training(spark, events, per_event, features, label if labelled else None)
            entities = _entities(spark, as_of, features)
            prefix = Layout(model).feature_snapshot(day.isoformat())
            counts = {}
            for name, frame in (("features", training), ("entities", entities)):
                frame = frame.persist()
                counts[name] = frame.count()
                with spark_io.executor_errors():
                    spark_io.write_parquet(
                        spark, frame, store=store, s3=s3, bucket=features_bucket,
                        key=f"{prefix}{name}.parquet", staging_bucket=staging_bucket,
                        staging_prefix=f"{staging_prefix}/{name}", kms_key=kms_key)
                frame.unpersist()
        finally:
            spark.catalog.dropTempView(sql_features.EVENTS)
    finally:
        read.release()
    outcome = {
        "date": day.isoformat(),
        "features_key": prefix + "features.parquet",
        "entities_key": prefix + "entities.parquet",
        "rows": counts["features"],
        "entities": counts["entities"],
        "snapshots": manifests,
    }
    logger.info("features written (spark engine, %d objects read by the executors): %s",
                len(objects), outcome)
    return outcome


def _window(s3: Any, bucket: str, model: str, day: date, features: FeatureSet
            ) -> tuple[list[spark_io.StoredObject], list[str]]:
    """The objects of the window's committed manifests, oldest day first (the
    input order), ``group`` 0 for the day itself; and the manifests' keys."""
    from .feature_job import window_manifests

    objects: list[spark_io.StoredObject] = []
    manifests = []
    for back, key, manifest in window_manifests(s3, bucket, model, features, day):
        manifests.append(key)
        objects += spark_io.manifest_objects(manifest, bucket, group=0 if back == 0 else 1)
    return objects, manifests


#: On each event of the window: whether it is from the day's own snapshot.
TODAY = "_mdlc_today"


def _events_schema(relation: pa.Schema, label: str | None, label_type: str | None
                   ) -> pa.Schema:
    """What the executors yield per event: the relation both plans read, the
    label (typed as declared) and :data:`TODAY`."""
    from .tabular import ARROW_TYPES

    fields = list(relation)
    if label and label_type:
        fields.append(pa.field(label, ARROW_TYPES[label_type]))
    return pa.schema([*fields, pa.field(TODAY, pa.bool_())])


def _parser(features: FeatureSet, columns: list[str], label: str | None,
            label_type: str | None) -> spark_io.Parser:
    """On an executor: one object's events typed as :data:`EVENTS` (the object
    read as :func:`mdlc_core.feature_job.read_object` reads it, then
    :func:`mdlc_core.sql.features.events_relation`), with its label (typed as
    declared, null in an object without it) and whether it is the day's own."""

    def parse(body: bytes, stored: spark_io.StoredObject) -> tuple[pa.Table, dict[str, Any]]:
        from mdlc_core.sql.features import events_relation
        from mdlc_core.tabular import ARROW_TYPES, DataError, convert, read_bytes

        try:
            table = read_bytes(body, stored.name, file_format=stored.format, text=True)
        except DataError as error:
            raise FeatureError(str(error)) from error
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise FeatureError(f"{stored.name} has no column(s) {missing}")
        try:
            relation = events_relation(table.select(columns), features, extra=features.inputs)
        except FeatureError as error:
            raise FeatureError(f"{stored.name}: {error}") from error
        out = relation.table
        has_label = bool(label) and label in table.column_names
        if label and label_type:
            values = convert(table.column(label), label_type) if has_label \
                else pa.nulls(out.num_rows, ARROW_TYPES[label_type])
            out = out.append_column(label, values)
        today = pa.array([stored.group == 0] * out.num_rows, pa.bool_())
        return out.append_column(TODAY, today), {"label": has_label}

    return parse


def _typed(plan: Any) -> list[Any]:
    """The plan's result columns typed as :meth:`~mdlc_core.sql.features.Plan.columns`
    types them: counts as integers, ids as text, every other value a double."""
    features = plan.features
    from pyspark.sql import functions as F

    counts = {a.name for a in features.aggregates if a.function == "count"}
    out = []
    for name in plan.names:
        kind = ("bigint" if name in counts else "string"
                if name in (features.event_id, features.entity_key) else "double")
        out.append(F.col(f"`{name}`").cast(kind).alias(name))
    return out


def _training(spark: Any, events: Any, plan: Any, features: FeatureSet, label: str | None
              ) -> Any:
    """The training rows: each event's features (the per-event plan), its
    timestamp and label, for the events of the day that no earlier day of the
    window delivered (a redelivered event stays a training row of its first day)."""
    from mdlc_core.sql.features import MICROS, ROW
    from pyspark.sql import functions as F

    result = spark.sql(plan.sql("spark"))
    fresh = (events.groupBy(features.event_id).agg(F.min(F.col(TODAY).cast("int")).alias("_t"))
             .where(F.col("_t") == 1).select(features.event_id))
    result = result.join(fresh, features.event_id, "left_semi")
    if label:
        result = result.join(events.select(ROW, F.col(f"`{label}`").alias("_mdlc_label")), ROW,
                             "left")
    columns = dict(zip(plan.names, _typed(plan), strict=True))
    columns[features.timestamp] = F.expr(f"timestamp_micros(`{MICROS}`)").alias(
        features.timestamp)
    if label:
        columns[label] = F.col("_mdlc_label").alias(label)
    ordered = result.orderBy(ROW)
    return ordered.select(*[columns[name] for name in features.training_table_schema
                            if name in columns])


def _entities(spark: Any, plan: Any, features: FeatureSet) -> Any:
    """One row per entity as of the day (the as-of plan), sorted by entity."""
    result = spark.sql(plan.sql("spark"))
    typed = dict(zip(plan.names, _typed(plan), strict=True))
    return result.select(*[typed[name] for name in features.entity_table_schema]).orderBy(
        features.entity_key)


__all__ = ["KIND", "TODAY", "add_arguments", "run", "run_job", "run_plan", "tables"]
