"""Speed of the monitoring metrics: the compiled SQL on DuckDB (mdlc_core.sql.monitoring).

    .venv/bin/python benchmarks/bench_monitoring.py [N]   (default N = 2,000,000)

The engine every runner uses since the NumPy one was retired (issue #18), on
inputs the shared reader typed (``mdlc_core.monitoring.Predictions``, as
``mdlc monitor`` hands them over). Prints rows/second of the closed + open loop on N predictions
(labels for 60% of them, one feature, two model versions), the ratio against
a naive pure-Python implementation of the same metrics on a smaller sample in
this process, and time and peak memory at 10 million rows.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, "lambdas")
from mdlc_core import monitoring
from mdlc_core.sql import monitoring as sql_monitoring

SPEC = {
    "closed_loop": {"decision_threshold": 0.5, "min_precision": 0.5, "min_auc": 0.75},
    "open_loop": {"bins": 10, "max_psi": 0.2, "ks_alpha": 0.01},
}


def make(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    ids = pc.cast(pa.array(np.arange(n)), pa.string())
    truth = rng.uniform(size=n) < 0.05
    scores = np.clip(rng.normal(0.3 + 0.4 * truth, 0.15), 0, 1)
    day = np.datetime64("2024-05-01T00:00:00", "us")
    ts = pa.array(day + rng.integers(0, 86_400_000_000, size=n).astype("timedelta64[us]"))
    predictions = pa.table(
        {
            "event_id": ids,
            "score": scores,
            "prediction_ts": ts,
            "model_version": pa.array(np.where(rng.uniform(size=n) < 0.9, "v1", "v2")),
            "action": pa.array(np.where(scores > 0.9, "block", "approve")),
            "order_amount": rng.gamma(2, 50, size=n),
        }
    )
    keep = rng.uniform(size=n) < 0.6
    labels = pa.table(
        {
            "event_id": ids.filter(pa.array(keep)),
            "label": truth[keep].astype(np.int8),
            "label_ts": pa.array(np.full(int(keep.sum()), day + np.timedelta64(30, "D"))),
        }
    )
    baseline = pa.table(
        {
            "score": rng.uniform(size=min(n, 1_000_000)),
            "order_amount": rng.gamma(2, 50, size=min(n, 1_000_000)),
        }
    )
    return predictions, labels, baseline


def duckdb(predictions: pa.Table, labels: pa.Table, baseline: pa.Table) -> dict:
    p = monitoring.Predictions.from_table(predictions, ["order_amount"])
    lab = monitoring.Labels.from_table(labels)
    metrics = sql_monitoring.compute_metrics(p, lab, baseline, SPEC, ["order_amount"],
                                             memory_limit="4GB")
    monitoring.evaluate_alarms(metrics, SPEC)
    return metrics


def naive(predictions: pa.Table, labels: pa.Table, baseline: pa.Table) -> dict:
    """The same metrics the obvious way: dicts, loops and sorted()."""
    truth = {}
    for e, y, t in zip(
        *(labels.column(c).to_pylist() for c in ("event_id", "label", "label_ts")), strict=True
    ):
        if e not in truth or t >= truth[e][1]:
            truth[e] = (y, t)
    groups: dict = defaultdict(list)
    cols = [predictions.column(c).to_pylist() for c in ("event_id", "score", "model_version")]
    for e, s, v in zip(*cols, strict=True):
        y = truth.get(e, (None,))[0]
        for key in (v, "all"):
            groups[key].append((s, y))
    result = {}
    for key, rows in groups.items():
        labelled = [(s, y) for s, y in rows if y is not None]
        tp = sum(1 for s, y in labelled if s >= 0.5 and y == 1)
        fp = sum(1 for s, y in labelled if s >= 0.5 and y == 0)
        fn = sum(1 for s, y in labelled if s < 0.5 and y == 1)
        ranked = sorted(labelled)
        ranks, i = [0.0] * len(ranked), 0
        while i < len(ranked):
            j = i
            while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
                j += 1
            for k in range(i, j + 1):
                ranks[k] = (i + j) / 2 + 1
            i = j + 1
        pos = sum(1 for _, y in ranked if y == 1)
        neg = len(ranked) - pos
        r = sum(rk for rk, (_, y) in zip(ranks, ranked, strict=True) if y == 1)
        result[key] = {
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "auc": (r - pos * (pos + 1) / 2) / (pos * neg) if pos and neg else None,
        }
    base = sorted(baseline.column("score").to_pylist())
    edges = [base[int(len(base) * q / 10)] for q in range(1, 10)]
    current = predictions.column("score").to_pylist()

    def shares(values):
        counts = [0] * 10
        for x in values:
            counts[sum(1 for e in edges if x >= e)] += 1
        return [max(c / len(values), 1e-4) for c in counts]

    a, b = shares(current), shares(base)
    result["psi"] = sum((x - y) * math.log(x / y) for x, y in zip(a, b, strict=True))
    return result


def rate(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start, 0.0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    small = 100_000
    predictions, labels, baseline = make(n)
    duckdb(*(t.slice(0, 1000) for t in (predictions, labels, baseline)))  # warm-up
    seconds, _ = rate(duckdb, predictions, labels, baseline)
    fast = n / seconds
    print(
        f"DuckDB (compiled SQL): {n:,} predictions + {labels.num_rows:,} labels in "
        f"{seconds:.2f} s = {fast:,.0f} rows/s"
    )
    sp, sl, sb = make(small, seed=1)
    naive_seconds, _ = rate(naive, sp, sl, sb)
    duckdb_small, _ = rate(duckdb, sp, sl, sb)
    slow = small / naive_seconds
    print(f"naive pure Python: {small:,} predictions in {naive_seconds:.2f} s = {slow:,.0f} rows/s")
    print(f"DuckDB on the same {small:,}: {small / duckdb_small:,.0f} rows/s")
    print(f"ratio DuckDB/naive: {fast / slow:.1f}x")

    del predictions, labels, baseline
    big = 10_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    predictions, labels, baseline = make(big, seed=2)
    data_mb = sum(t.nbytes for t in (predictions, labels, baseline)) / 2**20
    seconds, _ = rate(duckdb, predictions, labels, baseline)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"10M rows: {seconds:.2f} s = {big / seconds:,.0f} rows/s; "
        f"input tables {data_mb:,.0f} MiB; process peak RSS {peak / 1024:,.0f} MiB "
        f"(was {before / 1024:,.0f} MiB before generating)"
    )


if __name__ == "__main__":
    main()
