"""The monitoring row of ``bench_engines.py``: the join and its metrics, every engine.

For each size (default 1M and 10M predictions; 60% of them labelled, 5% of
those labelled twice, two model versions, an action, one feature, a
baseline of up to 1M rows), on the same tables:

- ``ours``: ``mdlc_core.sql.monitoring.compute_metrics``, the queries
  sqlglot builds, run on DuckDB;
- ``hand``: the same answers from idiomatic DuckDB SQL written by hand
  (``arg_max`` for the winning label, ``FILTER``, ``quantile_cont``,
  ``GROUP BY ALL``), the floor ours is judged against;
- ``polars``: the same answers in polars (lazy frames, ``rank`` for AUC);
- ``spark``: the same plan's Spark-dialect SQL on local PySpark
  (``plan.metrics(fetch, "spark")``, as
  ``tests/test_sql_monitoring.py::test_spark_gives_the_same_report`` runs it:
  every relation into the JVM as Arrow, inside the timing);
- ``parquet``: ours with DuckDB reading the Parquet files itself
  (``mdlc_core.sql.monitoring_files.DaySession``, what ``monitor_job`` runs on
  DuckDB): the reading and typing are inside the timing, nothing but the
  baseline is loaded before it.

(The NumPy engine, ``embedded``, was retired, issue #18: ours is what every
runner computes; its answers are the tests' recorded snapshots.)

Every engine reports the closed loop (label counts; per version and in all:
the confusion counts and AUC) and the open loop (PSI and KS of score and
feature, action shares) of every version group; the run stops unless all
agree with ours (counts exactly, metrics to 1e-9; the KS p-value always
comes from ``mdlc_core.kolmogorov``). The tables are loaded and typed (the
shared reader's typing for ours and Spark; positions
for the hand-written SQL and polars) before the timing.

Run alone: ``.venv/bin/python benchmarks/engines_monitoring.py [rows ...]``
(``bench_engines.py --only monitoring``, with its options).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import engines_common as common
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambdas"))

ENGINES = ("ours", "hand", "polars", "spark", "parquet")
MEMORY_LIMIT = common.MEMORY_LIMIT
THRESHOLD = 0.5
BINS = 10
SPEC = {"closed_loop": {"decision_threshold": THRESHOLD}, "open_loop": {"bins": BINS}}
FEATURES = ["order_amount"]
DRIFT = ("score", "order_amount")


def make(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Predictions, labels and a baseline, column-wise (no per-row Python)."""
    rng = np.random.default_rng(seed)
    ids = pc.binary_join_element_wise("e", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    truth = rng.uniform(size=n) < 0.05
    scores = np.round(np.clip(rng.normal(0.3 + 0.4 * truth, 0.15), 0, 1), 4)  # ties
    day = np.datetime64("2024-05-01T00:00:00", "us").astype(np.int64)
    ts = pa.array(day + rng.integers(0, 86_400_000_000, size=n), pa.timestamp("us", tz="UTC"))
    version = pc.if_else(pa.array(rng.uniform(size=n) < 0.9), "v1", "v2")
    predictions = pa.table({
        "event_id": ids, "score": scores, "prediction_ts": ts, "model_version": version,
        "action": pc.if_else(pa.array(scores > 0.6), "block", "approve"),
        "order_amount": np.round(rng.gamma(2, 50, size=n), 2),
    })
    keep = np.flatnonzero(rng.uniform(size=n) < 0.6)
    again = keep[rng.uniform(size=len(keep)) < 0.05]  # a later, reversed label
    label_ids = np.concatenate([keep, again])
    label = np.concatenate([truth[keep], ~truth[again]]).astype(np.int8)
    label_ts = np.concatenate([np.full(len(keep), day + 30 * 86_400_000_000),
                               np.full(len(again), day + 40 * 86_400_000_000)])
    labels = pa.table({"event_id": ids.take(pa.array(label_ids)), "label": label,
                       "label_ts": pa.array(label_ts, pa.timestamp("us", tz="UTC"))})
    b = min(n, 1_000_000)
    baseline = pa.table({"score": np.round(rng.beta(2, 5, size=b), 4),
                         "order_amount": np.round(rng.gamma(2.1, 50, size=b), 2)})
    return predictions, labels, baseline


# --- what every engine reports -------------------------------------------------------------


def digest_of_report(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the engines must agree on, from the report's shape (ours)."""
    closed = report["closed_loop"]
    out: dict[str, Any] = {k: closed[k] for k in ("labels", "duplicate_labels",
                                                  "unmatched_labels", "matched_predictions")}
    for group in closed["by_version"]:
        out[f"closed.{group['model_version']}"] = [group[k] for k in (
            "predictions", "tp", "fp", "fn", "tn", "auc")]
    for group in report["open_loop"]["by_version"]:
        name = group["model_version"]
        drifts = {"score": group["score"], **group["features"]}
        for column in DRIFT:
            d = drifts[column]
            out[f"drift.{name}.{column}"] = [d["psi"], d["ks_statistic"], d["ks_pvalue"]]
        out[f"actions.{name}"] = dict(sorted(group["actions"].items()))
    return out


def _psi(current: np.ndarray, baseline: np.ndarray) -> float:
    from mdlc_core import monitoring

    return monitoring.psi(monitoring.proportions(current), monitoring.proportions(baseline))


def _finish(labels: dict[str, int], closed: dict[str, dict[str, int]],
            drift: dict[tuple[str, str], dict[str, Any]], actions: dict[str, dict[str, int]]
            ) -> dict[str, Any]:
    """Digest from raw counts: what the hand-written SQL and polars hand back."""
    from mdlc_core import kolmogorov

    out: dict[str, Any] = dict(labels)
    for name, c in closed.items():
        auc = c["u2"] / (2 * c["p"] * c["n"]) if c["p"] and c["n"] else None
        out[f"closed.{name}"] = [c["predictions"], c["tp"], c["fp"], c["p"] - c["tp"],
                                 c["n"] - c["fp"], auc]
    for (name, column), d in drift.items():
        statistic, pvalue = kolmogorov.ks_2samp_counts(d["n1"], d["n2"], d["gap"])
        out[f"drift.{name}.{column}"] = [_psi(d["current"], d["baseline"]), statistic, pvalue]
    for name, counts in actions.items():
        total = sum(counts.values())
        out[f"actions.{name}"] = {a: counts[a] / total for a in sorted(counts)}
    return out


# --- hand-written DuckDB ------------------------------------------------------------------------

HAND = {
    "labels": """
        SELECT (SELECT count(*) FROM labels) AS labels,
               count(*) AS distinct_ids,
               count(*) FILTER (p.event_id IS NULL) AS unmatched
        FROM (SELECT DISTINCT event_id FROM labels) l
        LEFT JOIN (SELECT DISTINCT event_id FROM predictions) p USING (event_id)""",
    "counts": """
        SELECT coalesce(model_version, 'all') AS grp, count(*) AS n
        FROM predictions GROUP BY ROLLUP (model_version)""",
    "accuracy": """
        WITH w AS (SELECT event_id, arg_max(label, (label_ts, _row)) AS label
                   FROM labels GROUP BY ALL),
             j AS (SELECT p.model_version, p.score, w.label
                   FROM predictions p JOIN w USING (event_id)),
             s AS (SELECT coalesce(model_version, 'all') AS grp, score,
                          count(*) FILTER (label = 1) AS pos, count(*) FILTER (label = 0) AS neg
                   FROM j GROUP BY GROUPING SETS ((model_version, score), (score))),
             r AS (SELECT *, sum(neg) OVER (PARTITION BY grp ORDER BY score) AS le FROM s)
        SELECT grp, sum(pos) AS p, sum(neg) AS n,
               coalesce(sum(pos) FILTER (score >= {t}), 0) AS tp,
               coalesce(sum(neg) FILTER (score >= {t}), 0) AS fp,
               sum(pos * (2 * le - neg)) AS u2
        FROM r GROUP BY ALL""",
    "edges": "SELECT quantile_cont({c}, {q}) AS edges, count({c}) AS n FROM baseline",
    "bins": """
        SELECT coalesce(model_version, 'all') AS grp, b, count(*) AS n
        FROM (SELECT model_version, {bin} AS b FROM predictions)
        GROUP BY GROUPING SETS ((model_version, b), (b))""",
    "baseline_bins": "SELECT {bin} AS b, count(*) AS n FROM baseline GROUP BY ALL",
    "ks": """
        WITH u AS (SELECT {c} AS x, {n2} AS w_all, {n2} * (model_version = 'v1')::INT AS w_v1,
                          {n2} * (model_version = 'v2')::INT AS w_v2 FROM predictions
                   UNION ALL
                   SELECT {c}, -{n_all}, -{n_v1}, -{n_v2} FROM baseline),
             r AS (SELECT sum(COLUMNS('w_.*')) OVER (ORDER BY x RANGE BETWEEN UNBOUNDED PRECEDING
                                                      AND CURRENT ROW) FROM u)
        SELECT max(abs(COLUMNS(*))) FROM r""",
    "actions": """
        SELECT coalesce(model_version, 'all') AS grp, action, count(*) AS n
        FROM predictions GROUP BY GROUPING SETS ((model_version, action), (action))""",
}


def hand(predictions: pa.Table, labels: pa.Table, baseline: pa.Table,
         scratch: str) -> dict[str, Any]:
    from mdlc_core.sql import quality as sql_quality

    with sql_quality.connect(memory_limit=MEMORY_LIMIT, temp_directory=scratch) as con:
        con.register("predictions", predictions)
        con.register("labels", labels)
        con.register("baseline", baseline)

        def rows(name: str, **values: Any) -> list[dict[str, Any]]:
            cursor = con.execute(HAND[name].format(**values))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

        (lab,) = rows("labels")
        counts = {r["grp"]: r["n"] for r in rows("counts")}
        closed = {}
        for r in rows("accuracy", t=THRESHOLD):
            closed[r["grp"]] = {"predictions": counts[r["grp"]], **{k: int(r[k]) for k in (
                "p", "n", "tp", "fp", "u2")}}
        drift = {}
        q = "[" + ", ".join(repr(float(x)) for x in np.linspace(0, 1, BINS + 1)[1:-1]) + "]"
        for column in DRIFT:
            (e,) = rows("edges", c=column, q=q)
            edges = np.unique(np.array(e["edges"]))
            binned = " + ".join(f"({column} >= {float(x)!r})::INT" for x in edges)
            current = {g: np.zeros(len(edges) + 1, np.int64) for g in counts}
            for r in rows("bins", bin=binned):
                current[r["grp"]][r["b"]] = r["n"]
            base = np.zeros(len(edges) + 1, np.int64)
            for r in rows("baseline_bins", bin=binned):
                base[r["b"]] = r["n"]
            sizes = {g: int(c.sum()) for g, c in current.items()}
            (gaps,) = con.execute(HAND["ks"].format(
                c=column, n2=e["n"], n_all=sizes["all"], n_v1=sizes["v1"],
                n_v2=sizes["v2"])).fetchall()
            for g, gap in zip(("all", "v1", "v2"), gaps, strict=True):
                drift[g, column] = {"current": current[g], "baseline": base, "n1": sizes[g],
                                    "n2": e["n"], "gap": int(gap)}
        actions: dict[str, dict[str, int]] = {}
        for r in rows("actions"):
            actions.setdefault(r["grp"], {})[r["action"]] = r["n"]
    labels_out = {"labels": lab["labels"], "duplicate_labels": lab["labels"] - lab["distinct_ids"],
                  "unmatched_labels": lab["unmatched"],
                  "matched_predictions": closed["all"]["p"] + closed["all"]["n"]}
    return _finish(labels_out, {g: closed[g] for g in ("all", "v1", "v2")}, drift,
                   {g: actions[g] for g in ("all", "v1", "v2")})


# --- polars ---------------------------------------------------------------------------------------


def polars_engine(predictions: pa.Table, labels: pa.Table, baseline: pa.Table) -> dict[str, Any]:
    import polars as pl

    p = pl.from_arrow(predictions).lazy()
    lab = pl.from_arrow(labels).lazy()
    b = pl.from_arrow(baseline)
    n_labels = labels.num_rows
    distinct = lab.select(pl.col("event_id").n_unique()).collect().item()
    unmatched = (lab.select("event_id").unique()
                 .join(p.select("event_id").unique(), on="event_id", how="anti")
                 .select(pl.len()).collect().item())
    winners = lab.sort(["label_ts", "_row"]).unique("event_id", keep="last")
    joined = p.join(winners.select("event_id", "label"), on="event_id", how="inner")
    both = pl.concat([joined.with_columns(grp=pl.col("model_version")),
                      joined.with_columns(grp=pl.lit("all"))])
    counts = dict(p.group_by("model_version").agg(pl.len()).collect().rows())
    counts["all"] = predictions.num_rows
    acc = (both.with_columns(rank=pl.col("score").rank("average").over("grp"))
           .group_by("grp").agg(
               p=(pl.col("label") == 1).sum(), n=(pl.col("label") == 0).sum(),
               tp=((pl.col("label") == 1) & (pl.col("score") >= THRESHOLD)).sum(),
               fp=((pl.col("label") == 0) & (pl.col("score") >= THRESHOLD)).sum(),
               rank_sum=pl.col("rank").filter(pl.col("label") == 1).sum())
           .collect())
    closed = {}
    for r in acc.iter_rows(named=True):
        # U2 = 2 * (rank sum of positives - P(P+1)/2): exact, ranks are half-integers.
        u2 = round(2 * r["rank_sum"]) - r["p"] * (r["p"] + 1)
        closed[r["grp"]] = {"predictions": counts[r["grp"]], "p": r["p"], "n": r["n"],
                            "tp": r["tp"], "fp": r["fp"], "u2": u2}
    drift = {}
    groups = ("all", "v1", "v2")
    scored = pl.concat([p.with_columns(grp=pl.col("model_version")),
                        p.with_columns(grp=pl.lit("all"))])
    for column in DRIFT:
        values = b.get_column(column).drop_nans().drop_nulls()
        q = np.linspace(0, 1, BINS + 1)[1:-1]
        edges = np.unique([values.quantile(x, interpolation="linear") for x in q])
        base = np.bincount(np.searchsorted(edges, values.to_numpy(), side="right"),
                           minlength=len(edges) + 1)
        bins = (scored.with_columns(
                    b=pl.sum_horizontal([(pl.col(column) >= float(e)).cast(pl.Int64)
                                         for e in edges]))
                .group_by("grp", "b").agg(pl.len()).collect())
        sizes = dict(scored.group_by("grp").agg(pl.len()).collect().rows())
        n2 = len(values)
        ks = (scored.select("grp", x=pl.col(column), c=pl.lit(1), k=pl.lit(0))
              .collect())
        for g in groups:
            current = np.zeros(len(edges) + 1, np.int64)
            for r in bins.filter(pl.col("grp") == g).iter_rows(named=True):
                current[r["b"]] = r["len"]
            sample = ks.filter(pl.col("grp") == g).get_column("x")
            merged = (pl.concat([pl.DataFrame({"x": sample, "w": pl.repeat(
                                     n2, len(sample), eager=True, dtype=pl.Int64)}),
                                 pl.DataFrame({"x": values, "w": pl.repeat(
                                     -sizes[g], n2, eager=True, dtype=pl.Int64)})])
                      .lazy().group_by("x").agg(pl.col("w").sum()).sort("x")
                      .select(pl.col("w").cum_sum().abs().max()).collect().item())
            drift[g, column] = {"current": current, "baseline": base, "n1": sizes[g],
                                "n2": n2, "gap": int(merged)}
    act = (scored.group_by("grp", "action").agg(pl.len()).collect())
    actions: dict[str, dict[str, int]] = {}
    for r in act.iter_rows(named=True):
        actions.setdefault(r["grp"], {})[r["action"]] = r["len"]
    labels_out = {"labels": n_labels, "duplicate_labels": n_labels - distinct,
                  "unmatched_labels": unmatched,
                  "matched_predictions": closed["all"]["p"] + closed["all"]["n"]}
    return _finish(labels_out, {g: closed[g] for g in groups}, drift,
                   {g: actions[g] for g in groups})


# --- Spark --------------------------------------------------------------------------------------


def spark_metrics(session: Any, predictions: Any, labels: Any,
                  baseline: pa.Table) -> dict[str, Any]:
    """The compiled plan's Spark SQL on ``session``: every relation a temporary
    view (as the Spark test registers them), then ``plan.metrics(fetch, "spark")``."""
    from mdlc_core.sql import monitoring as sql_monitoring

    plan = sql_monitoring.prepare(predictions, labels, baseline, SPEC, FEATURES)
    for name, relation in plan.relations.items():
        session.createDataFrame(relation).createOrReplaceTempView(name)
    try:
        return plan.metrics(lambda text: [row.asDict() for row in session.sql(text).collect()],
                            "spark")
    finally:
        for name in plan.relations:
            session.catalog.dropTempView(name)


def files_metrics(folder: Path, baseline: pa.Table, spill: Path) -> dict[str, Any]:
    """The report's loops with DuckDB reading the day's Parquet files itself, as
    ``monitor_job`` does on DuckDB (a hard link of each file per run: the
    session removes what it has read)."""
    from mdlc_core.sql import monitoring_files

    links = folder / "day-links"  # beside the files (a hard link), not in the spill folder
    links.mkdir(parents=True, exist_ok=True)

    def linked(name: str) -> monitoring_files.DataFile:
        target = links / name
        target.unlink(missing_ok=True)
        os.link(folder / name, target)
        return monitoring_files.DataFile(target, str(folder / name))

    with monitoring_files.DaySession(memory_limit=MEMORY_LIMIT,
                                     temp_directory=spill / "duckdb") as session:
        day = session.read_predictions([linked("predictions.parquet")], FEATURES,
                                       what=str(folder))
        labels = session.read_labels([linked("labels.parquet")], what=str(folder))
        return {"closed_loop": session.closed_loop(day, labels, THRESHOLD),
                "open_loop": session.open_loop(day, baseline, BINS, FEATURES)}


# --- one engine, in its own process ---------------------------------------------------------


def child(engine: str, folder: str, repeat: int) -> dict[str, Any]:
    """Load the tables and type them; for Spark start the session and warm it
    up on a small day; then time ``repeat`` runs of ``engine``."""
    from mdlc_core import monitoring
    from mdlc_core.sql import monitoring as sql_monitoring

    baseline = pq.read_table(Path(folder) / "baseline.parquet")
    scratch = Path(tempfile.mkdtemp(prefix="bench-spill-", dir=folder))
    if engine == "parquet":  # the files stay on disk: DuckDB reads them in the timing
        figures = common.measure(lambda spill: digest_of_report(files_metrics(
            Path(folder), baseline, spill or scratch)), repeat, scratch=scratch, spark=None)
        return {"works": {"monitoring": figures}, "spark": None}
    predictions = pq.read_table(Path(folder) / "predictions.parquet")
    labels = pq.read_table(Path(folder) / "labels.parquet")
    if engine in ("ours", "spark"):
        typed_p = monitoring.Predictions.from_table(predictions, FEATURES)
        typed_l = monitoring.Labels.from_table(labels)
        del predictions, labels
    else:  # the same typing, as plain columns (days, positions)
        predictions = predictions.append_column("_row", pa.array(np.arange(predictions.num_rows)))
        labels = labels.append_column("_row", pa.array(np.arange(labels.num_rows)))
    spark = None
    if engine == "spark":
        spark = common.Spark(scratch)
        small_p, small_l, small_b = make(common.WARM_UP_ROWS)
        small = (monitoring.Predictions.from_table(small_p, FEATURES),
                 monitoring.Labels.from_table(small_l), small_b)
        spark.warm_up(lambda: spark_metrics(spark.session, *small))
        del small, small_p, small_l, small_b

    def work(spill: Path | None) -> dict[str, Any]:
        if engine == "ours":
            return digest_of_report(sql_monitoring.compute_metrics(
                typed_p, typed_l, baseline, SPEC, FEATURES, memory_limit=MEMORY_LIMIT,
                temp_directory=str(spill)))
        if engine == "spark":
            assert spark is not None
            return digest_of_report(spark_metrics(spark.session, typed_p, typed_l, baseline))
        if engine == "hand":
            return hand(predictions, labels, baseline, str(spill))
        return polars_engine(predictions, labels, baseline)

    figures = common.measure(work, repeat, scratch=scratch, spark=spark)
    return {"works": {"monitoring": figures}, "spark": spark.info() if spark else None}


def main(sizes: list[int], repeat: int = common.DEFAULT_REPEAT,
         engines: list[str] | tuple[str, ...] = common.DEFAULT_ENGINES) -> list[dict[str, Any]]:
    """Print the monitoring row for every size; its summary rows."""
    import bench_engines

    chosen = [e for e in ENGINES if e in engines]
    print(f"\nmonitoring: join + metrics (2 versions, score + 1 feature, baseline <= 1M rows), "
          f"Arrow in memory; DuckDB memory_limit {MEMORY_LIMIT}")
    print(common.HEADER)
    summary = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as folder:
            predictions, labels, baseline = make(rows)
            pq.write_table(predictions, Path(folder) / "predictions.parquet")
            pq.write_table(labels, Path(folder) / "labels.parquet")
            pq.write_table(baseline, Path(folder) / "baseline.parquet")
            label_rows = labels.num_rows
            del predictions, labels, baseline
            measured = {e: bench_engines.run("monitoring", e, folder, repeat) for e in chosen}
        failed = common.failures(measured)
        results = {e: m["works"]["monitoring"] for e, m in measured.items()}
        common.check_agree("monitoring", rows, results, common.close)
        spark = measured["spark"]["spark"] if "spark" in measured else None
        common.print_engines(rows, "monitoring", results, spark, failed)
        print(f"{rows:>11,} {'monitoring':<10} answer    {rows:,} predictions, {label_rows:,} "
              f"labels: {json.dumps(results['ours']['answer'], default=str)[:160]}...")
        summary.append(common.summary_row(rows, "monitoring", results, spark, failed))
    return summary


if __name__ == "__main__":
    import bench_engines

    bench_engines.main(["--only", "monitoring", *sys.argv[1:]])
