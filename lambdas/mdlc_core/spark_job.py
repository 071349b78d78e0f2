"""The Spark runner's entry point, and its quality kind: the compiled rules on Spark SQL.

The entry point a Spark job runs (``spark-submit spark_job.py --kind KIND
...``: EMR Serverless, :mod:`mdlc_constructs.spark`; PySpark in local mode
for the CLI's ``--engine spark`` and the local execution). Each kind is a
:class:`Job` in :data:`JOBS`: its own arguments beside the common ones
(``--date``, where the result goes, ``--read-from``, ``--config``) and what it
runs; :func:`main` writes what it returns as the run's small JSON result.

The quality kind (``--kind quality``) checks one
dated snapshot exactly as the other runners do (:mod:`mdlc_core.quality_job`):
the objects its committed manifest lists, each checked against its SHA-256;
the same previous snapshot (the newest of the 31 days before that passed,
:func:`~mdlc_core.quality_job.latest_passed_before`); the same report at
``quality-reports/<model>/dt=<date>/report.json``, the same
``QualityViolations`` metrics, and the same small JSON result, written to
``--result-key`` (SSE-KMS with ``--kms-key``) for the workflow to read back.

What differs is the engine, and who reads: :func:`run` hands Spark the
locations of the manifest's objects and the executors check and read them
(:func:`read_snapshot`, :mod:`mdlc_core.spark_io`: the SHA-256 and the
shared reader, on each object, in one pass); the driver gets one summary
per object (its rows, the reader's unparseable values), from which
:func:`check_read` compiles the rules exactly as
:func:`mdlc_core.sql.quality.prepare` does for the snapshot read whole, and
runs the plan's Spark-dialect SQL over the executors' frames, each row at its
position in the snapshot (its object's offset in manifest order plus its row
in the object). ``--read-from`` says where the executors find the objects:
``s3`` (EMRFS, ``s3://`` URIs: EMR Serverless) or ``local`` (copied to a
local folder through the job's S3 client, for local Spark, which has no S3
file system). :func:`check` runs the same rules on tables or local files
(the CLI's ``mdlc quality --engine spark``): typed Parquet files are read by
Spark itself with ``_metadata.row_index`` positions, anything else through
the shared reader on the driver.

Parquet filter pushdown is off: Parquet's min/max statistics leave NaN out,
so a pushed-down ``x > 50000`` would skip row groups that hold NaN (the same
trap DuckDB fell into, docs/engines.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

# The managed runtime's own Python may be older than the package allows (EMR 7's
# is 3.9): say so before an import fails on a 3.11 name.
if sys.version_info < (3, 11):  # noqa: UP036
    raise SystemExit(
        f"mdlc_core needs Python 3.11 or later; this Spark runtime runs {sys.version.split()[0]}. "
        "Give the job a Python environment (quality.spark.python_environment; docs/engines.md)"
    )

# Absolute imports: this file is also run as a script (the job's entry point).
from mdlc_core import quality_job, spark_features, spark_monitoring
from mdlc_core.runtime_config import CONFIG_FILE_NAME, parse_config

logger = logging.getLogger("mdlc.spark_job")

READ_FROM = ("local", "s3")
#: Spark settings every session of the runner gets: timestamps in UTC (the
#: reader's), no NaN-blind Parquet pushdown, Arrow for the driver's tables.
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.filterPushdown": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def local_warehouse() -> Path:
    """The folder a local session's SQL warehouse is in: one per user under the
    system's temporary folder, shared by every session. Spark makes it the
    first time a session touches its catalog, and no job saves a table in it."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"mdlc-spark-warehouse-{user}"


def local_session(app_name: str = "mdlc", threads: int = 1) -> Any:
    """A PySpark session in local mode (one JVM in this process's machine),
    with :data:`SESSION_CONF`, no UI and one shuffle partition per thread: what
    ``mdlc quality --engine spark``, the local execution and the tests run on.
    An existing session is reused (one JVM per process).

    Its SQL warehouse is :func:`local_warehouse`, not Spark's default of
    ``spark-warehouse/`` in the working directory: the runner keeps no tables,
    and a command run in a team's checkout must not leave a folder in it."""
    from pyspark.sql import SparkSession

    # The executors' Python (they parse the objects: spark_io) is this one, with
    # its packages; PySpark reads it from the environment when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(f"local[{threads}]").appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(threads))
               .config("spark.sql.warehouse.dir", str(local_warehouse())))
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def check(spark: Any, spec_config: Mapping[str, Any], current: Any, previous: Any = None, *,
          snapshot_date: date, previous_date: date | None = None, source: str | None = None,
          previous_source: str | None = None,
          uris: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The quality report of ``current`` (and ``previous``) computed by Spark SQL.

    ``current``/``previous``: what :func:`mdlc_core.sql.quality.prepare` takes
    (an Arrow table, :class:`~mdlc_core.sql.quality.ParquetFiles`, a file or
    folder). ``uris`` names, per relation (``snapshot``, ``previous``), the
    locations Spark reads its Parquet files from instead of their local paths
    (the ``s3://`` objects on a cluster), in the same order. The same report
    as the DuckDB engine (:func:`mdlc_core.sql.quality.check`), exactly.
    """
    from mdlc_core.sql import quality as sql_quality

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    plan = sql_quality.prepare(spec_config, current, previous, snapshot_date=snapshot_date,
                               previous_date=previous_date)
    views = []
    for name, relation in plan.relations.items():
        if isinstance(relation, sql_quality.ParquetFiles):
            frame = _parquet_frame(spark, relation, (uris or {}).get(name))
        else:
            frame = arrow_frame(spark, relation)
        # Views named after the plan's relations, local to this session.
        frame.createOrReplaceTempView(name)
        views.append(name)
    try:
        return plan.report(lambda text: [row.asDict() for row in spark.sql(text).collect()],
                           "spark", source=source, previous_source=previous_source)
    finally:
        for name in views:
            spark.catalog.dropTempView(name)


def arrow_frame(spark: Any, table: Any) -> Any:
    """An Arrow table as a Spark frame: as is from Spark 4 (nulls, zoned
    timestamps), through pandas before (Spark 3.5, EMR 7's)."""
    import pyspark

    if int(pyspark.__version__.split(".")[0]) >= 4:
        return spark.createDataFrame(table)
    return spark.createDataFrame(table.to_pandas(), schema=_spark_schema(table.schema))


def _parquet_frame(spark: Any, files: Any, uris: Sequence[str] | None) -> Any:
    """The Parquet files as one frame of the declared columns plus each row's
    position in the snapshot (``_metadata.row_index`` + the file's offset)."""
    from mdlc_core.sql.rules import ROW
    from pyspark.sql import functions as F

    locations = list(uris) if uris is not None else [str(path) for path in files.files]
    if len(locations) != len(files.files):
        raise ValueError(f"{len(locations)} locations for {len(files.files)} Parquet files")
    frame = None
    for location, offset in zip(locations, files.offsets, strict=True):
        part = spark.read.schema(_spark_schema(files.schema)).parquet(location).select(
            *[F.col(f"`{name}`") for name in files.schema.names],
            (F.col("_metadata.row_index") + F.lit(offset)).cast("bigint").alias(ROW))
        frame = part if frame is None else frame.unionByName(part)
    return frame


def _spark_schema(schema: Any) -> Any:
    """The Spark schema of the declared Arrow types (``tabular.ARROW_TYPES``)."""
    from pyspark.sql import types as T

    kinds = {"string": T.StringType(), "large_string": T.StringType(),
             "int64": T.LongType(), "double": T.DoubleType(), "bool": T.BooleanType()}
    fields = []
    for field in schema:
        text = str(field.type)
        spark_type = T.TimestampType() if text.startswith("timestamp") else kinds[text]
        fields.append(T.StructField(field.name, spark_type, True))
    return T.StructType(fields)


def run(config: Mapping[str, Any], day: date, *, spark: Any, s3: Any, cloudwatch: Any,
        bucket: str, snapshot_prefix: str, report_bucket: str, namespace: str,
        previous_prefix: str | None = "latest", previous_date: date | None = None,
        store: Any = None) -> dict[str, Any]:
    """Check the snapshot under ``snapshot_prefix`` of ``day`` on Spark; returns
    ``{"passed", "violations", "rows", "failed_rules", "report_uri"}``, what
    :func:`mdlc_core.quality_job.run` returns, after writing the same report
    and metrics. ``previous_prefix``: as there (``"latest"``, a prefix, None).

    The snapshots are read by the executors (:func:`read_snapshot`): the
    driver reads the manifests, the reports and the rules' small results.
    ``store``: where the executors find the objects (default: EMRFS).
    """
    from mdlc_core import spark_io

    store = store or spark_io.Emrfs()
    model = config["name"]
    if previous_prefix == "latest":
        found = quality_job.latest_passed_before(s3, bucket, report_bucket, model, day)
        previous_prefix, previous_date = (
            (found[0], date.fromisoformat(found[1])) if found else (None, None))
    elif previous_prefix and previous_date is None:
        previous_date = day - timedelta(days=1)
    source = f"s3://{bucket}/{snapshot_prefix}"
    previous_source = f"s3://{bucket}/{previous_prefix}" if previous_prefix else None
    current = read_snapshot(spark, store, s3, bucket, snapshot_prefix, config)
    previous = None
    try:
        if previous_prefix:
            previous = read_snapshot(spark, store, s3, bucket, previous_prefix, config)
        report = check_read(spark, config, current, previous, snapshot_date=day,
                            previous_date=previous_date, source=source,
                            previous_source=previous_source)
    finally:
        for read in (current, previous):
            if read is not None:
                read.release()
    report_key = quality_job.report_key_of(model, day)
    s3.put_object(Bucket=report_bucket, Key=report_key, ContentType="application/json",
                  Body=json.dumps(report, indent=2).encode("utf-8"))
    quality_job.publish(cloudwatch, namespace, model, report)
    summary = report["summary"]
    failed = [rule["id"] for rule in report["rules"] if rule["status"] == "fail"]
    logger.info("quality check on Spark finished: passed=%s violations=%s failed=%s rows=%s",
                summary["passed"], summary["violations"], failed, summary["rows"])
    return {"passed": summary["passed"], "violations": summary["violations"],
            "rows": summary["rows"], "failed_rules": failed,
            "report_uri": f"s3://{report_bucket}/{report_key}"}


def read_snapshot(spark: Any, store: Any, s3: Any, bucket: str, prefix: str,
                  config: Mapping[str, Any]) -> Any:
    """The snapshot at ``prefix`` read by the executors
    (:func:`mdlc_core.spark_io.read_objects`): exactly the objects its
    committed manifest lists, each checked against its SHA-256 and read by the
    shared reader as the spec declares (the reader's types, and its record of
    unparseable values, which each object's summary brings back).

    Raises ``sourcing.SnapshotError`` (no committed manifest, an object that
    is not what it recorded) and ``tabular.DataError`` (an object that cannot
    be read as declared), naming the object."""
    import pyarrow as pa
    from mdlc_core import spark_io, tabular
    from mdlc_core.sourcing import committed_manifest

    columns = config["data"]["columns"]
    manifest = committed_manifest(s3, bucket, prefix)
    schema = pa.schema([pa.field(c["name"], tabular.ARROW_TYPES[c["type"]]) for c in columns])
    read = spark_io.read_objects(spark, store, spark_io.manifest_objects(manifest, bucket),
                                 schema, _quality_parser(columns))
    logger.info("the executors read %d objects of s3://%s/%s (its manifest), %d rows",
                len(read.objects), bucket, prefix, read.rows)
    return read


def _quality_parser(columns: Sequence[Mapping[str, Any]]) -> Any:
    """On an executor: one object read as the spec declares, and the reader's
    record of its unparseable values (positions in the object)."""
    def parse(body: bytes, stored: Any) -> tuple[Any, dict[str, Any]]:
        from dataclasses import asdict

        from mdlc_core import tabular

        table = tabular.read_bytes(body, stored.name, columns, file_format=stored.format)
        records = {name: asdict(record) for name, record in tabular.unparseable(table).items()}
        return table.replace_schema_metadata(None), {"unparseable": records}

    return parse


def _unparseable(read: Any) -> dict[str, Any]:
    """The objects' unparseable records merged as the shared reader merges a
    snapshot's files (``tabular.merge_unparseable``): counts added, positions
    offset by each object's first row, each kind's reason said once."""
    from mdlc_core import tabular

    return tabular.merge_unparseable(
        (offset, {name: tabular.Unparseable(**record)
                  for name, record in summary["unparseable"].items()})
        for summary, offset in zip(read.summaries, read.offsets(), strict=True))


def check_read(spark: Any, spec_config: Mapping[str, Any], current: Any, previous: Any = None,
               *, snapshot_date: date, previous_date: date | None = None,
               source: str | None = None, previous_source: str | None = None
               ) -> dict[str, Any]:
    """The quality report of snapshots the executors read (:func:`read_snapshot`):
    the rules compiled as :func:`mdlc_core.sql.quality.prepare` compiles them
    for a snapshot read whole (its types, row count and unparseable record),
    run on views of the executors' frames, each row at its position in the
    snapshot. The same report as :func:`check` of the same data."""
    from mdlc_core import spark_io
    from mdlc_core.sql import quality as sql_quality
    from mdlc_core.sql import rules as compiled

    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    columns = spec_config["data"]["columns"]
    if previous is not None and previous_date is None:
        previous_date = snapshot_date - timedelta(days=1)
    types = {c["name"]: _arrow_type(c["type"]) for c in columns}
    records = _unparseable(current)
    quality = spec_config["quality"]
    inputs = compiled.Inputs(
        key=spec_config["data"]["event_id"],
        units={c["name"]: c.get("unit") for c in columns},
        sample_size=int(quality.get("sample_size", 20)),
        types=types, unparseable=records, rows=current.rows, snapshot_date=snapshot_date,
        previous_types=None if previous is None else dict(types),
        previous_date=previous_date if previous is not None else None,
    )
    names = [c["name"] for c in columns]
    unparseable_rows = [(name, row, str(value)) for name, record in records.items()
                        for row, value in zip(record.rows, record.values, strict=True)]
    frames = {
        compiled.SNAPSHOT: spark_io.with_positions(spark, current, compiled.ROW)
        .select(*[f"`{n}`" for n in names], compiled.ROW),
        compiled.UNPARSEABLE: spark.createDataFrame(
            unparseable_rows, "column_name string, row_index long, raw_value string"),
    }
    if previous is not None:
        frames[compiled.PREVIOUS] = spark_io.with_positions(spark, previous, compiled.ROW) \
            .select(*[f"`{n}`" for n in names], compiled.ROW)
    plan = sql_quality.Plan(spec_config, compiled.compile_rules(quality["rules"], inputs),
                            frames, inputs)
    for name, frame in frames.items():
        frame.createOrReplaceTempView(name)
    try:
        with spark_io.executor_errors():
            return plan.report(lambda text: [row.asDict() for row in spark.sql(text).collect()],
                               "spark", source=source, previous_source=previous_source)
    finally:
        for name in frames:
            spark.catalog.dropTempView(name)


def _arrow_type(type_name: str) -> Any:
    from mdlc_core import tabular

    return tabular.ARROW_TYPES[type_name]


def load_config(path: str | None = None) -> dict[str, Any]:
    """The spec the job was shipped with: ``path``, else ``mdlc_config.json``
    at the root of a folder or zip on ``sys.path`` (the job's code archive,
    ``spark.submit.pyFiles``)."""
    if path:
        return parse_config(json.loads(Path(path).read_text(encoding="utf-8")))
    for entry in sys.path:
        location = Path(entry)
        if location.is_dir() and (location / CONFIG_FILE_NAME).is_file():
            return load_config(str(location / CONFIG_FILE_NAME))
        if location.is_file() and zipfile.is_zipfile(location):
            with zipfile.ZipFile(location) as archive:
                if CONFIG_FILE_NAME in archive.namelist():
                    return parse_config(json.loads(archive.read(CONFIG_FILE_NAME)))
    raise FileNotFoundError(f"no {CONFIG_FILE_NAME} at the root of a folder or zip on sys.path "
                            "(the job's code archive) and no --config given")


class Job(NamedTuple):
    """One ``--kind`` of the entry point: its own arguments (added to the common
    ones) and what it runs, returning the small JSON result the workflow reads.
    ``run(args, config, *, spark, s3, cloudwatch, scratch, store)``; ``store``
    (a :class:`mdlc_core.spark_io.ObjectStore`) is where its executors read
    and write objects.

    A NamedTuple, not a dataclass: the local stand-in runs this file with
    ``runpy`` under a module name absent from ``sys.modules``, where
    ``dataclass`` fails."""

    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[..., dict[str, Any]]


def _quality_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot-prefix", required=True)
    parser.add_argument("--datasets-bucket", required=True)
    parser.add_argument("--report-bucket", required=True)
    parser.add_argument("--namespace", default="MDLC/DataQuality")


def _quality(args: argparse.Namespace, config: Mapping[str, Any], *, spark: Any, s3: Any,
             cloudwatch: Any, scratch: str | Path | None, store: Any) -> dict[str, Any]:
    del scratch  # the executors read; nothing is downloaded by the job
    return run(config, args.date, spark=spark, s3=s3, cloudwatch=cloudwatch,
               bucket=args.datasets_bucket, snapshot_prefix=args.snapshot_prefix,
               report_bucket=args.report_bucket, namespace=args.namespace, store=store)


#: The kinds the entry point runs, by ``--kind``. A kind's module adds its
#: entry here; :data:`KINDS` and the construct's ``KINDS`` list the same names.
JOBS: dict[str, Job] = {"quality": Job(_quality_arguments, _quality),
                        "features": Job(spark_features.add_arguments, spark_features.run_job),
                        "monitoring": Job(spark_monitoring.arguments, spark_monitoring.run)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The common arguments, then those of ``--kind`` (unknown kinds and
    missing or unknown arguments exit with argparse's usage error)."""
    kind_parser = argparse.ArgumentParser(add_help=False)
    kind_parser.add_argument("--kind", required=True, choices=sorted(JOBS))
    known, _ = kind_parser.parse_known_args(argv)
    parser = argparse.ArgumentParser(description=f"MDLC Spark runner: {known.kind}")
    parser.add_argument("--kind", required=True, choices=sorted(JOBS))
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--result-bucket", required=True)
    parser.add_argument("--result-key", required=True, help="where the small JSON result goes")
    parser.add_argument("--kms-key", help="SSE-KMS key of the result object")
    parser.add_argument("--read-from", choices=READ_FROM, default="s3",
                        help="where the executors find the objects: s3 (EMRFS, s3:// URIs) "
                        "or local (copied to a local folder for local Spark, which has no S3 "
                        "file system)")
    parser.add_argument("--config", help="the spec as JSON; default: in the code archive")
    JOBS[known.kind].arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, spark: Any = None, s3: Any = None,
         cloudwatch: Any = None, scratch: str | Path | None = None, store: Any = None) -> int:
    """Run one job; writes the result to ``--result-bucket``/``--result-key``.

    ``store``: where the executors read and write objects (default: by
    ``--read-from``, :class:`~mdlc_core.spark_io.Emrfs` or, for ``local``,
    :class:`~mdlc_core.spark_io.Downloaded` through ``s3`` into a folder under
    ``scratch``, SSE-KMS with ``--kms-key``; the local runtime passes its own).
    An unusable input raises (the driver exits non-zero, the job run FAILS and
    so does the workflow step), as an exception fails the Lambda runner."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    config = load_config(args.config)
    if s3 is None or cloudwatch is None:
        import boto3

        s3 = s3 or boto3.client("s3")
        cloudwatch = cloudwatch or boto3.client("cloudwatch")
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.appName(f"mdlc-{config['name']}-{args.kind}").getOrCreate()
    with contextlib.ExitStack() as stack:
        if store is None:
            from mdlc_core import spark_io

            store = spark_io.Emrfs()
            if args.read_from == "local":
                folder = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="mdlc-spark-objects-", dir=scratch))
                store = spark_io.Downloaded(s3, folder, kms_key=args.kms_key)
        result = JOBS[args.kind].run(args, config, spark=spark, s3=s3, cloudwatch=cloudwatch,
                                     scratch=scratch, store=store)
    encryption = ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": args.kms_key}
                  if args.kms_key else {})
    s3.put_object(Bucket=args.result_bucket, Key=args.result_key,
                  ContentType="application/json",
                  Body=json.dumps(result, sort_keys=True).encode("utf-8"), **encryption)
    logger.info("result: %s", json.dumps(result, sort_keys=True))
    return 0


#: The ``--kind`` values, in order.
KINDS = tuple(JOBS)


if __name__ == "__main__":
    sys.exit(main())
