"""The features rows of ``bench_engines.py``: every engine, the same answers.

Two rows of issue #18's table, on the example spec's features (a 30-day sum
and count per customer and an expression of them) over ``rows`` events of
``rows / 10`` customers spread over 60 days, 1% of them redelivered (the
same event again later in the input), in arrival order (not sorted):

- ``per-event``: every event's features as of itself (the training rows);
- ``as-of``: one row per customer as of the last day (batch inference).

Engines, each in a subprocess of its own (``bench_engines.run``), timed from
the loaded Arrow table to the answer (figures: ``engines_common.measure``):

- ``ours``: ``mdlc_core.sql.features`` on DuckDB (its typing step, then the
  compiled query; an Arrow table, what the feature job writes);
- ``hand``: the same answers from DuckDB SQL written by hand (below), the
  floor ours is judged against (target: within 1.2x);
- ``polars``: the same answers with polars' expressions, idiomatically;
- ``spark``: the same plan's Spark SQL on local PySpark
  (``mdlc_core.sql.features.run_spark``: the typed relation into the JVM as
  Arrow batches, the query, its result back as Arrow), inside the timing.

(The hand-written NumPy engine, once ``embedded`` here, was retired: ours is
the batch feature engine of every runner; issue #18's table measured it at
5.8 s and 3.8 s on 1M events.)

Every engine's answer is reduced to the same digest (row count, ids at fixed
positions, each feature's null count, sum and values at fixed positions);
they must agree with ours (floats to 1e-9 relative) or the run stops.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import engines_common as common
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

START = date(2026, 9, 1)
DAYS = 60
AS_OF = START + timedelta(days=DAYS - 1)
ENGINES = ("ours", "hand", "polars", "spark")
KINDS = ("per-event", "as-of")
FEATURES = ("order_total_30d", "order_count_30d", "amount_to_30d_mean")
US_PER_DAY = 86_400_000_000


def events(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` events (1% redeliveries of earlier ones), column-wise, in arrival order."""
    rng = np.random.default_rng(seed)
    fresh = rows - rows // 100
    customers = rng.integers(0, max(rows // 10, 1), fresh)
    start = np.datetime64(START.isoformat(), "us").astype(np.int64)
    micros = start + rng.integers(0, DAYS * US_PER_DAY, fresh)
    amount = rng.gamma(2.0, 50.0, fresh)
    ids = np.arange(fresh)
    again = rng.integers(0, fresh, rows - fresh)  # which events are redelivered
    # Arrival order: each first delivery at its index, each redelivery 1-1000
    # places after its first one.
    arrival = np.concatenate([ids, again + rng.integers(1, 1000, len(again)) + 0.5])
    order = np.argsort(arrival, kind="stable")
    take = np.concatenate([ids, again])[order]
    return pa.table({
        "order_id": pc.binary_join_element_wise("o-", pc.cast(pa.array(take), pa.string()), ""),
        "customer_id": pc.binary_join_element_wise(
            "c-", pc.cast(pa.array(customers[take]), pa.string()), ""),
        "order_ts": pa.array(micros[take], type=pa.timestamp("us", tz="UTC")),
        "order_amount": pa.array(amount[take]),
    })


def feature_set() -> Any:
    from bench_engines import spec
    from mdlc_core.features import FeatureSet

    return FeatureSet.from_config(spec())


# --- the digest every engine's answer is reduced to ------------------------------------------


def digest(columns: dict[str, Any], key: str) -> dict[str, Any]:
    """The answer in a few numbers: rows, ``key`` at fixed positions, and per
    feature its null count, sum and values at those positions. ``columns``:
    the key as an Arrow array, features as NumPy floats with NaN for null."""
    keys = columns[key]
    n = len(keys)
    positions = sorted({0, 1, n // 3, n // 2, n - 2, n - 1} & set(range(n)))
    at = keys.take(pa.array(positions, pa.int64())).to_pylist()
    out: dict[str, Any] = {"rows": n, key: at}
    for name in FEATURES:
        values = np.asarray(columns[name], dtype=np.float64)
        out[name] = {"nulls": int(np.isnan(values).sum()), "sum": float(np.nansum(values)),
                     "at": [None if math.isnan(values[p]) else float(values[p])
                            for p in positions]}
    return out


def same(a: Any, b: Any) -> bool:
    """Digests agree: counts exactly, floats to 1e-9 (relative, or absolute near 0)."""
    return common.close(a, b, 1e-9, 1e-9)


def _arrow_columns(table: pa.Table) -> dict[str, Any]:
    """An engine's Arrow answer as :func:`digest` reads it: the features as
    float arrays (NaN for null), the rest as they are (no 10M Python strings)."""
    return {name: (table.column(name) if name not in FEATURES else
                   table.column(name).cast(pa.float64()).fill_null(math.nan).to_numpy())
            for name in table.column_names}


# --- the hand-written DuckDB SQL ------------------------------------------------------------

#: Whole UTC days: the window's earlier days by a RANGE frame over the day,
#: the event's own day up to it in (timestamp, id) order; redeliveries out by
#: each id's first position.
HAND_PER_EVENT = """
WITH ev AS (
    SELECT order_id, customer_id, order_amount, _row,
           epoch_us(order_ts) AS us, epoch_us(order_ts) // 86400000000 AS day
    FROM events
    WHERE _row IN (SELECT min(_row) FROM events GROUP BY order_id)),
f AS (
    SELECT _row, order_id, customer_id, order_amount,
           coalesce(sum(order_amount) OVER earlier, 0)
             + coalesce(sum(order_amount) OVER today, 0) AS order_total_30d,
           count(*) OVER earlier + count(*) OVER today AS order_count_30d
    FROM ev
    WINDOW earlier AS (PARTITION BY customer_id ORDER BY day
                       RANGE BETWEEN 29 PRECEDING AND 1 PRECEDING),
           today AS (PARTITION BY customer_id, day ORDER BY us, order_id
                     ROWS UNBOUNDED PRECEDING))
SELECT order_id, customer_id, order_total_30d, order_count_30d,
       CASE WHEN isfinite(order_amount / (order_total_30d / order_count_30d))
            THEN order_amount / (order_total_30d / order_count_30d) END AS amount_to_30d_mean
FROM f ORDER BY _row
"""

#: The window's days first (an entity whose latest event is older has no
#: event there, so no row), then one GROUP BY: the latest event's amount by
#: arg_max over (timestamp, id), the window's sum and count. (Grouping all
#: events up to the day with FILTERed aggregates and HAVING on the newest day
#: took 1.2 s against 0.5 s at 1M events.)
HAND_AS_OF = """
WITH ev AS (
    SELECT order_id, customer_id, order_amount, epoch_us(order_ts) AS us
    FROM events
    WHERE _row IN (SELECT min(_row) FROM events GROUP BY order_id)
      AND epoch_us(order_ts) // 86400000000 BETWEEN $today - 29 AND $today)
SELECT customer_id, order_total_30d, order_count_30d,
       CASE WHEN isfinite(amount / (order_total_30d / order_count_30d))
            THEN amount / (order_total_30d / order_count_30d) END AS amount_to_30d_mean
FROM (SELECT customer_id, arg_max_null(order_amount, (us, order_id)) AS amount,
             sum(order_amount) AS order_total_30d, count(*) AS order_count_30d
      FROM ev GROUP BY customer_id)
ORDER BY customer_id
"""


def _today() -> int:
    return (AS_OF - date(1970, 1, 1)).days


def _hand(kind: str, table: pa.Table, memory_limit: str, scratch: str) -> pa.Table:
    from mdlc_core.sql import quality as sql_quality

    with sql_quality.connect(memory_limit=memory_limit, temp_directory=scratch) as con:
        con.register("events", table.append_column(
            "_row", pa.array(np.arange(table.num_rows, dtype=np.int64))))
        sql = HAND_PER_EVENT if kind == "per-event" else \
            HAND_AS_OF.replace("$today", str(_today()))
        return con.sql(sql).to_arrow_table()


# --- polars -----------------------------------------------------------------------------------


def _polars(kind: str, table: pa.Table) -> pa.Table:
    import polars as pl

    frame = pl.from_arrow(table).with_row_index("_row")
    frame = frame.unique(subset="order_id", keep="first", maintain_order=True).with_columns(
        us=pl.col("order_ts").dt.epoch("us"))
    frame = frame.with_columns(day=pl.col("us") // US_PER_DAY)
    if kind == "per-event":
        # The window's earlier days from per-day totals, plus the day so far.
        daily = frame.group_by("customer_id", "day").agg(
            total=pl.col("order_amount").sum(), n=pl.len()).sort("customer_id", "day")
        earlier = daily.rolling("day", period="29i", offset="-30i", group_by="customer_id").agg(
            earlier_total=pl.col("total").sum(), earlier_n=pl.col("n").sum())
        out = (frame.sort("customer_id", "day", "us", "order_id")
               .with_columns(
                   today_total=pl.col("order_amount").cum_sum().over("customer_id", "day"),
                   today_n=pl.int_range(1, pl.len() + 1).over("customer_id", "day"))
               .join(earlier, on=["customer_id", "day"], how="left")
               .with_columns(
                   order_total_30d=pl.col("earlier_total").fill_null(0) + pl.col("today_total"),
                   order_count_30d=pl.col("earlier_n").fill_null(0) + pl.col("today_n"))
               .sort("_row"))
        amount = pl.col("order_amount")
    else:
        today = _today()
        # The window's days first, as the hand-written query does.
        out = (frame.filter(pl.col("day").is_between(today - 29, today)).sort("us", "order_id")
               .group_by("customer_id").agg(
                   amount=pl.col("order_amount").last(),
                   order_total_30d=pl.col("order_amount").sum(),
                   order_count_30d=pl.len())
               .sort("customer_id"))
        amount = pl.col("amount")
    ratio = amount / (pl.col("order_total_30d") / pl.col("order_count_30d"))
    out = out.with_columns(amount_to_30d_mean=pl.when(ratio.is_finite()).then(ratio))
    return out.select(["order_id" if kind == "per-event" else "customer_id", *FEATURES]).to_arrow()


# --- one engine, in its own process -------------------------------------------------------------


def compute(engine: str, kind: str, table: pa.Table, scratch: Path | None,
            spark: Any = None) -> pa.Table:
    """One run of ``engine`` on ``kind``: its answer as the engine gives it (an
    Arrow table), before any digest."""
    features = feature_set()
    if engine in ("ours", "spark"):
        from mdlc_core.sql import features as sql_features

        plan = (sql_features.prepare_per_event(table, features) if kind == "per-event"
                else sql_features.prepare_as_of(table, features, AS_OF))
        if engine == "spark":
            return sql_features.run_spark(plan, spark)
        options = sql_features.DuckDB(memory_limit=common.MEMORY_LIMIT, temp_directory=scratch)
        return sql_features.run(plan, options)
    if engine == "hand":
        assert scratch is not None
        return _hand(kind, table, common.MEMORY_LIMIT, str(scratch))
    return _polars(kind, table)


def digest_of(kind: str, answer: pa.Table) -> dict[str, Any]:
    """The digest of one engine's answer (not timed: the same for every engine)."""
    return digest(_arrow_columns(answer), "order_id" if kind == "per-event" else "customer_id")


def child(engine: str, folder: str, repeat: int) -> dict[str, Any]:
    """Load the events; for Spark start the session and warm both kinds up on
    a slice; then time ``repeat`` runs of each kind."""
    import tempfile

    table = pq.read_table(Path(folder) / "events.parquet")
    scratch = Path(tempfile.mkdtemp(prefix="bench-spill-", dir=folder))
    spark = None
    if engine == "spark":
        spark = common.Spark(scratch)
        small = table.slice(0, common.WARM_UP_ROWS)
        for kind in KINDS:
            spark.warm_up(lambda kind=kind: compute(engine, kind, small, None, spark.session))
        del small
    works = {kind: common.measure(
        lambda spill, kind=kind: compute(engine, kind, table, spill,
                                         spark.session if spark else None),
        repeat, scratch=scratch, spark=spark,
        finish=lambda answer, kind=kind: digest_of(kind, answer)) for kind in KINDS}
    return {"works": works, "spark": spark.info() if spark else None}


# --- the section -------------------------------------------------------------------------------


def main(sizes: list[int], repeat: int = common.DEFAULT_REPEAT,
         engines: list[str] | tuple[str, ...] = common.DEFAULT_ENGINES) -> list[dict[str, Any]]:
    """Print the features rows for every size; their summary rows."""
    import bench_engines

    chosen = [e for e in ENGINES if e in engines]
    print(f"\nfeatures: the example spec's {', '.join(FEATURES)} (30-day windows), events of "
          f"rows/10 customers over {DAYS} days, 1% redelivered, Arrow in memory; DuckDB "
          f"memory_limit {common.MEMORY_LIMIT}")
    print(common.HEADER)
    summary = []
    for rows in sizes:
        measured = bench_engines.measure_size(
            "features", rows, chosen, repeat,
            lambda folder, rows: pq.write_table(events(rows), folder / "events.parquet"))
        for kind in KINDS:
            summary.append(bench_engines.report_work(measured, kind, rows, f"{kind} features",
                                                     same)[1])
        print(f"{rows:>11,} {'features':<10} answers   "
              f"{measured['ours']['works']['per-event']['answer']['rows']:,} events, "
              f"{measured['ours']['works']['as-of']['answer']['rows']:,} entities as of {AS_OF}")
    return summary
