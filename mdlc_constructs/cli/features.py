"""``mdlc features SPEC EVENTS --as-of DATE [--engine duckdb|spark|incremental]``.

Prints one row per entity as of the end of DATE (UTC): the entity key, the
spec's aggregates, then its expressions. Every engine prints the same table
for the same events. ``duckdb`` (the default, the spec's ``features.engine``)
runs the features compiled to SQL (``mdlc_core.sql.features``) on DuckDB,
and ``spark`` the same SQL on PySpark in local mode (which needs pyspark and
a Java runtime); ``incremental`` replays the events one by one through the
online engine (in file order, duplicates and late events included). The
embedded NumPy engine (``--engine batch``) was retired: ``duckdb`` prints
the same table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mdlc_core.features import FeatureError, FeatureSet, day_number, incremental_table

from mdlc_constructs.spec import SpecError, load_spec

from . import EXIT_OK, UsageError
from .spark_session import local_spark

ENGINES = ("duckdb", "spark", "incremental")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="compute the spec's features per entity as of a date",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument(
        "events",
        metavar="EVENTS",
        help="events: a CSV, Parquet or JSON-lines file, or a snapshot folder",
    )
    parser.add_argument(
        "--as-of",
        required=True,
        metavar="DATE",
        help="the last day (YYYY-MM-DD, UTC) inside every window",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="duckdb (the compiled SQL on DuckDB, the default), spark (the same SQL on "
        "local PySpark) or incremental (the online engine, event by event)",
    )
    parser.set_defaults(run=run)


def read_events(path: Path, columns: list[dict[str, Any]]) -> Any:
    """The events as a pyarrow Table (or dict rows for JSON lines).

    ``columns`` are the spec's column declarations the engines read.
    """
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    try:  # the shared reader, when present, also handles snapshot folders
        from mdlc_core import tabular
    except ImportError:
        tabular = None  # type: ignore[assignment]
    if tabular is not None and path.suffix not in (".jsonl", ".json"):
        try:
            table = tabular.read_table(path, columns)
        except tabular.DataError as error:
            raise UsageError(str(error)) from error
        # The reader turns values that do not parse into nulls (for the quality
        # rules to count); a feature computed from them would be silently wrong.
        for name, bad in tabular.unparseable(table).items():
            declared = next(c["type"] for c in columns if c["name"] == name)
            raise UsageError(
                f"{path}: column {name!r}: {bad.count} value(s) are not "
                f"{declared}, e.g. {bad.values[:3]} (rows {bad.rows[:3]})"
            )
        return table
    if path.is_dir():
        raise UsageError(f"{path}: reading a snapshot folder needs mdlc_core.tabular")
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: the file is empty")
    if path.suffix in (".jsonl", ".json"):
        try:
            with path.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{path}: not JSON lines ({error})") from error
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        # Strings, so ids and timestamps reach the engines exactly as written.
        header = path.open(encoding="utf-8").readline().strip().split(",")
        options = pacsv.ConvertOptions(column_types={name: pa.string() for name in header})
        return pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as error:
        raise UsageError(f"{path}: not a readable CSV or Parquet file ({error})") from error


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # Six decimals: the engines add in different orders, and the last
        # bits of a float sum must not make their tables differ.
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(value)


def render(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [columns] + [[format_value(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        raise UsageError("\n".join(error.problems)) from error
    try:
        day_number(args.as_of)
        features = FeatureSet.from_config(spec.as_config())
        needed = set(features.required_columns)
        declared = [c for c in spec.as_config()["data"]["columns"] if c["name"] in needed]
        events = read_events(Path(args.events), declared)
        engine = args.engine or spec.features.engine
        rows = compute(engine, events, features, args.as_of)
    except FeatureError as error:
        raise UsageError(f"{args.events}: {error}") from error
    print(render(rows, [features.entity_key, *features.names]))
    return EXIT_OK


def compute(engine: str, events: Any, features: FeatureSet, as_of: str) -> list[dict[str, Any]]:
    """The per-entity rows of ``engine`` (one of :data:`ENGINES`)."""
    if engine == "incremental":
        return incremental_table(events, features, as_of)
    from mdlc_core.sql import features as sql_features

    if engine == "duckdb":
        return sql_features.as_of(events, features, as_of)
    plan = sql_features.prepare_as_of(events, features, as_of)
    rows = plan.finish(sql_features.run_spark(plan, local_spark("mdlc-features")))
    assert isinstance(rows, list)
    return rows


