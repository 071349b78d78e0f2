"""The spec's quality rules run as SQL on DuckDB, in process.

The same report as :func:`mdlc_core.quality.check`, from the SQL that
:mod:`mdlc_core.sql.rules` compiles::

    report = check(spec, "datasets/fraud/dt=2026-11-02/", previous=yesterday,
                   snapshot_date=date(2026, 11, 2))

``table_or_paths`` (and ``previous``) is a pyarrow table as
:func:`mdlc_core.tabular.read_table` returns it, or a CSV/Parquet file or
snapshot folder, which that reader reads: one reader for every engine, so a
value the spec's types reject is the same unparseable value whichever engine
checks it. DuckDB scans the Arrow table in place (no copy) with a memory
limit and a spill directory, so its own aggregation state (the ``unique``
and ``consistency`` rules' hash tables) is bounded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from .. import tabular
from ..quality import REPORT_VERSION, Report
from . import rules as compiled
from .rules import PREVIOUS, ROW, SNAPSHOT, UNPARSEABLE, Inputs

#: DuckDB's default when the caller names no limit: enough for the rules'
#: hash tables on a day of tens of millions of rows, small enough for a Lambda.
DEFAULT_MEMORY_LIMIT = "1GB"
ENGINES = ("duckdb",)
Source = pa.Table | str | os.PathLike[str]


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
    threads: int | None = None,
) -> Report:
    """Evaluate ``spec_config['quality']`` as SQL and return the embedded engine's report.

    ``memory_limit`` is DuckDB's (``"1GB"``, ``"512MB"``); past it DuckDB
    spills to ``temp_directory`` (default: a fresh folder under the system's
    temporary directory, removed afterwards). Raises
    :class:`mdlc_core.quality.RuleError` when a rule does not fit the data,
    and :class:`mdlc_core.tabular.DataError` for unreadable files.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not supported here; expected one of {ENGINES}")
    plan = prepare(spec_config, table_or_paths, previous, snapshot_date=snapshot_date,
                   previous_date=previous_date)
    with tempfile.TemporaryDirectory(prefix="mdlc-duckdb-") as scratch:
        spill = Path(temp_directory) if temp_directory is not None else Path(scratch)
        with connect(memory_limit=memory_limit, temp_directory=spill, threads=threads) as con:
            for name, relation in plan.relations.items():
                con.register(name, relation)
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
    relations: dict[str, pa.Table]
    inputs: Inputs

    def report(self, fetch: Callable[[str], list[dict[str, Any]]], dialect: str, *,
               source: str | None = None, previous_source: str | None = None) -> Report:
        results = []
        for rule, scanned in zip(self.rules, self.scan(fetch, dialect), strict=True):
            rows = {name: fetch(query.sql(dialect=dialect)) for name, query in rule.queries.items()}

            def detail(name: str, rule: compiled.CompiledRule = rule) -> list[dict[str, Any]]:
                return fetch(rule.details[name].sql(dialect=dialect))

            results.append(rule.finish({"scan": scanned, **rows}, detail))
        compared = PREVIOUS in self.relations
        return _report(self.spec_config, results, self.inputs.rows, self.inputs.snapshot_date,
                       self.inputs.previous_date if compared else None, source,
                       previous_source if compared else None)


    def scan(self, fetch: Callable[[str], list[dict[str, Any]]], dialect: str
             ) -> list[dict[str, Any]]:
        """Every rule's scan aggregates, from one pass over the snapshot."""
        if not any(rule.scan for rule in self.rules):
            return [{} for _ in self.rules]
        (row,) = fetch(compiled.scan_query(self.rules).sql(dialect=dialect))
        return compiled.scan_values(self.rules, row)

    def sql(self, dialect: str) -> list[str]:
        """Every statement the plan can run, as text of ``dialect``: the fused
        scan, then each rule's queries and detail queries."""
        texts = [compiled.scan_query(self.rules).sql(dialect=dialect)] \
            if any(rule.scan for rule in self.rules) else []
        for rule in self.rules:
            texts += [text for name, text in rule.render(dialect).items() if name != "scan"]
        return texts


def prepare(spec_config: Mapping[str, Any], table_or_paths: Source,
            previous: Source | None = None, *, snapshot_date: date,
            previous_date: date | None = None) -> Plan:
    """Read the inputs and compile ``quality.rules``; raises ``RuleError``/``DataError``."""
    columns = spec_config["data"]["columns"]
    table = _table(table_or_paths, columns)
    before = None if previous is None else _table(previous, columns)
    if before is not None and previous_date is None:
        previous_date = snapshot_date - timedelta(days=1)
    quality = spec_config["quality"]
    inputs = Inputs(
        key=spec_config["data"]["event_id"],
        units={c["name"]: c.get("unit") for c in columns},
        sample_size=int(quality.get("sample_size", 20)),
        types={f.name: f.type for f in table.schema},
        unparseable=tabular.unparseable(table),
        rows=table.num_rows,
        snapshot_date=snapshot_date,
        previous_types=None if before is None else {f.name: f.type for f in before.schema},
        previous_date=previous_date if before is not None else None,
    )
    relations = {SNAPSHOT: _with_rows(table), UNPARSEABLE: _unparseable_table(inputs.unparseable)}
    if before is not None:
        relations[PREVIOUS] = _with_rows(before)
    return Plan(spec_config, compiled.compile_rules(quality["rules"], inputs), relations, inputs)


def connect(*, memory_limit: str = DEFAULT_MEMORY_LIMIT,
            temp_directory: str | os.PathLike[str], threads: int | None = None
            ) -> duckdb.DuckDBPyConnection:
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
    try:
        return duckdb.connect(":memory:", config=config)
    except duckdb.Error as error:
        raise ValueError(f"DuckDB rejected its configuration {config}: {error}") from error


def _table(source: Source, columns: Sequence[Any]) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    return tabular.read_table(source, columns)


def _with_rows(table: pa.Table) -> pa.Table:
    """The table plus each row's position, which samples report and are ordered by."""
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
    """The envelope :func:`mdlc_core.quality.check` puts around its rule results."""
    failed = [r for r in results if r["status"] == "fail"]
    return {
        "report_version": REPORT_VERSION,
        "model": spec_config.get("name"),
        "snapshot_date": snapshot_date.isoformat(),
        "previous_date": previous_date.isoformat() if previous_date else None,
        "source": source,
        "previous_source": previous_source,
        "runner": spec_config["quality"].get("runner", "embedded"),
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": {
            "rows": rows,
            "rules": len(results),
            "failed": len(failed),
            "skipped": sum(r["status"] == "skipped" for r in results),
            "violations": sum(r["violations"] for r in results),
            "passed": not failed,
        },
        "rules": results,
    }


__all__ = ["DEFAULT_MEMORY_LIMIT", "ENGINES", "Plan", "check", "connect", "prepare"]
