"""The spec's quality rules run as SQL on DuckDB, in process.

The quality stage's engine in every runner (the quality Lambda, the
Processing job, ``mdlc quality``, the local execution): the report of
docs/quality.md, from the SQL that :mod:`mdlc_core.sql.rules` compiles::

    report = check(spec, "datasets/fraud/dt=2026-11-02/", previous=yesterday,
                   snapshot_date=date(2026, 11, 2))

``table_or_paths`` (and ``previous``) is a pyarrow table as
:func:`mdlc_core.tabular.read_table` returns it, or a CSV/Parquet file or
snapshot folder. Parquet files that store every declared column as its
declared type are scanned by DuckDB itself (:class:`ParquetFiles`), never
loaded whole: memory is DuckDB's ``memory_limit``, spilling to a temporary
directory past it, so a day larger than memory can be checked. Anything
else (CSV, other stored types) is read by the shared reader, so a value the
spec's types reject is the same unparseable value whichever engine checks
it, and DuckDB scans that Arrow table in place (no copy).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from .. import quality as reports
from .. import tabular
from ..quality import Report
from . import rules as compiled
from .rules import PREVIOUS, ROW, SNAPSHOT, UNPARSEABLE, Inputs

#: The DuckDB optimizers that act on Parquet statistics blind to NaN.
_NAN_UNSAFE_OPTIMIZERS = "filter_pushdown,statistics_propagation"
#: DuckDB's default when the caller names no limit: enough for the rules'
#: hash tables on a day of tens of millions of rows, small enough for a Lambda.
DEFAULT_MEMORY_LIMIT = "1GB"
ENGINES = ("duckdb",)
#: What a process keeps of its memory for Python itself (the interpreter,
#: pyarrow, boto3, the handler) besides DuckDB's limit and the Arrow tables.
PYTHON_HEADROOM_MB = 256
#: The smallest memory limit :func:`memory_limit_for` gives DuckDB.
MIN_MEMORY_LIMIT_MB = 128


def check(
    spec_config: Mapping[str, Any],
    table_or_paths: Source,
    previous: Source | None = None,
    *,
    snapshot_date: date,
    previous_date: date | None = None,
    source: str | None = None,
    previous_source: str | None = None,
    engine: str = "duckdb",
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_directory: str | os.PathLike[str] | None = None,
    max_temp_directory_size: str | None = None,
    threads: int | None = None,
) -> Report:
    """Evaluate ``spec_config['quality']`` as SQL on DuckDB and return the report.

    ``memory_limit`` is DuckDB's (``"1GB"``, ``"512MB"``); past it DuckDB
    spills to ``temp_directory`` (default: a fresh folder under the system's
    temporary directory, removed afterwards), at most
    ``max_temp_directory_size`` of it (DuckDB's default: 90% of the free
    disk). ``table_or_paths`` may also be :class:`ParquetFiles` already
    listed (:func:`parquet_files_of`). Raises
    :class:`mdlc_core.quality.RuleError` when a rule does not fit the data,
    and :class:`mdlc_core.tabular.DataError` for unreadable files.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not supported here; expected one of {ENGINES}")
    plan = prepare(spec_config, table_or_paths, previous, snapshot_date=snapshot_date,
                   previous_date=previous_date)
    with tempfile.TemporaryDirectory(prefix="mdlc-duckdb-") as scratch:
        spill = Path(temp_directory) if temp_directory is not None else Path(scratch)
        with connect(memory_limit=memory_limit, temp_directory=spill, threads=threads,
                     max_temp_directory_size=max_temp_directory_size) as con:
            for name, relation in plan.relations.items():
                if isinstance(relation, ParquetFiles):
                    con.execute(relation.view(name))
                else:
                    con.register(name, relation)
            if any(isinstance(r, ParquetFiles) for r in plan.relations.values()):
                # DuckDB (seen in 2.0.1; 1.1.0 in part) trusts Parquet min/max
                # statistics, which leave NaN out as the Parquet spec says
                # writers must, so `isnan(x)` or `x > max` missed NaN rows, in
                # filters and in aggregates alike (duckdb/duckdb#25521, open).
                # (Without them an ungrouped COUNT(DISTINCT) does not spill, so
                # the plan counts distinct keys by GROUP BY: scan_distinct.)
                con.execute(f"SET disabled_optimizers = '{_NAN_UNSAFE_OPTIMIZERS}'")
            return plan.report(lambda sql: _fetch(con, sql), "duckdb",
                               source=source, previous_source=previous_source)


@dataclass
class Plan:
    """Compiled rules and the relations they read: what any SQL engine runs.

    An engine registers :attr:`relations` under their names, then
    :meth:`report` runs every query through ``fetch`` (SQL text of the
    engine's dialect -> result rows as dicts) and assembles the report.
    """

    spec_config: Mapping[str, Any]
    rules: list[compiled.CompiledRule]
    #: Arrow tables to register, or Parquet files for DuckDB to scan.
    relations: dict[str, pa.Table | ParquetFiles]
    inputs: Inputs

    def report(self, fetch: Callable[[str], list[dict[str, Any]]], dialect: str, *,
               detail: Callable[[str], list[dict[str, Any]]] | None = None,
               source: str | None = None, previous_source: str | None = None) -> Report:
        """Run the plan through ``fetch`` (``detail``: for the detail queries,
        default ``fetch``) and assemble the report."""
        fetch_detail = detail or fetch
        results = []
        for rule, scanned in zip(self.rules, self.scan(fetch, dialect), strict=True):
            rows = {name: fetch(rule.sql(name, dialect)) for name in rule.queries}

            def run_detail(name: str, rule: compiled.CompiledRule = rule
                           ) -> list[dict[str, Any]]:
                return fetch_detail(rule.sql(name, dialect))

            results.append(rule.finish(self.inputs, {"scan": scanned, **rows}, run_detail))
        compared = PREVIOUS in self.relations
        return _report(self.spec_config, results, self.inputs.rows, self.inputs.snapshot_date,
                       self.inputs.previous_date if compared else None, source,
                       previous_source if compared else None)


    def scan(self, fetch: Callable[[str], list[dict[str, Any]]], dialect: str
             ) -> list[dict[str, Any]]:
        """Every rule's scan aggregates, from one pass over the snapshot."""
        if not any(rule.scan for rule in self.rules):
            return [{} for _ in self.rules]
        (row,) = fetch(compiled.scan_sql(self.rules, dialect))
        return compiled.scan_values(self.rules, row)

    def sql(self, dialect: str) -> list[str]:
        """Every statement the plan can run, as text of ``dialect``: the fused
        scan, then each rule's queries and detail queries."""
        texts = [compiled.scan_sql(self.rules, dialect)] \
            if any(rule.scan for rule in self.rules) else []
        for rule in self.rules:
            texts += [text for name, text in rule.render(dialect).items() if name != "scan"]
        return texts


def prepare(spec_config: Mapping[str, Any], table_or_paths: Source,
            previous: Source | None = None, *, snapshot_date: date,
            previous_date: date | None = None) -> Plan:
    """Read the inputs and compile ``quality.rules``; raises ``RuleError``/``DataError``."""
    columns = spec_config["data"]["columns"]
    table = _relation(table_or_paths, columns)
    before = None if previous is None else _relation(previous, columns)
    if before is not None and previous_date is None:
        previous_date = snapshot_date - timedelta(days=1)
    quality = spec_config["quality"]
    records = tabular.unparseable(table) if isinstance(table, pa.Table) else {}
    inputs = Inputs(
        key=spec_config["data"]["event_id"],
        units={c["name"]: c.get("unit") for c in columns},
        sample_size=int(quality.get("sample_size", 20)),
        types={f.name: f.type for f in table.schema},
        unparseable=records,
        rows=table.num_rows,
        snapshot_date=snapshot_date,
        previous_types=None if before is None else {f.name: f.type for f in before.schema},
        previous_date=previous_date if before is not None else None,
        scan_distinct=not any(isinstance(r, ParquetFiles) for r in (table, before)),
    )
    relations: dict[str, Relation] = {SNAPSHOT: _with_rows(table),
                                      UNPARSEABLE: _unparseable_table(records)}
    if before is not None:
        relations[PREVIOUS] = _with_rows(before)
    return Plan(spec_config, compiled.compile_rules(quality["rules"], inputs), relations, inputs)


@dataclass(frozen=True)
class ParquetFiles:
    """A snapshot of Parquet files that DuckDB scans itself, not read into memory.

    Only when every file stores every declared column as exactly its declared
    type (``tabular.ARROW_TYPES``): then the shared reader would change no
    value and record nothing unparseable, so the scan sees what it would.
    ``offsets``: each file's first row position in the snapshot as the
    reader concatenates it (manifest order, else sorted paths).
    """

    files: tuple[Path, ...]
    offsets: tuple[int, ...]
    num_rows: int
    schema: pa.Schema

    def view(self, name: str) -> str:
        """DuckDB's ``CREATE VIEW`` of the files, with :data:`ROW` as the position.

        One ``read_parquet`` of the list, each row's position its file's offset
        (by ``file_index``, the file's place in the list) plus its row number in
        the file. Not a ``UNION ALL`` of one scan a file: DuckDB's hash
        aggregates and windows over a ``UNION ALL`` do not spill (a two-file
        day's ``unique`` rule ran Out of Memory at a limit one file passes)."""
        names = ", ".join(exp.to_identifier(n, quoted=True).sql("duckdb")
                          for n in self.schema.names)
        files = ", ".join(exp.Literal.string(str(f)).sql("duckdb") for f in self.files)
        offsets = ", ".join(str(int(o)) for o in self.offsets)
        return (f"CREATE VIEW {exp.to_identifier(name, quoted=True).sql('duckdb')} AS "
                f"SELECT {names}, CAST(file_row_number AS BIGINT) "
                f"+ list_extract([{offsets}], CAST(file_index AS BIGINT) + 1) AS {ROW} "
                f"FROM read_parquet([{files}], file_row_number = true, union_by_name = true)")


Relation = pa.Table | ParquetFiles
Source = pa.Table | ParquetFiles | str | os.PathLike[str]


def parquet_files(source: Source, columns: Sequence[Any]) -> ParquetFiles | None:
    """``source`` as :class:`ParquetFiles` when DuckDB can scan it as the reader
    would read it; None otherwise (CSV, other stored types, missing columns:
    the shared reader reads those, and names what is wrong)."""
    if isinstance(source, pa.Table):
        return None
    if isinstance(source, ParquetFiles):
        return source
    root = Path(source)
    if root.is_dir():
        listed = tabular.manifest_files(root)
        files = listed if listed is not None else [(f, None) for f in tabular.data_files(root)]
    elif root.is_file():
        files = [(root, None)]
    else:
        return None
    return parquet_files_of(files, columns)


def parquet_files_of(files: Sequence[tuple[Path, str | None]], columns: Sequence[Any]
                     ) -> ParquetFiles | None:
    """The snapshot of ``files`` (each with its recorded format, or None to go
    by its suffix), in that order, as :class:`ParquetFiles` when DuckDB can scan
    them as the reader would read them; None otherwise."""
    wanted = pa.schema([pa.field(c["name"], tabular.ARROW_TYPES[c["type"]]) for c in columns])
    if not files or ROW in wanted.names:
        return None
    offsets, total = [], 0
    for file, declared in files:
        if (declared or tabular.file_format(file)) != "parquet":
            return None
        try:
            parquet = pq.ParquetFile(file)
        except (OSError, pa.ArrowException):
            return None
        stored = parquet.schema_arrow
        if {"file_row_number", "file_index"} & set(stored.names):
            return None  # they would hide DuckDB's columns of the same names (see view)
        for field in wanted:
            index = stored.get_field_index(field.name)
            if index < 0 or stored.field(index).type != field.type:
                return None
        offsets.append(total)
        total += parquet.metadata.num_rows
    return ParquetFiles(tuple(f for f, _ in files), tuple(offsets), total, wanted)


def memory_limit_for(memory_mb: int, loaded_bytes: int = 0) -> str:
    """DuckDB's ``memory_limit`` in a process allowed ``memory_mb`` (a Lambda
    function's memory size) that holds ``loaded_bytes`` of Arrow tables
    outside DuckDB's accounting: 80% of what Python and the tables leave
    (:data:`PYTHON_HEADROOM_MB`), never under :data:`MIN_MEMORY_LIMIT_MB`."""
    free = memory_mb - PYTHON_HEADROOM_MB - loaded_bytes / 2**20
    return f"{max(MIN_MEMORY_LIMIT_MB, int(free * 0.8))}MB"


def temp_size_for(storage_mb: int, used_bytes: int = 0) -> str:
    """DuckDB's ``max_temp_directory_size`` on a disk of ``storage_mb`` (a
    Lambda's ephemeral storage) of which ``used_bytes`` hold the snapshot's
    files: what is left, less a 10% margin, at least 64 MB."""
    free = storage_mb - used_bytes / 2**20
    return f"{max(64, int(free * 0.9))}MB"


def connect(*, memory_limit: str = DEFAULT_MEMORY_LIMIT,
            temp_directory: str | os.PathLike[str], threads: int | None = None,
            max_temp_directory_size: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB bounded by ``memory_limit``, spilling to ``temp_directory``.

    Extensions are neither installed nor loaded from the network: the engine
    must behave the same in a Lambda without internet access.
    """
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": str(temp_directory),
        "preserve_insertion_order": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads is not None:
        config["threads"] = int(threads)
    if max_temp_directory_size is not None:
        config["max_temp_directory_size"] = max_temp_directory_size
    try:
        return duckdb.connect(":memory:", config=config)
    except duckdb.Error as error:
        raise ValueError(f"DuckDB rejected its configuration {config}: {error}") from error


def _relation(source: Source, columns: Sequence[Any]) -> Relation:
    if isinstance(source, pa.Table | ParquetFiles):
        return source
    return parquet_files(source, columns) or tabular.read_table(source, columns)


def _with_rows(table: Relation) -> Relation:
    """The table plus each row's position, which samples report and are ordered by."""
    if isinstance(table, ParquetFiles):
        return table  # its view adds the position
    if ROW in table.column_names:
        raise tabular.DataError(f"the data has a column named {ROW!r}, which the SQL engine "
                                "reserves for row positions")
    return table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _unparseable_table(records: Mapping[str, tabular.Unparseable]) -> pa.Table:
    names, rows, values = [], [], []
    for name, record in records.items():
        names += [name] * len(record.rows)
        rows += record.rows
        values += [str(v) for v in record.values]
    return pa.table({"column_name": pa.array(names, pa.string()),
                     "row_index": pa.array(rows, pa.int64()),
                     "raw_value": pa.array(values, pa.string())})


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _report(spec_config: Mapping[str, Any], results: list[dict[str, Any]], rows: int,
            snapshot_date: date, previous_date: date | None, source: str | None,
            previous_source: str | None) -> Report:
    """The envelope of the rule results (:func:`mdlc_core.quality.report`)."""
    return reports.report(spec_config, results, rows=rows, snapshot_date=snapshot_date,
                           previous_date=previous_date, source=source,
                           previous_source=previous_source)


__all__ = ["DEFAULT_MEMORY_LIMIT", "ENGINES", "ParquetFiles", "Plan", "check", "connect",
           "memory_limit_for", "parquet_files", "parquet_files_of", "prepare", "temp_size_for"]
