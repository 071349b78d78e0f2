"""The day's predictions and labels, and the drift baselines, read by DuckDB itself.

:mod:`mdlc_core.sql.monitoring` computes the monitoring report from
relations; read by the shared reader (``mdlc monitor``, the Spark driver's
path) those are Arrow tables in Python memory (every file read, concatenated
and typed by :mod:`mdlc_core.monitoring` first), so a day or a baseline
larger than the process's memory fails whatever DuckDB's ``memory_limit``. A
:class:`DaySession` instead has DuckDB read the downloaded files
(``read_csv``, ``read_parquet``) into its own tables, which live under its
memory limit and spill to its temporary directory past it, and runs the same
queries on them:

    with DaySession(memory_limit="2GB", temp_directory=spill) as session:
        today = session.read_predictions(files, feature_columns, what="s3://.../scored/")
        labels = session.read_labels(label_files, what="s3://.../labels/fraud/dt=.../")
        baseline = session.read_baseline(baseline_files, ["score", *feature_columns])
        open_loop = session.open_loop(today, baseline, bins, feature_columns)
        closed_loop = session.closed_loop(today, labels, decision_threshold)

A baseline keeps only its compared columns (the training job's whole table
is not held), and the ``all`` group's mixture of several versions' baselines
is a query over their tables (:meth:`DaySession.mixture`, the rows
``drift_baselines.mixture`` takes). The drift queries then run one column at
a time (``Plan.column_at_a_time``), and each column's sort and running sum
spills past the limit (``sql.monitoring.ks_query``), so neither a baseline
nor a day has to fit it.

**The same types as the shared reader** (``monitoring.read_table_bytes`` and
``Predictions.from_table``/``Labels.from_table``), written as SQL over the
files' raw values: CSV is read as text (``all_varchar``) and typed here, so
one definition of parsing holds for both readers:

- ``event_id``, ``model_version``, ``action``: text as written (in CSV an
  empty field is the empty string, not null, as pyarrow's string columns
  read it); other stored types cast to text. A missing ``model_version`` is
  ``unknown``, a missing ``action`` the empty string (no action).
- numbers (``score``, ``label``, features): pyarrow's CSV null markers
  (:data:`NULL_MARKERS`: ``""``, ``NA``, ``null``, ``NaN``...) are null;
  otherwise the number grammar Arrow parses (signs, exponents, ``inf``,
  ``nan``; in CSV blanks around it), or ``true``/``false`` as 1/0; anything
  else is "not numeric". Parquet text columns are parsed as Arrow's cast does
  (no markers, no blanks); numeric and boolean columns are cast.
- timestamps (``prediction_ts``, ``label_ts``): ISO 8601 as Arrow parses it
  (date, ``T`` or space, hours to fractions of a second, ``Z`` or an offset,
  zone-less read as UTC), or a stored timestamp or date; the UTC day of a
  prediction is ``floor(us / 86,400,000,000)``.
- the first row of each ``event_id`` (files in listing order, rows in file
  order) is the prediction of that event; later copies (a redelivered
  stream batch) are counted as duplicates and dropped before any check, as
  ``monitor_job.first_per_event`` does.

**The same errors.** A file DuckDB cannot read, a required column no file
has, a row without an id, a score or a timestamp, a value that is not a
number or a timestamp, a NaN score, a label other than 0 or 1: each raises
:class:`~mdlc_core.monitoring.MonitoringInputError` with the shared reader's
wording, naming the file (its ``s3://`` URI) and the column, with the count
and examples. The checks run in the shared reader's order, so a day with one
fault fails with the same kind of error on either engine.

Where the two readers differ, DuckDB's is the more lenient, and only on
input that no writer of the library produces: pyarrow infers a CSV column's
type from its first block, so a file that mixes ``true`` and ``2`` in a
numeric column, zoned and zone-less timestamps, or ids stored as text in one
file and as integers in another, fails there and is read value by value here.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .. import monitoring as shared
from .. import spill
from ..monitoring import LABEL_COLUMNS, PREDICTION_COLUMNS, UNKNOWN_VERSION, MonitoringInputError
from . import monitoring as sql_monitoring

logger = logging.getLogger("mdlc.sql.monitoring_files")

_CSV = pacsv.ConvertOptions()
#: pyarrow's default CSV null markers: the shared reader's nulls in every non-text column.
NULL_MARKERS: tuple[str, ...] = tuple(_CSV.null_values)
#: pyarrow's CSV booleans, read as 1 and 0 where a number is expected.
TRUE_VALUES: tuple[str, ...] = tuple(_CSV.true_values)
FALSE_VALUES: tuple[str, ...] = tuple(_CSV.false_values)
#: A number as Arrow parses one (RE2, for DuckDB's ``regexp_full_match``).
NUMBER = r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:inf|infinity|nan))"
#: In CSV, Arrow's inference also takes blanks around a number.
CSV_NUMBER = rf"[ \t]*{NUMBER}[ \t]*"
#: ISO 8601 as Arrow's parser takes it; digits past microseconds must be zeros
#: (Arrow refuses to drop them, DuckDB would truncate).
ISO_8601 = (r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6}0{0,3})?)?)?"
            r"(Z|[+-]\d{2}(:?\d{2})?)?)?")
#: DuckDB wants minutes: ``2026-11-02T10`` is read as ``2026-11-02T10:00``.
_HOUR_ONLY = r"^(\d{4}-\d{2}-\d{2}[T ]\d{2})(Z|[+-]\d{2}(:?\d{2})?)?$"
_DAY_US = 86_400_000_000
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
_NUMERIC_TYPES = (*_INTEGER_TYPES, "FLOAT", "DOUBLE", "BOOLEAN")
_TIMESTAMP_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS",
                    "TIMESTAMP_NS")

# Bits of a row's ``_bad``: what the shared reader would refuse in it.
_ID_NULL, _VALUE_NULL, _VALUE_BAD, _SCORE_NAN, _TS_NULL, _TS_BAD = (
    shared.ID_NULL, shared.VALUE_NULL, shared.VALUE_BAD, shared.SCORE_NAN,
    shared.TS_NULL, shared.TS_BAD)


def _shapes(sources: Sequence[_Source]) -> list[list[_Source]]:
    """``sources`` cut into runs of consecutive files DuckDB reads alike: the
    same format and table function options but for the path."""
    runs: list[list[_Source]] = []
    for source in sources:
        if runs and _shape(runs[-1][0]) == _shape(source):
            runs[-1].append(source)
        else:
            runs.append([source])
    return runs


def _shape(source: _Source) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    path = _literal(str(source.file.path))
    return (source.format, source.relation.replace(path, "<path>", 1),
            tuple(source.types.items()))


def _group_insert(table: str, group: Sequence[_Source],
                  select: Callable[[_Source], tuple[str, str]]) -> str:
    """One ``INSERT`` of every file of ``group`` (one shape) in order: the table
    function over the list of paths, with each row's file index from its
    ``filename``."""
    first = group[0]
    paths = [_literal(str(source.file.path)) for source in group]
    relation = first.relation.replace(
        paths[0], "[" + ", ".join(paths) + "]", 1).removesuffix(")") + ", filename = true)"
    inner, outer = select(first)
    index = "CASE _mdlc_file " + " ".join(
        f"WHEN {path} THEN {source.index}" for path, source in zip(paths, group, strict=True)
    ) + " END"
    outer_items = outer.split(", ", 1)
    if outer_items[0] != str(first.index):
        raise AssertionError("the outer select list must start with the file's index")
    return (f"INSERT INTO {table} SELECT {index}, {outer_items[1]} FROM "
            f"(SELECT {inner}, filename AS _mdlc_file FROM {relation}) AS typed")


@dataclass(frozen=True)
class DataFile:
    """One downloaded object: where it is on disk and the name errors give it."""

    path: Path
    #: Its ``s3://bucket/key`` (or local path), named in every error about it.
    name: str


def _literal(value: str) -> str:
    """A DuckDB string literal (quotes doubled, as sqlglot renders it: a test
    holds the two equal). Written out: sqlglot's renderer built a dialect per
    call, 2 s of the 28-day simulation's monitoring."""
    return "'" + value.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    """A quoted DuckDB identifier (double quotes doubled), as :func:`_literal`."""
    return '"' + name.replace('"', '""') + '"'


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(_literal(v) for v in values)})"


@dataclass(frozen=True)
class _Source:
    """A file as DuckDB reads it: the table function and its columns' types."""

    file: DataFile
    index: int
    format: str  # "csv" or "parquet"
    relation: str
    types: dict[str, str]

    @property
    def csv(self) -> bool:
        return self.format == "csv"

    def text(self, name: str) -> str:
        """The column as the shared reader's text (NULL when the file lacks it)."""
        if name not in self.types:
            return "CAST(NULL AS VARCHAR)"
        column = _identifier(name)
        if self.csv:
            return f"COALESCE({column}, '')"  # pyarrow's string columns have no nulls
        return column if self.types[name] == "VARCHAR" else f"CAST({column} AS VARCHAR)"

    def null(self, name: str) -> str:
        """Whether the column's value is null to the shared reader."""
        if name not in self.types:
            return "TRUE"
        column = _identifier(name)
        if self.csv:
            return f"({column} IS NULL OR {_in(column, NULL_MARKERS)})"
        return f"{column} IS NULL"

    def number(self, name: str) -> str:
        """The column as a DOUBLE: NULL where null or not a number (:meth:`null` tells which)."""
        if name not in self.types:
            return "CAST(NULL AS DOUBLE)"
        column, kind = _identifier(name), self.types[name]
        if self.csv:
            return (f"CASE WHEN {self.null(name)} THEN NULL "
                    f"WHEN regexp_full_match({column}, {_literal(CSV_NUMBER)}) "
                    f"THEN TRY_CAST(trim({column}, ' \t') AS DOUBLE) "
                    f"WHEN {_in(column, TRUE_VALUES)} THEN 1.0 "
                    f"WHEN {_in(column, FALSE_VALUES)} THEN 0.0 END")
        if kind == "VARCHAR":
            return (f"CASE WHEN regexp_full_match({column}, {_literal(NUMBER)}) "
                    f"THEN TRY_CAST({column} AS DOUBLE) END")
        if kind in _NUMERIC_TYPES or kind.startswith("DECIMAL"):
            return f"CAST({column} AS DOUBLE)"
        return "CAST(NULL AS DOUBLE)"  # a BLOB, a date...: not numeric

    def micros(self, name: str) -> str:
        """The column as microseconds since the epoch, UTC (NULL: null or not a timestamp)."""
        if name not in self.types:
            return "CAST(NULL AS BIGINT)"
        column, kind = _identifier(name), self.types[name]
        if kind == "VARCHAR":
            fixed = f"regexp_replace({column}, {_literal(_HOUR_ONLY)}, '\\1:00\\2')"
            parsed = f"epoch_us(TRY_CAST({fixed} AS TIMESTAMPTZ))"
            null = f"{self.null(name)} THEN NULL WHEN " if self.csv else ""
            return (f"CASE WHEN {null}regexp_full_match({column}, {_literal(ISO_8601)}) "
                    f"THEN {parsed} END")
        if kind in _TIMESTAMP_TYPES:
            return f"epoch_us({column})"
        if kind == "DATE":
            return f"epoch_us(CAST({column} AS TIMESTAMP))"
        return "CAST(NULL AS BIGINT)"


def _bits(*parts: tuple[int, str]) -> str:
    return " + ".join(f"CASE WHEN {condition} THEN {bit} ELSE 0 END" for bit, condition in parts)


@dataclass(kw_only=True)
class DayPredictions(shared.ReadDay):
    """A day's predictions held by DuckDB (one row per event), as the engine reads them."""

    session: DaySession
    table: str
    _versions: dict[str, int] | None = field(default=None, repr=False)

    def version_counts(self) -> dict[str, int]:
        """Each model version and its predictions, in order of first appearance
        (counted once: the table does not change)."""
        if self._versions is None:
            rows = self.session.con.execute(
                f"SELECT model_version, MIN(rowid) AS first_row, COUNT(*) AS n "
                f"FROM {self.table} GROUP BY model_version ORDER BY first_row").fetchall()
            self._versions = {str(version): int(n) for version, _, n in rows}
        return dict(self._versions)

    def view(self, names: Sequence[str]) -> sql_monitoring.View:
        """The predictions relation of :mod:`mdlc_core.sql.monitoring` (compared
        columns ``m<i>`` in the order of ``names``)."""
        parts = ["event_id", "score", "day", "model_version",
                 f"rowid AS {sql_monitoring.ROW}"]
        if self.has_actions:
            parts.append("action")
        for index, name in enumerate(names):
            source = "score" if name == shared.SCORE_COLUMN else self.feature_columns[name]
            parts.append(f"{source} AS {sql_monitoring.relation_column(index)}")
        return sql_monitoring.View(f"SELECT {', '.join(parts)} FROM {self.table}")


@dataclass
class DayLabels:
    """Labels held by DuckDB, every row as it arrived."""

    session: DaySession
    table: str
    rows: int

    def __len__(self) -> int:
        return self.rows

    def view(self) -> sql_monitoring.View:
        return sql_monitoring.View(
            f"SELECT event_id, CAST(label AS BIGINT) AS label, label_ts, "
            f"rowid AS {sql_monitoring.ROW} FROM {self.table}")


@dataclass
class DayBaseline:
    """A drift baseline held by DuckDB: its compared columns as doubles, rows in
    file order (``rowid``). What ``mdlc_core.drift_baselines`` and
    :mod:`mdlc_core.sql.monitoring` need of a baseline table: ``num_rows``,
    ``column_names`` (every column of its files, as pyarrow's permissive
    concatenation lists them) and :meth:`view`."""

    session: DaySession
    #: A table of the session, or a parenthesized query over its tables (a mixture).
    relation: str
    num_rows: int
    column_names: list[str]
    #: Compared column name -> its column in :attr:`relation` (NULL: null, as NaN is).
    columns: dict[str, str] = field(default_factory=dict)

    def view(self, names: Mapping[str, str]) -> sql_monitoring.View:
        """The baseline relation of :mod:`mdlc_core.sql.monitoring`: column
        ``name`` as ``names[name]`` (``m<i>``)."""
        parts = [f"{self.columns[name]} AS {alias}" for name, alias in names.items()]
        return sql_monitoring.View(
            f"SELECT {', '.join(parts) or '0.0 AS _no_column'} FROM {self.relation}")


#: One DuckDB database per spill folder and thread count, kept for the process:
#: a warm Lambda's next run opens a cursor on it instead of a new database.
_DATABASES: dict[tuple[str, int | None], duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def _database(temp_directory: Path, threads: int | None) -> duckdb.DuckDBPyConnection:
    from . import quality as sql_quality  # connect(): the shared DuckDB settings

    key = (str(temp_directory), threads)
    with _DATABASES_LOCK:
        database = _DATABASES.get(key)
        if database is None:
            database = _DATABASES[key] = sql_quality.connect(
                temp_directory=temp_directory, threads=threads)
        return database


def close_databases() -> None:
    """Close the databases kept for the process (a cold start's cost, measured)."""
    with _DATABASES_LOCK:
        for database in _DATABASES.values():
            database.close()
        _DATABASES.clear()


# Before the spill folders go at exit: DuckDB removes its files on closing.
spill.close_at_exit(close_databases)


class DaySession:
    """One DuckDB connection that reads a day's files and computes its metrics.

    ``memory_limit`` bounds everything DuckDB holds (the day's tables, the
    joins and sorts); past it DuckDB spills to ``temp_directory`` (at most
    ``max_temp_directory_size``). The connection is a cursor of a database
    kept for the process (one per ``temp_directory`` and ``threads``), which
    is what is safe to keep warm: the tables, views and registered baselines
    are the cursor's own (DuckDB's temporary objects are per connection) and
    go with it at the end of the session, so nothing of a day outlives its
    run. The limits are the database's and set by each session (runs in one
    process share them, as they share its memory).
    """

    def __init__(self, *, memory_limit: str, temp_directory: str | Path,
                 max_temp_directory_size: str | None = None, threads: int | None = None) -> None:
        self.memory_limit = memory_limit
        self.temp_directory = Path(temp_directory)
        self.max_temp_directory_size = max_temp_directory_size
        self.threads = threads
        self._tables = 0
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> DaySession:
        self.temp_directory.mkdir(parents=True, exist_ok=True)
        self._con = _database(self.temp_directory, self.threads).cursor()
        try:
            self.set_memory_limit(self.memory_limit)
            if self.max_temp_directory_size:
                self._con.execute("SET max_temp_directory_size = "
                                  f"{_literal(self.max_temp_directory_size)}")
            else:  # DuckDB's default: 90% of the free disk
                self._con.execute("RESET max_temp_directory_size")
        except duckdb.Error as error:
            self.__exit__()
            raise ValueError(f"DuckDB rejected memory_limit {self.memory_limit!r} or "
                             f"max_temp_directory_size {self.max_temp_directory_size!r}: "
                             f"{error}") from error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()  # its temporary tables, views and registrations with it
            self._con = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("DaySession used outside its `with` block")
        return self._con

    def set_memory_limit(self, limit: str) -> None:
        """Lower (or raise) DuckDB's limit, e.g. once Arrow baselines take their share."""
        self.con.execute(f"SET memory_limit = {_literal(limit)}")
        self.memory_limit = limit

    # ------------------------------------------------------------------ reading

    def _source(self, file: DataFile, index: int) -> _Source:
        with file.path.open("rb") as handle:
            head = handle.read(4)
        fmt = shared.table_format(file.name, head)
        path = _literal(str(file.path))
        if fmt == "csv":
            # Nothing is sniffed: the header is the first line, as pyarrow reads
            # it, every column text, typed by the SQL of _Source.
            header = _csv_header(file)
            compression = "gzip" if file.name.lower().endswith(".gz") else "none"
            columns = "{" + ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in header) + "}"
            relation = (f"read_csv({path}, header = true, auto_detect = false, "
                        f"columns = {columns}, delim = ',', quote = '\"', escape = '\"', "
                        f"strict_mode = true, null_padding = false, "
                        f"compression = '{compression}')")
            return _Source(file, index, fmt, relation, dict.fromkeys(header, "VARCHAR"))
        relation = f"read_parquet({path}, can_have_nan = true)"
        try:
            described = self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        except duckdb.Error as error:
            raise MonitoringInputError(f"{file.name}: cannot read as {fmt}: "
                                       f"{_first_line(error)}") from error
        return _Source(file, index, fmt, relation, {str(r[0]): str(r[1]) for r in described})

    def _sources(self, files: Sequence[DataFile]) -> list[_Source]:
        return [self._source(file, index) for index, file in enumerate(files)]

    def _new_table(self, kind: str) -> str:
        self._tables += 1
        return f"mdlc_{kind}_{self._tables}"

    def _load(self, table: str, columns: str, sources: Sequence[_Source],
              select: Callable[[_Source], tuple[str, str]]) -> None:
        """Create ``table`` and insert every file's typed rows, in file order (rowid:
        the position as the shared reader concatenates them). ``select(source)``
        is the inner (typed values) and outer (the row) select lists, whose
        first outer item is the file's index.

        Consecutive files of one shape (format, columns and their types,
        compression) go in one statement over all of them: a stream consumer
        writes a small file per batch, and one statement a file cost a day of
        hundreds of them a third of a second in the 28-day simulation. A
        statement that fails is atomic (it inserts nothing); its files are then
        read one by one, so the error names the file."""
        self.con.execute(f"CREATE TEMP TABLE {table} ({columns})")
        self.con.execute("SET SESSION preserve_insertion_order = true")
        try:
            for group in _shapes(sources):
                if len(group) > 1:
                    try:
                        self.con.execute(_group_insert(table, group, select))
                        continue
                    except duckdb.Error:
                        pass  # find the file, below
                for source in group:
                    inner, outer = select(source)
                    try:
                        self.con.execute(f"INSERT INTO {table} SELECT {outer} FROM "
                                         f"(SELECT {inner} FROM {source.relation}) AS typed")
                    except duckdb.Error as error:
                        raise MonitoringInputError(
                            f"{source.file.name}: cannot read as {source.format}: "
                            f"{_first_line(error)}") from error
        finally:
            self.con.execute("SET SESSION preserve_insertion_order = false")

    def read_predictions(self, files: Sequence[DataFile], feature_columns: Sequence[str] = (),
                         *, what: str = "predictions") -> DayPredictions:
        """The day's predictions from ``files`` (in the order the shared reader
        concatenates them); ``what`` (the prefix) names the day in errors about
        no file in particular. The files are removed once read. Raises
        :class:`MonitoringInputError`."""
        try:
            return self._read_predictions(self._sources(files), feature_columns, what)
        finally:
            _remove(files)

    def _read_predictions(self, sources: Sequence[_Source], feature_columns: Sequence[str],
                          what: str) -> DayPredictions:
        found = _union(sources)
        if sources:
            _require(found, PREDICTION_COLUMNS, what)
        features = tuple(n for n in feature_columns
                         if n in found and n != shared.SCORE_COLUMN)
        columns = {name: f"f{index}" for index, name in enumerate(features)}
        table = self._new_table("predictions")

        def select(s: _Source) -> tuple[str, str]:
            # Each raw value is parsed once (inner), the row built from that (outer).
            inner = [f"{s.text('event_id')} AS event_id", f"{s.number('score')} AS score",
                     f"{s.null('score')} AS score_null", f"{s.micros('prediction_ts')} AS us",
                     f"{s.null('prediction_ts')} AS us_null",
                     f"{s.text('model_version')} AS model_version",
                     f"{s.text('action')} AS action"]
            outer = [str(s.index), "event_id", "score",
                     # floor(us / day), exact in integers (// truncates towards zero).
                     f"(us - ((us % {_DAY_US}) + {_DAY_US}) % {_DAY_US}) // {_DAY_US}",
                     f"COALESCE(model_version, {_literal(UNKNOWN_VERSION)})",
                     "COALESCE(action, '')"]
            for j, name in enumerate(features):
                inner += [f"{s.null(name)} AS n{j}", f"{s.number(name)} AS v{j}"]
                # NaN where the reader has a null (missing to every metric, as
                # NaN is), NULL where the value is not a number.
                outer.append(f"CASE WHEN n{j} THEN CAST('NaN' AS DOUBLE) ELSE v{j} END")
            outer.append(_bits(
                (_ID_NULL, "event_id IS NULL"), (_VALUE_NULL, "score_null"),
                (_VALUE_BAD, "NOT score_null AND score IS NULL"), (_SCORE_NAN, "isnan(score)"),
                (_TS_NULL, "us_null"), (_TS_BAD, "NOT us_null AND us IS NULL")))
            return ", ".join(inner), ", ".join(outer)

        declared = ", ".join(["_file INTEGER", "event_id VARCHAR", "score DOUBLE", "day BIGINT",
                              "model_version VARCHAR", "action VARCHAR",
                              *(f"{c} DOUBLE" for c in columns.values()), "_bad UTINYINT"])
        self._load(table, declared, sources, select)
        checks = shared.prediction_checks("_bad", columns)
        # The shared reader's order: ids first (no first-per-event without them)...
        counts = self._counts(table, checks)
        self._refuse(counts, sources, checks[:1])
        (dropped,) = self.con.execute(
            f"DELETE FROM {table} WHERE rowid NOT IN "
            f"(SELECT MIN(rowid) FROM {table} GROUP BY event_id)").fetchone() or (0,)
        if dropped:
            logger.warning("%d duplicate prediction row(s) of the same event ids counted once",
                           dropped)
            # ...then the rows that count: a dropped copy cannot fail the day.
            counts = self._counts(table, checks)
        rows = self._refuse(counts, sources, checks)
        return DayPredictions(session=self, table=table, rows=rows,
                              duplicates=int(dropped or 0), features=features,
                              has_actions="action" in found, feature_columns=columns)

    def read_labels(self, files: Sequence[DataFile], *, what: str = "labels") -> DayLabels:
        """Labels from ``files``, every row kept (the latest ``label_ts`` of an event
        wins in the join); the files are removed once read. Raises
        :class:`MonitoringInputError`."""
        try:
            return self._read_labels(self._sources(files), what)
        finally:
            _remove(files)

    def _read_labels(self, sources: Sequence[_Source], what: str) -> DayLabels:
        _require(_union(sources), LABEL_COLUMNS, what)
        table = self._new_table("labels")

        def select(s: _Source) -> tuple[str, str]:
            inner = ", ".join([
                f"{s.text('event_id')} AS event_id", f"{s.number('label')} AS label",
                f"{s.null('label')} AS label_null", f"{s.micros('label_ts')} AS us",
                f"{s.null('label_ts')} AS us_null"])
            outer = ", ".join([str(s.index), "event_id", "label", "us", _bits(
                (_ID_NULL, "event_id IS NULL"), (_VALUE_NULL, "label_null"),
                (_VALUE_BAD, "NOT label_null AND label IS NULL"), (_TS_NULL, "us_null"),
                (_TS_BAD, "NOT us_null AND us IS NULL"))])
            return inner, outer

        self._load(table, "_file INTEGER, event_id VARCHAR, label DOUBLE, label_ts BIGINT, "
                   "_bad UTINYINT", sources, select)
        checks = shared.label_checks("_bad")
        rows = self._refuse(self._counts(table, checks), sources, checks, table=table)
        return DayLabels(self, table, rows)

    def read_baseline(self, files: Sequence[DataFile], compared: Sequence[str], *,
                      what: str = "baseline") -> DayBaseline | None:
        """A drift baseline from ``files`` (several: a prefix's objects, in the
        order the shared reader concatenates them), into a table of the session,
        so it counts against the memory limit and spills past it as the day
        does. Only the ``compared`` columns (the score and the monitored
        features) are read, as doubles typed as the shared reader's
        ``monitoring.floats`` types them (a null, in CSV a null marker, is missing, as
        NaN is); a value that is not a number raises
        :class:`MonitoringInputError` naming the file. None without files.
        The files are removed once read."""
        try:
            if not files:
                return None
            return self._read_baseline(self._sources(files), compared, what)
        finally:
            _remove(files)

    def _read_baseline(self, sources: Sequence[_Source], compared: Sequence[str],
                       what: str) -> DayBaseline:
        found = _union(sources)
        names = [n for n in dict.fromkeys(compared) if n in found]
        columns = {name: f"c{j}" for j, name in enumerate(names)}
        table = self._new_table("reference")  # not mdlc_baseline_<k>, the plan's views

        def select(s: _Source) -> tuple[str, str]:
            inner = [f"{s.number(name)} AS v{j}, {s.null(name)} AS n{j}"
                     for j, name in enumerate(names)]
            outer = [str(s.index)]
            for j in range(len(names)):
                outer += [f"CASE WHEN n{j} THEN NULL ELSE v{j} END",
                          f"NOT n{j} AND v{j} IS NULL"]
            return ", ".join(inner) or "1 AS _one", ", ".join(outer)

        declared = ", ".join(["_file INTEGER", *(f"{c} DOUBLE, {c}_bad BOOLEAN"
                                                  for c in columns.values())])
        self._load(table, declared, sources, select)
        checks = [(f"{c}_bad", "number", name) for name, c in columns.items()]
        rows = self._refuse(self._counts(table, checks), sources, checks)
        logger.info("DuckDB read the baseline %s: %d rows, columns %s", what, rows, names)
        return DayBaseline(self, table, rows, found, columns)

    def mixture(self, weighted: list[tuple[DayBaseline, int]]) -> DayBaseline | None:
        """``mdlc_core.drift_baselines.mixture`` of baselines this session holds:
        the same plan (:func:`~mdlc_core.drift_baselines.mixture_plan`) and the
        same rows (``positions``' evenly spaced ``numpy.linspace(0, rows - 1,
        take).round()``, computed here in SQL: the same double products, rounded
        half to even), as a query over their tables, within the memory limit."""
        from ..drift_baselines import mixed

        return mixed(weighted, self._mixture)

    def _mixture(self, common: list[str], parts: list[tuple[DayBaseline, int]]) -> DayBaseline:
        compared = [name for name in common if all(name in b.columns for b, _ in parts)]
        selects = []
        for k, (baseline, take) in enumerate(parts):
            items = ", ".join(f"b.{baseline.columns[name]} AS c{j}"
                              for j, name in enumerate(compared)) or "0.0 AS _no_column"
            selects.append(f"SELECT {items} FROM (SELECT *, rowid AS _r FROM "
                           f"{baseline.relation}) AS b JOIN ({_positions(baseline.num_rows, take)}"
                           f") AS p{k} ON b._r = p{k}.position_")
        # A table of its own, not a view of the UNION ALL: DuckDB's windows and
        # sorts over a UNION ALL do not spill (the drift's order statistics of
        # a 2M-row mixture ran Out of Memory under 32 MB), over a table they do.
        table = self._new_table("mixture")
        self.con.execute(f"CREATE TEMP TABLE {table} AS " + " UNION ALL ".join(selects))
        rows = sum(take for _, take in parts)
        return DayBaseline(self, table, rows, common,
                           {name: f"c{j}" for j, name in enumerate(compared)})

    # ------------------------------------------------------------------- checks

    def _counts(self, table: str, checks: Sequence[tuple[str, str, str]]
                ) -> list[tuple[Any, ...]]:
        """Per file: its rows, then how many fail each check (one scan of ``table``)."""
        parts = "".join(f", COUNT(*) FILTER (WHERE {condition})" for condition, _, _ in checks)
        return self.con.execute(f"SELECT _file, COUNT(*){parts} FROM {table} GROUP BY _file "
                                "ORDER BY _file").fetchall()

    def _refuse(self, counts: Sequence[tuple[Any, ...]], sources: Sequence[_Source],
                checks: Sequence[tuple[str, str, str]], table: str | None = None) -> int:
        """Raise for the first of ``checks`` (condition, kind, column) that a row
        fails, naming the first file with such rows, how many, and examples;
        else return the rows."""
        for i, (_, kind, column) in enumerate(checks):
            for row in counts:
                count = int(row[i + 2])
                if not count:
                    continue
                source = sources[int(row[0])]
                if kind == "null":
                    text = f"{count} row(s) without {column}"
                elif kind == "nan":
                    text = f"{count} {column}(s) are NaN"
                elif kind == "label":
                    text = self._labels_not_0_or_1(str(table), source, count)
                elif kind == "timestamp":
                    text = (f"{column} is not an ISO-8601 timestamp: "
                            f"{self._examples(source, column, count)}")
                else:
                    text = f"{column} is not numeric: {self._examples(source, column, count)}"
                raise MonitoringInputError(f"{source.file.name}: {text}")
        return sum(int(row[1]) for row in counts)

    def _examples(self, source: _Source, name: str, count: int) -> str:
        """``count`` value(s) of ``name`` the reader refuses in the file, with a few."""
        parser = source.micros(name) if name.endswith("_ts") else source.number(name)
        values = [r[0] for r in self.con.execute(
            f"SELECT CAST({_identifier(name)} AS VARCHAR) FROM {source.relation} "
            f"WHERE NOT {source.null(name)} AND ({parser}) IS NULL LIMIT 3").fetchall()]
        kind = "timestamps" if name.endswith("_ts") else "numbers"
        return (f"{count} value(s) are not {kind}, e.g. {values} "
                f"(stored as {source.types[name]})")

    def _labels_not_0_or_1(self, table: str, source: _Source, count: int) -> str:
        """The shared reader's refusal of labels other than 0 and 1, with five of them."""
        (values,) = self.con.execute(
            f"SELECT list(label ORDER BY rowid)[1:5] FROM {table} WHERE _file = {source.index} "
            "AND label IS NOT NULL AND (isnan(label) OR label NOT IN (0, 1))").fetchone() or ([],)
        examples = sorted({str(np.float64(v)) for v in values or []})
        return f"label must be 0 or 1; {count} row(s) are not, e.g. {examples}"

    # ------------------------------------------------------------------ metrics

    def _run(self, plan: sql_monitoring.Plan, work: Any) -> dict[str, Any]:
        sql_monitoring.register(self.con, plan.relations)
        try:
            return work(lambda sql: _fetch(self.con, sql))
        finally:
            sql_monitoring.unregister(self.con, plan.relations)

    def open_loop(self, predictions: DayPredictions, baseline: DayBaseline | pa.Table | None,
                  bins: int = 10, feature_columns: Sequence[str] = (), *,
                  baselines: Mapping[str, DayBaseline | pa.Table | None] | None = None
                  ) -> dict[str, Any]:
        """The open loop (``Plan.open_loop``) of the day DuckDB holds, against
        baselines this session read (:meth:`read_baseline`, :meth:`mixture`) or
        Arrow tables."""
        plan = sql_monitoring.prepare_day(predictions, None, baseline, None, feature_columns,
                                          baselines=baselines, bins=bins)
        # A baseline may be larger than the memory limit: one column's sorts at a time.
        plan.column_at_a_time = True
        versions = list(predictions.version_counts().items())
        return self._run(plan, lambda fetch: plan.open_loop(fetch, "duckdb", versions=versions))

    def closed_loop(self, predictions: DayPredictions, labels: DayLabels | None,
                    decision_threshold: float) -> dict[str, Any]:
        """The closed loop (``Plan.closed_loop``) of the day DuckDB holds."""
        plan = sql_monitoring.prepare_day(predictions, labels, None,
                                          decision_threshold=decision_threshold)
        versions = list(predictions.version_counts().items())
        return self._run(plan, lambda fetch: plan.closed_loop(fetch, "duckdb",
                                                              versions=versions))


def _positions(rows: int, take: int) -> str:
    """The rows ``mdlc_core.drift_baselines.positions(rows, take)`` gives, as a
    query of one column ``position_``: ``k * step`` for ``k`` in ``range(take)``
    (numpy's linspace: the same double product), rounded half to even, the
    last one ``rows - 1`` exactly."""
    if take <= 1:
        return "SELECT CAST(0 AS BIGINT) AS position_"
    step = float(rows - 1) / (take - 1)
    return (f"SELECT CASE WHEN k = {take - 1} THEN CAST({rows - 1} AS BIGINT) ELSE "
            f"CAST(round_even(k * CAST('{step!r}' AS DOUBLE), 0) AS BIGINT) END AS position_ "
            f"FROM range({take}) AS steps(k)")


def _csv_header(file: DataFile) -> list[str]:
    """The column names of a CSV file's first line (quoted as pyarrow reads them,
    a UTF-8 byte-order mark dropped)."""
    opener: Any = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file.path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig",
                                                            newline="") as text:
            header = next(csv.reader(text), [])
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as error:
        raise MonitoringInputError(f"{file.name}: cannot read as csv: {error}") from error
    if not header:
        raise MonitoringInputError(f"{file.name}: cannot read as csv: no header line")
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise MonitoringInputError(f"{file.name}: cannot read as csv: the header repeats "
                                   f"column(s) {repeated}")
    return header


def _remove(files: Sequence[DataFile]) -> None:
    """Delete the downloaded files: DuckDB holds their rows, the disk is for spilling."""
    for file in files:
        file.path.unlink(missing_ok=True)


def _union(sources: Sequence[_Source]) -> list[str]:
    """Every file's columns, in order of first appearance (pyarrow's permissive concat)."""
    names: dict[str, None] = {}
    for source in sources:
        names.update(dict.fromkeys(source.types))
    return list(names)


def _require(found: Sequence[str], columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in found]
    if missing:
        raise MonitoringInputError(f"{what}: missing column(s) {missing}; found {list(found)}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return re.sub(r"\s+", " ", text.splitlines()[0] if text else type(error).__name__)[:300]


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


__all__ = [
    "CSV_NUMBER",
    "ISO_8601",
    "NULL_MARKERS",
    "NUMBER",
    "DataFile",
    "DayBaseline",
    "DayLabels",
    "DayPredictions",
    "DaySession",
    "close_databases",
]
