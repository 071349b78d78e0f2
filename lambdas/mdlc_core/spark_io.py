"""What the Spark kinds read and write: S3 objects by the executors, never through the driver.

On EMR Serverless the driver's memory is one machine's: a window or a day
that passes through it (downloaded, parsed, handed to Spark as an Arrow
frame, collected back and written) is bounded by it. So the Spark kinds
(:mod:`mdlc_core.spark_job`, :mod:`mdlc_core.spark_features`,
:mod:`mdlc_core.spark_monitoring`) read and write their data here, where only
metadata reaches the driver:

* **Reading** (:func:`read_objects`): the driver reads the committed
  manifest (small JSON) and hands Spark the objects' locations. The
  executors load each object's bytes (Spark's ``binaryFile`` source, so
  EMRFS on EMR), check them against the manifest's SHA-256 and parse them
  with the shared reader (:mod:`mdlc_core.tabular`, the one every engine
  uses: the same types, null markers, compression, unparseable values and
  errors), as Arrow batches (``mapInArrow``). What comes back to the driver
  is one small row per object: its row count and the reader's record of
  unparseable values.
* **Writing** (:func:`write_parquet`): the executors write the frame as one
  Parquet part file under a staging prefix of the run (``df.write.parquet``:
  EMRFS, SSE-KMS by the job's ``spark.hadoop.fs.s3.*`` settings); the
  driver then copies that object server-side to its final key (S3
  ``CopyObject``, SSE-KMS with the job's key) and deletes the staging
  objects. One part file, because the readers downstream (training input,
  batch inference, the local runtime) read one object per key.

Why the executors hash in the same pass as they parse, not the driver: a
hash on the driver is a read of every byte on the driver, the ceiling this
module removes; a separate distributed hash pass would read every object
twice. One pass checks and parses the same bytes, so the bytes parsed are
the bytes checked. EMRFS reads an object's current version, not the version
a manifest names: an object overwritten after its manifest was committed
has other bytes, and fails its hash check naming the object.

Where the executors find an object is an :class:`ObjectStore`:
:class:`Emrfs` (``s3://`` URIs, EMR Serverless) or :class:`Downloaded`
(local Spark, which has no S3 file system: the objects are copied to a local
folder through an S3 client, and what Spark wrote there is uploaded; the
local runtime's stand-in for EMR Serverless uses it as the job's role).

Limits: ``binaryFile`` holds one object in an executor's memory (at most
2 GiB; EMR's ``spark.executor.memory`` must hold about three times the
largest object: its bytes, their Arrow copy and the parsed table); the
output file is written by one task (its memory is the Parquet writer's row
groups, not the table).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import pyarrow as pa

#: The columns every frame of :func:`read_objects` has besides the parsed ones:
#: the object's index in the list read, the row's position in its object, and
#: (on the one summary row per object) the object's summary as JSON.
OBJECT, LOCAL_ROW, SUMMARY = "_mdlc_object", "_mdlc_local_row", "_mdlc_summary"
#: Rows per Arrow batch an executor yields.
BATCH_ROWS = 65_536
#: The EMRFS settings (``spark.hadoop.`` + Hadoop's name) that make every
#: object Spark writes SSE-KMS with one key: what the runner sets on EMR
#: Serverless, and what :class:`Downloaded` applies to what it uploads.
EMRFS_SSE = "spark.hadoop.fs.s3.enableServerSideEncryption"
EMRFS_SSE_KEY = "spark.hadoop.fs.s3.serverSideEncryption.kms.keyId"
#: Up to this size the staged part is copied by one CopyObject (its limit is
#: 5 GiB); above it, by a multipart copy (UploadPartCopy), still server-side.
COPY_THRESHOLD = 4 * 2**30
COPY_PART = 512 * 2**20


class ObjectStore(Protocol):
    """Where Spark's executors read and write S3 objects."""

    def read_location(self, bucket: str, key: str) -> str:
        """The location Spark reads the object ``bucket``/``key`` from."""
        ...

    def write_location(self, bucket: str, prefix: str) -> str:
        """The folder Spark writes to for objects under ``bucket``/``prefix``."""
        ...

    def written(self, bucket: str, prefix: str) -> None:
        """Called after Spark wrote to :meth:`write_location`: the objects are in S3 after it."""
        ...


class Emrfs:
    """EMR Serverless: Spark reads and writes ``s3://`` URIs through EMRFS, as the job's role."""

    def read_location(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def write_location(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}"

    def written(self, bucket: str, prefix: str) -> None:
        del bucket, prefix  # EMRFS wrote to S3 itself


class Downloaded:
    """Local Spark, which has no S3 file system: objects are copied through
    ``s3`` (a boto3 client) into ``folder`` for the executors to read, and
    what they write there is uploaded, SSE-KMS with ``kms_key`` when one is
    given (as EMRFS does with :data:`EMRFS_SSE_KEY`).

    It stands in for EMRFS (``spark_job --read-from local``, and the local
    runtime's EMR Serverless): the copies are made by this file system, not
    by the job, which still only hands Spark locations. Like EMRFS it reads
    an object's current version."""

    def __init__(self, s3: Any, folder: str | Path, *, kms_key: str | None = None) -> None:
        self.s3 = s3
        self.folder = Path(folder)
        self.kms_key = kms_key

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.folder / bucket / key).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ValueError(f"s3://{bucket}/{key}: not a key under the bucket")
        return path

    def read_location(self, bucket: str, key: str) -> str:
        path = self._path(bucket, key)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, key, str(path))
        return _file_uri(path)

    def write_location(self, bucket: str, prefix: str) -> str:
        return _file_uri(self._path(f"_written/{bucket}", prefix))

    def written(self, bucket: str, prefix: str) -> None:
        root = self._path(f"_written/{bucket}", prefix)
        extra = ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key}
                 if self.kms_key else {})
        for file in sorted(root.rglob("*")):
            # Hadoop's local file system writes a .crc beside each file; EMRFS does not.
            if file.is_file() and not file.name.endswith(".crc"):
                key = posixpath.join(prefix.rstrip("/"), file.relative_to(root).as_posix())
                self.s3.put_object(Bucket=bucket, Key=key, Body=file.read_bytes(), **extra)


def _file_uri(path: Path) -> str:
    """``file://`` and the path as written: Hadoop does not decode the
    percent-escapes of ``Path.as_uri`` (``dt=`` would become ``dt%3D``)."""
    return f"file://{path}"


@dataclass(frozen=True)
class StoredObject:
    """One object to read: where it is, what its manifest recorded
    (``sha256``, ``format``: None when the manifest has none) and ``group``,
    a number the kind gives it (e.g. which day of a window it belongs to)."""

    bucket: str
    key: str
    sha256: str | None = None
    format: str | None = None
    group: int = 0

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def manifest_objects(manifest: Mapping[str, Any], bucket: str, group: int = 0
                     ) -> list[StoredObject]:
    """The objects a committed manifest lists, in its order."""
    return [StoredObject(bucket, str(entry["key"]), entry.get("sha256") or None,
                         str(entry["format"]) if entry.get("format") else None, group)
            for entry in manifest["objects"]]


#: Parses one object on an executor: (its bytes, the object) -> the Arrow table
#: of the frame's columns (without :data:`OBJECT`, :data:`LOCAL_ROW`,
#: :data:`SUMMARY`), and what its summary adds (JSON-serializable).
Parser = Callable[[bytes, StoredObject], tuple[pa.Table, Mapping[str, Any]]]


@dataclass
class Objects:
    """What :func:`read_objects` read: ``frame``, the parsed rows (persisted on
    the executors; :meth:`release` frees them) with :data:`OBJECT` and
    :data:`LOCAL_ROW`, and per object in the order given, its summary:
    ``rows`` plus what the parser added."""

    frame: Any
    summaries: list[dict[str, Any]]
    objects: list[StoredObject]
    #: The frame Spark persisted (``frame`` is a filter of it, which
    #: ``unpersist`` would not match): what :meth:`release` frees.
    persisted: Any = None

    @property
    def rows(self) -> int:
        return sum(int(s["rows"]) for s in self.summaries)

    def offsets(self) -> list[int]:
        """Each object's first row position in the concatenation, in order."""
        out, total = [], 0
        for summary in self.summaries:
            out.append(total)
            total += int(summary["rows"])
        return out

    def release(self) -> None:
        (self.persisted if self.persisted is not None else self.frame).unpersist()


#: The errors an executor's parse raises that the driver raises again as
#: themselves (the same types the other runners raise), by class name: the
#: snapshot kinds' and the monitoring kind's (a prediction or label object
#: that cannot be read).
def _known_errors() -> dict[str, type[Exception]]:
    from .batch_features import FeatureError
    from .monitoring import MonitoringInputError
    from .sourcing import SnapshotError
    from .tabular import DataError

    return {cls.__name__: cls for cls in (SnapshotError, DataError, FeatureError,
                                          MonitoringInputError)}


_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+): (.+)$", re.MULTILINE)


def executor_error(error: BaseException) -> BaseException | None:
    """The mdlc error an executor raised (a :class:`SnapshotError`,
    :class:`DataError`, :class:`FeatureError` or :class:`MonitoringInputError`
    naming the object) out of
    Spark's wrapping of it, or None when ``error`` is not one."""
    known = _known_errors()
    found = None
    for match in _RAISED.finditer(str(error)):
        if match.group(1) in known:
            found = known[match.group(1)](match.group(2).strip())
    return found


@contextlib.contextmanager
def executor_errors() -> Iterator[None]:
    """Raise an executor's mdlc error as itself (see :func:`executor_error`)."""
    try:
        yield
    except Exception as error:
        found = executor_error(error)
        if found is None:
            raise
        raise found from error


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark schema of an Arrow schema of the reader's and the SQL
    relations' types (string, int64, double, bool, timestamp[us, UTC]), every
    field nullable."""
    from pyspark.sql import types as T

    def kind(arrow: pa.DataType) -> Any:
        if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
            return T.StringType()
        if pa.types.is_integer(arrow):
            return T.LongType()
        if pa.types.is_floating(arrow):
            return T.DoubleType()
        if pa.types.is_boolean(arrow):
            return T.BooleanType()
        if pa.types.is_timestamp(arrow):
            return T.TimestampType()
        raise TypeError(f"no Spark type for the Arrow type {arrow}")

    return T.StructType([T.StructField(f.name, kind(f.type), True) for f in schema])


def _output_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema of what an executor yields: the parsed columns as
    Spark takes them back (int64, timestamps in UTC), then the three of its own."""
    fields = []
    for field in schema:
        arrow = field.type
        if pa.types.is_integer(arrow):
            arrow = pa.int64()
        elif pa.types.is_large_string(arrow):
            arrow = pa.string()
        elif pa.types.is_timestamp(arrow):
            arrow = pa.timestamp("us", tz="UTC")
        fields.append(pa.field(field.name, arrow))
    return pa.schema([*fields, pa.field(OBJECT, pa.int64()), pa.field(LOCAL_ROW, pa.int64()),
                      pa.field(SUMMARY, pa.string())])


def _location_key(location: str) -> tuple[str, str, str]:
    """A location as Spark's ``binaryFile`` ``path`` spells it or as given
    (``file:/x`` and ``file:///x`` alike)."""
    parsed = urlparse(location)
    return parsed.scheme, parsed.netloc, unquote(parsed.path)


def _parse_each(batches: Iterator[pa.RecordBatch], objects: Mapping[tuple[str, str, str], int],
                listed: Sequence[StoredObject], parse: Parser, schema: pa.Schema
                ) -> Iterator[pa.RecordBatch]:
    """On an executor: each ``binaryFile`` row (one object) checked against its
    manifest's SHA-256 and parsed, yielded as batches of ``schema``, then its
    summary row."""
    from .sourcing import SnapshotError

    for batch in batches:
        paths, contents = batch.column("path").to_pylist(), batch.column("content")
        for row, path in enumerate(paths):
            index = objects.get(_location_key(path))
            if index is None:
                raise SnapshotError(f"{path}: read by Spark but not an object of the manifest")
            stored = listed[index]
            body = contents[row].as_py() or b""
            digest = hashlib.sha256(body).hexdigest()
            if stored.sha256 and digest != stored.sha256:
                raise SnapshotError(
                    f"{stored.name}: content differs from its manifest (sha256 {digest}, "
                    f"the manifest recorded {stored.sha256})")
            table, summary = parse(body, stored)
            del body
            table = table.select(schema.names[:-3]).cast(pa.schema(list(schema)[:-3]))
            n = table.num_rows
            table = table.append_column(OBJECT, pa.array([index] * n, pa.int64())) \
                .append_column(LOCAL_ROW, pa.array(range(n), pa.int64())) \
                .append_column(SUMMARY, pa.nulls(n, pa.string()))
            yield from table.to_batches(max_chunksize=BATCH_ROWS)
            record = {"rows": n, **summary}
            nulls = {name: pa.nulls(1, schema.field(name).type) for name in schema.names[:-3]}
            yield pa.record_batch({**nulls, OBJECT: pa.array([index], pa.int64()),
                                   LOCAL_ROW: pa.nulls(1, pa.int64()),
                                   SUMMARY: pa.array([json.dumps(record)], pa.string())},
                                  schema=schema)


def read_objects(spark: Any, store: ObjectStore, objects: Sequence[StoredObject],
                 schema: pa.Schema, parse: Parser) -> Objects:
    """Read ``objects`` on the executors (see the module docstring): each
    checked against its SHA-256 and parsed by ``parse`` into ``schema``'s
    columns (each field of ``schema`` must be a type :func:`spark_schema`
    knows). The frame is persisted (memory, then the executors' disks): the
    objects are read once for the summaries and every query after them.

    Raises :class:`~mdlc_core.sourcing.SnapshotError` (an object that is not
    what its manifest recorded), and whatever ``parse`` raises
    (:class:`~mdlc_core.tabular.DataError`, ...), as the driver's own
    exception, naming the object.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    listed = list(objects)
    if not listed:
        raise ValueError("no objects to read")
    locations = [store.read_location(o.bucket, o.key) for o in listed]
    by_location = {_location_key(location): index for index, location in enumerate(locations)}
    if len(by_location) != len(listed):
        raise ValueError(f"an object is listed twice: {[o.name for o in listed]}")
    output = _output_schema(schema)

    def parse_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _parse_each(batches, by_location, listed, parse, output)

    conf = spark.conf
    # One object per Arrow batch into the executor's Python: a batch of many
    # objects' bytes would hold them all in memory at once.
    before = conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1")
    try:
        with executor_errors():
            frame = (spark.read.format("binaryFile").load(locations).select("path", "content")
                     .mapInArrow(parse_partition, spark_schema(output))
                     .persist(StorageLevel.MEMORY_AND_DISK))
            rows = frame.where(F.col(SUMMARY).isNotNull()).select(OBJECT, SUMMARY).collect()
    finally:
        conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", before)
    summaries: list[dict[str, Any] | None] = [None] * len(listed)
    for row in rows:
        summaries[int(row[OBJECT])] = json.loads(row[SUMMARY])
    unread = [listed[i].name for i, s in enumerate(summaries) if s is None]
    if unread:
        frame.unpersist()
        raise ValueError(f"Spark did not read {unread}")
    data = frame.where(F.col(SUMMARY).isNull()).drop(SUMMARY)
    return Objects(data, [s for s in summaries if s is not None], listed, frame)


def with_positions(spark: Any, read: Objects, column: str) -> Any:
    """``read.frame`` with ``column``: each row's position in the objects'
    concatenation (its object's offset plus its position in the object), as
    the shared reader numbers the rows of a snapshot read whole."""
    from pyspark.sql import functions as F

    offsets = spark.createDataFrame([(i, o) for i, o in enumerate(read.offsets())],
                                    f"{OBJECT} long, _mdlc_offset long")
    return (read.frame.join(F.broadcast(offsets), OBJECT)
            .withColumn(column, F.col(LOCAL_ROW) + F.col("_mdlc_offset"))
            .drop("_mdlc_offset"))


def nullable(spark: Any, frame: Any) -> Any:
    """``frame`` with every column nullable, as the other engines' Parquet has
    them (``pyarrow`` writes nullable fields; Spark writes ``COALESCE(n, 0)``
    as required). A union with an empty frame of the nullable schema: no data
    moves."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in frame.schema])
    return frame.unionByName(spark.createDataFrame([], schema))


def write_parquet(spark: Any, frame: Any, *, store: ObjectStore, s3: Any, bucket: str, key: str,
                  staging_bucket: str, staging_prefix: str, kms_key: str | None) -> None:
    """Write ``frame`` (in its order) as the one Parquet object ``bucket``/``key``
    from the executors: one part file under ``staging_prefix`` (emptied first),
    copied server-side to ``key`` (SSE-KMS with ``kms_key``), the staging
    objects deleted. Timestamps are written as Parquet's UTC microseconds."""
    from boto3.s3.transfer import TransferConfig

    staging_prefix = staging_prefix.rstrip("/") + "/"
    _delete_under(s3, staging_bucket, staging_prefix)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    location = store.write_location(staging_bucket, staging_prefix)
    nullable(spark, frame).coalesce(1).write.mode("overwrite").parquet(location)
    store.written(staging_bucket, staging_prefix)
    parts = [item["Key"] for item in _listed(s3, staging_bucket, staging_prefix)
             if posixpath.basename(item["Key"]).startswith("part-")
             and item["Key"].endswith(".parquet")]
    if len(parts) != 1:
        raise RuntimeError(f"Spark wrote {len(parts)} Parquet parts under "
                           f"s3://{staging_bucket}/{staging_prefix}, expected one: {parts}")
    extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
    s3.copy({"Bucket": staging_bucket, "Key": parts[0]}, bucket, key, ExtraArgs=extra or None,
            Config=TransferConfig(multipart_threshold=COPY_THRESHOLD,
                                  multipart_chunksize=COPY_PART))
    _delete_under(s3, staging_bucket, staging_prefix)


def _listed(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    return [item for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for item in page.get("Contents", [])]


def _delete_under(s3: Any, bucket: str, prefix: str) -> None:
    keys = [{"Key": item["Key"]} for item in _listed(s3, bucket, prefix)]
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start:start + 1000],
                                                 "Quiet": True})


__all__ = ["EMRFS_SSE", "EMRFS_SSE_KEY", "LOCAL_ROW", "OBJECT", "Downloaded", "Emrfs",
           "ObjectStore", "Objects", "StoredObject", "executor_error", "executor_errors",
           "manifest_objects", "nullable", "read_objects", "spark_schema", "with_positions",
           "write_parquet"]
