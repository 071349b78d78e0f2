"""The quality rules compiled to SQL, on DuckDB: every report, whole, against
the answers of the retired pyarrow engine.

Until issue #18 retired it, every case here ran the hand-written pyarrow
engine (``mdlc_core.quality.check``) and DuckDB on the same table and
asserted equal reports. Its answers are kept: each case's report, but for
the clock (``checked_at``), is compared with the syrupy snapshot in
``__snapshots__/test_sql_quality.ambr``, recorded in the last run that also
asserted DuckDB's report equal to the pyarrow engine's, so ids, statuses,
counts, messages and samples (in order) are still held to that independent
engine's. A changed snapshot is a changed answer: review the diff against
docs/quality.md before ``--snapshot-update``. The data is the old engine's
test data (tests/test_quality_engine.py), the sampler's tenure anomaly and
the edge cases (nulls, unparseable values, NaN, duplicates, an empty day,
two snapshots). Each case also asserts what it is about (a rule fails, a
sample names a key), so a case that stopped exercising the failing path
would not pass on a wrongly accepted snapshot either. DuckDB scanning
Parquet itself is compared with DuckDB over the reader's Arrow table (two
read paths), random days also with a plain-Python count of each rule's
violations; the same SQL on Spark is tests/test_spark.py.
"""

from __future__ import annotations

import copy
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from mdlc_core import tabular
from mdlc_core.quality import RuleError, rule_id
from mdlc_core.sql import quality as sql_quality
from mdlc_core.sql import rules as sql_rules
from syrupy.assertion import SnapshotAssertion

from mdlc_constructs import sampling
from mdlc_constructs.sampling import Anomaly
from mdlc_constructs.spec import load_spec

from .test_quality_engine import (
    COLUMNS,
    DAY,
    HEADER,
    SPEC,
    TENURE_RULE,
    orders_csv,
    read,
    spec_with,
    tenure_snapshots,
)

ROOT = Path(__file__).resolve().parents[1]


def duckdb_report(table: pa.Table, spec: dict[str, Any], *, day: date = DAY,
                  previous: pa.Table | None = None, previous_date: date | None = None
                  ) -> dict[str, Any]:
    """DuckDB's report of ``table`` (and ``previous``), without the clock."""
    report = sql_quality.check(spec, table, previous, snapshot_date=day,
                               previous_date=previous_date, source="s.csv",
                               previous_source="p.csv", memory_limit="256MB", threads=1)
    report.pop("checked_at")
    return report


def same_report(snapshot: SnapshotAssertion, table: pa.Table, spec: dict[str, Any], *,
                day: date = DAY, previous: pa.Table | None = None,
                previous_date: date | None = None) -> dict[str, Any]:
    """DuckDB's report, asserted equal to the recorded one (the pyarrow engine's)."""
    report = duckdb_report(table, spec, day=day, previous=previous, previous_date=previous_date)
    assert report == snapshot
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["status"] for r in report["rules"]}


# --- every rule kind on the retired engine's test data ----------------------------------


def test_the_example_spec_on_clean_data_with_a_previous_day(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    previous = read(tmp_path, orders_csv(day=date(2026, 10, 31), tenure=99), "p.csv")
    report = same_report(snapshot, read(tmp_path, orders_csv()), SPEC, previous=previous)
    assert report["summary"]["failed"] == 0 and report["summary"]["skipped"] == 0


def test_nulls_unparseable_values_nan_and_markers(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    rows = [("NA", "c1", "2026-11-01T10:00:00Z", "nan", 1, 0),
            ("o2", "null", "2026-13-45T00:00:00Z", 10, "x", 1),
            ("o3", "N/A", "2026-11-01T11:00:00+01:00", "", 1, 0),
            ("o4", "c2", "2026-02-30T00:00:00Z", "NA", 1, 3),
            ("o5", "", "2026-11-01T12:30:00.250Z", 20, 1, 0),
            ("o6", None, "", -4, -2, None)]
    extra = [{"kind": "range", "column": "order_amount", "min": 0, "max": 15},
             {"id": "order_id_numeric", "kind": "type", "column": "order_id", "type": "int"},
             {"id": "order_id_float", "kind": "type", "column": "order_id", "type": "float"},
             {"id": "customer_flag", "kind": "type", "column": "customer_id", "type": "bool"},
             {"kind": "completeness", "column": "order_ts", "min": 0.5}]
    report = same_report(snapshot, read(tmp_path, orders_csv(rows)),
                         spec_with(*SPEC["quality"]["rules"], *extra))
    failed = {r["id"]: r for r in report["rules"] if r["status"] == "fail"}
    assert {"type_order_ts", "completeness_customer_id", "range_order_amount",
            "allowed_values_fraud_status", "order_id_numeric"} <= set(failed)
    assert failed["type_order_ts"]["observed"]["unparseable"] == 2


@pytest.mark.parametrize("values", [[12.5, "1e3", "ten"], ["1.5", " 7 ", "364"]])
def test_type_on_values_that_do_not_parse(
    snapshot: SnapshotAssertion, tmp_path: Path, values: list[Any],
) -> None:
    rows = [(f"o{i}", "c1", "yesterday" if i else "2026-11-01T10:00:00Z", v, v, "maybe")
            for i, v in enumerate(values)]
    rules = [{"kind": "type", "column": c["name"], "type": c["type"]} for c in SPEC["data"]
             ["columns"]]
    report = same_report(snapshot, read(tmp_path, orders_csv(rows)),
                         spec_with(*rules, sample_size=1))
    assert statuses(report)["type_order_ts"] == "fail"


def test_range_nan_infinity_and_an_integer_column(snapshot: SnapshotAssertion) -> None:
    table = pa.table({
        "order_id": ["a", "b", "c", "d"],
        "order_amount": pa.array([1.0, float("nan"), float("inf"), None]),
        "account_tenure": pa.array([5, -1, None, 40000], pa.int64()),
    })
    spec = spec_with({"kind": "range", "column": "order_amount", "min": 0, "max": 10},
                     {"kind": "range", "column": "account_tenure", "min": 0, "max": 36500},
                     {"kind": "range", "column": "order_amount", "id": "no_bounds"})
    report = same_report(snapshot, table, spec)
    assert statuses(report) == {"range_order_amount": "fail", "range_account_tenure": "fail",
                                "no_bounds": "fail"}  # NaN is outside every range
    only_nan = pa.table({"order_id": ["a"], "order_amount": pa.array([float("nan")])})
    same_report(snapshot, only_nan,
                spec_with({"kind": "range", "column": "order_amount", "min": 0}))


def test_allowed_values_ordered_by_count_then_first_appearance(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    statuses_ = [0, 2, 1, 7, 2, 9, 7, 3]
    rows = [(f"o{i}", f"c{i % 3}", "2026-11-01T10:00:00Z", 1, 1, s)
            for i, s in enumerate(statuses_)]
    spec = spec_with({"kind": "allowed_values", "column": "fraud_status", "values": [0, 1]},
                     {"kind": "allowed_values", "column": "customer_id", "values": ["c0", "c1"]},
                     {"kind": "allowed_values", "column": "fraud_status", "values": [0.0, 1.0],
                      "id": "coerced"})
    report = same_report(snapshot, read(tmp_path, orders_csv(rows)), spec)
    assert report["rules"][0]["observed"]["unexpected_values"] == [2, 7, 9, 3]


def test_duplicates_single_and_composite_keys_with_nulls(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    rows = [(oid, cid, "2026-11-01T10:00:00Z", 1, 1, 0) for oid, cid in
            [("b", "c1"), ("a", "c1"), ("b", "c2"), (None, "c1"), ("a", "c1"), ("c", None),
             ("c", None), ("b", "c2"), (None, "c9")]]
    spec = spec_with({"kind": "unique", "columns": ["order_id"]},
                     {"kind": "unique", "columns": ["order_id", "customer_id"]},
                     {"kind": "unique", "columns": ["customer_id"]})
    report = same_report(snapshot, read(tmp_path, orders_csv(rows)), spec)
    assert report["rules"][0]["sample"] == [{"order_id": "b", "count": 3},
                                            {"order_id": "a", "count": 2},
                                            {"order_id": "c", "count": 2}]


def test_row_count_and_freshness_on_fresh_stale_and_empty_days(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    table = read(tmp_path, orders_csv())
    spec = spec_with({"kind": "row_count", "min": 6, "max": 6},
                     {"kind": "row_count", "min": 7, "id": "too_few"},
                     {"kind": "freshness", "column": "order_ts", "max_age_hours": 12})
    assert statuses(same_report(snapshot, table, spec))["too_few"] == "fail"
    stale = same_report(snapshot, table, spec, day=DAY + timedelta(days=1))
    assert stale["rules"][2]["observed"]["age_hours"] == 33.0
    empty = read(tmp_path, HEADER + "\n", "empty_day.csv")
    report = same_report(snapshot, empty, spec_with(*SPEC["quality"]["rules"]))
    assert report["summary"]["rows"] == 0 and statuses(report)["freshness_order_ts"] == "fail"


def test_the_sample_is_bounded_and_in_row_order(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    rows = [(f"o{i}", "c1", "2026-11-01T10:00:00Z", (-1) ** i * i, 1, 0) for i in range(50)]
    report = same_report(snapshot, read(tmp_path, orders_csv(rows)),
                         spec_with({"kind": "range", "column": "order_amount", "min": 0},
                                   sample_size=5))
    assert [s["row"] for s in report["rules"][0]["sample"]] == [1, 3, 5, 7, 9]


# --- consistency across two snapshots -----------------------------------------------------


@pytest.mark.parametrize("values", [[364, 365, 366, 367], [364, 54, 54, 54], [54, 54, 55, 57]])
def test_consistency_across_daily_snapshots(
    snapshot: SnapshotAssertion, tmp_path: Path, values: list[int],
) -> None:
    tables = tenure_snapshots(tmp_path, values)
    constant = {**TENURE_RULE, "id": "constant", "change": "constant"}
    tolerant = {**TENURE_RULE, "id": "tolerant", "tolerance": 1}
    for offset in range(1, len(tables)):
        same_report(snapshot, tables[offset], spec_with(TENURE_RULE, constant, tolerant),
                    day=date(2026, 11, 1 + offset), previous=tables[offset - 1],
                    previous_date=date(2026, 11, offset))
    # two days apart, and the default previous date (the day before)
    same_report(snapshot, tables[2], spec_with(TENURE_RULE), day=date(2026, 11, 3),
                previous=tables[0], previous_date=date(2026, 11, 1))
    same_report(snapshot, tables[2], spec_with(TENURE_RULE), day=date(2026, 11, 3),
                previous=tables[0])


def test_consistency_with_two_values_for_one_customer_and_without_a_previous_day(
    snapshot: SnapshotAssertion,
    tmp_path: Path,
) -> None:
    before, after = tenure_snapshots(tmp_path, [364, 365])
    mixed = after.set_column(4, "account_tenure", pa.chunked_array([[1001, 365, 54]]))
    report = same_report(snapshot, mixed, spec_with(TENURE_RULE), day=date(2026, 11, 2),
                         previous=before)
    assert report["rules"][0]["sample"][0]["current"] == [54, 365]
    alone = same_report(snapshot, mixed, spec_with(TENURE_RULE))
    assert statuses(alone)["tenure_grows_daily"] == "skipped"


def test_the_sampled_tenure_anomaly_fails_the_tenure_rule_only(
    snapshot: SnapshotAssertion, tmp_path: Path,
) -> None:
    """``mdlc sample --anomaly account_tenure@3``: from day 3 on one customer's tenure
    jumps back and stops growing; every other rule passes."""
    spec = load_spec(ROOT / "models" / "fraud.yaml")
    start = date(2026, 11, 1)
    days = sampling.sample(spec, days=5, start=start, seed=7, rows_per_day=400,
                           anomalies=[Anomaly("account_tenure", 3)])
    tables = []
    for day in days:
        path = tmp_path / f"dt={day.date}" / "part-0000.csv"
        sampling.write_csv(spec, [day], path)
        tables.append(read(path.parent, path.read_text(), path.name))
    config = spec.as_config()
    (customer,) = days[3].affected["account_tenure"]
    for index in range(1, len(tables)):
        report = same_report(snapshot, tables[index], config, day=days[index].date,
                             previous=tables[index - 1])
        failed = {r["id"]: r for r in report["rules"] if r["status"] == "fail"}
        assert set(failed) == ({"tenure_grows_daily"} if index >= 3 else set()), index
        if index >= 3:
            assert failed["tenure_grows_daily"]["sample"][0]["customer_id"] == customer


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [({"kind": "range", "column": "customer_id", "min": 0}, r"customer_id.*not a number"),
     ({"kind": "freshness", "column": "order_amount", "max_age_hours": 1}, "not a timestamp"),
     ({"kind": "completeness", "column": "nope"}, "has no column 'nope'"),
     ({"kind": "allowed_values", "column": "fraud_status", "values": ["x"]}, "not all of the"),
     ({**TENURE_RULE}, "must be older")],
)
def test_rules_that_do_not_fit_fail_alike(tmp_path: Path, rule: dict[str, Any],
                                          message: str) -> None:
    table = read(tmp_path, orders_csv())
    with pytest.raises(RuleError, match=message):
        sql_quality.check(spec_with(rule), table, table, snapshot_date=DAY, previous_date=DAY)


@pytest.mark.parametrize(("rule", "declared"), [
    ({"kind": "type", "column": "order_id", "type": "timestamp"}, "string"),
    ({"kind": "type", "column": "order_amount", "type": "int"}, "double"),
])
def test_what_is_not_compiled_says_what_to_do(tmp_path: Path, rule: dict[str, Any],
                                              declared: str) -> None:
    """Re-parsing text as a timestamp, or a typed column as another type, is
    not compiled (the spec's validation refuses such a rule first)."""
    with pytest.raises(RuleError, match=rf"{rule_id(rule)}: re-parsing column "
                       rf"'{rule['column']}' \({declared}\) as {rule['type']} is not compiled "
                       rf"to SQL; declare the column as {rule['type']} in data.columns"):
        sql_quality.check(spec_with(rule), read(tmp_path, orders_csv()), snapshot_date=DAY)


def test_a_consistency_rule_on_text_names_the_rule(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    rule = {**TENURE_RULE, "column": "order_id", "change": "constant"}
    with pytest.raises(RuleError, match=r"tenure_grows_daily: column 'order_id' is string, "
                       "not a number"):
        sql_quality.check(spec_with(rule), table, table, snapshot_date=DAY)


def test_files_are_read_by_the_shared_reader_and_the_engine_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(orders_csv([("o1", "c1", "2026-11-01T10:00:00Z", "x", 1, 0)]))
    spill = tmp_path / "spill"
    report = sql_quality.check(SPEC, path, snapshot_date=DAY, temp_directory=spill,
                               memory_limit="64MB")
    assert statuses(report)["type_order_amount"] == "fail"
    assert report["rules"][9]["sample"] == [{"order_id": "o1", "row": 0, "value": "x"}]
    with sql_quality.connect(memory_limit="64MB", temp_directory=spill) as con:
        limit, directory = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchone()
    assert limit.replace(" ", "") in ("61.0MiB", "64.0MB", "61MiB") and directory == str(spill)
    with pytest.raises(ValueError, match="engine 'spark' is not supported"):
        sql_quality.check(SPEC, path, snapshot_date=DAY, engine="spark")


# --- compiled once per process -------------------------------------------------------------


def test_compiled_rules_are_shared_by_checks_of_one_shape_only(tmp_path: Path) -> None:
    """A warm process reuses a rule's compiled SQL for every check of the same
    shape; what differs per day (the reader's unparseable record, the row
    count, the dates, a consistency rule's step) must still reach each
    report: every warm report equals the one compiled from scratch."""
    spec = spec_with(*SPEC["quality"]["rules"], sample_size=3)
    tables = tenure_snapshots(tmp_path, [364, 365, 54, 57])
    bad = read(tmp_path, orders_csv([("o1", "c-x", "2026-11-04T09:00:00Z", "lots", 367, 0),
                                     ("o2", "c-ok", "2026-11-04T10:00:00Z", 5, "old", 1)]),
               "bad.csv")
    checks = [  # (today, yesterday, day, previous day)
        (tables[1], tables[0], date(2026, 11, 2), None),
        (tables[2], tables[1], date(2026, 11, 3), None),           # c-x jumps back
        (tables[3], tables[1], date(2026, 11, 4), date(2026, 11, 2)),  # two days: step 2
        (bad, tables[2], date(2026, 11, 4), None),                 # unparseable values
        (tables[3], None, date(2026, 11, 4), None),                # nothing to compare
        (tables[1], tables[0], date(2026, 11, 2), None),           # the first again
    ]

    def reports(cold: bool) -> list[dict[str, Any]]:
        found = []
        for today, yesterday, day, before in checks:
            if cold:
                sql_rules.cache_clear()
            report = sql_quality.check(spec, today, yesterday, snapshot_date=day,
                                       previous_date=before, threads=1)
            report.pop("checked_at")
            found.append(report)
        return found

    sql_rules.cache_clear()
    warm = reports(cold=False)
    hits = sql_rules._compiled.cache_info().hits
    cold = reports(cold=True)
    assert hits >= 3 * len(spec["quality"]["rules"]), hits
    for number, (ours, fresh) in enumerate(zip(warm, cold, strict=True)):
        assert ours == fresh, number
    tenure = [next(r for r in report["rules"] if r["id"] == "tenure_grows_daily")
              for report in warm]
    assert [r["status"] for r in tenure] == ["pass", "fail", "fail", "fail", "skipped", "pass"]
    assert tenure[2]["expected"]["step"] == 2 and tenure[1]["expected"]["step"] == 1
    assert [s["expected"] for s in tenure[2]["sample"]] == [367]
    assert warm[3]["rules"][9]["sample"] == [{"order_id": "o1", "row": 0, "value": "lots"}]
    # The cache holds its own copy of each rule: the caller's may change.
    rule = {"kind": "range", "column": "order_amount", "min": 0, "max": 100}
    before = sql_quality.check(spec_with(rule), tables[0], snapshot_date=DAY)
    rule["max"] = 10
    after = sql_quality.check(spec_with(rule), tables[0], snapshot_date=DAY)
    assert (before["rules"][0]["status"], after["rules"][0]["status"]) == ("pass", "fail")


# --- the Spark dialect ----------------------------------------------------------------------


def spark_rules(tmp_path: Path) -> sql_quality.Plan:
    table = read(tmp_path, orders_csv([("o1", "c1", "2026-11-01T10:00:00Z", -3, 1, 4),
                                       ("o1", None, "2026-11-01T11:00:00Z", "x", 2, 0)]))
    previous = read(tmp_path, orders_csv(day=date(2026, 10, 31)), "p.csv")
    spec = spec_with(*SPEC["quality"]["rules"],
                     {"id": "numeric_id", "kind": "type", "column": "order_id", "type": "int"},
                     {"id": "flag", "kind": "type", "column": "customer_id", "type": "bool"})
    return sql_quality.prepare(spec, table, previous, snapshot_date=DAY)


def test_every_rule_renders_as_spark_sql_that_spark_parses(tmp_path: Path) -> None:
    plan = spark_rules(tmp_path)
    kinds = set()
    for rule in plan.rules:
        for name, text in rule.render("spark").items():
            assert '"' not in text, (rule.rule, name, text)  # Spark quotes with backticks
            sqlglot.parse_one(text, read="spark")
        kinds.add(rule.rule["kind"])
    assert kinds == set(sql_rules.RULE_KINDS)
    with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'"):
        plan.rules[0].render("oracle")


def test_the_example_spec_is_not_mutated(snapshot: SnapshotAssertion, tmp_path: Path) -> None:
    before = copy.deepcopy(SPEC)
    same_report(snapshot, read(tmp_path, orders_csv()), SPEC)
    assert before == SPEC


# --- Parquet scanned by DuckDB itself -------------------------------------------------------


def test_typed_parquet_is_scanned_by_duckdb_not_loaded(snapshot: SnapshotAssertion,
                                                        tmp_path: Path) -> None:
    rows = [(f"o{i % 5}", f"c{i % 3}", f"2026-11-01T{i:02d}:00:00Z",
             -1 if i in (8, 10) else 10.0 * i - 30, 100 + i % 3, i % 3) for i in range(12)]
    whole = read(tmp_path, orders_csv(rows))
    folder = tmp_path / "dt=2026-11-01"
    folder.mkdir()
    pq.write_table(whole.slice(0, 7), folder / "part-0000.parquet")
    pq.write_table(whole.slice(7), folder / "part-0001.parquet")
    (folder / "_SUCCESS").write_text("")
    before = tmp_path / "previous.parquet"
    pq.write_table(read(tmp_path, orders_csv(day=date(2026, 10, 31), tenure=50), "p.csv"), before)

    plan = sql_quality.prepare(SPEC, folder, before, snapshot_date=DAY)
    assert isinstance(plan.relations["snapshot"], sql_quality.ParquetFiles)
    assert plan.relations["snapshot"].offsets == (0, 7)
    spec = spec_with(*SPEC["quality"]["rules"], sample_size=5)
    sql = sql_quality.check(spec, folder, before, snapshot_date=DAY, memory_limit="64MB",
                            source="s.csv", previous_source="p.csv")
    sql.pop("checked_at")
    # the same as DuckDB over the reader's tables, and as the pyarrow engine gave
    ours = same_report(snapshot, tabular.read_table(folder, COLUMNS), spec,
                       previous=tabular.read_table(before, COLUMNS))
    assert sql == ours
    failed = {r["id"]: r for r in ours["rules"] if r["status"] == "fail"}
    # rows of the second file carry their position in the snapshot, not in the file
    assert [s["row"] for s in failed["range_order_amount"]["sample"]] == [0, 1, 2, 8, 10]
    assert failed["unique_order_id"]["sample"][0] == {"order_id": "o0", "count": 3}
    assert {"allowed_values_fraud_status", "tenure_grows_daily"} <= set(failed)


def test_a_file_with_duckdbs_own_column_names_is_read_not_scanned(tmp_path: Path) -> None:
    """A stored column named ``file_index`` or ``file_row_number`` would hide the
    columns the scan numbers its rows by: such a day goes through the shared
    reader, and its positions are still the snapshot's."""
    rows = [(f"o{i % 4}", f"c{i % 3}", f"2026-11-01T{i:02d}:00:00Z", 10.0 * i - 30, 100, 0)
            for i in range(8)]
    whole = read(tmp_path, orders_csv(rows))
    for extra in ("file_index", "file_row_number"):
        folder = tmp_path / extra
        folder.mkdir()
        for part, table in enumerate((whole.slice(0, 5), whole.slice(5))):
            table = table.append_column(extra, pa.array([99] * table.num_rows, pa.int64()))
            pq.write_table(table, folder / f"part-{part:04d}.parquet")
        plan = sql_quality.prepare(SPEC, folder, snapshot_date=DAY)
        assert not isinstance(plan.relations["snapshot"], sql_quality.ParquetFiles), extra
        spec = spec_with(*SPEC["quality"]["rules"], sample_size=5)
        report = sql_quality.check(spec, folder, snapshot_date=DAY)
        (rule,) = [r for r in report["rules"] if r["id"] == "range_order_amount"]
        assert [s["row"] for s in rule["sample"]] == [0, 1, 2], extra


def test_nan_in_scanned_parquet_is_in_the_sample(snapshot: SnapshotAssertion,
                                                  tmp_path: Path) -> None:
    """DuckDB's Parquet statistics leave NaN out; the engine must not prune by them."""
    columns = [{"name": "order_id", "type": "string"}, {"name": "order_amount", "type": "float"}]
    spec = {**spec_with({"kind": "range", "column": "order_amount", "min": 0, "max": 5},
                        {"kind": "range", "column": "order_amount", "id": "unbounded"}),
            "data": {**SPEC["data"], "columns": columns}}
    for values, nan_row in (([float("nan"), 1.0], 0), ([-0.0, None, float("nan")], 2)):
        table = pa.table({"order_id": [f"o{i}" for i in range(len(values))],
                          "order_amount": pa.array(values, pa.float64())})
        pq.write_table(table, tmp_path / "nan.parquet")
        scanned = sql_quality.check(spec, tmp_path / "nan.parquet", snapshot_date=DAY,
                                    source="s.csv", previous_source="p.csv")
        scanned.pop("checked_at")
        assert scanned == same_report(snapshot, table, spec)
        assert scanned["rules"][0]["sample"] == [
            {"order_id": f"o{nan_row}", "row": nan_row, "value": "nan"}]


def test_parquet_of_other_types_goes_through_the_reader(snapshot: SnapshotAssertion,
                                                         tmp_path: Path) -> None:
    source = read(tmp_path, orders_csv())
    narrowed = source.set_column(4, "account_tenure", source.column(4).cast(pa.int32()))
    pq.write_table(narrowed, tmp_path / "narrow.parquet")
    assert sql_quality.parquet_files(tmp_path / "narrow.parquet", COLUMNS) is None
    assert sql_quality.parquet_files(tmp_path / "orders.csv", COLUMNS) is None
    plan = sql_quality.prepare(SPEC, tmp_path / "narrow.parquet", snapshot_date=DAY)
    assert isinstance(plan.relations["snapshot"], pa.Table)
    report = sql_quality.check(SPEC, tmp_path / "narrow.parquet", snapshot_date=DAY,
                               source="s.csv", previous_source="p.csv")
    report.pop("checked_at")
    assert report == same_report(snapshot, source, SPEC)
    with pytest.raises(tabular.DataError, match="no such file"):
        sql_quality.check(SPEC, tmp_path / "missing.parquet", snapshot_date=DAY)


# --- random tables ----------------------------------------------------------------------------


def _random_day(draw: Any, st: Any, day: date) -> pa.Table:
    rows = draw(st.integers(0, 25))
    maybe = lambda values: st.one_of(st.none(), values)  # noqa: E731
    floats = st.one_of(st.floats(-100, 60000, allow_nan=False), st.sampled_from(
        [float("nan"), float("inf"), -0.0, 0.0, 50000.0]))
    start = int(datetime_micros(day))
    column = lambda values: draw(st.lists(values, min_size=rows, max_size=rows))  # noqa: E731
    return pa.table({
        "order_id": pa.array(column(maybe(st.sampled_from(["a", "b", "c", "d", "e", "f"]))),
                             pa.string()),
        "customer_id": pa.array(column(maybe(st.sampled_from(["c1", "c2", "c3"]))), pa.string()),
        "order_ts": pa.array(column(maybe(st.integers(start - 2 * 86_400_000_000,
                                                       start + 86_400_000_000))),
                             pa.timestamp("us", tz="UTC")),
        "order_amount": pa.array(column(maybe(floats)), pa.float64()),
        "account_tenure": pa.array(column(maybe(st.integers(-2, 40))), pa.int64()),
        "fraud_status": pa.array(column(maybe(st.integers(0, 3))), pa.int64()),
    })


def datetime_micros(day: date) -> int:
    from datetime import UTC, datetime

    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def plain_violations(today: pa.Table, yesterday: pa.Table, spec: dict[str, Any]
                     ) -> dict[str, int]:
    """Each rule's violations on a random day, counted row by row in plain Python
    (the days are built typed, so nothing is unparseable and every type rule
    passes): an answer that shares no code with the compiled SQL."""
    from datetime import UTC, datetime

    rows, before = today.to_pylist(), yesterday.to_pylist()
    n = len(rows)

    def failed(count: int, fails: bool) -> int:
        return max(count, 1) if fails else 0

    def nan(value: Any) -> bool:
        return isinstance(value, float) and value != value

    def spans(table: list[dict[str, Any]], entity: str, column: str) -> dict[Any, tuple[Any, Any]]:
        found: dict[Any, tuple[Any, Any]] = {}
        for row in table:
            key, value = row[entity], row[column]
            if key is not None and value is not None:
                low, high = found.get(key, (value, value))
                found[key] = (min(low, value), max(high, value))
        return found

    counts = {}
    for rule in spec["quality"]["rules"]:
        kind, column = rule["kind"], rule.get("column")
        if kind == "completeness":
            nulls = sum(row[column] is None for row in rows)
            share = (n - nulls) / n if n else 1.0
            counts[rule_id(rule)] = failed(nulls, share < rule.get("min", 1.0) - 1e-12)
        elif kind == "type":
            counts[rule_id(rule)] = 0
        elif kind == "range":
            low, high = rule.get("min"), rule.get("max")
            outside = sum(v is not None and (nan(v) or (low is not None and v < low)
                                             or (high is not None and v > high))
                          for v in (row[column] for row in rows))
            counts[rule_id(rule)] = failed(outside, outside > 0)
        elif kind == "allowed_values":
            unexpected = sum(row[column] is not None and row[column] not in rule["values"]
                             for row in rows)
            counts[rule_id(rule)] = failed(unexpected, unexpected > 0)
        elif kind == "unique":
            keys = [tuple(row[c] for c in rule["columns"]) for row in rows]
            keys = [key for key in keys if None not in key]
            duplicates = len(keys) - len(set(keys))
            counts[rule_id(rule)] = failed(duplicates, duplicates > 0)
        elif kind == "row_count":
            high = rule.get("max")
            counts[rule_id(rule)] = failed(1, n < rule.get("min", 1)
                                           or (high is not None and n > high))
        elif kind == "freshness":
            newest = max((row[column] for row in rows if row[column] is not None), default=None)
            end = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) + timedelta(days=1)
            counts[rule_id(rule)] = failed(1, newest is None or (end - newest).total_seconds()
                                           / 3600 > rule["max_age_hours"])
        else:
            assert kind == "consistency", kind
            step = 1 if rule.get("change", "days") == "days" else 0
            now = spans(rows, rule["entity"], column)
            then = spans(before, rule["entity"], column)
            bad = sum(max(abs(low - then[key][1] - step), abs(high - then[key][0] - step))
                      > rule.get("tolerance", 0.0) + 1e-9
                      for key, (low, high) in now.items() if key in then)
            counts[rule_id(rule)] = failed(bad, bad > 0)
    return counts


def test_random_tables_give_equal_reports() -> None:
    """Hypothesis draws small days full of nulls, NaN, infinities, duplicates and
    ties; every rule's violations must be the plain-Python count, and DuckDB
    scanning the days as Parquet must give the report it gives over Arrow."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rules = [*SPEC["quality"]["rules"],
             {"kind": "unique", "columns": ["order_id", "customer_id"]},
             {"kind": "allowed_values", "column": "customer_id", "values": ["c1", "c2"]},
             {"kind": "range", "column": "account_tenure", "min": 0, "max": 30},
             {**TENURE_RULE, "id": "constant", "change": "constant", "tolerance": 1}]
    spec = spec_with(*rules, sample_size=4)
    seen: set[str] = set()

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def check(data: Any) -> None:
        today = _random_day(data.draw, st, DAY)
        yesterday = _random_day(data.draw, st, DAY - timedelta(days=1))
        ours = duckdb_report(today, spec, previous=yesterday)
        violations = {r["id"]: r["violations"] for r in ours["rules"]}
        assert violations == plain_violations(today, yesterday, spec)
        seen.update(r["id"] for r in ours["rules"] if r["status"] == "fail")
        # and the same days as Parquet files that DuckDB scans itself
        with tempfile.TemporaryDirectory() as folder:
            paths = [Path(folder) / "today.parquet", Path(folder) / "yesterday.parquet"]
            pq.write_table(today, paths[0])
            pq.write_table(yesterday, paths[1])
            assert isinstance(sql_quality.parquet_files(paths[0], COLUMNS),
                              sql_quality.ParquetFiles)
            scanned = sql_quality.check(spec, paths[0], paths[1], snapshot_date=DAY,
                                        source="s.csv", previous_source="p.csv", threads=1)
        scanned.pop("checked_at")
        assert scanned == ours

    check()
    # The draws made every rule but the type rules fail at least once.
    assert seen >= {rule_id(r) for r in rules if r["kind"] != "type"}, seen
