"""The Spark runner's features kind: the day's batch features as Spark SQL.

``spark_job.py --kind features --date D --datasets-bucket B --features-bucket F``
(EMR Serverless, ``features.runner: spark``; PySpark in local mode for the
local execution) runs :func:`mdlc_core.feature_job.run` with the Spark
engine: the same snapshots read (each committed manifest's objects, at the
versions it names, checked against their SHA-256, by the shared reader), the
same two Parquet files written (``features/<model>/dt=<date>/features.parquet``
and ``entities.parquet``) and the same result (``date``, ``features_key``,
``entities_key``, ``rows``, ``entities``, ``snapshots``), which the workflow
reads back to ``$.data.features`` as it does the Lambda function's return value.

What differs is where the features are computed: the per-event and as-of
queries of :mod:`mdlc_core.sql.features` (the same plans DuckDB runs), in
their Spark dialect, over the typed events registered as a Spark view
(:func:`run_plan`). The window functions and aggregates, the part whose cost
grows with the window, run on Spark's executors; the driver reads and types
the window's events (one parser for every engine, so the same value fails
the same way) and writes the two files.

``--read-from`` (a common argument of the entry point) does not change this
kind: the snapshot objects are always read by the driver, checked against the
manifest.

This module imports :mod:`mdlc_core.spark_job` only inside functions: the
entry point imports this module to list the kind (no import cycle).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from . import feature_job
from .batch_features import FeatureSet

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
    from mdlc_core.spark_job import SESSION_CONF, _arrow_frame
    from mdlc_core.sql import features as sql_features

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    _arrow_frame(spark, plan.relation.table).createOrReplaceTempView(sql_features.EVENTS)
    try:
        return _to_arrow(spark.sql(plan.sql("spark")))
    finally:
        spark.catalog.dropTempView(sql_features.EVENTS)


def _to_arrow(frame: Any) -> Any:
    """A Spark frame as an Arrow table, in the frame's row order. Spark 4 has
    ``toArrow``; Spark 3.5 (EMR 7's) ``toPandas`` (Arrow-backed with
    SESSION_CONF), whose NaN of a nullable double column is a null again in
    Arrow (the features' values are never NaN: not finite is null in the SQL).
    The same version switch as ``spark_job._arrow_frame``."""
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
            cloudwatch: Any, scratch: str | Path | None) -> dict[str, Any]:
    """The features of ``--date`` on Spark (``spark_job.Job.run``); returns the
    result :func:`mdlc_core.feature_job.run` returns. No metrics are published
    (the Lambda runner publishes none either) and nothing is written to scratch."""
    del cloudwatch, scratch  # the common signature; this kind needs neither
    return feature_job.run(config, args.date, s3=s3, datasets_bucket=args.datasets_bucket,
                           features_bucket=args.features_bucket, model=args.model,
                           engine=feature_job.SPARK, spark=spark)


__all__ = ["KIND", "add_arguments", "run_job", "run_plan", "tables"]
