"""Data sourcing: immutable, dated snapshots with a manifest.

A snapshot of day ``D`` is ``datasets/<model>/dt=D/`` in the datasets
bucket (``dt=D/v=2/`` and so on for explicit new versions). Its
``_manifest.json`` is written last, with a conditional put
(``If-None-Match: *``): the manifest is the commit point, so two concurrent
runs cannot both create the same snapshot and a crashed run leaves no
manifest (the next run completes it). See docs/sourcing.md.

Which source objects belong to day ``D`` (:class:`S3PrefixSource`):

* if the source has a partition folder ``<prefix>dt=D/``, every object
  under it;
* otherwise every object under ``<prefix>`` whose LastModified falls on
  ``D`` (UTC), leaving out objects inside any ``dt=`` partition folder
  (they belong to their partition's day).

New source kinds subclass :class:`Source` and register with
:func:`register_source`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

MANIFEST_NAME = "_manifest.json"
_PARTITION = re.compile(r"(^|/)dt=\d{4}-\d{2}-\d{2}/")


class SourcingError(Exception):
    """A snapshot that cannot be built (no data, a conflicting existing object)."""


@dataclass(frozen=True)
class SourceObject:
    """One object of a source, pinned to the version that was read."""

    source: str
    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int
    relative_key: str  # the key inside the snapshot's source folder


class Source(ABC):
    """A kind of data source. Subclasses set ``kind`` and implement both methods."""

    kind: ClassVar[str] = ""

    def __init__(self, config: Mapping[str, Any], *, s3: Any, default_bucket: str) -> None:
        self.config = config
        self.name: str = config["name"]
        self.format: str = config.get("format", "csv")
        self.s3 = s3
        self.default_bucket = default_bucket

    @abstractmethod
    def list_objects(self, day: date) -> list[SourceObject]:
        """The objects that make up day ``day``, sorted by key."""

    @abstractmethod
    def read(self, obj: SourceObject) -> bytes:
        """The bytes of exactly the version ``list_objects`` saw."""


SOURCE_KINDS: dict[str, type[Source]] = {}


def register_source(kind: str) -> Callable[[type[Source]], type[Source]]:
    """Class decorator: make ``kind`` (the spec's ``sources[].kind``) build this class."""

    def decorate(cls: type[Source]) -> type[Source]:
        cls.kind = kind
        SOURCE_KINDS[kind] = cls
        return cls

    return decorate


def build_source(config: Mapping[str, Any], *, s3: Any, default_bucket: str) -> Source:
    kind = config.get("kind", "s3")
    if kind not in SOURCE_KINDS:
        raise SourcingError(f"source {config.get('name')!r}: unknown kind {kind!r}; "
                            f"registered kinds: {sorted(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind](config, s3=s3, default_bucket=default_bucket)


@register_source("s3")
class S3PrefixSource(Source):
    """Objects under an S3 prefix (the rule is in the module docstring)."""

    @property
    def bucket(self) -> str:
        return self.config.get("bucket") or self.default_bucket

    @property
    def prefix(self) -> str:
        prefix = self.config["prefix"]
        return prefix if prefix.endswith("/") else prefix + "/"

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        found: list[dict[str, Any]] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(page.get("Contents", []))
        return [o for o in found if not o["Key"].endswith("/")]

    def list_objects(self, day: date) -> list[SourceObject]:
        partition = f"{self.prefix}dt={day.isoformat()}/"
        listed = self._list(partition)
        base = partition
        if not listed:
            base = self.prefix
            listed = [
                o for o in self._list(self.prefix)
                if o["LastModified"].astimezone(UTC).date() == day
                and not _PARTITION.search(o["Key"][len(self.prefix):])
            ]
        objects = []
        for entry in sorted(listed, key=lambda o: o["Key"]):
            # The listing has no version id: pin the version now, so the copy and
            # the manifest name the same bytes even if the key is overwritten.
            head = self.s3.head_object(Bucket=self.bucket, Key=entry["Key"])
            objects.append(SourceObject(
                source=self.name, bucket=self.bucket, key=entry["Key"],
                version_id=head.get("VersionId"), etag=head["ETag"].strip('"'),
                size=int(head["ContentLength"]), relative_key=entry["Key"][len(base):],
            ))
        return objects

    def read(self, obj: SourceObject) -> bytes:
        extra = {"VersionId": obj.version_id} if obj.version_id else {}
        return self.s3.get_object(Bucket=obj.bucket, Key=obj.key, **extra)["Body"].read()


# --- snapshot layout and manifest -------------------------------------------------------


def snapshot_prefix(model: str, day: date, version: int = 1) -> str:
    base = f"datasets/{model}/dt={day.isoformat()}/"
    return base if version == 1 else f"{base}v={version}/"


def parse_day(event: Mapping[str, Any], now: datetime | None = None) -> date:
    """The event's ``date``; absent (a scheduled run): yesterday in UTC."""
    value = event.get("date")
    if value is None:
        return ((now or datetime.now(UTC)) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise SourcingError(f"'date' must be YYYY-MM-DD, got {value!r}") from error


def table_facts(data: bytes, file_format: str) -> tuple[int, list[dict[str, str]]]:
    """(row count, schema as [{name, type}]) of one CSV or Parquet object."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if file_format == "parquet":
            table = pq.read_table(io.BytesIO(data))
        else:
            table = pacsv.read_csv(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise SourcingError(f"not a readable {file_format} object: {error}") from error
    return table.num_rows, [{"name": f.name, "type": str(f.type)} for f in table.schema]


@dataclass
class SnapshotFile:
    key: str
    sha256: str
    rows: int
    source: SourceObject


def build_manifest(*, model: str, spec_name: str, day: date, version: int, prefix: str,
                   files: list[SnapshotFile], schema: dict[str, list[dict[str, str]]],
                   content_hash: str, created_at: datetime) -> dict[str, Any]:
    """The manifest; ``files`` in key order, ``content_hash`` over their bytes in
    that order (:func:`content_hash`), ``schema`` per source."""
    return {
        "model": model,
        "spec_name": spec_name,
        "date": day.isoformat(),
        "version": version,
        "snapshot_prefix": prefix,
        "rows": sum(f.rows for f in files),
        "schema": schema,
        "content_hash": content_hash,
        "created_at": created_at.astimezone(UTC).isoformat(),
        "objects": [
            {"key": f.key, "sha256": f.sha256, "rows": f.rows,
             "source": {k: v for k, v in asdict(f.source).items() if k != "relative_key"}}
            for f in files
        ],
    }


def result(manifest: Mapping[str, Any], manifest_key: str, created: bool) -> dict[str, Any]:
    """What the handler returns to the workflow."""
    return {
        "date": manifest["date"],
        "version": manifest.get("version", 1),
        "snapshot_prefix": manifest["snapshot_prefix"],
        "manifest_key": manifest_key,
        "rows": manifest["rows"],
        "content_hash": manifest["content_hash"],
        "created": created,
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


# --- the snapshot run (the S3 client is passed in) -------------------------------------


def _is_precondition_failure(error: Exception) -> bool:
    response = getattr(error, "response", {}) or {}
    return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412") or \
        response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


def _is_missing(error: Exception) -> bool:
    response = getattr(error, "response", {}) or {}
    return response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as error:
        if _is_missing(error):
            return None
        raise
    return json.loads(body)


def latest_manifest(s3: Any, bucket: str, model: str, day: date) -> tuple[str, dict] | None:
    """The newest committed version of day ``day``: (manifest key, manifest)."""
    found = None
    version = 1
    while True:
        key = snapshot_prefix(model, day, version) + MANIFEST_NAME
        manifest = read_manifest(s3, bucket, key)
        if manifest is None:
            return found
        found = (key, manifest)
        version += 1


def _put_once(s3: Any, bucket: str, key: str, body: bytes, metadata: dict[str, str]) -> bool:
    """Put ``key`` only if absent. False when an object is already there."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", Metadata=metadata)
    except Exception as error:
        if _is_precondition_failure(error):
            return False
        raise
    return True


def create_snapshot(s3: Any, *, sources: list[Source], bucket: str, model: str,
                    spec_name: str, day: date, new_version: bool = False,
                    now: datetime | None = None) -> dict[str, Any]:
    """Build the snapshot of ``day`` (or return the existing one). Returns :func:`result`."""
    version = 1
    while True:
        key = snapshot_prefix(model, day, version) + MANIFEST_NAME
        existing = read_manifest(s3, bucket, key)
        if existing is None:
            break
        if not new_version:
            return result(existing, key, created=False)
        version += 1
    prefix = snapshot_prefix(model, day, version)
    planned = sorted(
        ((f"{prefix}{source.name}/{obj.relative_key}", source, obj)
         for source in sources for obj in source.list_objects(day)),
        key=lambda item: item[0],
    )
    if not planned:
        names = ", ".join(s.name for s in sources)
        raise SourcingError(f"no source objects for {day.isoformat()} in {names}")
    digest = hashlib.sha256()
    files: list[SnapshotFile] = []
    schema: dict[str, list[dict[str, str]]] = {}
    for target, source, obj in planned:
        data = source.read(obj)
        file_hash = hashlib.sha256(data).hexdigest()
        metadata = {"source-bucket": obj.bucket, "source-key": obj.key,
                    "source-version-id": obj.version_id or "", "sha256": file_hash}
        if not _put_once(s3, bucket, target, data, metadata):
            # A crashed or concurrent run of the same version wrote it first:
            # fine if it holds the same bytes, never silently replaced.
            head = s3.head_object(Bucket=bucket, Key=target)
            if head.get("Metadata", {}).get("sha256") != file_hash:
                raise SourcingError(f"s3://{bucket}/{target} exists with other content; "
                                    "snapshots are never overwritten")
        digest.update(data)
        rows, file_schema = table_facts(data, source.format)
        schema.setdefault(source.name, file_schema)
        files.append(SnapshotFile(target, file_hash, rows, obj))
    manifest = build_manifest(
        model=model, spec_name=spec_name, day=day, version=version, prefix=prefix,
        files=files, schema=schema, content_hash=digest.hexdigest(),
        created_at=now or datetime.now(UTC),
    )
    manifest_key = prefix + MANIFEST_NAME
    if _put_once(s3, bucket, manifest_key, manifest_bytes(manifest), {}):
        return result(manifest, manifest_key, created=True)
    # Another run committed this version between our check and our put: theirs wins.
    winner = read_manifest(s3, bucket, manifest_key)
    assert winner is not None
    return result(winner, manifest_key, created=False)
