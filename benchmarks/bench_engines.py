"""Issue #18's four rows, every engine on the same data with the same answer.

Run: ``.venv/bin/python benchmarks/bench_engines.py [--only SECTION]
[--repeat N] [--engines LIST] [rows ...]`` (default every section at 1M and
10M rows, best of 3, the engines of :data:`engines_common.DEFAULT_ENGINES`).

Sections, each selectable with ``--only`` (repeatable): **quality** (below),
**features** (``engines_features.py``: per-event 30-day features and
per-entity features as of a day) and **monitoring**
(``engines_monitoring.py``: the prediction-label join and its metrics). Each
section prints, per size and piece of work, one line per engine (the best of
``--repeat`` runs, their min-max, peak memory, spill, the load average when
it started), then ours/hand-written against the 1.2x target and the other
ratios; the run ends with one table of every row at every size
(:func:`engines_common.print_summary`). Every engine runs in a subprocess of
its own (``--child``), so its peak memory is its own; engines and figures
are described in ``engines_common.py``. The answers must agree with ours,
or the run stops naming the engine, the work and the size.

Quality: two days of the example schema (today and yesterday, written once
per size as Parquet and read back before the timing) and the example spec's
19 rules, the cross-snapshot consistency rule included:

- ``ours``: ``mdlc_core.sql.quality.check`` on the in-memory Arrow tables (the
  rules compiled by sqlglot, run on DuckDB, one query per rule result);
- ``hand``: the same counts from three idiomatic DuckDB queries written by
  hand (one scan for the per-column rules, a distinct count, the
  per-customer join), the floor ours is judged against;
- ``polars``: the same counts from polars' lazy frames (:func:`_polars`);
- ``spark``: ``mdlc_core.spark_job.check`` on local PySpark, the compiled
  rules' Spark SQL over the **Parquet files** (Spark reads them itself, as on
  a cluster: no Arrow tables in the driver, nothing pushed through it);
- ``parquet``: ours with DuckDB scanning the Parquet files itself (nothing
  loaded first: its peak is over the bare process).

(The hand-written pyarrow quality engine and NumPy feature engine, once
``embedded`` here, are retired: ours is their stage's engine in every runner.)
"""

from __future__ import annotations

import argparse
import copy
import importlib
import sys
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engines_common as common

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 1)
#: The engines of the quality section, in print order.
ENGINES = ("ours", "hand", "polars", "spark", "parquet")
MEMORY_LIMIT = common.MEMORY_LIMIT


def orders(rows: int, day: date, seed: int) -> pa.Table:
    """A clean day of the example schema, column-wise (no per-row Python)."""
    rng = np.random.default_rng(seed)
    customers = rng.integers(0, max(rows // 10, 1), rows)
    start = np.datetime64(day.isoformat(), "us").astype(np.int64)
    ids = pc.cast(pa.array(np.arange(rows)), pa.string())
    return pa.table({
        "order_id": pc.binary_join_element_wise(f"o{seed}-", ids, ""),
        "customer_id": pc.binary_join_element_wise(
            "c-", pc.cast(pa.array(customers), pa.string()), ""),
        "order_ts": pa.array(start + rng.integers(0, 86_400_000_000, rows),
                             type=pa.timestamp("us", tz="UTC")),
        "order_amount": pa.array(rng.gamma(2.0, 50.0, rows)),
        "account_tenure": pa.array(customers % 3000 + (day - DAY).days + 400, type=pa.int64()),
        "fraud_status": pa.array(rng.integers(0, 2, rows)),
    })


def spec() -> dict[str, Any]:
    from mdlc_constructs.spec import load_spec

    return copy.deepcopy(load_spec(ROOT / "models" / "fraud.yaml").as_config())


# --- the counts every quality engine reports ------------------------------------------------


def _counts_from_report(report: dict[str, Any]) -> dict[str, Any]:
    rules = {r["id"]: r for r in report["rules"]}
    return {
        "rows": report["summary"]["rows"],
        "failed": report["summary"]["failed"],
        "outside_amount": rules["range_order_amount"]["observed"]["outside"],
        "outside_tenure": rules["range_account_tenure"]["observed"]["outside"],
        "unexpected_status": rules["allowed_values_fraud_status"]["observed"]["unexpected"],
        "duplicates": rules["unique_order_id"]["observed"]["duplicates"],
        "newest_age_hours": rules["freshness_order_ts"]["observed"]["age_hours"],
        "compared": rules["tenure_grows_daily"]["observed"]["entities_compared"],
        "inconsistent": rules["tenure_grows_daily"]["observed"]["inconsistent"],
    }


def _counts(scan: dict[str, Any], duplicates: int, compared: int,
            inconsistent: int) -> dict[str, Any]:
    """The counts of a hand-written engine's raw figures, with the failed rules
    decided as the spec's rules decide them (the engines compute, this judges)."""
    as_of = np.datetime64((DAY + timedelta(days=1)).isoformat(), "us").astype(np.int64)
    age = round(float(as_of - scan["newest"]) / 3.6e9, 3)
    rules = spec()["quality"]["rules"]
    failed = sum(
        1 for rule in rules if rule["kind"] == "completeness"
        and (scan["n"] - scan[f"null_{rule['column']}"]) / scan["n"] < rule["min"] - 1e-12
    ) + sum(scan[k] > 0 for k in ("outside_amount", "outside_tenure", "unexpected_status")) \
        + (duplicates > 0) + (age > 36) + (inconsistent > 0)
    return {
        "rows": int(scan["n"]), "failed": int(failed),
        "outside_amount": int(scan["outside_amount"]),
        "outside_tenure": int(scan["outside_tenure"]),
        "unexpected_status": int(scan["unexpected_status"]),
        "duplicates": int(duplicates), "newest_age_hours": age,
        "compared": int(compared), "inconsistent": int(inconsistent),
    }


COLUMNS = ("order_id", "customer_id", "order_ts", "order_amount", "account_tenure",
           "fraud_status")

HAND_WRITTEN = {
    "scan": """
        SELECT count(*) AS n,
               count(*) - count(order_id) AS null_order_id,
               count(*) - count(customer_id) AS null_customer_id,
               count(*) - count(order_ts) AS null_order_ts,
               count(*) - count(order_amount) AS null_order_amount,
               count(*) - count(account_tenure) AS null_account_tenure,
               count(*) - count(fraud_status) AS null_fraud_status,
               count(*) FILTER (order_amount < 0 OR order_amount > 50000
                                OR isnan(order_amount)) AS outside_amount,
               count(*) FILTER (account_tenure < 0 OR account_tenure > 36500) AS outside_tenure,
               count(*) FILTER (fraud_status NOT IN (0, 1)) AS unexpected_status,
               epoch_us(max(order_ts)) AS newest
        FROM snapshot""",
    "unique": "SELECT count(order_id) - count(DISTINCT order_id) AS duplicates FROM snapshot",
    "consistency": """
        WITH c AS (SELECT customer_id, min(account_tenure) lo, max(account_tenure) hi
                   FROM snapshot WHERE customer_id IS NOT NULL AND account_tenure IS NOT NULL
                   GROUP BY ALL),
             p AS (SELECT customer_id, min(account_tenure) lo, max(account_tenure) hi
                   FROM previous WHERE customer_id IS NOT NULL AND account_tenure IS NOT NULL
                   GROUP BY ALL)
        SELECT count(*) AS compared,
               count(*) FILTER (greatest(abs(c.lo - p.hi - 1), abs(c.hi - p.lo - 1)) > 1e-9)
                   AS inconsistent
        FROM c JOIN p USING (customer_id)""",
}


def _hand(current: pa.Table, previous: pa.Table, scratch: Path) -> dict[str, Any]:
    from mdlc_core.sql import quality as sql_quality

    with sql_quality.connect(memory_limit=MEMORY_LIMIT, temp_directory=scratch) as con:
        con.register("snapshot", current)
        con.register("previous", previous)
        results = {}
        for name, sql in HAND_WRITTEN.items():
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description]
            results[name] = dict(zip(names, cursor.fetchone(), strict=True))
    return _counts(results["scan"], results["unique"]["duplicates"],
                   results["consistency"]["compared"], results["consistency"]["inconsistent"])


def _polars(current: pa.Table, previous: pa.Table) -> dict[str, Any]:
    """The hand-written queries' counts in polars: one lazy plan per query,
    collected together (``collect_all`` runs them in parallel)."""
    import polars as pl

    today, before = pl.from_arrow(current).lazy(), pl.from_arrow(previous).lazy()
    amount, tenure = pl.col("order_amount"), pl.col("account_tenure")
    scan = today.select(
        n=pl.len(),
        **{f"null_{c}": pl.col(c).null_count() for c in COLUMNS},
        outside_amount=((amount < 0) | (amount > 50000) | amount.is_nan()).sum(),
        outside_tenure=((tenure < 0) | (tenure > 36500)).sum(),
        unexpected_status=(~pl.col("fraud_status").is_in([0, 1])).sum(),
        newest=pl.col("order_ts").max().dt.epoch("us"))
    unique = today.select(duplicates=pl.col("order_id").count()
                          - pl.col("order_id").drop_nulls().n_unique())

    def per_customer(frame: pl.LazyFrame) -> pl.LazyFrame:
        return (frame.drop_nulls(["customer_id", "account_tenure"]).group_by("customer_id")
                .agg(lo=tenure.min(), hi=tenure.max()))

    joined = per_customer(today).join(per_customer(before), on="customer_id", suffix="_p")
    consistency = joined.select(
        compared=pl.len(),
        inconsistent=(pl.max_horizontal((pl.col("lo") - pl.col("hi_p") - 1).abs(),
                                         (pl.col("hi") - pl.col("lo_p") - 1).abs())
                      > 1e-9).sum())
    figures = [frame.row(0, named=True) for frame in pl.collect_all([scan, unique, consistency])]
    return _counts(figures[0], figures[1]["duplicates"], figures[2]["compared"],
                   figures[2]["inconsistent"])


def quality_child(engine: str, folder: str, repeat: int) -> dict[str, Any]:
    """Load the two days, warm Spark up if it is the engine, time ``repeat`` runs."""
    from mdlc_core.sql import quality as sql_quality

    if engine not in ENGINES:
        raise ValueError(f"the quality section has no engine {engine!r}; expected one of "
                         f"{ENGINES}")
    files = (Path(folder) / "current.parquet", Path(folder) / "previous.parquet")
    config = spec()
    spark = None
    scratch = Path(tempfile.mkdtemp(prefix="bench-spill-", dir=folder))
    if engine in ("parquet", "spark"):
        current: Any
        previous: Any
        current, previous = files  # read by the engine, inside the timed run
    else:
        current, previous = (pq.read_table(path) for path in files)
    if engine == "spark":
        from mdlc_core import spark_job

        spark = common.Spark(scratch)
        # The files' first rows only (reading a whole day would stay in the
        # driver's resident memory): the warm-up is about the code, not the data.
        small = [pa.Table.from_batches([next(pq.ParquetFile(path).iter_batches(
            batch_size=common.WARM_UP_ROWS))]) for path in files]
        spark.warm_up(lambda: spark_job.check(spark.session, config, *small, snapshot_date=DAY))
        del small

    def work(spill: Path | None) -> dict[str, Any]:
        if engine == "ours" or engine == "parquet":
            return _counts_from_report(sql_quality.check(
                config, current, previous, snapshot_date=DAY, memory_limit=MEMORY_LIMIT,
                temp_directory=spill))
        if engine == "hand":
            assert spill is not None
            return _hand(current, previous, spill)
        if engine == "polars":
            return _polars(current, previous)
        assert engine == "spark" and spark is not None
        return _counts_from_report(spark_job.check(spark.session, config, current,
                                                   previous, snapshot_date=DAY))

    figures = common.measure(work, repeat, scratch=scratch, spark=spark)
    return {"works": {"quality": figures}, "spark": spark.info() if spark else None}


def quality_main(sizes: list[int], repeat: int, engines: list[str]) -> list[dict[str, Any]]:
    """The quality row at every size; its summary rows."""
    chosen = [e for e in ENGINES if e in engines]
    print(f"\nquality: the example spec's {len(spec()['quality']['rules'])} rules, today + "
          f"yesterday (ours, hand, polars: Arrow in memory; spark, parquet: the "
          f"Parquet files); DuckDB memory_limit {MEMORY_LIMIT}, threads = cores")
    print(common.HEADER)
    def write(folder: Path, rows: int) -> None:
        pq.write_table(orders(rows, DAY, 1), folder / "current.parquet")
        pq.write_table(orders(rows, DAY - timedelta(days=1), 0), folder / "previous.parquet")

    summary = []
    for rows in sizes:
        measured = measure_size("quality", rows, chosen, repeat, write)
        results, row = report_work(measured, "quality", rows, "quality", lambda a, b: a == b)
        print(f"{rows:>11,} {'quality':<10} answer    {results['ours']['answer']}")
        summary.append(row)
    return summary


def measure_size(section: str, rows: int, engines: list[str], repeat: int,
                 write: Callable[[Path, int], None]) -> dict[str, Any]:
    """Every engine of ``section`` on the data ``write`` puts in a fresh folder
    for ``rows`` (the folder is removed after): their figures, by engine."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{section}-") as folder:
        write(Path(folder), rows)
        return {e: run(section, e, folder, repeat) for e in engines}


def report_work(measured: dict[str, Any], work: str, rows: int, label: str,
                same: Callable[[Any, Any], bool]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One piece of ``work`` of a size: the engines' answers checked against
    ours (``same``), their lines printed; ``(results by engine, summary row)``."""
    failed = common.failures(measured)
    spark = measured["spark"]["spark"] if "spark" in measured else None
    results = {e: m["works"][work] for e, m in measured.items()}
    common.check_agree(work, rows, results, same)
    common.print_engines(rows, work, results, spark, failed)
    return results, common.summary_row(rows, label, results, spark, failed)


# --- the run --------------------------------------------------------------------------


#: The sections, by name: the module that holds each (None: this one). A
#: section module is imported from this folder and has
#: ``main(sizes, repeat, engines) -> summary rows`` and
#: ``child(engine, folder, repeat) -> figures``, which :func:`run` calls in a
#: subprocess (``--child SECTION ENGINE FOLDER REPEAT``).
SECTIONS: dict[str, str | None] = {"quality": None, "features": "engines_features",
                                   "monitoring": "engines_monitoring"}


def run(section: str, engine: str, folder: str, repeat: int) -> dict[str, Any]:
    """``engine`` of ``section`` in a subprocess of its own; its figures."""
    if engine == "spark" and common.SPARK_REPEAT is not None:
        repeat = common.SPARK_REPEAT
    return common.run_engine(__file__, [section, engine, folder, str(repeat)])


def _engines(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in common.ENGINES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown engine(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(common.ENGINES)}")
    if "ours" not in names:
        raise argparse.ArgumentTypeError(
            "--engines must include ours: every other engine's answer is checked against it")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--repeat must be at least 1, got {value}")
    return value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SECTIONS), action="append",
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--repeat", type=_positive, default=common.DEFAULT_REPEAT,
                        help="runs per engine and size; the best counts (default "
                             f"{common.DEFAULT_REPEAT})")
    parser.add_argument("--spark-repeat", type=_positive, default=None,
                        help="Spark's runs per size, if not --repeat: a 10M-row Spark run "
                             "takes minutes, and its ratio is far beyond its spread")
    parser.add_argument("--engines", type=_engines, default=list(common.DEFAULT_ENGINES),
                        help="comma-separated, of " + ", ".join(common.ENGINES)
                             + " (default " + ",".join(common.DEFAULT_ENGINES) + ")")
    parser.add_argument("rows", nargs="*", type=int, default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)
    # In engines_common: this file runs as __main__, and the section modules
    # import it again as bench_engines, a second module with globals of its own.
    common.SPARK_REPEAT = args.spark_repeat
    spark_runs = f" (spark: {args.spark_repeat})" if args.spark_repeat else ""
    print(f"bench_engines: {', '.join(f'{r:,}' for r in args.rows)} rows, best of "
          f"{args.repeat}{spark_runs}, engines {', '.join(args.engines)}; "
          f"{common.describe_machine()}", flush=True)
    for engine in args.engines:
        print(f"  {engine:<9} {common.TITLES[engine]}")
    summary: list[dict[str, Any]] = []
    for section in args.only or list(SECTIONS):
        module = SECTIONS[section]
        if module is None:
            summary += quality_main(args.rows, args.repeat, args.engines)
        else:
            summary += importlib.import_module(module).main(args.rows, args.repeat,
                                                            args.engines)
    common.print_summary(summary, args.repeat, args.spark_repeat)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        import json

        section, engine, folder, repeat = sys.argv[2:6]
        module = SECTIONS[section]
        child = quality_child if module is None else importlib.import_module(module).child
        print(json.dumps(child(engine, folder, int(repeat)), default=int))
    else:
        main(sys.argv[1:])
