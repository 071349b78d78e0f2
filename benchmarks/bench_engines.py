"""Issue #18's engines side by side: the embedded engine, the compiled SQL, hand-written SQL.

Sections, each selectable (``--only quality``, ``--only features``,
``--only monitoring``; default all): **quality** (below), **features**
(``engines_features.py``: per-event 30-day features and per-entity features
as of a day, with polars as a fourth engine) and **monitoring**
(``engines_monitoring.py``: the prediction-label join and its metrics).
A section module has ``main(sizes)``, which prints its rows and runs each
engine in a subprocess of its own (see :data:`SECTIONS`).

Quality: for each size (default 1M and 10M rows) one run measures, on the same
in-memory tables (today and yesterday, the example spec's rules including
the cross-snapshot consistency rule):

- ``embedded``: ``mdlc_core.quality.check`` (pyarrow/NumPy);
- ``compiled``: ``mdlc_core.sql.quality.check``, the rules compiled by
  sqlglot and run on DuckDB (one query per rule result, as the engine runs);
- ``hand``: the same answers from three idiomatic DuckDB queries written by
  hand (one scan for the per-column rules, a distinct count, the per-customer
  join), the floor the compiled SQL can be judged against;
- ``parquet``: the compiled SQL with DuckDB scanning the Parquet files
  itself (nothing loaded first; its peak is over the bare process).

Each engine runs in a subprocess of its own, so its peak resident memory
(VmHWM, reset after the data is loaded; DuckDB allocates in C++, where
tracemalloc sees nothing) is its own. The data is generated with NumPy once
per size and handed to the subprocesses as Parquet; the reading is not timed.
Seconds are the best of three runs below 5M rows, one run above.
The three must agree on every count, or the run stops.

Run: ``.venv/bin/python benchmarks/bench_engines.py [--only SECTION] [rows ...]``
(e.g. ``--only features 1000000``; default every section at 1M and 10M rows).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 11, 1)
ENGINES = ("embedded", "compiled", "hand", "parquet")
#: DuckDB's memory limit for both SQL engines; BENCH_MEMORY_LIMIT=256MB shows
#: the spilling (the peak stays near the limit, the time grows).
MEMORY_LIMIT = os.environ.get("BENCH_MEMORY_LIMIT", "2GB")


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


# --- one engine, in its own process ------------------------------------------------------


def _peak_reset() -> None:
    """Reset the kernel's resident-memory high-water mark (Linux 4.0+: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource  # pragma: no cover - not Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover


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


def _hand(current: pa.Table, previous: pa.Table, scratch: str) -> dict[str, Any]:
    from mdlc_core.sql import quality as sql_quality

    with sql_quality.connect(memory_limit=MEMORY_LIMIT, temp_directory=scratch) as con:
        con.register("snapshot", current)
        con.register("previous", previous)
        results = {}
        for name, sql in HAND_WRITTEN.items():
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description]
            results[name] = dict(zip(names, cursor.fetchone(), strict=True))
    scan = results["scan"]
    as_of = (np.datetime64((DAY + timedelta(days=1)).isoformat(), "us").astype(np.int64))
    age = round((as_of - scan["newest"]) / 3.6e9, 3)
    rules = spec()["quality"]["rules"]
    failed = sum(
        1 for rule in rules if rule["kind"] == "completeness"
        and (scan["n"] - scan[f"null_{rule['column']}"]) / scan["n"] < rule["min"] - 1e-12
    ) + sum(scan[k] > 0 for k in ("outside_amount", "outside_tenure", "unexpected_status")) \
        + (results["unique"]["duplicates"] > 0) + (age > 36) \
        + (results["consistency"]["inconsistent"] > 0)
    return {
        "rows": scan["n"], "failed": int(failed),
        "outside_amount": scan["outside_amount"], "outside_tenure": scan["outside_tenure"],
        "unexpected_status": scan["unexpected_status"],
        "duplicates": results["unique"]["duplicates"], "newest_age_hours": age,
        "compared": results["consistency"]["compared"],
        "inconsistent": results["consistency"]["inconsistent"],
    }


def child(engine: str, folder: str) -> None:
    """Quality: load the Parquet pair, reset the peak, run ``engine``, print JSON."""
    from mdlc_core import quality
    from mdlc_core.sql import quality as sql_quality

    if engine == "parquet":
        current, previous = (Path(folder) / "current.parquet", Path(folder) / "previous.parquet")
        rows = pq.ParquetFile(current).metadata.num_rows
    else:
        current = pq.read_table(Path(folder) / "current.parquet")
        previous = pq.read_table(Path(folder) / "previous.parquet")
        rows = current.num_rows
    config = spec()
    loaded = _rss_mib()
    _peak_reset()
    # The best of three below 5M rows (the machine is shared; one run is noisy).
    seconds = float("inf")
    for _ in range(3 if rows < 5_000_000 else 1):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-spill-") as scratch:
            if engine == "embedded":
                counts = _counts_from_report(quality.check(current, config, snapshot_date=DAY,
                                                           previous=previous))
            elif engine in ("compiled", "parquet"):
                counts = _counts_from_report(sql_quality.check(
                    config, current, previous, snapshot_date=DAY, memory_limit=MEMORY_LIMIT,
                    temp_directory=scratch))
            else:
                counts = _hand(current, previous, scratch)  # type: ignore[arg-type]
        seconds = min(seconds, time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_mib() - loaded,
                      "loaded_mib": loaded, "counts": counts}, default=int))


# --- the run --------------------------------------------------------------------------


#: The sections, by name: the module that holds each (None: this one). A
#: section module is imported from this folder and has ``main(sizes)``;
#: ``engines_features`` runs its engines through :func:`run` (``--child
#: features``, its ``child(engine, folder, memory_limit) -> dict``),
#: ``engines_monitoring`` through its own. A section whose file is missing
#: is not offered.
SECTIONS: dict[str, str | None] = {"quality": None, "features": "engines_features",
                                   "monitoring": "engines_monitoring"}


def available_sections() -> list[str]:
    here = Path(__file__).resolve().parent
    return [name for name, module in SECTIONS.items()
            if module is None or (here / f"{module}.py").exists()]


def run(section: str, engine: str, folder: str) -> dict[str, Any]:
    """``engine`` of ``section`` in a subprocess of its own; its JSON figures."""
    done = subprocess.run([sys.executable, __file__, "--child", section, engine, folder],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{section} {engine} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def quality_main(sizes: list[int]) -> None:
    print(f"quality, the example spec's {len(spec()['quality']['rules'])} rules, today + "
          f"yesterday in memory; DuckDB memory_limit {MEMORY_LIMIT}, threads = cores")
    print(f"{'rows':>11} {'engine':<9} {'seconds':>8} {'peak MiB':>9}  (data loaded: MiB)")
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
            pq.write_table(orders(rows, DAY, 1), Path(folder) / "current.parquet")
            pq.write_table(orders(rows, DAY - timedelta(days=1), 0),
                           Path(folder) / "previous.parquet")
            results = {engine: run("quality", engine, folder) for engine in ENGINES}
        reference = results["embedded"]["counts"]
        for engine, result in results.items():
            if result["counts"] != reference:
                raise SystemExit(f"{engine} disagrees at {rows:,} rows: {result['counts']} "
                                 f"!= embedded {reference}")
            print(f"{rows:>11,} {engine:<9} {result['seconds']:>8.2f} {result['peak_mib']:>9.0f}"
                  f"  ({result['loaded_mib']:.0f})")
        ours, compiled, hand, _ = (results[e]["seconds"] for e in ENGINES)
        print(f"{rows:>11,} ratios    compiled/hand {compiled / hand:.2f}x, "
              f"embedded/compiled {ours / compiled:.2f}x, embedded/hand {ours / hand:.2f}x; "
              f"all agree: {json.dumps(reference)}")


def main(argv: list[str]) -> None:
    sections = available_sections()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sections, action="append",
                        help="run only this section (repeatable); default: all")
    parser.add_argument("rows", nargs="*", type=int, default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)
    for section in args.only or sections:
        module = SECTIONS[section]
        if module is None:
            quality_main(args.rows)
        else:
            importlib.import_module(module).main(args.rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        section, engine, folder = sys.argv[2:5]
        if SECTIONS[section] is None:
            child(engine, folder)
        else:
            figures = importlib.import_module(SECTIONS[section]).child(engine, folder,
                                                                       MEMORY_LIMIT)
            print(json.dumps(figures, default=int))
    else:
        main(sys.argv[1:])
