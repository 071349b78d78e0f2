"""Read a dataset (CSV file, Parquet file or snapshot folder) into a typed Arrow table.

One reader, shared by sourcing, the quality engine and feature engineering::

    table = read_table("datasets/fraud/dt=2026-11-01/", spec["data"]["columns"])
    table = read_bytes(body, "s3://bucket/key", spec["data"]["columns"])  # one object

CSV may be compressed (gzip, bzip2 or zstd, told by the content's own magic
bytes, whatever the name says); a file's format is the one its reader names
(a snapshot's manifest records it), else its suffix (``.csv``, ``.csv.gz``,
``.parquet``...), else ``PAR1`` says Parquet. Errors name the file or object
by the label the caller gives (an ``s3://`` URI for objects).

``columns`` is the spec's ``data.columns`` (plain dicts or spec objects with
``name`` and ``type``); the table has exactly those columns, in that order,
typed ``string -> string``, ``int -> int64``, ``float -> float64``,
``bool -> bool``, ``timestamp -> timestamp[us, UTC]``. Extra columns in the
files are ignored.

An integer timestamp (CSV digits, a Parquet integer column) is read in its
column's ``unit`` (``s``, ``ms``, ``us``, ``ns`` since the epoch) and must
land in 1971-01-01..2200-01-01 (see ``mdlc_core.timestamps``); without a
unit, or outside that window, or with a fraction, it is an unparseable
value with the reason, never a moment of January 1970.

Nulls in CSV text are the column's ``null_values`` (spec field, default
``[""]``: only the empty field), compared with the whole field as written;
any other text is a value of the column, so an order id ``NA`` is kept and
an amount ``nan`` is a number (NaN, which a range rule reports). Parquet
nulls are Parquet's own.

A file that cannot be used (missing, not CSV or Parquet, empty, missing a
declared column, not parseable at all) raises :class:`DataError` naming the
file. A single *value* that does not parse as its declared type does not:
it becomes null in the typed column and is recorded (with the reason where
there is one beyond "does not parse"), so the ``type`` quality rule can
count and name it; the other values of its column and row are
unaffected. :func:`unparseable` returns those records; they refer to the
rows of the table as read (filtering or re-ordering the table makes them
stale).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import timestamps

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Row positions of unparseable values kept per column; enough for any sample
# a report shows, bounded so a wholly wrong column does not bloat metadata.
TRACK_LIMIT = 1000
_METADATA_KEY = b"mdlc.unparseable"

#: The text an ``int`` or ``float`` column parses (the SQL rules' text checks too).
INT_PATTERN = r"^\s*[+-]?\d{1,18}\s*$"
FLOAT_PATTERN = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$|^\s*[+-]?(inf|infinity|nan)\s*$"
#: The texts of a ``bool`` column, compared in lower case.
TRUE_TEXTS = ("true", "t", "yes", "y", "1")
FALSE_TEXTS = ("false", "f", "no", "n", "0")
# Naive timestamps are taken as UTC; these are tried in order after ISO 8601.
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
# A zoned ISO 8601 timestamp whose fields are in range (a day that its month
# does not have, 2026-02-30, still passes: the cast finds it, see _cast_each).
_ZONED = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d"
          r"(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$")
#: A column's null markers when its spec names none: only the empty field.
DEFAULT_NULL_VALUES = ("",)


class DataError(ValueError):
    """A dataset that cannot be read as the spec declares it."""


@dataclass
class Unparseable:
    """Values of one column that did not parse as its declared type."""

    count: int = 0
    rows: list[int] = field(default_factory=list)  # first TRACK_LIMIT row positions
    values: list[str] = field(default_factory=list)  # the raw text, same order as rows
    #: Why, when more can be said than "does not parse" (an integer timestamp
    #: without a unit, or out of range for it): :attr:`reasons` as one text;
    #: None otherwise.
    reason: str | None = None
    #: The reason of each kind of value (``integer``, ``fraction``, ``stored``:
    #: a Parquet float column) for its first example: what :func:`merge_unparseable`
    #: keeps across a snapshot's files, so a reason is said once, not once a file.
    reasons: dict[str, str] = field(default_factory=dict)


def read_table(path: str | Path, columns: Sequence[Any] | None = None) -> pa.Table:
    """Read ``path`` (a CSV or Parquet file, or a folder of them) typed by ``columns``.

    Without ``columns`` every column is read with Arrow's own type inference
    (no unparseable-value tracking): for exploring, not for checking.

    A folder that holds a snapshot's manifest (``_manifest.json`` as data
    sourcing writes it, e.g. a snapshot copied with ``aws s3 sync``) is read as
    the manifest says: exactly the files it lists, in its order, each checked
    against its SHA-256 (:func:`manifest_files`). Any other folder is read
    recursively, in sorted path order; files whose names start with ``_`` or
    ``.`` (``_SUCCESS`` markers) and files that are not CSV or Parquet are
    skipped. Raises :class:`DataError`.
    """
    specs = None if columns is None else [_column_spec(column) for column in columns]
    root = Path(path)
    if root.is_dir():
        listed = manifest_files(root)
        if listed is not None:
            return combine([_read(TableSource(str(file), path=file, declared=kind), specs)
                            for file, kind in listed], str(root))
        files = data_files(root)
        if not files:
            raise DataError(f"{root}: folder has no CSV or Parquet files")
    elif root.exists():
        files = [root]
    else:
        raise DataError(f"{root}: no such file or folder")
    return combine([_read(TableSource(str(file), path=file), specs) for file in files], str(root))


def manifest_files(folder: Path) -> list[tuple[Path, str | None]] | None:
    """The files (and formats) a local copy of a snapshot consists of, by its
    ``_manifest.json``; None when the folder has no snapshot manifest (a
    ``_manifest.json`` without an ``objects`` list is not one).

    A listed file that is missing, or whose SHA-256 is not the recorded one,
    is a :class:`DataError`: a partial or mixed copy is not the snapshot.
    """
    path = folder / "_manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a JSON manifest: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("objects"), list):
        return None
    prefix = str(manifest.get("snapshot_prefix") or "")
    listed = []
    for entry in manifest["objects"]:
        key = str(entry.get("key", ""))
        relative = key[len(prefix):] if prefix and key.startswith(prefix) else key
        file = folder.joinpath(*relative.split("/"))
        if not file.is_file():
            raise DataError(f"{path} lists {key}, which is not in {folder} ({file})")
        if entry.get("sha256"):
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != entry["sha256"]:
                raise DataError(f"{file}: content differs from {path} (sha256 "
                                f"{digest.hexdigest()}, recorded {entry['sha256']})")
        listed.append((file, entry.get("format") or None))
    return listed


def read_file(path: str | Path, columns: Sequence[Any] | None = None, *,
              name: str | None = None, file_format: str | None = None) -> pa.Table:
    """One file, as :func:`read_table` reads it; errors name it ``name`` (default:
    the path), e.g. the ``s3://`` object a local file was downloaded from.
    ``file_format`` (``csv`` or ``parquet``) overrides the suffix."""
    specs = None if columns is None else [_column_spec(column) for column in columns]
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{name or file}: no such file")
    return _read(TableSource(name or str(file), path=file, declared=file_format), specs)


def read_bytes(data: bytes, name: str, columns: Sequence[Any] | None = None, *,
               file_format: str | None = None, text: bool = False) -> pa.Table:
    """One object's bytes (``name``: its key or URI, which errors cite and whose
    suffix tells the format unless ``file_format`` says), as :func:`read_table`
    reads a file.

    ``text`` (without ``columns``): every CSV column as the text written, no
    type inference and no nulls (an id ``007`` stays ``007``); Parquet columns
    keep their stored types. For engines that parse values themselves.
    """
    specs = None if columns is None else [_column_spec(column) for column in columns]
    return _read(TableSource(name, data=data, declared=file_format), specs, text=text)


def combine(tables: Sequence[pa.Table], what: str) -> pa.Table:
    """Tables of one dataset's files, in order, as one (unparseable records kept)."""
    if not tables:
        raise DataError(f"{what}: no data files")
    if len(tables) == 1:
        return tables[0]
    try:
        return _concat(list(tables))
    except pa.ArrowException as error:  # only untyped reads can disagree between files
        raise DataError(f"{what}: files have different schemas: {first_line(error)}") from error


def data_files(folder: Path) -> list[Path]:
    """The CSV and Parquet files under ``folder`` that :func:`read_table` reads."""
    return sorted(
        file for file in folder.rglob("*")
        if file.is_file()
        and not any(part.startswith(("_", ".")) for part in file.relative_to(folder).parts)
        and file_format(file) is not None
    )


def unparseable(table: pa.Table) -> dict[str, Unparseable]:
    """Per column, the values :func:`read_table` could not parse (empty when none)."""
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if not raw:
        return {}
    return {name: Unparseable(**record) for name, record in json.loads(raw).items()}


def parse_strings(values: pa.Array | pa.ChunkedArray, type_name: str,
                  unit: str | None = None) -> pa.ChunkedArray:
    """Parse text as ``type_name``; values that do not parse become null.

    ``unit``: a timestamp column's unit, in which integer text is read (without
    one, integer text is not a timestamp). Callers find the unparseable values
    as ``is_valid(values) & is_null(result)``.
    """
    values = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    target = ARROW_TYPES[type_name]
    if type_name == "string":
        return values
    try:  # clean data, the common case, takes the fast strict path
        if type_name != "bool":  # digits never cast as ISO 8601: units take the slow path
            return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if type_name == "int":
        ok = pc.match_substring_regex(values, INT_PATTERN)
        return pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, values, None)), target)
    if type_name == "float":
        ok = pc.match_substring_regex(values, FLOAT_PATTERN, ignore_case=True)
        return pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, values, None)), target)
    if type_name == "bool":
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        is_true = pc.is_in(lowered, value_set=pa.array(TRUE_TEXTS))
        is_false = pc.is_in(lowered, value_set=pa.array(FALSE_TEXTS))
        return pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
    return _parse_timestamps(values, unit)


def convert(values: pa.ChunkedArray, type_name: str, unit: str | None = None) -> pa.ChunkedArray:
    """One column as ``type_name``, by the rules :func:`read_table` applies (text
    is parsed, Parquet types are cast; a value that does not fit becomes null;
    ``unit``: a timestamp column's integer unit)."""
    if type_name not in ARROW_TYPES:
        raise DataError(f"unknown type {type_name!r}; expected one of {sorted(ARROW_TYPES)}")
    return _convert(values, type_name, unit)


# --- internals -------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str
    type: str
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES
    unit: str | None = None


def _column_spec(column: Any) -> _Spec:
    if isinstance(column, Mapping):
        name, type_name = column["name"], column["type"]
        nulls, unit = column.get("null_values"), column.get("unit")
    else:
        name, type_name = column.name, column.type
        nulls, unit = getattr(column, "null_values", None), getattr(column, "unit", None)
    if type_name not in ARROW_TYPES:
        raise DataError(f"column {name!r}: unknown type {type_name!r}")
    if unit is not None and (type_name != "timestamp" or unit not in timestamps.PER_SECOND):
        raise DataError(f"column {name!r}: unit {unit!r} applies to timestamp columns only, "
                        f"as one of {sorted(timestamps.PER_SECOND)}")
    return _Spec(str(name), str(type_name),
                 DEFAULT_NULL_VALUES if nulls is None else tuple(str(n) for n in nulls),
                 None if unit is None else str(unit))


def file_format(file: Path) -> str | None:
    """A file's format by its suffix (a folder's files are chosen by it)."""
    name = file.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


#: Compressed CSV, told by its first bytes (a name may not say, or lie).
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))


@dataclass(frozen=True)
class TableSource:
    """One file or object to read: its label (for errors) and its bytes or path."""

    label: str
    data: bytes | None = None
    path: Path | None = None
    declared: str | None = None  # "csv" / "parquet" as its producer recorded it

    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.path or "")

    def head(self) -> bytes:
        if self.data is not None:
            return self.data[:4]
        with open(self.path or "", "rb") as handle:
            return handle.read(4)

    def format(self) -> str | None:
        """As declared, else by suffix, else ``PAR1`` (objects copied from S3
        may have no extension; Parquet says what it is)."""
        if self.declared is not None:
            return self.declared
        name = self.label.lower().rsplit("/", 1)[-1]
        if name.endswith(CSV_SUFFIXES):
            return "csv"
        if name.endswith(PARQUET_SUFFIXES) or self.head() == b"PAR1":
            return "parquet"
        return None

    def stream(self) -> Any:
        """A fresh stream of the (decompressed) content."""
        raw = (pa.BufferReader(self.data) if self.data is not None
               else pa.OSFile(str(self.path), "rb"))
        head = self.head()
        codec = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
        return raw if codec is None else pa.CompressedInputStream(raw, codec)

    def parquet_source(self) -> Any:
        return pa.BufferReader(self.data) if self.data is not None else str(self.path)


def _read(source: TableSource, specs: list[_Spec] | None, *, text: bool = False) -> pa.Table:
    kind = source.format()
    if kind not in ("csv", "parquet"):
        raise DataError(
            f"{source.label}: not a CSV or Parquet file (expected one of "
            f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})"
        )
    if source.size() == 0:
        raise DataError(f"{source.label}: file is empty")
    names = None if specs is None else [spec.name for spec in specs]
    try:
        raw = (_read_csv(source, names, text=text) if kind == "csv"
               else _read_parquet(source, names))
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        reason = first_line(error)
        raise DataError(f"{source.label}: cannot be read as {kind.upper()}: {reason}") from error
    if raw.num_columns == 0:
        raise DataError(f"{source.label}: has no columns")
    return raw if specs is None else _typed(raw, specs, source.label, text=kind == "csv")


def _read_csv(source: TableSource, names: list[str] | None, *, text: bool = False) -> pa.Table:
    if names is None and not text:
        return pacsv.read_csv(source.stream())
    with pacsv.open_csv(source.stream()) as reader:  # header only, to name missing columns
        header = reader.schema.names
    if names is None:
        names = list(header)
    _require(source.label, header, names)
    # Every declared column is read as text and parsed here, so one bad value
    # is counted by the type rule instead of failing the whole file. No text
    # is null here: each column's own null markers are applied in _typed.
    options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        include_columns=names,
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pacsv.read_csv(source.stream(), convert_options=options)


def _read_parquet(source: TableSource, names: list[str] | None) -> pa.Table:
    if names is None:
        return pq.read_table(source.parquet_source())
    schema = pq.read_schema(source.parquet_source())
    _require(source.label, schema.names, names)
    return pq.read_table(source.parquet_source(), columns=names)


def _require(label: str, present: Iterable[str], names: list[str]) -> None:
    present = list(present)
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {', '.join(missing)}; "
            f"the file has {', '.join(present) or 'no columns'}"
        )


def _typed(raw: pa.Table, specs: list[_Spec], file: str, *, text: bool) -> pa.Table:
    """``raw`` typed by ``specs``; ``text``: the columns are CSV text, whose
    null markers (``null_values``) become nulls first."""
    arrays: list[pa.ChunkedArray] = []
    problems: dict[str, dict[str, Any]] = {}
    for spec in specs:
        name, type_name = spec.name, spec.type
        source = raw.column(name)
        if text and spec.null_values:
            marked = pc.is_in(source, value_set=pa.array(spec.null_values, pa.string()))
            source = pc.if_else(marked, pa.scalar(None, source.type), source)
        try:
            typed = _convert(source, type_name, spec.unit)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            # Nested or binary Parquet columns have no text form to parse.
            raise DataError(
                f"{file}: column {name!r} is stored as {source.type}, "
                f"which cannot be read as {type_name}"
            ) from error
        if typed.null_count > source.null_count:
            bad = pc.and_(pc.is_valid(source), pc.is_null(typed))
            rows = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
            tracked = rows[:TRACK_LIMIT]
            written = source if pa.types.is_string(source.type) else pc.cast(source, pa.string())
            values = pc.take(written, pa.array(tracked)).to_pylist()
            problems[name] = {"count": len(rows), "rows": tracked.tolist(), "values": values}
            if type_name == "timestamp":
                reasons = _timestamp_reasons(values, spec.unit, source.type)
                problems[name]["reasons"] = reasons
                problems[name]["reason"] = _reason_text(reasons)
        arrays.append(typed)
    schema = pa.schema(
        [pa.field(spec.name, ARROW_TYPES[spec.type]) for spec in specs],
        metadata={_METADATA_KEY: json.dumps(problems)} if problems else None,
    )
    try:
        return pa.Table.from_arrays(arrays, schema=schema)
    except pa.ArrowException as error:  # pragma: no cover - _convert guarantees the types
        raise DataError(f"{file}: {first_line(error)}") from error


def _convert(source: pa.ChunkedArray, type_name: str, unit: str | None = None) -> pa.ChunkedArray:
    target = ARROW_TYPES[type_name]
    if source.type == target:
        return source
    if pa.types.is_string(source.type) or pa.types.is_large_string(source.type):
        return parse_strings(pc.cast(source, pa.string()), type_name, unit)
    if type_name == "timestamp" and pa.types.is_timestamp(source.type):
        if source.type.tz is None:  # naive Parquet timestamps are taken as UTC
            return pc.cast(pc.assume_timezone(source, "UTC"), target)
        return pc.cast(source, target)
    if type_name == "timestamp" and pa.types.is_integer(source.type):
        # A count since the epoch: only in the column's declared unit. Arrow
        # would cast any integer as microseconds (seconds -> 1970-01-21).
        if unit is None:
            return pa.chunked_array([pa.nulls(len(source), target)])
        return _from_epoch(pc.cast(source, pa.int64()), unit)
    if type_name == "timestamp" and pa.types.is_floating(source.type):
        # A float is not an integer count of a unit, even when it is whole.
        return pa.chunked_array([pa.nulls(len(source), target)])
    try:  # a lossless cast between Parquet types (int32 -> int64, int -> float)
        return pc.cast(source, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Lossy (1.5 as int): go through text so the bad values are counted.
        return parse_strings(pc.cast(source, pa.string()), type_name)


def _from_epoch(counts: pa.ChunkedArray, unit: str) -> pa.ChunkedArray:
    """int64 counts of ``unit`` since the epoch as timestamps; null outside the
    plausible window (``mdlc_core.timestamps``), where a wrong unit lands."""
    low, high = timestamps.bounds(unit)
    plausible = pc.and_(pc.greater_equal(counts, low), pc.less(counts, high))
    kept = pc.if_else(plausible, counts, pa.scalar(None, pa.int64()))
    moments = pc.cast(kept, pa.timestamp(unit, tz="UTC"))
    # Nanoseconds are truncated to the microsecond (the column's precision).
    return pc.cast(moments, ARROW_TYPES["timestamp"], safe=False)


def _timestamp_reasons(values: Sequence[Any], unit: str | None,
                       stored: pa.DataType) -> dict[str, str]:
    """Why these values of a timestamp column are not timestamps, when they are
    numbers: per kind of value, the reason of its first example, for the type
    rule's report; empty when they are only text that is no date."""
    if pa.types.is_floating(stored):
        return {"stored": f"stored as {stored}: an integer timestamp is stored as an integer "
                          f"({'epoch ' + unit if unit else 'with its column unit'})"}
    reasons: dict[str, str] = {}
    for value in values:
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            kind = "integer"
            reason = (timestamps.no_unit_reason() if unit is None
                      else timestamps.out_of_range_reason(text, unit))
        elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text):
            kind, reason = "fraction", timestamps.fraction_reason(text, unit)
        else:  # text that is no date: "does not parse" says it all
            continue
        reasons.setdefault(kind, reason)
    return reasons


def _parse_timestamps(values: pa.ChunkedArray, unit: str | None = None) -> pa.ChunkedArray:
    target = ARROW_TYPES["timestamp"]
    if len(values) == 0:
        return pa.chunked_array([], type=target)
    trimmed = pc.utf8_trim_whitespace(values)
    # Values with an explicit zone (Z, +02:00) go through the ISO cast; naive
    # ones through strptime (taken as UTC). Each value lands in one branch.
    zoned = pc.match_substring_regex(trimmed, r"(Z|[+-]\d{2}:?\d{2})$")
    candidates = []
    if pc.any(zoned).as_py():
        well_formed = pc.and_(zoned, pc.match_substring_regex(trimmed, _ZONED))
        # One impossible value (2026-02-30) fails a whole cast: _cast_each
        # narrows it down, so only that value is null.
        only_zoned = pc.if_else(well_formed, trimmed, None).combine_chunks()
        candidates.append(pa.chunked_array([_cast_each(only_zoned, target)]))
    # strptime does not understand fractional seconds; they are dropped.
    naive = pc.replace_substring_regex(
        pc.if_else(zoned, None, trimmed), r"(\d{2}:\d{2}:\d{2})\.\d{1,9}$", r"\1"
    )
    for fmt in _TIME_FORMATS:
        parsed = pc.strptime(naive, format=fmt, unit="us", error_is_null=True)
        candidates.append(pc.cast(pc.assume_timezone(parsed, "UTC"), target))
    if unit is not None:
        # Integer text is a count of the column's unit (only with one).
        integer = pc.match_substring_regex(trimmed, r"^[+-]?\d{1,19}$")
        if pc.any(integer).as_py():
            digits = pc.if_else(integer, trimmed, pa.scalar(None, pa.string()))
            counts = pa.chunked_array([_cast_each(digits.combine_chunks()
                                                  if isinstance(digits, pa.ChunkedArray)
                                                  else digits, pa.int64())])
            candidates.append(_from_epoch(counts, unit))
    return pc.coalesce(*candidates)


def _cast_each(values: pa.Array, target: pa.DataType) -> pa.Array:
    """``values`` cast to ``target``, null where a value alone does not cast
    (by halves: a few bad values cost a few casts, not one per value)."""
    try:
        return pc.cast(values, target)
    except pa.ArrowInvalid:
        if len(values) <= 1:
            return pa.nulls(len(values), target)
        middle = len(values) // 2
        return pa.concat_arrays([_cast_each(values.slice(0, middle), target),
                                 _cast_each(values.slice(middle), target)])


def merge_unparseable(
    parts: Iterable[tuple[int, Mapping[str, Unparseable]]],
) -> dict[str, Unparseable]:
    """The unparseable records of a dataset's files, each given with the
    position of its first row in the dataset, as one record per column: counts
    added, positions offset, at most :data:`TRACK_LIMIT` kept, and each kind's
    reason from the first file that has it (what one file of all the rows would
    say). :func:`combine` and the Spark executors' reads both merge with it."""
    merged: dict[str, Unparseable] = {}
    for offset, records in parts:
        for name, record in records.items():
            into = merged.setdefault(name, Unparseable())
            into.count += record.count
            room = TRACK_LIMIT - len(into.rows)
            into.rows += [offset + row for row in record.rows[:room]]
            into.values += record.values[:room]
            for kind, reason in record.reasons.items():
                into.reasons.setdefault(kind, reason)
    for record in merged.values():
        record.reason = _reason_text(record.reasons)
    return merged


def _reason_text(reasons: Mapping[str, str]) -> str | None:
    """:attr:`Unparseable.reason` of its ``reasons``: each once, in order."""
    return "; ".join(reasons.values()) or None


def _concat(tables: list[pa.Table]) -> pa.Table:
    offsets = itertools.accumulate((t.num_rows for t in tables[:-1]), initial=0)
    merged = merge_unparseable(zip(offsets, map(unparseable, tables), strict=True))
    combined = pa.concat_tables(
        [t.replace_schema_metadata(None) for t in tables], promote_options="default"
    )
    metadata = {name: asdict(record) for name, record in merged.items()}
    return combined.replace_schema_metadata(
        {_METADATA_KEY: json.dumps(metadata)} if metadata else None)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none),
    for a reason that names the file without the reader's whole trace."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

