"""The day's predictions and labels read by DuckDB itself, from their CSV and Parquet files.

:mod:`mdlc_core.sql.monitoring` computes the monitoring report from
relations; with the embedded reader those are Arrow tables in Python memory
(every file of the day read, concatenated and typed by
:mod:`mdlc_core.monitoring` first), so a day larger than the process's
memory fails whatever DuckDB's ``memory_limit``. A :class:`DaySession`
instead has DuckDB read the downloaded files (``read_csv``,
``read_parquet``) into its own tables, which live under its memory limit and
spill to its temporary directory past it, and runs the same queries on them:

    with DaySession(memory_limit="2GB", temp_directory=spill) as session:
        today = session.read_predictions(files, feature_columns, what="s3://.../scored/")
        labels = session.read_labels(label_files, what="s3://.../labels/fraud/dt=.../")
        open_loop = session.open_loop(today, baseline, bins, feature_columns)
        closed_loop = session.closed_loop(today, labels, decision_threshold)

**The same types as the shared reader** (``monitoring.read_table_bytes`` and
``Predictions.from_table``/``Labels.from_table``), written as SQL over the
files' raw values: CSV is read as text (``all_varchar``) and typed here, so
one definition of parsing holds for both engines:

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

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlglot import exp

from .. import monitoring as embedded
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
_ID_NULL, _VALUE_NULL, _VALUE_BAD, _SCORE_NAN, _TS_NULL, _TS_BAD = 1, 2, 4, 8, 16, 32


@dataclass(frozen=True)
class DataFile:
    """One downloaded object: where it is on disk and the name errors give it."""

    path: Path
    #: Its ``s3://bucket/key`` (or local path), named in every error about it.
    name: str


def _literal(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="duckdb")


def _identifier(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


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


@dataclass
class DayPredictions:
    """A day's predictions held by DuckDB (one row per event), as the engine reads them."""

    session: DaySession
    table: str
    rows: int
    #: Extra copies of an event's prediction, dropped (the first row counts).
    duplicates: int
    #: The monitored features some file has, in the spec's order.
    features: tuple[str, ...]
    has_actions: bool
    #: Feature name -> its column in :attr:`table`.
    feature_columns: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rows

    def version_counts(self) -> dict[str, int]:
        """Each model version and its predictions, in order of first appearance."""
        rows = self.session.con.execute(
            f"SELECT model_version, MIN(rowid) AS first_row, COUNT(*) AS n FROM {self.table} "
            "GROUP BY model_version ORDER BY first_row").fetchall()
        return {str(version): int(n) for version, _, n in rows}

    def view(self, names: Sequence[str]) -> sql_monitoring.View:
        """The predictions relation of :mod:`mdlc_core.sql.monitoring` (compared
        columns ``m<i>`` in the order of ``names``)."""
        parts = ["event_id", "score", "day", "model_version",
                 f"rowid AS {sql_monitoring.ROW}"]
        if self.has_actions:
            parts.append("action")
        for index, name in enumerate(names):
            source = "score" if name == embedded.SCORE_COLUMN else self.feature_columns[name]
            parts.append(f"{source} AS {sql_monitoring._column(index)}")
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


class DaySession:
    """One DuckDB connection that reads a day's files and computes its metrics.

    ``memory_limit`` bounds everything DuckDB holds (the day's tables, the
    joins and sorts); past it DuckDB spills to ``temp_directory`` (at most
    ``max_temp_directory_size``). The tables are dropped with the session.
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
        from . import quality as sql_quality  # connect(): the shared DuckDB settings

        self.temp_directory.mkdir(parents=True, exist_ok=True)
        self._con = sql_quality.connect(
            memory_limit=self.memory_limit, temp_directory=self.temp_directory,
            threads=self.threads, max_temp_directory_size=self.max_temp_directory_size)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()
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
        fmt = embedded.table_format(file.name, head)
        path = _literal(str(file.path))
        if fmt == "parquet":
            relation = f"read_parquet({path}, can_have_nan = true)"
        else:
            compression = "gzip" if file.name.lower().endswith(".gz") else "none"
            # Only the line ending is left to DuckDB's sniffer: the header is the
            # first line (no rows skipped), as pyarrow reads it.
            relation = (f"read_csv({path}, header = true, skip = 0, all_varchar = true, "
                        f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
                        f"null_padding = false, compression = '{compression}')")
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
              select: Any) -> None:
        """Create ``table`` and insert every file's typed rows, in file order (rowid:
        the position as the shared reader concatenates them)."""
        self.con.execute(f"CREATE TEMP TABLE {table} ({columns})")
        self.con.execute("SET preserve_insertion_order = true")
        try:
            for source in sources:
                try:
                    self.con.execute(f"INSERT INTO {table} SELECT {select(source)} "
                                     f"FROM {source.relation}")
                except duckdb.Error as error:
                    raise MonitoringInputError(
                        f"{source.file.name}: cannot read as {source.format}: "
                        f"{_first_line(error)}") from error
        finally:
            self.con.execute("SET preserve_insertion_order = false")

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
                         if n in found and n != embedded.SCORE_COLUMN)
        columns = {name: f"f{index}" for index, name in enumerate(features)}
        table = self._new_table("predictions")

        def select(s: _Source) -> str:
            score, micros = s.number("score"), s.micros("prediction_ts")
            parts = [
                str(s.index), s.text("event_id"), score,
                # floor(us / day), exact in integers (// truncates towards zero).
                f"(({micros}) - ((({micros}) % {_DAY_US}) + {_DAY_US}) % {_DAY_US}) "
                f"// {_DAY_US}",
                f"COALESCE({s.text('model_version')}, {_literal(UNKNOWN_VERSION)})",
                f"COALESCE({s.text('action')}, '')",
            ]
            for name in features:
                # NaN where the reader has a null (missing to every metric, as
                # NaN is), NULL where the value is not a number.
                parts.append(f"CASE WHEN {s.null(name)} THEN CAST('NaN' AS DOUBLE) "
                             f"ELSE {s.number(name)} END")
            parts.append(_bits(
                (_ID_NULL, f"({s.text('event_id')}) IS NULL"),
                (_VALUE_NULL, s.null("score")),
                (_VALUE_BAD, f"NOT {s.null('score')} AND ({score}) IS NULL"),
                (_SCORE_NAN, f"isnan({score})"),
                (_TS_NULL, s.null("prediction_ts")),
                (_TS_BAD, f"NOT {s.null('prediction_ts')} AND ({micros}) IS NULL")))
            return ", ".join(parts)

        declared = ", ".join(["_file INTEGER", "event_id VARCHAR", "score DOUBLE", "day BIGINT",
                              "model_version VARCHAR", "action VARCHAR",
                              *(f"{c} DOUBLE" for c in columns.values()), "_bad UTINYINT"])
        self._load(table, declared, sources, select)
        # The shared reader's order: ids first (no first-per-event without them)...
        self._refuse(table, sources, [(_ID_NULL, "null", "event_id")])
        (dropped,) = self.con.execute(
            f"DELETE FROM {table} WHERE rowid NOT IN "
            f"(SELECT MIN(rowid) FROM {table} GROUP BY event_id)").fetchone() or (0,)
        if dropped:
            logger.warning("%d duplicate prediction row(s) of the same event ids counted once",
                           dropped)
        # ...then the rows that count: a dropped copy cannot fail the day.
        self._refuse(table, sources, [
            (_VALUE_NULL, "null", "score"), (_VALUE_BAD, "bad", "score"),
            (_SCORE_NAN, "nan", "score"), (_TS_NULL, "null", "prediction_ts"),
            (_TS_BAD, "bad", "prediction_ts")])
        self._refuse_features(table, sources, columns)
        (rows,) = self.con.execute(f"SELECT COUNT(*) FROM {table}").fetchone() or (0,)
        return DayPredictions(self, table, int(rows), int(dropped or 0), features,
                              "action" in found, columns)

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

        def select(s: _Source) -> str:
            label, micros = s.number("label"), s.micros("label_ts")
            return ", ".join([
                str(s.index), s.text("event_id"), label, micros,
                _bits((_ID_NULL, f"({s.text('event_id')}) IS NULL"),
                      (_VALUE_NULL, s.null("label")),
                      (_VALUE_BAD, f"NOT {s.null('label')} AND ({label}) IS NULL"),
                      (_TS_NULL, s.null("label_ts")),
                      (_TS_BAD, f"NOT {s.null('label_ts')} AND ({micros}) IS NULL"))])

        self._load(table, "_file INTEGER, event_id VARCHAR, label DOUBLE, label_ts BIGINT, "
                   "_bad UTINYINT", sources, select)
        self._refuse(table, sources, [(_ID_NULL, "null", "event_id"),
                                      (_VALUE_NULL, "null", "label"), (_VALUE_BAD, "bad", "label")])
        self._refuse_labels(table, sources)
        self._refuse(table, sources, [(_TS_NULL, "null", "label_ts"),
                                      (_TS_BAD, "bad", "label_ts")])
        (rows,) = self.con.execute(f"SELECT COUNT(*) FROM {table}").fetchone() or (0,)
        return DayLabels(self, table, int(rows))

    # ------------------------------------------------------------------- checks

    def _refuse(self, table: str, sources: Sequence[_Source],
                checks: Sequence[tuple[int, str, str]]) -> None:
        """Raise for the first of ``checks`` (bit, kind, column) that a row fails,
        naming the first file with such rows, how many, and examples."""
        counts = ", ".join(f"COUNT(*) FILTER (WHERE _bad & {bit} <> 0) AS b{bit}"
                           for bit, _, _ in checks)
        found = self.con.execute(
            f"SELECT _file, {counts} FROM {table} WHERE _bad <> 0 GROUP BY _file "
            "ORDER BY _file").fetchall()
        for i, (_, kind, column) in enumerate(checks):
            for row in found:
                count = int(row[i + 1])
                if not count:
                    continue
                source = sources[int(row[0])]
                if kind == "null":
                    text = f"{count} row(s) without {column}"
                elif kind == "nan":
                    text = f"{count} {column}(s) are NaN"
                elif column.endswith("_ts"):
                    text = (f"{column} is not an ISO-8601 timestamp: "
                            f"{self._examples(source, column, count)}")
                else:
                    text = f"{column} is not numeric: {self._examples(source, column, count)}"
                raise MonitoringInputError(f"{source.file.name}: {text}")

    def _examples(self, source: _Source, name: str, count: int) -> str:
        """``count`` value(s) of ``name`` the reader refuses in the file, with a few."""
        parser = source.micros(name) if name.endswith("_ts") else source.number(name)
        values = [r[0] for r in self.con.execute(
            f"SELECT CAST({_identifier(name)} AS VARCHAR) FROM {source.relation} "
            f"WHERE NOT {source.null(name)} AND ({parser}) IS NULL LIMIT 3").fetchall()]
        kind = "timestamps" if name.endswith("_ts") else "numbers"
        return (f"{count} value(s) are not {kind}, e.g. {values} "
                f"(stored as {source.types[name]})")

    def _refuse_features(self, table: str, sources: Sequence[_Source],
                         columns: Mapping[str, str]) -> None:
        if not columns:
            return
        counts = ", ".join(f"COUNT(*) FILTER (WHERE {c} IS NULL)" for c in columns.values())
        found = self.con.execute(f"SELECT _file, {counts} FROM {table} GROUP BY _file "
                                 "ORDER BY _file").fetchall()
        for i, name in enumerate(columns):
            for row in found:
                if row[i + 1]:
                    source = sources[int(row[0])]
                    raise MonitoringInputError(
                        f"{source.file.name}: {name} is not numeric: "
                        f"{self._examples(source, name, int(row[i + 1]))}")

    def _refuse_labels(self, table: str, sources: Sequence[_Source]) -> None:
        found = self.con.execute(
            f"SELECT _file, COUNT(*), list(label ORDER BY rowid)[1:5] FROM {table} "
            "WHERE label IS NOT NULL AND (isnan(label) OR label NOT IN (0, 1)) "
            "GROUP BY _file ORDER BY _file").fetchall()
        if found:
            file, count, values = found[0]
            examples = sorted({str(np.float64(v)) for v in values})
            raise MonitoringInputError(
                f"{sources[int(file)].file.name}: label must be 0 or 1; {count} row(s) are "
                f"not, e.g. {examples}")

    # ------------------------------------------------------------------ metrics

    def _run(self, plan: sql_monitoring.Plan, work: Any) -> dict[str, Any]:
        sql_monitoring.register(self.con, plan.relations)
        try:
            return work(lambda sql: _fetch(self.con, sql))
        finally:
            sql_monitoring.unregister(self.con, plan.relations)

    def open_loop(self, predictions: DayPredictions, baseline: pa.Table | None, bins: int = 10,
                  feature_columns: Sequence[str] = (), *,
                  baselines: Mapping[str, pa.Table | None] | None = None) -> dict[str, Any]:
        """:func:`mdlc_core.monitoring.open_loop` of the day DuckDB holds."""
        plan = sql_monitoring.prepare_day(predictions, None, baseline, None, feature_columns,
                                          baselines=baselines, bins=bins)
        return self._run(plan, lambda fetch: plan.open_loop(fetch, "duckdb"))

    def closed_loop(self, predictions: DayPredictions, labels: DayLabels | None,
                    decision_threshold: float) -> dict[str, Any]:
        """:func:`mdlc_core.monitoring.closed_loop` of the day DuckDB holds."""
        plan = sql_monitoring.prepare_day(predictions, labels, None,
                                          decision_threshold=decision_threshold)
        return self._run(plan, lambda fetch: plan.closed_loop(fetch, "duckdb"))


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
    "DayLabels",
    "DayPredictions",
    "DaySession",
]
