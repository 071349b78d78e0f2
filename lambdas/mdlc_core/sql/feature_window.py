"""The feature job's window on DuckDB: its snapshot objects read and typed by DuckDB itself.

The feature job (:mod:`mdlc_core.feature_job`) reads the day's snapshot and
the days its longest window needs. Held as Python lists or Arrow tables, a
window larger than the function's memory fails whatever DuckDB's
``memory_limit``; here it never enters Python. Each downloaded object
(already checked against its manifest's SHA-256) becomes one part of the
relation :data:`~mdlc_core.sql.features.EVENTS` that the compiled feature
queries read, and the two tables the job writes are streamed from DuckDB to
Parquet files in record batches. Memory is DuckDB's limit, past which it
spills to the job's scratch folder, plus one batch.

Each object is typed as :func:`~mdlc_core.sql.features.events_relation`
types events in memory (value by value through the shared converters of
:mod:`mdlc_core.batch_features`), to the same values and the same errors,
now naming the object and the row:

* **Parquet** whose columns are stored as strings, integers, floats,
  booleans or microsecond timestamps is scanned in place (``read_parquet``,
  the row positions from ``file_row_number``), typed column-wise in SQL as
  the engine types Arrow columns: keys as text (an empty string is null,
  integers as their digits), timestamps as UTC microseconds (naive ones
  taken as UTC), numbers as doubles (null where not finite). Any other
  stored type (float keys, millisecond timestamps, numbers stored as text)
  is typed by the engine's own code, one object at a time in Python, and
  staged as Parquet on disk: memory is then one object, not the window.
* **CSV** (plain or compressed; compressed objects are decompressed to disk
  first, streaming) is read by ``read_csv`` with every column as text and
  pyarrow's dialect (comma, double quote, a header row), and staged as
  typed Parquet on disk in file order, so the positions are the file's and
  the text is parsed once. The text is parsed by SQL where its form is one
  whose SQL parse is known to equal the engine's (plain decimals; ISO 8601
  dates and times with an optional ``Z`` or ``+HH:MM``; epoch integers in
  the column's unit) and by the engine's own converters (``to_micros``,
  ``as_float``), as DuckDB Python functions, for every other form, so the
  values and the verdicts are the converters': an amount ``1_000`` is
  1000, ``ten`` fails, a timestamp ``2026-02-30`` fails with Python's
  reason. ``tests/test_feature_window.py`` checks the SQL forms against the
  converters on generated text.

A bad value fails the job with the engine's message, prefixed by where it
is: ``s3://bucket/key, row 17 (line 19): column 'order_amount': 'ten' is not
a number``; a missing column, an empty object or one that is not CSV or
Parquet with the shared reader's (:mod:`mdlc_core.tabular`) message naming
the object; a CSV that DuckDB cannot parse with DuckDB's reason, naming
the object.

The label (``data.label``) is carried from the objects of the day itself,
typed as ``data.columns`` declares it by the shared reader's rules
(``tabular.convert``: a value that does not parse is null), only when they
have the column.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlglot import exp

from .. import batch_features as shared
from .. import spill, tabular
from ..batch_features import FeatureError, FeatureSet
from ..feature_job import entity_schema, training_schema
from . import features as sql_features
from .features import DAY, EVENTS, MICROS, ROW

logger = logging.getLogger("mdlc.feature_window")

#: The label's column in :data:`EVENTS` (null outside the day's objects).
LABEL = "_mdlc_label"
#: What is wrong with a row (null when nothing), and the text at fault.
_PROBLEM, _TEXT = "_mdlc_problem", "_mdlc_text"
#: The staged row's object (its local path).
_SOURCE = "_mdlc_source"
_US_PER_DAY = 86_400_000_000
#: The DuckDB optimizers that act on Parquet statistics blind to NaN
#: (duckdb/duckdb#25521, as in :mod:`mdlc_core.sql.quality`): the typing's
#: "not finite is null" test must see every NaN.
NAN_UNSAFE_OPTIMIZERS = "filter_pushdown,statistics_propagation"
#: Rows per record batch streamed from DuckDB into the Parquet writer.
BATCH_ROWS = 65_536

# Forms of text whose SQL parse equals the engine's (tests/test_feature_window.py).
_DECIMAL = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
_YEAR = r"([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])"
_DATE = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_TIME = r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
_NAIVE = f"{_DATE}([T ]{_TIME})?"
_ZONED = f"{_DATE}[T ]{_TIME}(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)"
_EPOCH = r"[+-]?\d{1,18}"
_INTEGER = r"[+-]?\d{1,18}"

#: DuckDB's name of each declared type (``tabular.ARROW_TYPES``).
_DUCKDB_TYPES = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
                 "timestamp": "TIMESTAMPTZ"}


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _s(text: str) -> str:
    return exp.Literal.string(text).sql("duckdb")


def _matches(column: str, pattern: str) -> str:
    return f"regexp_full_match({column}, {_s(pattern)})"


@dataclass
class _Part:
    """A staged Parquet file of the window's schema: one or more objects'
    typed rows in order (``objects``: each one's name, staged path and
    rows), and the position of its first row in the window."""

    staged: Path
    rows: int
    offset: int
    objects: list[tuple[str, str, int]]
    csv: bool

    @property
    def select(self) -> str:
        return f"SELECT * FROM read_parquet({_s(str(self.staged))}, file_row_number = true)"


@dataclass
class _Pending:
    """An object waiting to be staged with the like objects after it."""

    name: str
    path: Path
    signature: tuple[Any, ...]  # objects alike in it are staged by one statement
    kinds: dict[str, str | None]
    label: bool
    today: bool


@dataclass
class Window:
    """The window's objects as :data:`EVENTS` on ``con``, in the order added
    (oldest day first, each manifest's order), then the two tables.

    ``label`` / ``label_type``: the label column and its declared type
    (carried from the objects added with ``today``); ``inputs``: the model's
    raw inputs (numbers). ``folder``: where staged Parquet goes. Objects
    alike (the same format, header or stored types, and day kind) are staged
    by one DuckDB statement: the fixed cost is per run of objects, not per
    object (a statement costs milliseconds to plan, the same for 100 rows
    as for a million).
    """

    con: duckdb.DuckDBPyConnection
    features: FeatureSet
    folder: Path
    label: str | None = None
    label_type: str = "string"
    inputs: Sequence[str] = ()
    parts: list[_Part] = field(default_factory=list)
    #: The first row of the day's own objects (training rows start there).
    today_row: int | None = None
    labelled_today: bool = False
    _deduplicated: int = -1  # how many parts window.parquet holds
    _pending: list[_Pending] = field(default_factory=list)

    def __post_init__(self) -> None:
        f = self.features
        self.numeric = sorted(set(f.value_columns) | set(f.raw_columns) | set(self.inputs))
        clash = sorted({ROW, MICROS, DAY, LABEL, _PROBLEM, _TEXT, _SOURCE}
                       & {f.event_id, *f.entity_columns, *self.numeric})
        if clash:
            raise FeatureError(f"the columns {clash} are reserved by the SQL feature engine")
        self.keys = [c for c in f.entity_columns if c != f.event_id]
        self.values = {c: (f"_mdlc_value_{c}" if c in (f.event_id, *self.keys) else c)
                       for c in self.numeric}
        #: The columns of EVENTS, in order (ROW first).
        self.columns = [ROW, f.event_id, MICROS, DAY, *self.keys,
                        *self.values.values(), LABEL]
        # In the order the job reads them (FeatureSet.entity_table_columns),
        # so a missing column is named as the other readers name it.
        self.needed = list(dict.fromkeys([*f.entity_table_columns, *self.numeric]))
        self._functions()

    # --- adding objects ------------------------------------------------------------

    @property
    def rows(self) -> int:
        """The rows staged so far (:meth:`flush` stages what is pending)."""
        return sum(p.rows for p in self.parts)

    def add(self, path: Path, name: str, file_format: str | None, *, today: bool) -> None:
        """One downloaded object (``name``: its ``s3://`` URI, for errors). Its
        format, header and columns are checked now; its rows when it is
        staged (:meth:`flush`, at the latest by :meth:`relation`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        source = tabular.TableSource(name, path=path, declared=file_format)
        kind = source.format()
        if kind not in ("csv", "parquet"):
            raise FeatureError(f"{name}: not a CSV or Parquet file (expected one of "
                               f"{', '.join(tabular.CSV_SUFFIXES + tabular.PARQUET_SUFFIXES)})")
        if source.size() == 0:
            raise FeatureError(f"{name}: file is empty")
        pending = self._csv(source, path, today) if kind == "csv" \
            else self._parquet(source, path, today)
        if pending is None:
            return
        if self._pending and self._pending[-1].signature != pending.signature:
            self.flush()
        self._pending.append(pending)

    def _label_wanted(self, present: Sequence[str], today: bool) -> bool:
        wanted = bool(self.label and today and self.label in present
                      and self.label not in self.needed)
        self.labelled_today |= wanted
        return wanted

    def _csv(self, source: Any, path: Path, today: bool) -> _Pending:
        name = source.label
        if source.head()[:2] == b"\x1f\x8b" or source.head()[:3] == b"BZh" \
                or source.head() == b"\x28\xb5\x2f\xfd":
            plain = path.with_name(path.name + ".plain.csv")
            with source.stream() as stream, plain.open("wb") as out:
                try:
                    shutil.copyfileobj(stream, out, 1 << 20)
                except (OSError, pa.ArrowException) as error:
                    raise FeatureError(f"{name}: cannot be read as CSV: "
                                       f"{tabular.first_line(error)}") from error
            path.unlink()
            path = plain
            source = tabular.TableSource(name, path=path, declared="csv")
        try:
            with pacsv.open_csv(source.stream()) as reader:  # the header, as the reader has it
                header = reader.schema.names
        except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
            raise FeatureError(f"{name}: cannot be read as CSV: "
                               f"{tabular.first_line(error)}") from error
        self._require(name, header)
        label = self._label_wanted(header, today)
        kinds: dict[str, str | None] = {c: "csv" for c in header}
        return _Pending(name, path, ("csv", tuple(header), label, today), kinds, label, today)

    def _parquet(self, source: Any, path: Path, today: bool) -> _Pending | None:
        name = source.label
        try:
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
        except (OSError, pa.ArrowException) as error:
            raise FeatureError(f"{name}: cannot be read as PARQUET: "
                               f"{tabular.first_line(error)}") from error
        self._require(name, schema.names)
        label = self._label_wanted(schema.names, today)
        kinds = {c: _stored_kind(schema.field(c).type) for c in self.needed}
        if label:
            declared = tabular.ARROW_TYPES[self.label_type]
            kinds[self.label or ""] = "label" if schema.field(self.label).type == declared \
                else None
        if self._typable(kinds):
            stored = tuple((f.name, str(f.type)) for f in schema)
            return _Pending(name, path, ("parquet", stored, label, today), kinds, label, today)
        self.flush()
        staged = self._stage_in_python(parquet, name, len(self.parts), label)
        path.unlink()
        rows = parquet.metadata.num_rows
        self._mark_today(today)
        self.parts.append(_Part(staged, rows, self.rows, [(name, str(staged), rows)], False))
        return None

    def _mark_today(self, today: bool) -> None:
        if today and self.today_row is None:
            self.today_row = self.rows

    def flush(self) -> None:
        """Stage the pending objects (alike, in order) by one statement, and
        check their rows: the first bad one fails, naming its object."""
        if not self._pending:
            return
        run, self._pending = self._pending, []
        first = run[0]
        csv = first.signature[0] == "csv"
        files = "[" + ", ".join(_s(str(p.path)) for p in run) + "]"
        if csv:
            header = first.signature[1]
            columns = "{" + ", ".join(f"{_s(c)}: 'VARCHAR'" for c in header) + "}"
            raw = (f"read_csv({files}, header = true, delim = ',', quote = '\"', "
                   f"escape = '\"', auto_detect = false, compression = 'none', "
                   f"columns = {columns}, filename = {_s(_SOURCE)})")
        else:
            raw = f"read_parquet({files}, filename = {_s(_SOURCE)})"
        typed = self._typed(first.kinds, first.label)
        staged = self.folder / f"part-{len(self.parts):06d}.parquet"
        self.con.execute("SET preserve_insertion_order = true")  # the files' order
        try:
            self.con.execute(f"COPY (SELECT {typed}, {_q(_SOURCE)} FROM {raw}) "
                             f"TO {_s(str(staged))} (FORMAT parquet)")
        except duckdb.Error as error:
            if isinstance(error, duckdb.OutOfMemoryException | duckdb.IOException):
                raise
            names = ", ".join(p.name for p in run)
            kind = "CSV" if csv else "PARQUET"
            raise FeatureError(f"{_culprit(error, run) or names}: cannot be read as {kind}: "
                               f"{tabular.first_line(error)}") from error
        finally:
            self.con.execute("SET preserve_insertion_order = false")
        counted = dict(self.con.execute(
            f"SELECT {_q(_SOURCE)}, count(*) FROM read_parquet({_s(str(staged))}) "
            "GROUP BY ALL").fetchall())
        objects = [(p.name, str(p.path), int(counted.get(str(p.path), 0))) for p in run]
        for p in run:
            p.path.unlink()  # staged: the object is not read again
        self._mark_today(first.today)
        part = _Part(staged, sum(rows for _, _, rows in objects), self.rows, objects, csv)
        self.parts.append(part)
        self._validate(part)

    def _require(self, name: str, present: Sequence[str]) -> None:
        missing = [c for c in self.needed if c not in present]
        if missing:
            raise FeatureError(f"{name} has no column(s) {missing}")

    # --- typing in SQL -----------------------------------------------------------------

    def _typable(self, kinds: Mapping[str, str | None]) -> bool:
        """Whether SQL types every role of a Parquet object's columns (else
        the engine's own code does, :meth:`_stage_in_python`)."""
        f = self.features
        keys = [kinds[c] in ("string", "int") for c in (f.event_id, *f.entity_columns)]
        numbers = [kinds[c] in ("string", "int", "number") for c in self.numeric]
        stamp = kinds[f.timestamp] in ("string", "ts")
        label = kinds.get(self.label or "", "label") == "label"
        return all(keys) and all(numbers) and stamp and label

    def _typed(self, kinds: Mapping[str, str | None], label: bool) -> str:
        """The typed columns of one object, and what is wrong with a row.

        ``kinds``: each column's stored kind: ``csv`` (CSV text, where an
        empty field is null), or Parquet's ``string``, ``int``, ``ts``
        (microsecond timestamps) and ``number`` (floats, booleans). The
        problem column names the first check a row fails, in the engine's
        order: the event id, the timestamp's presence, its form, the entity
        key, then each number.
        """
        f = self.features
        problems: list[tuple[str, str, str]] = []  # (condition, code, text)

        def key(column: str) -> str:
            c = _q(column)
            kind = kinds[column]
            if kind == "int":
                return f"CAST({c} AS VARCHAR)"
            return f"NULLIF({c}, '')" if kind == "string" else c

        ident = key(f.event_id)
        problems.append((f"{ident} IS NULL", "no_id", "NULL"))
        ts = _q(f.timestamp)
        if kinds[f.timestamp] in ("csv", "string"):
            micros = self._micros_text(ts)
            # CSV text has no nulls: an empty field is the text '' (which
            # to_micros rejects); Parquet's null is a missing timestamp.
            problems.append((f"{ts} IS NULL", "bad_ts" if kinds[f.timestamp] == "csv"
                             else "no_ts", "''"))
            problems.append((f"{micros} IS NULL", "bad_ts", ts))
        else:
            micros = f"epoch_us({ts})"
            problems.append((f"{ts} IS NULL", "no_ts", "NULL"))
        problems.append((f"{key(f.entity_key)} IS NULL", "no_key", "NULL"))
        columns = [f"CAST({ident} AS VARCHAR) AS {_q(f.event_id)}",
                   f"CAST({micros} AS BIGINT) AS {_q(MICROS)}"]
        columns += [f"CAST({key(c)} AS VARCHAR) AS {_q(c)}" for c in self.keys]
        for column, alias in self.values.items():
            c = _q(column)
            if kinds[column] in ("csv", "string"):
                number = self._number_text(c)
                # The converter only where SQL's parse fails (a Python call a value
                # otherwise: 30k of them for a window of 15k rows and two numbers).
                problems.append((f"{c} IS NOT NULL AND ({self.number_fast(c)}) IS NULL "
                                 f"AND NOT {self._fn}number_ok({c})", f"bad_number:{column}", c))
            else:
                number = f"CAST({c} AS DOUBLE)"
            columns.append(f"CAST({_finite(number)} AS DOUBLE) AS {_q(alias)}")
        target = _DUCKDB_TYPES[self.label_type]
        columns.append(f"CAST({self._label(kinds, label)} AS {target}) AS {_q(LABEL)}")
        case = " ".join(f"WHEN {condition} THEN {_s(code)}" for condition, code, _ in problems)
        text = " ".join(f"WHEN {condition} THEN {value}" for condition, _, value in problems
                        if value not in ("NULL",))
        columns.append(f"CASE {case} END AS {_q(_PROBLEM)}")
        columns.append(f"CAST(CASE {text} END AS VARCHAR) AS {_q(_TEXT)}" if text
                       else f"CAST(NULL AS VARCHAR) AS {_q(_TEXT)}")
        return ", ".join(columns)

    def _micros_text(self, t: str) -> str:
        """UTC microseconds of timestamp text, or null where the engine fails it."""
        return f"COALESCE({self.micros_fast(t)}, {self._fn}micros({t}))"

    def micros_fast(self, t: str) -> str:
        """The forms of timestamp text SQL parses as ``to_micros`` does (null
        for any other form, and where SQL finds no moment: the engine decides)."""
        unit = self.features.timestamp_unit
        epoch = "NULL"
        if unit is not None:
            from .. import timestamps

            low, high = timestamps.bounds(unit)
            scale = timestamps.PER_SECOND[unit]
            n = f"CAST({t} AS BIGINT)"
            epoch = (f"CASE WHEN {n} >= {low} AND {n} < {high} THEN "
                     f"({n} // {scale}) * 1000000 + ({n} % {scale}) * 1000000 // {scale} END")
        return (f"CASE WHEN {_matches(t, _NAIVE)} THEN epoch_us(TRY_CAST({t} AS TIMESTAMP)) "
                f"WHEN {_matches(t, _ZONED)} THEN epoch_us(TRY_CAST({t} AS TIMESTAMPTZ)) "
                f"WHEN {_matches(t, _EPOCH)} THEN {epoch} END")

    def _number_text(self, v: str) -> str:
        fast = self.number_fast(v)
        return f"CASE WHEN {v} IS NULL THEN NULL ELSE COALESCE({fast}, {self._fn}number({v})) END"

    @staticmethod
    def number_fast(v: str) -> str:
        """The forms of number text SQL parses as ``float()`` does (null for any other)."""
        return (f"CASE WHEN {_matches(v, _DECIMAL)} THEN TRY_CAST({v} AS DOUBLE) "
                f"WHEN lower({v}) = 'true' THEN 1.0 WHEN lower({v}) = 'false' THEN 0.0 END")

    def _label(self, kinds: Mapping[str, str | None], label: bool) -> str:
        target = _DUCKDB_TYPES[self.label_type]
        if not label or self.label is None:
            return f"CAST(NULL AS {target})"
        v = _q(self.label)
        if kinds.get(self.label) == "label":  # stored as declared
            return v
        # CSV text, by the shared reader's rules (tabular.convert of the text).
        if self.label_type == "string":
            return f"COALESCE({v}, '')"
        fast = {"int": (_INTEGER, "BIGINT"), "float": (_DECIMAL, "DOUBLE")}.get(self.label_type)
        slow = f"{self._fn}label({v})"
        if fast is not None:
            pattern, cast = fast
            return f"COALESCE(CASE WHEN {_matches(v, pattern)} THEN TRY_CAST({v} AS {cast}) END, " \
                   f"{slow})"
        if self.label_type == "bool":
            true = ", ".join(_s(t) for t in tabular.TRUE_TEXTS)
            false = ", ".join(_s(t) for t in tabular.FALSE_TEXTS)
            return (f"CASE WHEN lower({v}) IN ({true}) THEN true WHEN lower({v}) IN ({false}) "
                    f"THEN false ELSE {slow} END")
        return slow

    def _functions(self) -> None:
        """The engine's converters as DuckDB functions, for the text SQL does not parse."""
        unit = self.features.timestamp_unit

        def micros(text: str | None) -> int | None:
            try:
                return shared.to_micros("" if text is None else text, unit)
            except FeatureError:
                return None

        def number(text: str | None) -> float | None:
            try:
                value = shared.as_float(text, "")
            except FeatureError:
                return None
            return None if value != value else value  # NaN: null

        def number_ok(text: str | None) -> bool:
            try:
                shared.as_float(text, "")
            except FeatureError:
                return False
            return True

        label_type = self.label_type

        def label(text: str | None) -> Any:
            array = pa.chunked_array([pa.array([text], pa.string())])
            return tabular.convert(array, label_type).to_pylist()[0]

        special = {"null_handling": "special"}
        # Functions are the database's, which a warm process keeps (session):
        # named for this window, so no run reaches another's converters.
        self._fn = f"mdlc_{next(_WINDOWS)}_"
        fn = self._fn
        self.con.create_function(f"{fn}micros", micros, ["VARCHAR"], "BIGINT", **special)
        self.con.create_function(f"{fn}number", number, ["VARCHAR"], "DOUBLE", **special)
        self.con.create_function(f"{fn}number_ok", number_ok, ["VARCHAR"], "BOOLEAN",
                                 **special)
        self.con.create_function(f"{fn}label", label, ["VARCHAR"], _DUCKDB_TYPES[label_type],
                                 **special)

    def close(self) -> None:
        """Remove this window's functions from the database (which may outlive it)."""
        for name in ("micros", "number", "number_ok", "label"):
            with contextlib.suppress(duckdb.Error):  # never registered, or gone already
                self.con.remove_function(f"{self._fn}{name}")

    # --- objects typed in Python ---------------------------------------------------------

    def _stage_in_python(self, parquet: pq.ParquetFile, name: str, index: int,
                         label: bool) -> Path:
        """An object of other stored types, typed by the engine's own code (one
        object in memory) and staged with the columns the SQL typing gives."""
        f = self.features
        wanted = [*self.needed, *([self.label] if label and self.label else [])]
        try:
            table = parquet.read(columns=list(dict.fromkeys(wanted)))
        except (OSError, pa.ArrowException) as error:
            raise FeatureError(f"{name}: cannot be read as PARQUET: "
                               f"{tabular.first_line(error)}") from error
        try:
            relation = sql_features.events_relation(table, f, extra=self.inputs)
        except FeatureError as error:
            raise FeatureError(f"{name}: {error}") from error
        typed = relation.table
        arrays = {f.event_id: typed.column(f.event_id), MICROS: typed.column(MICROS)}
        arrays |= {c: typed.column(c) for c in self.keys}
        arrays |= {alias: typed.column(relation.values[c]) for c, alias in self.values.items()}
        target = tabular.ARROW_TYPES[self.label_type]
        arrays[LABEL] = (tabular.convert(table.column(self.label), self.label_type)
                         if label and self.label else pa.nulls(table.num_rows, target))
        arrays[_PROBLEM] = pa.nulls(table.num_rows, pa.string())
        arrays[_TEXT] = pa.nulls(table.num_rows, pa.string())
        arrays[_SOURCE] = pa.array([name] * table.num_rows, pa.string())
        schema = pa.schema([pa.field(f.event_id, pa.string()), pa.field(MICROS, pa.int64()),
                            *[pa.field(c, pa.string()) for c in self.keys],
                            *[pa.field(a, pa.float64()) for a in self.values.values()],
                            pa.field(LABEL, target), pa.field(_PROBLEM, pa.string()),
                            pa.field(_TEXT, pa.string()), pa.field(_SOURCE, pa.string())])
        staged = self.folder / f"part-{index:06d}.parquet"
        pq.write_table(pa.table({n: arrays[n] for n in schema.names}, schema=schema), staged)
        return staged

    # --- checking ------------------------------------------------------------------------

    def _validate(self, part: _Part) -> None:
        """The first bad row of ``part`` fails the job, naming its object, its
        row there (0-based; CSV: and its line, the header being line 1) and why."""
        found = self.con.execute(  # fetchall: a result left open blocks the connection
            f"SELECT file_row_number, {_q(_PROBLEM)}, {_q(_TEXT)}, "
            f"{_q(self.features.event_id)} FROM ({part.select}) "
            f"WHERE {_q(_PROBLEM)} IS NOT NULL ORDER BY file_row_number LIMIT 1").fetchall()
        if not found:
            return
        [(position, problem, text, ident)] = found
        start, name = 0, part.objects[-1][0]
        for object_name, _, rows in part.objects:
            if position < start + rows:
                name = object_name
                break
            start += rows
        row = position - start
        where = f"{name}, row {row}" + (f" (line {row + 2})" if part.csv else "")
        f = self.features
        if problem == "no_id":
            message = f"event has no {f.event_id}"
        elif problem == "no_ts":
            message = f"event {ident!r} has no {f.timestamp}"
        elif problem == "no_key":
            message = f"event {ident!r} has no {f.entity_key}"
        elif problem == "bad_ts":
            message = _failure(lambda: shared.to_micros(text or "", f.timestamp_unit),
                               f"column {f.timestamp!r}: ")
        else:
            column = problem.split(":", 1)[1]
            message = _failure(lambda: shared.as_float(text, column), "")
        raise FeatureError(f"{where}: {message}")

    # --- the relation and the tables -------------------------------------------------------

    def relation(self) -> sql_features.Relation:
        """:data:`EVENTS` (created as a view of every part) for the compiled queries."""
        self.flush()
        if not self.parts:
            raise FeatureError("the window has no objects")
        # One scan of every staged file (not a UNION ALL of one scan each:
        # DuckDB's hash aggregates over a union of many scans need memory per
        # branch and failed where this one spills), each row's window position
        # its file's offset plus its row in the file.
        offsets = pa.table({"_mdlc_file": [str(p.staged) for p in self.parts],
                            "_mdlc_offset": pa.array([p.offset for p in self.parts], pa.int64())})
        self.con.register("_mdlc_offsets", offsets)
        d = _US_PER_DAY
        day = f"({_q(MICROS)} - ((({_q(MICROS)} % {d}) + {d}) % {d})) // {d}"
        columns = [f"CAST(file_row_number AS BIGINT) + _mdlc_offset AS {_q(ROW)}",
                   _q(self.features.event_id), _q(MICROS), f"{day} AS {_q(DAY)}",
                   *[_q(c) for c in self.keys], *[_q(v) for v in self.values.values()],
                   _q(LABEL)]
        files = "[" + ", ".join(_s(str(p.staged)) for p in self.parts) + "]"
        window = self.folder / "window.parquet"
        if self._deduplicated != len(self.parts):
            # Each event id once, its first delivery, written to disk before
            # the window functions run: a semi-join under them keeps its hash
            # table while they sort, and failed at a limit they alone fit in.
            ident = _q(self.features.event_id)
            self.con.execute(
                f"COPY (WITH {_q('_mdlc_all')} AS (SELECT {', '.join(columns)} "
                f"FROM read_parquet({files}, file_row_number = true, filename = true) "
                f"JOIN _mdlc_offsets ON filename = _mdlc_file) "
                f"SELECT * FROM {_q('_mdlc_all')} WHERE {_q(ROW)} IN "
                f"(SELECT MIN({_q(ROW)}) FROM {_q('_mdlc_all')} GROUP BY {ident})) "
                f"TO {_s(str(window))} (FORMAT parquet)")
            self._deduplicated = len(self.parts)
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {_q(EVENTS)} AS SELECT * FROM "
                         f"read_parquet({_s(str(window))})")
        return sql_features.Relation(None, dict(self.values), tuple(self.columns), unique=True)

    def training_table(self, path: Path) -> int:
        """The day's training rows (``features.training_table_schema``; the label
        only when the day's objects have it) to a Parquet file; returns the rows.

        Every event of the window gets its features as of itself; the rows
        kept are the first deliveries that lie in the day's own objects (a
        row redelivered into the day stays a row of its first day)."""
        f = self.features
        relation = self.relation()
        inputs = tuple(shared.checked_inputs(f, self.inputs))
        carry = [LABEL] if self.labelled_today else []
        first = self.today_row if self.today_row is not None else self.rows
        query = sql_features.per_event_query(f, relation, inputs, positions=True,
                                             carry=carry, since_row=first)
        names = [c for c in f.training_table_schema
                 if c != f.label or self.labelled_today]
        return write_batches(self.con, query.sql(dialect="duckdb"), path,
                             training_schema(f, names, self.label_type),
                             {f.timestamp: MICROS, **({f.label: LABEL} if f.label else {})})

    def entity_table(self, path: Path, day: Any) -> int:
        """One row per entity as of ``day`` (``features.entity_table_schema``) to a
        Parquet file; returns the rows."""
        f = self.features
        relation = self.relation()
        inputs = tuple(shared.checked_inputs(f, self.inputs))
        query = sql_features.as_of_query(f, relation, day, inputs)
        return write_batches(self.con, query.sql(dialect="duckdb"), path,
                             entity_schema(f), {})


#: Numbers the windows of the process (their functions' names).
_WINDOWS = itertools.count()
#: One DuckDB database per spill folder and thread count, kept for the process:
#: a warm function's next run opens a cursor on it (0.2 ms) instead of a new
#: database (15-20 ms). A run's views, registered tables and functions belong
#: to its cursor and go with it; its files are in its own scratch folder.
_DATABASES: dict[tuple[str, int | None], tuple[duckdb.DuckDBPyConnection, threading.Lock]] = {}
_DATABASES_LOCK = threading.Lock()


@contextlib.contextmanager
def session(spill: Path, *, memory_limit: str, threads: int | None = None,
            max_temp_directory_size: str | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor for one run of the feature job, on the process's database for
    ``spill`` (created by :func:`mdlc_core.sql.quality.connect`: no extensions
    from the network), with the run's memory limit and spill bound; the
    optimizers blind to NaN in Parquet statistics off; closed afterwards.

    One run at a time per database: those settings (and the insertion order
    the staging switches on) are the database's, not the cursor's, so a
    second thread's run waits for the first."""
    from . import quality as sql_quality

    key = (str(spill), threads)
    with _DATABASES_LOCK:
        if key not in _DATABASES:
            spill.mkdir(parents=True, exist_ok=True)
            _DATABASES[key] = (sql_quality.connect(memory_limit=memory_limit,
                                                   temp_directory=spill, threads=threads),
                               threading.Lock())
        database, running = _DATABASES[key]
    with running, database.cursor() as con:
        try:
            con.execute(f"SET memory_limit = {_s(memory_limit)}")
            con.execute(f"SET max_temp_directory_size = {_s(max_temp_directory_size)}"
                        if max_temp_directory_size else "RESET max_temp_directory_size")
            con.execute(f"SET disabled_optimizers = {_s(NAN_UNSAFE_OPTIMIZERS)}")
        except duckdb.Error as error:
            raise ValueError(f"DuckDB rejected memory_limit {memory_limit!r} or "
                             f"max_temp_directory_size {max_temp_directory_size!r}: "
                             f"{error}") from error
        yield con


def close_databases() -> None:
    """Close the databases kept for the process (a cold start, for measuring)."""
    with _DATABASES_LOCK:
        for database, _ in _DATABASES.values():
            database.close()
        _DATABASES.clear()


# Before the spill folders go at exit: DuckDB removes its files on closing.
spill.close_at_exit(close_databases)


def _stored_kind(stored: pa.DataType) -> str | None:
    """A Parquet column's kind for :meth:`Window._typed` (None: none that SQL types)."""
    if pa.types.is_string(stored) or pa.types.is_large_string(stored):
        return "string"
    if pa.types.is_integer(stored):
        return "int"
    if pa.types.is_timestamp(stored) and stored.unit == "us":
        return "ts"
    if (pa.types.is_floating(stored) and stored.bit_width in (32, 64)) \
            or pa.types.is_boolean(stored):
        return "number"
    return None


def _finite(value: str) -> str:
    return f"CASE WHEN ({value}) BETWEEN {-sql_features.MAX_DOUBLE!r} AND " \
           f"{sql_features.MAX_DOUBLE!r} THEN ({value}) END"


def _culprit(error: Exception, run: Sequence[_Pending]) -> str | None:
    """The object a DuckDB reading error names (by its local path), if any."""
    text = str(error)
    return next((p.name for p in run if str(p.path) in text), None)


def _failure(convert: Callable[[], Any], prefix: str) -> str:
    """The engine's own message for a value SQL found bad."""
    try:
        convert()
    except FeatureError as error:
        return prefix + str(error)
    return prefix + "does not parse"  # pragma: no cover - SQL and the engine agree


def write_batches(con: duckdb.DuckDBPyConnection, sql: str, path: Path, schema: pa.Schema,
                  sources: Mapping[str, str]) -> int:
    """``sql``'s result streamed to a Parquet file of ``schema``, one record
    batch at a time; ``sources``: a column of the schema read from another
    result column (the timestamp from the microseconds). Returns the rows."""
    result = con.sql(sql)
    # duckdb 2 names it to_arrow_reader; 1.x fetch_record_batch.
    fetch = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
    reader = fetch(BATCH_ROWS)
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in reader:
            arrays = []
            for field_ in schema:
                column = batch.column(sources.get(field_.name, field_.name))
                arrays.append(column.cast(field_.type))
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            rows += batch.num_rows
    return rows


__all__ = ["BATCH_ROWS", "LABEL", "NAN_UNSAFE_OPTIMIZERS", "Window", "close_databases",
           "session", "write_batches"]
