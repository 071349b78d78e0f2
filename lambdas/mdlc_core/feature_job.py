"""Batch features of one day, from the dated snapshots to the features bucket.

The S3 side of stage 3, shared by every runner: the ``feature_batch`` Lambda
handler, the ``processing_job`` entry (``--kind features``) and the Spark
job (``spark_job --kind features``, :mod:`mdlc_core.spark_features`) call
:func:`run` with their own boto3 client, so a day computed by any runner
has the same rows, the same files and the same result.

Reads the newest version of the snapshot of ``date`` and of the days before
it that the longest window needs (missing earlier days are skipped and
logged; a missing day itself is an error): exactly the objects each
committed manifest lists, at the versions it names, checked against their
SHA-256, CSV plain or compressed, or Parquet (read by DuckDB itself, below;
by ``mdlc_core.tabular``'s reader, the one sourcing uses, on the Spark
engine's driver path). It writes to the features bucket:

* ``features/<model>/dt=<date>/features.parquet``: one row per event of the
  day's snapshot (training rows; earlier days are history only), with what a
  training run reads from it (``features.training_table``): the event id,
  the entity key, the timestamp, the label (typed as ``data.columns``
  declares it; absent when the day's snapshot has no label column), every
  raw model input and the derived features as of the event itself;
* ``features/<model>/dt=<date>/entities.parquet``: one row per entity as of
  the end of the day (batch inference).

Returns ``{"date", "features_key", "entities_key", "rows", "entities",
"snapshots"}`` (``snapshots``: the manifest keys read, for lineage).

The engine is the spec's ``features.engine``: ``duckdb``, the only one since
the NumPy batch engine was retired (issue #18; a configuration synthesized
for it is refused, saying what to do): the features compiled to SQL
(:mod:`mdlc_core.sql.features`). The window never enters Python: each
object is downloaded to the job's scratch folder (its SHA-256 checked) and
read and typed by DuckDB itself (:mod:`mdlc_core.sql.feature_window`), and
the tables are streamed from DuckDB to Parquet files of the same schema
whichever engine wrote them (:func:`training_schema`, :func:`entity_schema`),
so memory is DuckDB's ``memory_limit``
(:func:`~mdlc_core.sql.quality.memory_limit_for` the runner's memory),
spilling past it to the scratch folder (at most
:func:`~mdlc_core.sql.quality.temp_size_for` its disk). ``engine="spark"``
with a session is the same compiled SQL run by Spark
(:func:`mdlc_core.spark_features.run_plan`) with the window read on the
driver as Python lists, the same two tables; the Spark job itself reads on
its executors (:mod:`mdlc_core.spark_features`).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from . import spill as spill_folders
from .features import FeatureError, FeatureSet
from .layout import Layout
from .sourcing import (
    check_hash,
    latest_manifest,
    object_format,
    read_snapshot_object,
    version_args,
)

logger = logging.getLogger("mdlc.feature_job")

#: ``features.engine`` values; a config without one (synthesized before there
#: was a choice) runs the default. ``embedded`` (the NumPy engine) was retired.
ENGINES = ("duckdb",)
DEFAULT_ENGINE = "duckdb"
#: The engine of the Spark runner (``features.runner: spark``): not a
#: ``features.engine`` value, since it needs the job's Spark session.
SPARK = "spark"


def checked_engine(engine: str) -> str:
    """``engine`` when it is one of :data:`ENGINES` or :data:`SPARK`; else the
    error saying what to do (a configuration synthesized for the retired
    NumPy engine: the spec now refuses it, so only an old deployed function
    can carry one)."""
    if engine in (*ENGINES, SPARK):
        return engine
    retired = ("; the embedded (NumPy) engine was retired: synthesize and deploy the stack "
               "again with features.engine removed or set to duckdb, which writes the same "
               "tables") if engine == "embedded" else ""
    raise ValueError(f"features.engine must be one of {ENGINES}, got {engine!r}{retired}")


def engine_tables(engine: str, *, spark: Any = None) -> tuple[Any, Any]:
    """``(training_table, entity_table)`` computed by DuckDB, or by ``spark``
    (a SparkSession) for :data:`SPARK`, on events in memory. A runtime without
    DuckDB says so."""
    if checked_engine(engine) == SPARK:
        if spark is None:
            raise ValueError("the spark engine needs a Spark session (spark=...); it is "
                             "the Spark runner's (spark_job --kind features)")
        from .spark_features import tables

        return tables(spark)
    sql_features, _, sql_quality = _duckdb_modules()
    memory_limit_for = sql_quality.memory_limit_for
    # A Lambda function's memory, when the job runs in one: DuckDB's limit
    # leaves room for Python and the events held as lists.
    memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    options = sql_features.DuckDB(memory_limit=memory_limit_for(int(memory_mb))) \
        if memory_mb else sql_features.DuckDB()

    def training(events: Any, features: FeatureSet) -> dict[str, list[Any]]:
        return sql_features.training_table(events, features, duckdb_options=options)

    def entities(events: Any, features: FeatureSet, day: date) -> dict[str, list[Any]]:
        return sql_features.entity_table(events, features, day, duckdb_options=options)

    return training, entities


def read_object(
    s3: Any, bucket: str, entry: Mapping[str, Any], columns: list[str], *,
    optional: Mapping[str, str] | None = None,
) -> dict[str, list[Any]]:
    """The ``columns`` of one snapshot object (a manifest entry: its key, the
    version and SHA-256 of the copy, its format) as Python lists.

    CSV columns are the text as written (the engine parses ids, timestamps and
    numbers itself, timestamps in their column's unit); Parquet columns keep
    their stored types. ``optional``: more columns, by name with their declared
    type, read only when the object has them and converted to that type (as
    the quality check reads them); an absent one is not in the result.
    """
    from .tabular import DataError, convert, read_bytes

    name = f"s3://{bucket}/{entry['key']}"
    body = read_snapshot_object(s3, bucket, entry)
    try:
        table = read_bytes(body, name, file_format=object_format(entry), text=True)
    except DataError as error:
        raise FeatureError(str(error)) from error
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise FeatureError(f"{name} has no column(s) {missing}")
    out = {c: table.column(c).to_pylist() for c in columns}
    for column, type_name in (optional or {}).items():
        if column in table.column_names and column not in out:
            out[column] = convert(table.column(column), type_name).to_pylist()
    return out


def training_schema(features: FeatureSet, names: Sequence[str], label_type: str) -> Any:
    """The training table's Parquet schema, whichever engine wrote it: ids and
    keys as text, the timestamp as UTC microseconds, the label as ``data.columns``
    declares it, counts as int64, everything else double (a column with no value
    keeps its type, never Arrow's ``null``)."""
    import pyarrow as pa

    from .tabular import ARROW_TYPES

    counts = {a.name for a in features.aggregates if a.function == "count"}
    fields = []
    for name in names:
        if name in (features.event_id, features.entity_key):
            kind = pa.string()
        elif name == features.timestamp:
            kind = pa.timestamp("us", tz="UTC")
        elif name == features.label:
            kind = ARROW_TYPES[label_type]
        else:
            kind = pa.int64() if name in counts else pa.float64()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def entity_schema(features: FeatureSet) -> Any:
    """The entity table's Parquet schema (``features.entity_table_schema``)."""
    return training_schema(features, features.entity_table_schema, "string")


def write_parquet(s3: Any, bucket: str, key: str, columns: dict[str, list[Any]],
                  schema: Any = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def upload(s3: Any, bucket: str, key: str, path: Path) -> None:
    """A local file to ``key``, streamed from disk."""
    with path.open("rb") as body:
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def download(s3: Any, bucket: str, entry: Mapping[str, Any], target: Path) -> Path:
    """One manifest entry streamed to ``target`` (the version it names, checked
    against its SHA-256: ``sourcing.SnapshotError`` names the object). One
    GetObject, read in blocks: ``download_file``'s transfer threads cost
    about 10 ms an object, which a window of small daily objects pays 30
    times an invocation."""
    import hashlib

    target.parent.mkdir(parents=True, exist_ok=True)
    body = s3.get_object(Bucket=bucket, Key=entry["key"], **version_args(entry))["Body"]
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for block in body.iter_chunks(1 << 20):
            digest.update(block)
            out.write(block)
    check_hash(bucket, entry, digest.hexdigest())
    return target


def _duckdb_modules() -> tuple[Any, Any, Any]:
    """``mdlc_core.sql``'s features, feature_window and quality modules, or the
    error saying this runtime has no DuckDB (they import it at once)."""
    try:
        from .sql import feature_window
        from .sql import features as sql_features
        from .sql import quality as sql_quality
    except ImportError as error:
        raise FeatureError(
            f"features.engine is duckdb but this runtime cannot import DuckDB ({error}); "
            "install duckdb and sqlglot where the job runs (the data layer has them)"
        ) from error
    return sql_features, feature_window, sql_quality


def window_manifests(s3: Any, bucket: str, model: str, features: FeatureSet,
                     day: date) -> list[tuple[int, str, dict[str, Any]]]:
    """``(days back, manifest key, manifest)`` of the snapshots the window
    reads, oldest first (missing earlier days are skipped and logged; a
    missing day itself is an error)."""
    found = []
    for back in range(max(features.horizon(), 1) - 1, -1, -1):
        latest = latest_manifest(s3, bucket, model, day - timedelta(days=back))
        if latest is None:
            if back == 0:
                raise FeatureError(f"no snapshot of {day.isoformat()} for model {model!r}")
            logger.warning("snapshot missing: %s", (day - timedelta(days=back)).isoformat())
            continue
        found.append((back, *latest))
    return found


def run(
    config: Mapping[str, Any],
    day: date,
    *,
    s3: Any,
    datasets_bucket: str,
    features_bucket: str,
    model: str | None = None,
    engine: str | None = None,
    spark: Any = None,
    scratch: str | Path | None = None,
    memory_mb: int | None = None,
    storage_mb: int | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Compute and write the features of ``day``; see the module docstring.

    ``engine`` overrides ``features.engine`` (``mdlc features --engine``);
    ``"spark"`` (:data:`SPARK`) computes them on ``spark``, a SparkSession,
    the window read into the driver.
    On DuckDB: ``scratch`` holds the downloaded objects and the spill
    (default: the system's temporary folder); ``memory_mb`` (default: the
    Lambda function's, ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``) bounds DuckDB's
    memory limit and ``storage_mb`` (the disk under ``scratch``) its spill;
    without them DuckDB gets its default limit and 90% of the free disk.
    ``memory_limit`` (``"512MB"``) sets DuckDB's limit itself, ``threads``
    its threads (default: one per core; each needs its own buffers).
    """
    features = FeatureSet.from_config(config)
    engine = checked_engine(engine or (config.get("features") or {}).get("engine")
                            or DEFAULT_ENGINE)
    model = model or config["name"]
    if engine == "duckdb":
        return _run_duckdb(config, features, day, s3=s3, datasets_bucket=datasets_bucket,
                           features_bucket=features_bucket, model=model, scratch=scratch,
                           memory_mb=memory_mb, storage_mb=storage_mb,
                           memory_limit=memory_limit, threads=threads)
    compute_training, compute_entities = engine_tables(engine, spark=spark)
    columns = features.entity_table_columns
    label, label_type = _label(config, features)
    optional = {label: label_type} if label else {}
    merged: dict[str, list[Any]] = {c: [] for c in [*columns, *optional]}
    labelled_today = False
    today_ids: set[str] = set()
    earlier_ids: set[str] = set()
    manifests = []
    # Oldest first: an event id repeated in a later snapshot keeps its first row.
    for back, manifest_key, manifest in window_manifests(s3, datasets_bucket, model, features,
                                                         day):
        manifests.append(manifest_key)
        for obj in manifest["objects"]:
            part = read_object(s3, datasets_bucket, obj, columns, optional=optional)
            size = len(part[features.event_id])
            for c in merged:
                merged[c].extend(part.get(c) or [None] * size)
            if label and label in part and back == 0:
                labelled_today = True
            ids = today_ids if back == 0 else earlier_ids
            ids.update(str(v) for v in part[features.event_id])
    if label and not labelled_today:
        # The day's snapshot has no label (scoring data): no all-null column.
        del merged[label]
    per_event = compute_training(merged, features)
    # A row redelivered into today's snapshot stays a training row of its first day.
    fresh = today_ids - earlier_ids
    keep = [i for i, event_id in enumerate(per_event[features.event_id]) if event_id in fresh]
    rows = {name: [values[i] for i in keep] for name, values in per_event.items()}
    entities = compute_entities(merged, features, day)
    prefix = Layout(model).feature_snapshot(day.isoformat())
    write_parquet(s3, features_bucket, prefix + "features.parquet", rows,
                  training_schema(features, list(rows), label_type))
    write_parquet(s3, features_bucket, prefix + "entities.parquet", entities,
                  entity_schema(features))
    return _outcome(engine, day, prefix, len(keep), len(entities[features.entity_key]),
                    manifests)


def _label(config: Mapping[str, Any], features: FeatureSet) -> tuple[str | None, str]:
    """The label column the training rows carry, and its declared type. It is
    read when a snapshot object has it, typed as declared: a CSV snapshot holds
    text, and the training channels need numbers."""
    columns = features.entity_table_columns
    label = features.label if features.label not in (None, *columns) else None
    declared = {c["name"]: c["type"] for c in config["data"].get("columns") or []}
    return label, declared.get(label, "string") if label else "string"


def _outcome(engine: str, day: date, prefix: str, rows: int, entities: int,
             manifests: list[str]) -> dict[str, Any]:
    outcome = {
        "date": day.isoformat(),
        "features_key": prefix + "features.parquet",
        "entities_key": prefix + "entities.parquet",
        "rows": rows,
        "entities": entities,
        "snapshots": manifests,
    }
    logger.info("features written (%s engine): %s", engine, outcome)
    return outcome


def _run_duckdb(config: Mapping[str, Any], features: FeatureSet, day: date, *, s3: Any,
                datasets_bucket: str, features_bucket: str, model: str,
                scratch: str | Path | None, memory_mb: int | None,
                storage_mb: int | None, memory_limit: str | None,
                threads: int | None) -> dict[str, Any]:
    """:func:`run` on DuckDB, the window read by DuckDB from the scratch folder."""
    _, feature_window, sql_quality = _duckdb_modules()
    if memory_mb is None and os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"):
        memory_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    label, label_type = _label(config, features)
    manifests = window_manifests(s3, datasets_bucket, model, features, day)
    prefix = Layout(model).feature_snapshot(day.isoformat())
    # DuckDB's spill folder is the process's (its database is kept for the
    # next run, feature_window.session); the run's files are in its own folder.
    spill = spill_folders.folder("features", scratch)
    with tempfile.TemporaryDirectory(prefix="mdlc-features-", dir=scratch) as scratch_dir:
        folder = Path(scratch_dir)
        limit = memory_limit or (sql_quality.memory_limit_for(memory_mb) if memory_mb
                                 else sql_quality.DEFAULT_MEMORY_LIMIT)
        with feature_window.session(spill, memory_limit=limit, threads=threads) as con:
            window = feature_window.Window(con, features, folder / "staged", label=label,
                                           label_type=label_type, inputs=features.inputs)
            try:
                count = 0
                for back, _, manifest in manifests:
                    for entry in manifest["objects"]:
                        path = download(s3, datasets_bucket, entry,
                                        folder / "objects" / f"{count:06d}")
                        count += 1
                        window.add(path, f"s3://{datasets_bucket}/{entry['key']}",
                                   object_format(entry), today=back == 0)
                if storage_mb:
                    used = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                    size = sql_quality.temp_size_for(storage_mb, used)
                    con.execute(f"SET max_temp_directory_size = '{size}'")
                logger.info("DuckDB: memory_limit %s, spilling to %s; %d objects in the window",
                            limit, spill, count)
                rows = window.training_table(folder / "features.parquet")
                entities = window.entity_table(folder / "entities.parquet", day)
            finally:
                window.close()
        upload(s3, features_bucket, prefix + "features.parquet", folder / "features.parquet")
        upload(s3, features_bucket, prefix + "entities.parquet", folder / "entities.parquet")
    return _outcome("duckdb", day, prefix, rows, entities, [key for _, key, _ in manifests])
