"""Data sourcing: immutable, dated snapshots with a manifest.

A snapshot of day ``D`` is ``datasets/<model>/dt=D/`` in the datasets
bucket (``dt=D/v=2/`` and so on for explicit new versions). Its
``_manifest.json`` is written last, with a conditional put
(``If-None-Match: *``): the manifest is the commit point, so two concurrent
runs cannot both create the same snapshot. See docs/sourcing.md.

The manifest is the snapshot: it lists each object with its SHA-256 and the
version of the copy (on the versioned datasets bucket), and every reader
(:func:`committed_manifest`, :func:`read_snapshot_object`) reads exactly
those, never "whatever is under the prefix". Every source object is read
and parsed before anything is written, so a bad object fails the run with
its ``s3://`` name and leaves nothing behind. Objects under a prefix
without a committed manifest are an attempt that never finished (a crash,
or a failure before this rule): not a snapshot, so the next run replaces
them; a committed manifest is never rewritten (``new_version`` writes the
next version).

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
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from .layout import Layout

MANIFEST_NAME = "_manifest.json"
_PARTITION = re.compile(r"(^|/)dt=\d{4}-\d{2}-\d{2}/")


class SourcingError(Exception):
    """A snapshot that cannot be built (no data, an unreadable source object)."""


class SnapshotError(SourcingError):
    """A snapshot a reader cannot use: no committed manifest, or an object whose
    content is not what the manifest recorded."""


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

    def where(self, day: date) -> str:
        """Where the objects of ``day`` are looked for, for an error message."""
        return repr(self.name)


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
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=entry["Key"])
            except Exception as error:  # deleted since the listing, or not readable
                raise SourcingError(f"s3://{self.bucket}/{entry['Key']}: cannot be pinned to a "
                                    f"version: {error}") from error
            objects.append(SourceObject(
                source=self.name, bucket=self.bucket, key=entry["Key"],
                version_id=head.get("VersionId"), etag=head["ETag"].strip('"'),
                size=int(head["ContentLength"]), relative_key=entry["Key"][len(base):],
            ))
        return objects

    def read(self, obj: SourceObject) -> bytes:
        extra = {"VersionId": obj.version_id} if obj.version_id else {}
        return self.s3.get_object(Bucket=obj.bucket, Key=obj.key, **extra)["Body"].read()

    def where(self, day: date) -> str:
        return (f"{self.name!r} (s3://{self.bucket}/{self.prefix}dt={day.isoformat()}/, or "
                f"objects under s3://{self.bucket}/{self.prefix} last modified that day)")


# --- snapshot layout and manifest -------------------------------------------------------


def snapshot_prefix(model: str, day: date, version: int = 1) -> str:
    base = Layout(model).snapshot(day.isoformat())
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


def table_facts(data: bytes, file_format: str, name: str) -> tuple[int, list[dict[str, str]]]:
    """(row count, schema as [{name, type}]) of one CSV (plain or compressed) or
    Parquet object, read as every later step reads it (``mdlc_core.tabular``);
    ``name`` (its ``s3://`` URI) is what an error names."""
    from .tabular import DataError, read_bytes

    try:
        table = read_bytes(data, name, file_format=file_format)
    except DataError as error:
        raise SourcingError(str(error)) from error
    return table.num_rows, [{"name": f.name, "type": str(f.type)} for f in table.schema]


@dataclass
class SnapshotFile:
    key: str
    sha256: str
    rows: int
    source: SourceObject
    file_format: str = "csv"
    version_id: str | None = None  # of the copy in the datasets bucket


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
            {"key": f.key, "sha256": f.sha256, "rows": f.rows, "format": f.file_format,
             "version_id": f.version_id,
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


def _put_once(s3: Any, bucket: str, key: str, body: bytes,
              metadata: dict[str, str]) -> dict[str, Any] | None:
    """Put ``key`` only if absent: the response, or None when an object is there."""
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*",
                             Metadata=metadata)
    except Exception as error:
        if _is_precondition_failure(error):
            return None
        raise


class _CommittedMeanwhile(Exception):
    """Another run committed the version being written: its snapshot stands."""


def _write_copy(s3: Any, bucket: str, key: str, data: bytes, metadata: dict[str, str],
                manifest_key: str) -> str | None:
    """Write one snapshot object; returns the version of the copy (None when the
    bucket is not versioned)."""
    written = _put_once(s3, bucket, key, data, metadata)
    if written is not None:
        return written.get("VersionId")
    head = s3.head_object(Bucket=bucket, Key=key)
    if head.get("Metadata", {}).get("sha256") == metadata["sha256"]:
        return head.get("VersionId")  # a crashed or concurrent run of the same bytes
    # Left by an attempt that never committed a manifest (so no reader may use
    # it): replaced, unless a run has committed this version since we looked.
    if read_manifest(s3, bucket, manifest_key) is not None:
        raise _CommittedMeanwhile
    return s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata).get("VersionId")


def create_snapshot(s3: Any, *, sources: list[Source], bucket: str, model: str,
                    spec_name: str, day: date, new_version: bool = False,
                    now: datetime | None = None) -> dict[str, Any]:
    """Build the snapshot of ``day`` (or return the existing one). Returns :func:`result`.

    Raises :class:`SourcingError` naming every source object that cannot be
    read, before anything is written.
    """
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
    manifest_key = prefix + MANIFEST_NAME
    planned = sorted(
        ((f"{prefix}{source.name}/{obj.relative_key}", source, obj)
         for source in sources for obj in source.list_objects(day)),
        key=lambda item: item[0],
    )
    if not planned:
        names = ", ".join(s.where(day) for s in sources)
        raise SourcingError(f"no source objects for {day.isoformat()} in {names}")
    # Every object is read and parsed first: one that cannot be used fails the
    # run with its name, and nothing of the day is written.
    facts: list[tuple[str, int, list[dict[str, str]]]] = []
    unreadable: list[str] = []
    for _, source, obj in planned:
        data = _read_source(source, obj)
        try:
            rows, file_schema = table_facts(data, source.format, _uri(obj))
        except SourcingError as error:
            unreadable.append(str(error))
            continue
        facts.append((hashlib.sha256(data).hexdigest(), rows, file_schema))
    if unreadable:
        raise SourcingError(
            f"snapshot of {day.isoformat()} not written: {len(unreadable)} of {len(planned)} "
            f"source object(s) cannot be read: " + "; ".join(unreadable))
    digest = hashlib.sha256()
    files: list[SnapshotFile] = []
    schema: dict[str, list[dict[str, str]]] = {}
    try:
        for (target, source, obj), (file_hash, rows, file_schema) in zip(planned, facts,
                                                                         strict=True):
            data = _read_source(source, obj)
            if hashlib.sha256(data).hexdigest() != file_hash:
                # Only an unversioned source can change under a run.
                raise SourcingError(f"{_uri(obj)} changed while the snapshot was taken; "
                                    "run again")
            metadata = {"source-bucket": obj.bucket, "source-key": obj.key,
                        "source-version-id": obj.version_id or "", "sha256": file_hash}
            try:
                copy_version = _write_copy(s3, bucket, target, data, metadata, manifest_key)
            except _CommittedMeanwhile:
                raise
            except Exception as error:
                raise SourcingError(f"{_uri(obj)}: cannot be copied to s3://{bucket}/{target}: "
                                    f"{error}") from error
            digest.update(data)
            schema.setdefault(source.name, file_schema)
            files.append(SnapshotFile(target, file_hash, rows, obj, source.format, copy_version))
    except _CommittedMeanwhile:
        winner = read_manifest(s3, bucket, manifest_key)
        assert winner is not None
        return result(winner, manifest_key, created=False)
    manifest = build_manifest(
        model=model, spec_name=spec_name, day=day, version=version, prefix=prefix,
        files=files, schema=schema, content_hash=digest.hexdigest(),
        created_at=now or datetime.now(UTC),
    )
    if _put_once(s3, bucket, manifest_key, manifest_bytes(manifest), {}) is not None:
        return result(manifest, manifest_key, created=True)
    # Another run committed this version between our check and our put: theirs wins.
    winner = read_manifest(s3, bucket, manifest_key)
    assert winner is not None
    return result(winner, manifest_key, created=False)


def _uri(obj: SourceObject) -> str:
    return f"s3://{obj.bucket}/{obj.key}"


def _read_source(source: Source, obj: SourceObject) -> bytes:
    """``source.read(obj)``; an S3 error names the object (a bare ClientError
    names only the operation)."""
    try:
        return source.read(obj)
    except Exception as error:
        version = f" (version {obj.version_id})" if obj.version_id else ""
        raise SourcingError(f"{_uri(obj)}{version}: cannot be read: {error}") from error


# --- reading a snapshot: the manifest is the only truth -----------------------------


def committed_manifest(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """The committed manifest of the snapshot at ``prefix`` (``.../dt=D/`` or
    ``.../dt=D/v=N/``). Raises :class:`SnapshotError` when there is none: the
    objects of an attempt that never committed are not a snapshot."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    manifest = read_manifest(s3, bucket, prefix + MANIFEST_NAME)
    if manifest is None:
        raise SnapshotError(
            f"s3://{bucket}/{prefix}: no committed snapshot (no {MANIFEST_NAME}); objects "
            "under a prefix without a manifest are not a snapshot: run data sourcing for "
            "the day")
    if not isinstance(manifest.get("objects"), list) or not manifest["objects"]:
        raise SnapshotError(f"s3://{bucket}/{prefix}{MANIFEST_NAME}: lists no objects")
    return manifest


def version_args(entry: Mapping[str, Any]) -> dict[str, str]:
    """The ``VersionId`` argument of a manifest entry's ``GetObject`` (none without one)."""
    version = entry.get("version_id")
    return {"VersionId": version} if version else {}


def check_hash(bucket: str, entry: Mapping[str, Any], actual: str) -> None:
    """A :class:`SnapshotError` when an object's SHA-256 is not its manifest's."""
    if entry.get("sha256") and actual != entry["sha256"]:
        raise SnapshotError(
            f"s3://{bucket}/{entry['key']}: content differs from its manifest (sha256 "
            f"{actual}, the manifest recorded {entry['sha256']})")


def read_snapshot_object(s3: Any, bucket: str, entry: Mapping[str, Any]) -> bytes:
    """The bytes of one manifest entry: the version the manifest names (if any),
    checked against its SHA-256."""
    body = s3.get_object(Bucket=bucket, Key=entry["key"], **version_args(entry))["Body"].read()
    check_hash(bucket, entry, hashlib.sha256(body).hexdigest())
    return body


def download_snapshot_object(s3: Any, bucket: str, entry: Mapping[str, Any],
                             target: Path) -> Path:
    """:func:`read_snapshot_object` to a local file (large objects stay on disk)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, entry["key"], str(target), ExtraArgs=version_args(entry) or None)
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    check_hash(bucket, entry, digest.hexdigest())
    return target


def object_format(entry: Mapping[str, Any]) -> str | None:
    """The entry's format as sourcing recorded it (None in older manifests:
    readers go by the key's suffix)."""
    value = entry.get("format")
    return str(value) if value else None
