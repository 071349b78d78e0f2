"""DuckDB reading the day itself (mdlc_core.sql.monitoring_files) against the shared reader.

Each case writes a day's objects to moto S3 as the writers (or a careless
producer) would, then runs the whole monitoring job, ``monitor_job.run``, on
DuckDB (the files are downloaded and DuckDB's ``read_csv``/``read_parquet``
type them into its own tables): the summary, the report written to S3 and the
CloudWatch data must be what the retired NumPy engine gave from pyarrow's
reading of the same files (recorded in ``__snapshots__/``). Bad files must
fail with :class:`MonitoringInputError`, naming the object and saying what
the shared reader says.

The subprocess test at the end is the point of reading the files in DuckDB:
a day larger than DuckDB's memory limit is monitored with bounded memory
(peak RSS measured) and the same report.
"""

from __future__ import annotations

import decimal
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mdlc_core import monitor_job, predictions
from mdlc_core.decisions import Decision
from mdlc_core.monitoring import MonitoringInputError

from tests.lambda_loader import load_handler
from tests.test_model_monitor_handler import BUCKET, DAY, LABELS, env  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
SCORED = f"predictions/fraud/dt={DAY}/scored/"
TRUTH = f"truth/fraud/dt={DAY}/"
HEADER = "event_id,score,prediction_ts,model_version,action,order_amount,account_tenure"


def put(s3: Any, key: str, body: bytes | str, bucket: str = BUCKET) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def run_day(s3: Any, event: dict[str, Any] | None = None, snapshot: Any = None
            ) -> tuple[Any, Any, Any]:
    """``(summary, report, metric data)`` of the day on DuckDB, asserted equal to
    ``snapshot`` (the retired NumPy engine's, recorded) when given."""
    from mdlc_core.runtime_config import load_config

    load_handler("model_monitor")  # mdlc_core as the function imports it
    summary = monitor_job.run({"date": DAY, **(event or {})}, load_config(), s3=s3,
                              cloudwatch=boto3.client("cloudwatch"), environ=os.environ,
                              engine="duckdb")
    key = f"monitoring/fraud/dt={DAY}/report.json"
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    s3.delete_object(Bucket=BUCKET, Key=key)
    result = (summary, report, monitor_job.metric_data("fraud", report))
    if snapshot is not None:
        assert result == snapshot
    return result


def assert_same_day(s3: Any, snapshot: Any, event: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The day's report on DuckDB, which the recorded NumPy report must equal."""
    return run_day(s3, event, snapshot)[1]


def baseline(s3: Any, rows: int = 300) -> None:
    rng = np.random.default_rng(3)
    put(s3, "snapshots/fraud/dt=2024-04-01/part-0.parquet", parquet(pa.table({
        "score": rng.uniform(size=rows), "order_amount": rng.gamma(2, 45, rows),
        "account_tenure": rng.integers(0, 400, rows).astype(float)})))


def labels_csv(rows: list[tuple[str, Any, str]]) -> str:
    return "event_id,label,label_ts\n" + "".join(f"{e},{v},{t}\n" for e, v, t in rows)


def test_the_writers_files_read_the_same(env: Any, snapshot: Any) -> None:  # noqa: F811
    """What the decide step and the stream consumer write (predictions.to_csv,
    to_parquet), gzip, two versions, actions, redelivered events, labels
    reversed later and labels of no prediction."""
    baseline(env)
    rng = np.random.default_rng(5)
    features = ["order_amount", "account_tenure"]
    decisions = [
        Decision(event_id=f"o{i}", entity_id=f"c{i % 17}", score=float(np.round(rng.uniform(), 2)),
                 action=("approve", "review", "block")[i % 3], model_version=f"v{1 + i % 2}",
                 decided_at=f"{DAY}T{10 + i % 12:02d}:00:00Z", rule_id="test",
                 features={"order_amount": float(rng.gamma(2, 50)),
                           **({"account_tenure": i % 300} if i % 7 else {})})
        for i in range(240)]
    put(env, f"{SCORED}batch-0.csv", predictions.to_csv(decisions[:100], features))
    put(env, f"{SCORED}batch-1.parquet", predictions.to_parquet(decisions[100:200], features))
    put(env, f"{SCORED}stream-2.csv.gz",
        gzip.compress(predictions.to_csv(decisions[200:], features)))
    # A stream batch redelivered under another name: the same decisions again,
    # and one copy whose score differs (the first row of an event counts).
    put(env, f"{SCORED}stream-3.csv", predictions.to_csv(decisions[190:210], features))
    put(env, f"{SCORED}_SUCCESS", "")
    put(env, f"{SCORED}manifest.json", "{}")
    truth = [(f"o{i}", int(rng.uniform() < 0.3), "2024-05-20T00:00:00Z") for i in range(0, 240, 2)]
    truth += [("o4", 1 - truth[2][1], "2024-05-25T00:00:00Z"),  # reversed later: wins
              ("o6", 1, "2024-05-20T00:00:00Z"),  # same label_ts as its first row: later row wins
              ("nobody", 1, "2024-05-20T00:00:00Z")]
    put(env, f"{TRUTH}part-0.csv", labels_csv(truth[:60]), LABELS)
    put(env, f"{TRUTH}part-1.csv", labels_csv(truth[60:]), LABELS)
    report = assert_same_day(env, snapshot)
    assert report["duplicate_predictions"] == 20 and report["predictions"] == 240
    assert report["closed_loop"]["unmatched_labels"] == 1
    assert report["closed_loop"]["duplicate_labels"] == 2
    assert len(report["open_loop"]["by_version"]) == 3
    assert report["open_loop"]["by_version"][0]["features"]["account_tenure"]["missing"] > 0


def ts_ms(*texts: str) -> pa.Array:
    return pa.array(np.array(texts, dtype="datetime64[ms]")).cast(pa.timestamp("ms", "UTC"))


# Days whose files the shared reader can concatenate (it refuses a day whose
# files infer different types for one column, e.g. zoned and zone-less
# timestamps, which DuckDB, typing value by value, would read).
DAYS = {
    # pyarrow's CSV inference, value by value: null markers, numbers with signs,
    # exponents and blanks, inf/NaN, booleans, integer scores, ids that look
    # like numbers, empty text, offsets across midnight, fractions; a
    # header-only file; boolean labels.
    "csv text, zoned": {
        "a.csv": HEADER + "\n" + "\n".join([
            "007,0.9,2024-05-01T10:00:00Z,v1,block,1.5,10",
            "7,0.1,2024-05-01T10:00:00Z,v1,approve,NA,11",           # "007" and "7" differ
            ",1,2024-05-01T10:00:00Z,v2,,null,12",                   # empty id and action
            "e3,0,2024-05-01T23:30:00-05:00,v2,review, 2.5 ,13",     # offset: the next UTC day
            "e4,1e-1,2024-05-01T10:00Z,v2,review,NaN,",              # minutes, no seconds
            "e5,.5,2024-05-01T10:00:00.250Z,v2,approve,inf,1E2",     # a fraction
            "e6,+0.5,2024-05-01T01:00:00+02:00,v1,approve,-inf,#N/A",  # the previous UTC day
            'e7,"0.75",2024-05-01T10:00:00+0100,v1,block,NAN,-1',    # quoted number, NaN value
            "e8,-0,2024-05-01T10:00:00+01,v1,block,1.0e3,0"]) + "\n",
        "b.csv": HEADER + "\n",
        "c.csv": "event_id,score,prediction_ts\ne9,1,2024-05-02T00:00:00Z\n",
        "labels:l.csv": labels_csv([("007", "true", "2024-05-20T00:00:00Z"),
                                    ("7", "False", "2024-05-20T00:00:00+03:00"),
                                    ("e3", "1", "2024-05-20T00:00:00Z"),
                                    ("e4", "0", "2024-05-20T00:00:00Z"),
                                    ("e5", "TRUE", "2024-05-21T00:00:00Z")]),
    },
    "csv text, zone-less": {
        "a.csv": "event_id,score,prediction_ts,account_tenure\n" + "\n".join([
            "e1,0.5,2024-05-01 10:00:00,true", "e2,0.25,2024-05-01T10,false",  # hour only
            "e3,0.75,2024-05-01T23:59:59.5,true", "e4,0.5,2024-05-02T00:00:00,"]) + "\n",
        "labels:l.csv": labels_csv([("e1", "1.0", "2024-05-20 00:00:00"),
                                    ("e2", "0.0", "2024-05-20T12"), ("e3", "1", "2024-05-21")]),
    },
    "csv dates": {
        "a.csv": "event_id,score,prediction_ts\ne1,0.5,2024-05-01\ne2,0.7,2024-04-30\n",
    },
    "parquet of other stored types": {
        # integer ids and scores, dates, dictionary text, decimal and boolean features...
        "a.parquet": pa.table({
            "event_id": pa.array(range(6), pa.int64()),
            "score": pa.array([0, 1, 1, 0, 1, 0], pa.int32()),
            "prediction_ts": pa.array([19844, 19844, 19843, 19844, 19844, 19845], pa.date32()),
            "model_version": pa.array(["v1", "v2", None, "v1", "v2", "v1"]).dictionary_encode(),
            "order_amount": pa.array([decimal.Decimal(v) if v else None for v in
                                      ("1.50", None, "3.25", "0", "7", None)],
                                     pa.decimal128(6, 2)),
            "account_tenure": pa.array([True, False, None, True, True, False]),
        }),
        # ...float32 scores, a feature this file alone has, NaN, null and -0.0
        "b.parquet": pa.table({
            "event_id": pa.array(range(6, 12), pa.int64()),
            "score": pa.array(np.linspace(0, 1, 6), pa.float32()),
            "prediction_ts": pa.array([19844] * 6, pa.date32()),
            "order_total_30d": pa.array([1.0, np.nan, None, 4.0, -0.0, 0.0]),
            "action": ["approve", None, "block", "review", "approve", "block"],
        }),
        "labels:l.parquet": pa.table({
            "event_id": [str(i) for i in range(0, 12, 2)],
            "label": [bool(i % 3) for i in range(0, 12, 2)],
            "label_ts": pa.array([1716000000000] * 6, pa.timestamp("ms")),
        }),
    },
    "parquet timestamps": {
        "a.parquet": pa.table({
            "event_id": ["e1", "e2"], "score": [0.5, 0.25],
            "prediction_ts": pa.array([1714557600, 1714600000], pa.timestamp("s"))}),
        "b.parquet": pa.table({
            "event_id": ["e3", "e4"], "score": [0.75, 0.5],
            "prediction_ts": pa.array([1714557600000, 1714521599999], pa.timestamp("ms"))}),
    },
    "parquet text": {
        "a.parquet": pa.table({
            "event_id": ["e1", "e2", "e3"], "score": ["0.5", "1e-1", "inf"],
            "prediction_ts": ["2024-05-01T10:00:00Z", "2024-05-01T23:00:00-03:00",
                              "2024-05-01T10:00:00.5Z"],
            "order_amount": ["1.5", "nan", None]}),
        "labels:l.parquet": pa.table({"event_id": ["e1", "e2"], "label": ["1", "0.0"],
                                      "label_ts": ["2024-05-20T00:00:00Z"] * 2}),
    },
}


def put_day(s3: Any, files: Mapping[str, Any]) -> None:
    for name, content in files.items():
        body = parquet(content) if isinstance(content, pa.Table) else content
        if name.startswith("labels:"):
            put(s3, TRUTH + name.removeprefix("labels:"), body, LABELS)
        else:
            put(s3, SCORED + name, body)


@pytest.mark.parametrize("case", list(DAYS))
def test_what_the_shared_reader_types_duckdb_types_the_same(env: Any,  # noqa: F811
                                                            case: str, snapshot: Any) -> None:
    baseline(env)
    put_day(env, DAYS[case])
    report = assert_same_day(env, snapshot)
    assert report["predictions"] > 0
    if case == "csv text, zoned":
        days = {g["date"] for g in report["closed_loop"]["by_day"]}
        assert days == {"2024-04-30", "2024-05-01", "2024-05-02"}, days
        versions = [g["model_version"] for g in report["open_loop"]["by_version"]]
        assert versions == ["all", "v1", "v2", "unknown"], versions
        assert report["closed_loop"]["matched_predictions"] == 5


def test_a_closed_loop_lag_reads_two_days_in_one_session(env: Any, snapshot: Any) -> None:  # noqa: F811
    baseline(env)
    for day in ("2024-04-30", DAY):
        rows = [f"{day}-{i},{i / 10},{day}T10:00:00Z,v1,approve,{i},{i}" for i in range(10)]
        put(env, f"predictions/fraud/dt={day}/scored/p.csv", HEADER + "\n" + "\n".join(rows))
    put(env, "truth/fraud/dt=2024-04-30/l.csv",
        labels_csv([(f"2024-04-30-{i}", i % 2, "2024-05-01T00:00:00Z") for i in range(10)]),
        LABELS)
    report = assert_same_day(env, snapshot, {"closed_loop_lag_days": 1})
    assert report["closed_loop"]["matched_predictions"] == 10


def test_an_empty_day_reads_the_same(env: Any, snapshot: Any) -> None:  # noqa: F811
    baseline(env)
    report = assert_same_day(env, snapshot)
    assert report["predictions"] == 0 and report["closed_loop"]["labels"] == 0


def test_a_dropped_copy_cannot_fail_the_day(env: Any, snapshot: Any) -> None:  # noqa: F811
    """A redelivered copy of an event is dropped before the checks, in both."""
    put(env, f"{SCORED}a.csv", HEADER + "\ne1,0.5,2024-05-01T10:00:00Z,v1,approve,1,1\n")
    put(env, f"{SCORED}b.parquet", parquet(pa.table({
        "event_id": ["e1", "e2"], "score": [np.nan, 0.25],
        "prediction_ts": ts_ms("2024-05-01T10:00:00", "2024-05-01T11:00:00")})))
    assert assert_same_day(env, snapshot)["duplicate_predictions"] == 1


def test_a_warm_process_reuses_the_database_and_queries_and_no_day(env: Any) -> None:  # noqa: F811
    """What a warm Lambda keeps between runs (the DuckDB database, the parsed
    queries) carries nothing of a day: a run that failed on a bad file, then two
    other days, each give the report a fresh process gives."""
    from mdlc_core.runtime_config import load_config
    from mdlc_core.sql import monitoring as sql_monitoring
    from mdlc_core.sql import monitoring_files

    baseline(env)

    def day(rows: int, bad: bool = False) -> None:
        for item in env.list_objects_v2(Bucket=BUCKET, Prefix=SCORED).get("Contents", []):
            env.delete_object(Bucket=BUCKET, Key=item["Key"])
        lines = [f"d{rows}-{i},{i / rows:.3f},{DAY}T10:00:00Z,v{1 + i % 2},approve,{i},{i}"
                 for i in range(rows)]
        put(env, f"{SCORED}p.csv", HEADER + "\n" + "\n".join(lines) + "\n")
        if bad:
            put(env, f"{SCORED}q.csv", "event_id,score,prediction_ts\nx,high,2024-05-01\n")

    def duckdb_report() -> dict[str, Any]:
        monitor_job.run({"date": DAY}, load_config(), s3=env,
                        cloudwatch=boto3.client("cloudwatch"), environ=os.environ,
                        engine="duckdb")
        key = f"monitoring/fraud/dt={DAY}/report.json"
        return json.loads(env.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    load_handler("model_monitor")
    day(50, bad=True)
    with pytest.raises(MonitoringInputError, match="score is not numeric"):
        duckdb_report()
    warm = []
    for rows in (40, 30):
        day(rows)
        hits = sql_monitoring._parse.cache_info().hits
        warm.append(duckdb_report())
        assert monitoring_files._DATABASES  # the database was kept...
    assert sql_monitoring._parse.cache_info().hits > hits  # ...and the second day's queries
    assert [r["predictions"] for r in warm] == [40, 30]
    sql_monitoring.clear_cache()
    monitoring_files.close_databases()
    assert duckdb_report() == warm[1]  # a cold process's report of the same day


BAD = [
    # (files under scored/ or labels, the phrase the shared reader gives, the key named)
    ("missing", {"a.csv": "event_id,prediction_ts\ne1,2024-05-01\n"},
     "missing column(s) ['score']", None),
    ("null id", {"b.parquet": pa.table({"event_id": ["e1", None], "score": [0.1, 0.2],
                                        "prediction_ts": ["2024-05-01"] * 2})},
     "1 row(s) without event_id", "b.parquet"),
    ("no score", {"a.csv": "event_id,score,prediction_ts\ne1,,2024-05-01\ne2,0.5,2024-05-01\n"},
     "1 row(s) without score", "a.csv"),
    ("text score", {"a.csv": "event_id,score,prediction_ts\ne1,high,2024-05-01\n"},
     "score is not numeric", "a.csv"),
    ("NaN score", {"a.parquet": pa.table({"event_id": ["e1", "e2"], "score": [np.nan, 0.1],
                                          "prediction_ts": ["2024-05-01"] * 2})},
     "1 score(s) are NaN", "a.parquet"),
    ("bad time", {"a.csv": "event_id,score,prediction_ts\ne1,0.5,yesterday\n"},
     "prediction_ts is not an ISO-8601 timestamp", "a.csv"),
    ("no time", {"a.csv": "event_id,score,prediction_ts\ne1,0.5,\ne2,0.5,2024-05-01\n"},
     "1 row(s) without prediction_ts", "a.csv"),
    ("text feature", {"a.csv": "event_id,score,prediction_ts,order_amount\n"
                               "e1,0.5,2024-05-01,12\ne2,0.5,2024-05-01,twelve\n"},
     "order_amount is not numeric", "a.csv"),
    ("not parquet", {"a.parquet": b"PAR1 this is not a parquet file"},
     "cannot read as parquet", "a.parquet"),
    ("ragged csv", {"a.csv": "event_id,score,prediction_ts\ne1,0.5,2024-05-01,extra\n"},
     "cannot read as csv", "a.csv"),
    ("label 2", {"labels:l.csv": labels_csv([("e1", 2, "2024-05-20"), ("e2", 1, "2024-05-20")])},
     "label must be 0 or 1; 1 row(s) are not, e.g. ['2.0']", "l.csv"),
    ("label text", {"labels:l.csv": labels_csv([("e1", "yes", "2024-05-20")])},
     "label is not numeric", "l.csv"),
    ("no label_ts", {"labels:l.csv": labels_csv([("e1", 1, ""), ("e2", 1, "2024-05-20")])},
     "1 row(s) without label_ts", "l.csv"),
]


@pytest.mark.parametrize(("case", "files", "phrase", "named"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_fails_both_engines_naming_it(env: Any, case: str,  # noqa: F811
                                                 files: dict[str, Any], phrase: str,
                                                 named: str | None, snapshot: Any) -> None:
    if all(name.startswith("labels:") for name in files):
        put(env, f"{SCORED}ok.csv", "event_id,score,prediction_ts\ne1,0.5,2024-05-01\n")
    put_day(env, files)
    from mdlc_core.runtime_config import load_config

    with pytest.raises(MonitoringInputError) as raised:
        monitor_job.run({"date": DAY}, load_config(), s3=env,
                        cloudwatch=boto3.client("cloudwatch"), environ=os.environ,
                        engine="duckdb")
    message = str(raised.value)
    assert phrase in message, message
    if named is None:  # about the day, not one file: the prefix, as the shared reader says
        assert message == snapshot  # the NumPy engine's (the shared reader's) words
    else:
        bucket = LABELS if any(n.startswith("labels:") for n in files) else BUCKET
        folder = TRUTH if bucket == LABELS else SCORED
        assert message.startswith(f"s3://{bucket}/{folder}{named}: "), message


# ------------------------------------------------------------------ memory

JOB = textwrap.dedent('''
    import hashlib, json, sys
    from pathlib import Path
    import numpy as np, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
    from mdlc_core import monitor_job, monitoring

    root, mode, memory_mb, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    DAY = "2026-11-02"
    scored = root / "b" / "predictions" / "fraud" / f"dt={DAY}" / "scored"
    truth = root / "b" / "labels" / "fraud" / f"dt={DAY}"

    class FolderS3:  # the S3 calls of monitor_job, from a folder (bucket = subfolder)
        def __init__(self): self.puts = {}
        def get_paginator(self, name): return self
        def paginate(self, Bucket, Prefix):
            base = root / Bucket
            return [{"Contents": [{"Key": str(p.relative_to(base)), "Size": p.stat().st_size}
                                  for p in sorted(base.rglob("*")) if p.is_file()
                                  and str(p.relative_to(base)).startswith(Prefix)]}]
        def get_object(self, Bucket, Key): return {"Body": open(root / Bucket / Key, "rb")}
        def put_object(self, Bucket, Key, Body, **_): self.puts[Key] = Body

    class CloudWatch:
        def put_metric_data(self, **_): pass

    if mode == "write":
        rng = np.random.default_rng(1)
        scored.mkdir(parents=True); truth.mkdir(parents=True)
        ids = np.char.add("order-with-a-long-identifier-", np.arange(n).astype(str))
        for i, part in enumerate(np.array_split(np.arange(n), 4)):
            m = len(part)
            table = pa.table({
                "event_id": ids[part].astype(object), "score": np.round(rng.uniform(size=m), 3),
                "prediction_ts": pa.array(np.full(m, 1793613600000), pa.timestamp("ms", "UTC")),
                "model_version": np.where(rng.uniform(size=m) < .5, "v1", "v2").astype(object),
                "action": np.where(rng.uniform(size=m) < .1, "block", "approve").astype(object),
                "order_amount": rng.gamma(2, 50, m)})
            if i < 2:  # half the day gzipped CSV, as a stream consumer's files could be
                table = table.set_column(2, "prediction_ts", pa.array(
                    np.full(m, "2026-11-02T10:00:00Z").astype(object)))
                with pa.CompressedOutputStream(str(scored / f"part-{i}.csv.gz"), "gzip") as out:
                    pacsv.write_csv(table, out)
            else:
                pq.write_table(table, scored / f"part-{i}.parquet")
        k = n * 6 // 10
        pq.write_table(pa.table({
            "event_id": ids[:k].astype(object), "label": (rng.uniform(size=k) < .3).astype(int),
            "label_ts": pa.array(np.full(k, 1795000000000), pa.timestamp("ms", "UTC"))}),
            truth / "labels.parquet")
        pq.write_table(pa.table({"score": rng.uniform(size=20_000),
                                 "order_amount": rng.gamma(2, 45, 20_000)}),
                       root / "b" / "baseline.parquet")
        # What the shared reader holds of the day in Arrow, before any metric.
        day = monitoring.concat_tables([monitoring.read_table_bytes(p.read_bytes(), p.name)
                                        for p in sorted(scored.iterdir())], "the day")
        labels = pq.read_table(truth / "labels.parquet")
        print(json.dumps({"arrow_mib": (day.nbytes + labels.nbytes) // 2**20}))
        sys.exit(0)

    config = {"name": "fraud", "data": {"columns": [{"name": "order_amount", "type": "float"}]},
              "monitoring": {"engine": mode}}
    s3 = FolderS3()
    environ = {"PREDICTIONS_BUCKET": "b", "BASELINE_KEY": "baseline.parquet"}
    import duckdb, sqlglot  # noqa: F401  (imported before the mark: not the day's memory)
    def peak():
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident size
    before = peak()
    summary = monitor_job.run({"date": DAY}, config, s3=s3, cloudwatch=CloudWatch(),
                              environ=environ, memory_mb=memory_mb, scratch=root / "scratch")
    report = s3.puts[f"monitoring/fraud/dt={DAY}/report.json"]
    print(json.dumps({"peak_mib": peak() - before, "before_mib": before,
                      "predictions": summary["predictions"],
                      "labels": summary["labels"],
                      "report": hashlib.sha256(report).hexdigest()}))
''')


def job(root: Path, mode: str, memory_mb: int, n: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", JOB, str(root), mode, str(memory_mb), str(n)],
                          capture_output=True, text=True, cwd=ROOT / "lambdas", timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_day_larger_than_the_memory_limit_is_monitored_in_bounded_memory(
        tmp_path: Path) -> None:
    n = 1_500_000
    written = job(tmp_path, "write", 0, n)
    # 384 MB of function memory: DuckDB's limit is its floor, 128 MB, below
    # what the day's predictions and labels take in Arrow.
    from mdlc_core.sql.quality import memory_limit_for

    assert memory_limit_for(384) == "128MB"
    assert written["arrow_mib"] > 128, written
    bounded = job(tmp_path, "duckdb", 384, n)
    unbounded = job(tmp_path, "duckdb", 16_384, n)
    assert bounded["predictions"] == n and bounded["labels"] == n * 6 // 10
    assert bounded["report"] == unbounded["report"]
    # Bounded by the limit, not by the day: the limit plus what a connection,
    # the readers' buffers and the Arrow baseline cost besides (measured 230
    # MiB over the process: 128 + 102; the same day unbounded took 545, the
    # embedded engine 825).
    assert bounded["peak_mib"] < 128 + 160, (bounded, written)
    assert bounded["peak_mib"] * 1.5 < unbounded["peak_mib"], (bounded, unbounded)


def test_empty_version_and_action_cells_still_publish(env: Any, snapshot: Any) -> None:  # noqa: F811
    """A careless producer's CSV with empty model_version and action cells:
    the groups are reported as read, and the CloudWatch data is
    publishable (CloudWatch refuses an empty dimension value; botocore checks
    it before the call), the empty value named ``monitor_job.EMPTY_DIMENSION``."""
    baseline(env)
    rows = "".join(f"e{i},{(i % 10) / 10},{DAY}T10:00:00Z,{'v1' if i % 2 else ''},"
                   f"{'approve' if i % 3 else ''},{40 + i},{i}\n" for i in range(60))
    put(env, f"{SCORED}careless.csv", f"{HEADER}\n{rows}")
    put(env, f"{TRUTH}labels.csv", labels_csv([(f"e{i}", i % 2, f"{DAY}T12:00:00Z")
                                              for i in range(0, 60, 3)]), LABELS)
    report = assert_same_day(env, snapshot)
    versions = {g["model_version"] for g in report["closed_loop"]["by_version"]}
    assert "" in versions and "v1" in versions
    data = monitor_job.metric_data("fraud", report)
    values = {d["Value"] for datum in data for d in datum["Dimensions"]}
    assert "" not in values and monitor_job.EMPTY_DIMENSION in values
    boto3.client("cloudwatch").put_metric_data(Namespace="Mdlc/Test", MetricData=data[:20])


def test_many_small_files_of_one_shape_read_in_one_statement_each_kind(
        env: Any, monkeypatch: pytest.MonkeyPatch, snapshot: Any) -> None:  # noqa: F811
    """A stream consumer's day: many small CSV files of one header, then a
    Parquet run. Each run of one shape is one INSERT (rows and files in the
    shared reader's order, so first-per-event across files still holds); a
    bad file inside a run still fails the day naming that file."""
    from mdlc_core.runtime_config import load_config
    from mdlc_core.sql import monitoring_files

    baseline(env)
    statements: list[int] = []
    grouped = monitoring_files._group_insert
    monkeypatch.setattr(monitoring_files, "_group_insert", lambda table, group, select: (
        statements.append(len(group)), grouped(table, group, select))[1])
    for n in range(7):  # event e3 recurs: its first delivery (file 0) counts
        rows = "".join(f"e{n * 5 + i if i else 3},{((n + i) % 10) / 10},{DAY}T1{n}:00:00Z,"
                       f"v{1 + n % 2},approve,{10 + i},{n}\n" for i in range(5))
        put(env, f"{SCORED}batch-{n:02d}.csv", f"{HEADER}\n{rows}")
    from datetime import datetime

    stamp = pa.array([datetime.fromisoformat(f"{DAY}T20:00:00+00:00")] * 2,
                     pa.timestamp("s", tz="UTC"))
    put(env, f"{SCORED}zz-0.parquet", parquet(pa.table({
        "event_id": ["p1", "p2"], "score": [0.1, 0.9], "prediction_ts": stamp})))
    put(env, f"{SCORED}zz-1.parquet", parquet(pa.table({
        "event_id": ["p3", "e3"], "score": [0.4, 0.2], "prediction_ts": stamp})))
    put(env, f"{TRUTH}labels.csv", labels_csv([(f"e{i}", i % 2, f"{DAY}T23:00:00Z")
                                              for i in range(35)]), LABELS)
    report = assert_same_day(env, snapshot)
    assert report["closed_loop"]["labels"] > 0
    assert 7 in statements and 2 in statements  # the CSV run and the Parquet run, once each
    put(env, f"{SCORED}batch-01.csv", f"{HEADER}\nx9,high,{DAY}T10:00:00Z,v1,approve,1,1\n")
    with pytest.raises(MonitoringInputError, match=rf"s3://{BUCKET}/{SCORED}batch-01.csv: "
                       r"score is not numeric: 1 value\(s\) are not numbers, e.g. \[.high.\]"):
        monitor_job.run({"date": DAY}, load_config(), s3=env,
                        cloudwatch=boto3.client("cloudwatch"), environ=os.environ,
                        engine="duckdb")


@pytest.mark.parametrize("text", ["plain", "it's", "''", 'say "hi"', "back\\slash", "día ✓",
                                  "semi;colon -- not a comment", "new\nline", ""])
def test_literals_and_identifiers_are_what_sqlglot_renders_for_duckdb(text: str) -> None:
    """The reader writes file paths and column names into its SQL; its quoting
    must be DuckDB's, which sqlglot's renderer is the reference for, and a
    value must come back from DuckDB as it went in."""
    import duckdb
    from mdlc_core.sql import monitoring_files
    from sqlglot import exp

    literal = monitoring_files._literal(text)
    assert literal == exp.Literal.string(text).sql(dialect="duckdb")
    assert monitoring_files._identifier(text or "x") == \
        exp.to_identifier(text or "x", quoted=True).sql(dialect="duckdb")
    assert duckdb.sql(f"SELECT {literal} AS {monitoring_files._identifier(text or 'x')}"
                      ).fetchall() == [(text,)]


# -------------------------------------------------------------- baselines in DuckDB


def test_a_baseline_larger_than_the_memory_limit_is_read_and_mixed_by_duckdb(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version's baseline larger than DuckDB's memory limit: the training
    job's features, 250,000 rows of 29 columns (58 MB in Arrow, where the
    pyarrow path held all of it) under a 32 MB limit, and another version's
    (a prefix of two CSV objects). DuckDB reads them into its tables, only
    the compared columns (nothing through pyarrow), mixes them for the
    ``all`` group, and the drift is what the pyarrow path gives of the same
    files read into Arrow (``drift_baselines.mixture``, the Arrow relations of
    ``sql.monitoring.open_loop``), PSI and KS exactly.

    (Each compared column's sort and running sum, one column at a time,
    spills past the limit too: the next test.)"""
    import pyarrow.csv as pacsv
    from mdlc_core import drift_baselines, monitoring
    from mdlc_core.sql import monitoring as sql_monitoring
    from mdlc_core.sql import monitoring_files

    rng = np.random.default_rng(21)
    n = 250_000
    names = ["order_amount", "account_tenure", "order_count_30d", "order_total_30d"]

    def features_of(size: int, shift: float) -> dict[str, np.ndarray]:
        return {name: np.round(rng.gamma(2 + k, 50 * (1 + shift), size), 1 + k % 2)
                for k, name in enumerate(names)}

    first = tmp_path / "v1.parquet"
    # The training job's whole feature table: the monitored columns and many others.
    others = {f"unmonitored_{k}": rng.uniform(size=n) for k in range(24)}
    pq.write_table(pa.table({"score": np.round(rng.beta(2, 5, n), 3),
                             **features_of(n, 0.0), **others}), first)
    parts = [tmp_path / f"v2-{i}.csv" for i in range(2)]
    m = 60_000
    for path in parts:  # a prefix of two CSV objects, another column order
        pacsv.write_csv(pa.table({**features_of(m, 0.2),
                                  "entity": pa.array(np.full(m, "c").astype(object)),
                                  "score": np.round(rng.beta(2, 4, m), 3)}), path)
    rows = 4_000
    today = pa.table({"event_id": [f"e{i}" for i in range(rows)],
                      "score": np.round(rng.beta(2, 4.5, rows), 3),
                      "prediction_ts": ["2026-11-02T10:00:00Z"] * rows,
                      "model_version": [("v1", "v2", "v2")[i % 3] for i in range(rows)],
                      **features_of(rows, 0.1)})
    pq.write_table(today, tmp_path / "today.parquet")
    features = [*names, "not_in_the_baselines"]
    limit_mb = 32

    # Today's path: the same files in Arrow, the same mixture, the Arrow relations.
    arrow = {"v1": pq.read_table(first),
             "v2": monitoring.concat_tables([pacsv.read_csv(p) for p in parts], "v2")}
    counts = {"v1": rows // 3 + 1, "v2": rows - rows // 3 - 1}
    assert sum(v == "v1" for v in today.column("model_version").to_pylist()) == counts["v1"]
    # Today's path held the whole baseline in Arrow, outside DuckDB's limit.
    assert arrow["v1"].nbytes > 1.5 * limit_mb * 10**6, arrow["v1"].nbytes  # MB: 10**6
    weighted = [(arrow[v], counts[v]) for v in ("v1", "v2")]
    expected = sql_monitoring.open_loop(
        monitoring.Predictions.from_table(today, features), drift_baselines.mixture(weighted),
        10, features, baselines=arrow)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a baseline went through pyarrow")

    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr(pacsv, "read_csv", refuse)
    monkeypatch.setattr(monitoring, "read_table_bytes", refuse)
    files = lambda *paths: [  # noqa: E731 - copies: the session removes what it read
        monitoring_files.DataFile(Path(tmp_path / "copy" / p.name), str(p)) for p in paths]
    (tmp_path / "copy").mkdir()
    for path in (first, *parts, tmp_path / "today.parquet"):
        (tmp_path / "copy" / path.name).write_bytes(path.read_bytes())
    with monitoring_files.DaySession(memory_limit=f"{limit_mb}MB",
                                     temp_directory=tmp_path / "spill", threads=1) as session:
        day = session.read_predictions(files(tmp_path / "today.parquet"), features)
        compared = ["score", *features]
        held = {"v1": session.read_baseline(files(first), compared, what="v1"),
                "v2": session.read_baseline(files(*parts), compared, what="v2")}
        assert [held[v].num_rows for v in held] == [n, 2 * m]
        assert held["v2"].column_names == [*names, "entity", "score"]
        (setting,) = session.con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert setting.replace(" ", "") in ("30.5MiB", "32.0MB"), setting
        mixed = session.mixture([(held[v], counts[v]) for v in ("v1", "v2")])
        assert mixed is not None
        assert mixed.num_rows == drift_baselines.mixture(weighted).num_rows
        got = session.open_loop(day, mixed, 10, features, baselines=held)
    assert got == expected
    by_version = {g["model_version"]: g for g in got["by_version"]}
    assert by_version["v2"]["score"]["psi"] is not None
    assert by_version["all"]["features"]["order_total_30d"]["ks_pvalue"] is not None
    assert got["features_not_compared"] == ["not_in_the_baselines"]


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 10, 11, 97, 1000, 4097])
def test_duckdbs_mixture_takes_the_rows_numpy_takes(rows: int) -> None:
    """``DaySession.mixture``'s positions in SQL are ``drift_baselines.positions``
    (numpy's linspace, rounded half to even) for every share of a table."""
    import duckdb
    from mdlc_core import drift_baselines
    from mdlc_core.sql import monitoring_files

    con = duckdb.connect()
    for take in sorted({1, 2, 3, rows // 3, rows // 2, rows - 1, rows} - {0}):
        if take > rows:
            continue
        sql = monitoring_files._positions(rows, take)
        got = [r[0] for r in con.execute(f"SELECT position_ FROM ({sql}) ORDER BY ALL")
               .fetchall()]
        assert got == drift_baselines.positions(rows, take).tolist(), (rows, take)


def test_baselines_whose_sorts_outgrow_the_limit_are_compared_within_it(
        tmp_path: Path) -> None:
    """The drift's sorts spill past DuckDB's limit: two versions' baselines of
    700,000 values each and their mixture for the ``all`` group (1.4M values,
    about 40 MB to sort) under a 32 MB limit give the report of a 2 GB limit. (Over
    a ``UNION ALL`` read straight from its sides, the KS statistic's running
    sum and the mixture's order statistics did not spill: Out of Memory.)"""
    from mdlc_core.sql import monitoring_files

    rng = np.random.default_rng(5)
    n, rows = 700_000, 3_000
    for version, scale in (("v1", 50), ("v2", 60)):
        pq.write_table(pa.table({"score": rng.uniform(size=n),
                                 "order_amount": rng.gamma(2, scale, n)}),
                       tmp_path / f"{version}.parquet")
    pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(rows)],
                             "score": rng.uniform(size=rows),
                             "prediction_ts": ["2026-11-02T10:00:00Z"] * rows,
                             "model_version": [("v1", "v2")[i % 2] for i in range(rows)],
                             "order_amount": rng.gamma(2, 55, rows)}), tmp_path / "today.parquet")

    def report(limit: str) -> dict[str, Any]:
        copy = tmp_path / limit  # the session removes the files it read
        copy.mkdir()
        files = {}
        for name in ("v1", "v2", "today"):
            (copy / f"{name}.parquet").write_bytes((tmp_path / f"{name}.parquet").read_bytes())
            files[name] = [monitoring_files.DataFile(copy / f"{name}.parquet", name)]
        with monitoring_files.DaySession(memory_limit=limit, temp_directory=copy / "spill",
                                         threads=1) as session:
            day = session.read_predictions(files["today"], ["order_amount"])
            held = {v: session.read_baseline(files[v], ["score", "order_amount"], what=v)
                    for v in ("v1", "v2")}
            mixed = session.mixture([(held["v1"], rows // 2), (held["v2"], rows // 2)])
            assert mixed is not None and mixed.num_rows == 2 * n
            return session.open_loop(day, mixed, 10, ["order_amount"], baselines=held)

    bounded = report("32MB")
    assert bounded == report("2GB")
    groups = {g["model_version"]: g for g in bounded["by_version"]}
    assert groups.keys() == {"v1", "v2", "all"}
    assert groups["v1"]["features"]["order_amount"]["ks_pvalue"] < 0.01  # the shift is seen
