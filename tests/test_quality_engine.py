"""The data quality engine (the rules compiled to SQL, on DuckDB) and the
tabular reader, without AWS.

Each rule kind is checked passing and failing; the talk's tenure example
(364, 365, 366, 367 good; 364, 54, 54, 54 bad) must name the customer. These
cases were written for the retired pyarrow engine and kept, every
expectation as it was, when DuckDB became the only engine (issue #18).
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mdlc_core import quality_baseline, tabular
from mdlc_core.quality import RuleError
from mdlc_core.sql import quality as sql_quality
from mdlc_core.sql import rules as sql_rules

from mdlc_constructs.spec import load_spec
from mdlc_constructs.spec.data import QualitySpec

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "models" / "fraud.yaml").as_config()
COLUMNS = SPEC["data"]["columns"]
HEADER = "order_id,customer_id,order_ts,order_amount,account_tenure,fraud_status"
DAY = date(2026, 11, 1)


def orders_csv(
    rows: list[tuple[Any, ...]] | None = None, day: date = DAY, tenure: int = 100
) -> str:
    """A small clean snapshot for ``day``; ``rows`` replaces the default rows."""
    if rows is None:
        rows = [
            (f"o{i}", f"c{i % 3}", f"{day}T{10 + i}:00:00Z", 10.0 * (i + 1), tenure + i % 3, i % 2)
            for i in range(6)
        ]
    lines = [HEADER] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read(tmp_path: Path, text: str, name: str = "orders.csv") -> pa.Table:
    return tabular.read_table(write(tmp_path, text, name), COLUMNS)


def spec_with(*rules: dict[str, Any], sample_size: int = 20) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["quality"] = {"runner": "embedded", "sample_size": sample_size, "rules": list(rules)}
    return spec


def only(report: dict[str, Any]) -> dict[str, Any]:
    assert len(report["rules"]) == 1
    return report["rules"][0]


def check(table: pa.Table, spec: dict[str, Any], *, previous: pa.Table | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """The quality report of ``table`` (and ``previous``) on DuckDB."""
    return sql_quality.check(spec, table, previous, threads=1, **kwargs)


def run_rule(table: pa.Table, rule: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return only(check(table, spec_with(rule), snapshot_date=DAY, **kwargs))


# --- the example spec on clean data ------------------------------------------------


def test_clean_snapshot_passes_every_rule_of_the_example_spec(tmp_path: Path) -> None:
    previous = read(tmp_path, orders_csv(day=date(2026, 10, 31), tenure=99), "p.csv")
    table = read(tmp_path, orders_csv())
    report = check(table, SPEC, snapshot_date=DAY, previous=previous)
    failures = [r["message"] for r in report["rules"] if not r["passed"]]
    assert failures == []
    assert report["summary"] == {
        "rows": 6, "rules": len(SPEC["quality"]["rules"]), "failed": 0, "skipped": 0,
        "violations": 0, "passed": True,
    }


def test_report_shape_is_plain_json(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv([("o1", "c1", "2026-11-01T10:00:00Z", -5, 1, 0)]))
    report = check(table, SPEC, snapshot_date=DAY, source="orders.csv")
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN, no datetimes
    assert set(report) == {
        "report_version", "model", "snapshot_date", "previous_date", "source",
        "previous_source", "runner", "checked_at", "summary", "rules",
    }
    assert report["model"] == "fraud" and report["snapshot_date"] == "2026-11-01"
    for rule in report["rules"]:
        assert set(rule) == {
            "id", "kind", "columns", "expected", "observed", "passed", "status",
            "violations", "sample", "message",
        }
    failed = {r["id"]: r for r in report["rules"] if r["status"] == "fail"}
    assert set(failed) == {"range_order_amount"}
    assert failed["range_order_amount"]["sample"] == [{"order_id": "o1", "row": 0, "value": -5.0}]
    # consistency has nothing to compare with and says so instead of passing silently
    skipped = [r for r in report["rules"] if r["status"] == "skipped"]
    assert [r["id"] for r in skipped] == ["tenure_grows_daily"]
    assert report["summary"]["skipped"] == 1 and report["summary"]["passed"] is False


# --- one rule kind at a time --------------------------------------------------------


def test_completeness_passes_at_the_threshold_and_fails_below(tmp_path: Path) -> None:
    rows = [(f"o{i}", "c1" if i else None, "2026-11-01T10:00:00Z", 1, 1, 0) for i in range(4)]
    table = read(tmp_path, orders_csv(rows))
    assert run_rule(table, {"kind": "completeness", "column": "customer_id", "min": 0.75})["passed"]
    result = run_rule(table, {"kind": "completeness", "column": "customer_id", "min": 0.8})
    assert result["status"] == "fail"
    assert result["observed"] == {"share": 0.75, "nulls": 1}
    assert result["violations"] == 1
    assert result["sample"] == [{"order_id": "o0", "row": 0}]


def test_completeness_does_not_count_unparseable_values_as_missing(tmp_path: Path) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", "lots", 1, 0)]
    table = read(tmp_path, orders_csv(rows))
    assert run_rule(table, {"kind": "completeness", "column": "order_amount"})["passed"]
    type_rule = {"kind": "type", "column": "order_amount", "type": "float"}
    assert not run_rule(table, type_rule)["passed"]


def test_type_counts_and_names_values_that_do_not_parse(tmp_path: Path) -> None:
    rows = [
        ("o1", "c1", "2026-11-01T10:00:00Z", "12.5", "364", 0),
        ("o2", "c1", "2026-11-01 11:00:00", "1e3", "1.5", 1),
        ("o3", "c1", "yesterday", "ten", " 7 ", "maybe"),
    ]
    table = read(tmp_path, orders_csv(rows))
    tenure = run_rule(table, {"kind": "type", "column": "account_tenure", "type": "int"})
    assert tenure["status"] == "fail" and tenure["violations"] == 1
    assert tenure["sample"] == [{"order_id": "o2", "row": 1, "value": "1.5"}]
    amount = run_rule(table, {"kind": "type", "column": "order_amount", "type": "float"})
    assert amount["sample"] == [{"order_id": "o3", "row": 2, "value": "ten"}]
    assert run_rule(table, {"kind": "type", "column": "order_ts", "type": "timestamp"})[
        "observed"] == {"unparseable": 1, "examples": ["yesterday"]}
    assert run_rule(table, {"kind": "type", "column": "fraud_status", "type": "int"})[
        "violations"] == 1
    # the good values are typed, the bad ones null
    assert table.column("account_tenure").to_pylist() == [364, None, 7]
    assert table.column("order_amount").to_pylist() == [12.5, 1000.0, None]


def test_type_passes_on_clean_data_and_checks_another_type_than_declared(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    assert run_rule(table, {"kind": "type", "column": "fraud_status", "type": "int"})["passed"]
    # order ids are declared strings; a rule may still demand that they are numeric
    numeric = run_rule(table, {"kind": "type", "column": "order_id", "type": "int"})
    assert numeric["violations"] == 6 and numeric["sample"][0]["value"] == "o0"


def test_range_passes_inside_and_fails_outside_the_bounds(tmp_path: Path) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", 0, 1, 0),
            ("o2", "c1", "2026-11-01T10:00:00Z", 50000, 1, 0),
            ("o3", "c1", "2026-11-01T10:00:00Z", 50000.01, 1, 0),
            ("o4", "c1", "2026-11-01T10:00:00Z", -1, 1, 0),
            ("o5", "c1", "2026-11-01T10:00:00Z", "", 1, 0)]
    table = read(tmp_path, orders_csv(rows))
    rule = {"kind": "range", "column": "order_amount", "min": 0, "max": 50000}
    result = run_rule(table, rule)
    assert result["status"] == "fail" and result["violations"] == 2
    assert [s["order_id"] for s in result["sample"]] == ["o3", "o4"]
    assert result["observed"] == {"outside": 2, "min": -1.0, "max": 50000.01}
    assert run_rule(table.slice(0, 2), rule)["passed"]
    assert run_rule(table, {"kind": "range", "column": "order_amount", "min": -1})["passed"]


def test_range_counts_nan_as_outside() -> None:
    table = pa.table({
        "order_id": ["a", "b"], "order_amount": pa.array([1.0, float("nan")]),
    })
    spec = spec_with({"kind": "range", "column": "order_amount", "min": 0, "max": 10})
    result = only(check(table, spec, snapshot_date=DAY))
    assert result["violations"] == 1 and result["sample"][0]["order_id"] == "b"
    json.dumps(result, allow_nan=False)


def test_range_on_a_text_column_is_a_rule_error(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    with pytest.raises(RuleError, match=r"customer_id.*not a number"):
        run_rule(table, {"kind": "range", "column": "customer_id", "min": 0})


def test_allowed_values_pass_and_fail(tmp_path: Path) -> None:
    rule = {"kind": "allowed_values", "column": "fraud_status", "values": [0, 1]}
    assert run_rule(read(tmp_path, orders_csv()), rule)["passed"]
    rows = [(f"o{i}", "c1", "2026-11-01T10:00:00Z", 1, 1, s) for i, s in enumerate([0, 2, 1, 2, 7])]
    result = run_rule(read(tmp_path, orders_csv(rows)), rule)
    assert result["violations"] == 3
    assert result["observed"]["unexpected_values"] == [2, 7]
    assert [s["order_id"] for s in result["sample"]] == ["o1", "o3", "o4"]


def test_allowed_values_on_text(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    rule = {"kind": "allowed_values", "column": "customer_id", "values": ["c0", "c1"]}
    result = run_rule(table, rule)
    assert result["violations"] == 2 and result["observed"]["unexpected_values"] == ["c2"]


def test_unique_passes_and_names_the_duplicated_keys(tmp_path: Path) -> None:
    rule = {"kind": "unique", "columns": ["order_id"]}
    assert run_rule(read(tmp_path, orders_csv()), rule)["passed"]
    rows = [(oid, "c1", "2026-11-01T10:00:00Z", 1, 1, 0) for oid in ["a", "b", "a", "c", "a", "b"]]
    result = run_rule(read(tmp_path, orders_csv(rows)), rule)
    assert result["violations"] == 3
    assert result["observed"] == {"duplicates": 3, "distinct": 3}
    assert sorted(result["sample"], key=lambda s: s["order_id"]) == [
        {"order_id": "a", "count": 3}, {"order_id": "b", "count": 2},
    ]


def test_unique_over_several_columns_ignores_rows_without_a_key(tmp_path: Path) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", 1, 1, 0),
            ("o1", "c2", "2026-11-01T10:00:00Z", 1, 1, 0),
            ("o2", None, "2026-11-01T10:00:00Z", 1, 1, 0),
            ("o2", None, "2026-11-01T10:00:00Z", 1, 1, 0)]
    table = read(tmp_path, orders_csv(rows))
    assert run_rule(table, {"kind": "unique", "columns": ["order_id", "customer_id"]})["passed"]
    failing = run_rule(table.slice(0, 2).append_column("x", pa.array([1, 1])).drop(["order_id"])
                       .append_column("order_id", pa.array(["o1", "o1"])),
                       {"kind": "unique", "columns": ["order_id", "order_ts"]})
    assert failing["violations"] == 1


def test_row_count_bounds(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    assert run_rule(table, {"kind": "row_count", "min": 6, "max": 6})["passed"]
    too_few = run_rule(table, {"kind": "row_count", "min": 7})
    assert too_few["status"] == "fail" and too_few["observed"] == {"rows": 6}
    assert run_rule(table, {"kind": "row_count", "min": 1, "max": 5})["violations"] == 1
    header_only = read(tmp_path, HEADER + "\n", "empty_day.csv")
    assert header_only.num_rows == 0
    assert not run_rule(header_only, {"kind": "row_count", "min": 1})["passed"]


def test_freshness_passes_for_recent_data_and_fails_for_stale(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())  # newest order 2026-11-01T15:00Z
    rule = {"kind": "freshness", "column": "order_ts", "max_age_hours": 12}
    fresh = run_rule(table, rule)
    assert fresh["passed"] and fresh["observed"]["age_hours"] == 9.0
    stale = only(check(table, spec_with(rule), snapshot_date=date(2026, 11, 2)))
    assert stale["status"] == "fail" and stale["observed"]["age_hours"] == 33.0
    assert stale["expected"] == {"max_age_hours": 12.0, "as_of": "2026-11-03T00:00:00+00:00"}


# --- consistency across snapshots: the talk's example ---------------------------------

TENURE_RULE = {"id": "tenure_grows_daily", "kind": "consistency", "column": "account_tenure",
               "entity": "customer_id", "change": "days"}


def tenure_snapshots(tmp_path: Path, values: list[int]) -> list[pa.Table]:
    """Four daily snapshots; customer c-ok always grows by one, c-x takes ``values``."""
    tables = []
    for offset, value in enumerate(values):
        day = date(2026, 11, 1 + offset)
        rows = [(f"a{offset}", "c-ok", f"{day}T09:00:00Z", 20, 1000 + offset, 0),
                (f"b{offset}", "c-x", f"{day}T10:00:00Z", 30, value, 0),
                (f"c{offset}", "c-x", f"{day}T11:00:00Z", 40, value, 0)]
        tables.append(read(tmp_path, orders_csv(rows, day), f"dt={day}/part-0.csv"))
    return tables


def consistency_results(tables: list[pa.Table], rule: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for offset in range(1, len(tables)):
        report = check(
            tables[offset], spec_with(rule), snapshot_date=date(2026, 11, 1 + offset),
            previous=tables[offset - 1], previous_date=date(2026, 11, offset),
        )
        results.append(only(report))
    return results


def test_tenure_364_365_366_367_passes(tmp_path: Path) -> None:
    results = consistency_results(tenure_snapshots(tmp_path, [364, 365, 366, 367]), TENURE_RULE)
    assert [r["status"] for r in results] == ["pass", "pass", "pass"]
    assert results[0]["observed"] == {"entities_compared": 2, "inconsistent": 0}


def test_tenure_364_54_54_54_fails_and_names_the_customer(tmp_path: Path) -> None:
    results = consistency_results(tenure_snapshots(tmp_path, [364, 54, 54, 54]), TENURE_RULE)
    assert [r["status"] for r in results] == ["fail", "fail", "fail"]
    assert results[0]["sample"] == [
        {"customer_id": "c-x", "previous": 364, "current": 54, "expected": 365}
    ]
    assert results[1]["sample"] == [
        {"customer_id": "c-x", "previous": 54, "current": 54, "expected": 55}
    ]
    assert all(r["violations"] == 1 for r in results)
    assert "c-x" in results[0]["message"] and "c-ok" not in results[0]["message"]


def test_consistency_uses_the_days_between_snapshots(tmp_path: Path) -> None:
    first, _, third, _ = tenure_snapshots(tmp_path, [364, 365, 366, 367])
    two_days = only(check(third, spec_with(TENURE_RULE), snapshot_date=date(2026, 11, 3),
                                  previous=first, previous_date=date(2026, 11, 1)))
    assert two_days["passed"] and two_days["expected"]["days_between"] == 2
    # the previous date defaults to the day before: the same pair then fails
    one_day = only(check(third, spec_with(TENURE_RULE), snapshot_date=date(2026, 11, 3),
                                 previous=first))
    assert one_day["status"] == "fail"


def test_consistency_constant_and_tolerance(tmp_path: Path) -> None:
    tables = tenure_snapshots(tmp_path, [54, 54, 55, 57])
    constant = {**TENURE_RULE, "id": None, "change": "constant", "entity": "customer_id"}
    statuses = [r["status"] for r in consistency_results(tables, constant)]
    # c-ok grows every day, so only the entity filter makes constant meaningful
    assert statuses == ["fail", "fail", "fail"]
    tolerant = {**TENURE_RULE, "tolerance": 1}
    assert [r["status"] for r in consistency_results(tables, tolerant)] == ["pass", "pass", "pass"]


def test_consistency_catches_two_values_for_one_customer_on_one_day(tmp_path: Path) -> None:
    before, after = tenure_snapshots(tmp_path, [364, 365])
    mixed = after.set_column(4, "account_tenure", pa.chunked_array([[1001, 365, 54]]))
    result = consistency_results([before, mixed], TENURE_RULE)[0]
    assert result["sample"] == [
        {"customer_id": "c-x", "previous": 364, "current": [54, 365], "expected": 365}
    ]


def test_consistency_is_skipped_without_a_previous_snapshot(tmp_path: Path) -> None:
    result = run_rule(read(tmp_path, orders_csv()), TENURE_RULE)
    assert result["status"] == "skipped" and result["passed"] and result["violations"] == 0


def test_previous_snapshot_must_be_older(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    with pytest.raises(RuleError, match="must be older"):
        run_rule(table, TENURE_RULE, previous=table, previous_date=DAY)


# --- samples and summary ------------------------------------------------------------------


def test_sample_is_bounded_by_sample_size(tmp_path: Path) -> None:
    rows = [(f"o{i}", "c1", "2026-11-01T10:00:00Z", -i - 1, 1, 0) for i in range(50)]
    table = read(tmp_path, orders_csv(rows))
    report = check(
        table, spec_with({"kind": "range", "column": "order_amount", "min": 0}, sample_size=5),
        snapshot_date=DAY,
    )
    result = only(report)
    assert result["violations"] == 50 and len(result["sample"]) == 5
    assert report["summary"]["violations"] == 50 and report["summary"]["failed"] == 1


def test_every_rule_kind_of_the_spec_schema_is_compiled() -> None:
    kinds = {
        cls.model_fields["kind"].annotation.__args__[0]
        for cls in QualitySpec.model_fields["rules"].annotation.__args__[0].__args__[0].__args__
    }
    assert kinds == set(sql_rules.RULE_KINDS)


# --- baseline -------------------------------------------------------------------------


def test_suggested_baseline_is_a_valid_rule_list_that_passes_on_its_data(tmp_path: Path) -> None:
    table = read(tmp_path, orders_csv())
    baseline = quality_baseline.suggest_baseline(table, SPEC)
    stats = baseline["statistics"]
    assert stats["order_amount"] == {
        "type": "float", "null_share": 0.0, "distinct": 6, "min": 10.0, "max": 60.0, "mean": 35.0,
    }
    assert stats["fraud_status"]["top_values"] == [{"value": 0, "count": 3},
                                                   {"value": 1, "count": 3}]
    rules = baseline["quality"]["rules"]
    QualitySpec(rules=rules)  # pastes into a spec as is
    kinds = {(r["kind"], r.get("column")) for r in rules}
    assert ("allowed_values", "fraud_status") in kinds and ("range", "order_amount") in kinds
    assert {"kind": "range", "column": "order_amount", "min": 0, "max": 60} in rules
    assert {"kind": "unique", "columns": ["order_id"]} in rules
    assert any(r.get("id") == "tenure_grows_daily" for r in rules)
    report = check(table, spec_with(*rules), snapshot_date=DAY)
    assert report["summary"]["passed"], [r["message"] for r in report["rules"] if not r["passed"]]


# --- the reader ---------------------------------------------------------------------------


def test_reader_reads_a_snapshot_folder_and_skips_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "dt=2026-11-01"
    write(folder, orders_csv()[: orders_csv().index("\no3")] + "\n", "part-0000.csv")
    write(folder, HEADER + "\n" + orders_csv().split("\n", 4)[4], "part-0001.csv")
    write(folder, '{"rows": 6}', "_manifest.json")
    write(folder, "", "_SUCCESS")
    table = tabular.read_table(folder, COLUMNS)
    assert table.column("order_id").to_pylist() == [f"o{i}" for i in range(6)]
    assert table.schema.field("order_ts").type == pa.timestamp("us", tz="UTC")
    assert tabular.data_files(folder) == [folder / "part-0000.csv", folder / "part-0001.csv"]


def test_reader_keeps_row_positions_of_bad_values_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "snap"
    write(folder, orders_csv(), "a.csv")
    write(folder, orders_csv([("z1", "c1", "2026-11-01T10:00:00Z", "x", 1, 0)]), "b.csv")
    table = tabular.read_table(folder, COLUMNS)
    bad = tabular.unparseable(table)["order_amount"]
    assert (bad.count, bad.rows, bad.values) == (1, [6], ["x"])
    assert run_rule(table, {"kind": "type", "column": "order_amount", "type": "float"})[
        "sample"] == [{"order_id": "z1", "row": 6, "value": "x"}]


def test_reader_reads_parquet_and_casts_compatible_types(tmp_path: Path) -> None:
    source = tabular.read_table(write(tmp_path, orders_csv()), COLUMNS)
    narrowed = source.set_column(4, "account_tenure", source.column(4).cast(pa.int32()))
    narrowed = narrowed.set_column(2, "order_ts", source.column(2).cast(pa.timestamp("ms")))
    pq.write_table(narrowed, tmp_path / "orders.parquet")
    table = tabular.read_table(tmp_path / "orders.parquet", COLUMNS)
    assert table.equals(source)


def test_reader_counts_lossy_parquet_values_instead_of_failing(tmp_path: Path) -> None:
    table = pa.table({n: pa.array(["x"]) for n in ("order_id", "customer_id")})
    table = table.append_column("order_ts", pa.array(["2026-11-01T00:00:00Z"]))
    table = table.append_column("order_amount", pa.array([1.0]))
    table = table.append_column("account_tenure", pa.array([1.5]))
    table = table.append_column("fraud_status", pa.array([1.0]))
    pq.write_table(table, tmp_path / "lossy.parquet")
    read_back = tabular.read_table(tmp_path / "lossy.parquet", COLUMNS)
    assert read_back.column("fraud_status").to_pylist() == [1]
    assert tabular.unparseable(read_back)["account_tenure"].count == 1


def test_reader_without_columns_infers_types(tmp_path: Path) -> None:
    table = tabular.read_table(write(tmp_path, orders_csv()))
    assert table.schema.field("account_tenure").type == pa.int64()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("orders.json", '{"a": 1}', "not a CSV or Parquet file"),
        ("orders.csv", "", "file is empty"),
        ("orders.csv", "order_id,customer_id\no1,c1\n", "missing column.*order_ts"),
        ("orders.parquet", "this is not parquet", "cannot be read as PARQUET"),
        ("orders.csv", 'order_id,"customer_id\no1,c1\n', "cannot be read as CSV"),
    ],
)
def test_reader_rejects_unusable_files_with_a_clear_message(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(tabular.DataError, match=message) as caught:
        tabular.read_table(path, COLUMNS)
    assert name in str(caught.value)


def test_reader_rejects_an_empty_folder_and_nested_parquet_columns(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", "{}", "_manifest.json")
    with pytest.raises(tabular.DataError, match="no CSV or Parquet files"):
        tabular.read_table(tmp_path / "empty", COLUMNS)
    nested = pa.table({c["name"]: pa.array([["x"]]) for c in COLUMNS})
    pq.write_table(nested, tmp_path / "nested.parquet")
    with pytest.raises(tabular.DataError, match=r"stored as list<.*cannot be read as"):
        tabular.read_table(tmp_path / "nested.parquet", COLUMNS)


def test_null_markers_follow_the_spec_and_a_bad_value_fails_only_its_row(tmp_path: Path) -> None:
    """Issue 14.8: 'NA', 'nan', 'null', 'N/A' are values unless the column's
    ``null_values`` say otherwise, and one impossible zoned timestamp is null
    alone, not every zoned timestamp of its column."""
    rows = [("NA", "c1", "2026-11-01T10:00:00Z", "nan", 1, 0),
            ("o2", "null", "2026-13-45T00:00:00Z", 10, 1, 0),
            ("o3", "N/A", "2026-11-01T11:00:00+01:00", "", 1, 0),
            ("o4", "c2", "2026-02-30T00:00:00Z", "NA", 1, 0),
            ("o5", "", "2026-11-01T12:30:00.250Z", 20, 1, 0)]
    text = orders_csv(rows)
    table = read(tmp_path, text)
    assert table.column("order_id").to_pylist() == ["NA", "o2", "o3", "o4", "o5"]
    assert table.column("customer_id").to_pylist() == ["c1", "null", "N/A", "c2", None]
    ts = [None if t is None else t.isoformat() for t in table.column("order_ts").to_pylist()]
    assert ts == ["2026-11-01T10:00:00+00:00", None, "2026-11-01T10:00:00+00:00", None,
                  "2026-11-01T12:30:00.250000+00:00"]
    times = run_rule(table, {"kind": "type", "column": "order_ts", "type": "timestamp"})
    assert times["observed"] == {"unparseable": 2,
                                 "examples": ["2026-13-45T00:00:00Z", "2026-02-30T00:00:00Z"]}
    assert [s["order_id"] for s in times["sample"]] == ["o2", "o4"]
    # 'nan' is a number outside every range, not a missing amount; 'NA' is not a number.
    amount = run_rule(table, {"kind": "range", "column": "order_amount", "min": 0, "max": 50000})
    assert [s["order_id"] for s in amount["sample"]] == ["NA"]
    amount_type = run_rule(table, {"kind": "type", "column": "order_amount", "type": "float"})
    assert amount_type["sample"] == [{"order_id": "o4", "row": 3, "value": "NA"}]
    complete = run_rule(table, {"kind": "completeness", "column": "order_amount"})
    assert complete["observed"] == {"share": 0.8, "nulls": 1}
    assert run_rule(table, {"kind": "unique", "columns": ["order_id"]})["passed"]

    # A column's own markers: only there.
    columns = copy.deepcopy(COLUMNS)
    for column in columns:
        if column["name"] in ("customer_id", "order_amount"):
            column["null_values"] = ["", "N/A", "NA"]
    marked = tabular.read_table(write(tmp_path, text, "marked.csv"), columns)
    assert marked.column("customer_id").to_pylist() == ["c1", "null", None, "c2", None]
    assert marked.column("order_id").to_pylist() == ["NA", "o2", "o3", "o4", "o5"]
    amounts = marked.column("order_amount").to_pylist()
    assert amounts[1:] == [10.0, None, None, 20.0] and amounts[0] != amounts[0]  # NaN
    assert "order_amount" not in tabular.unparseable(marked)
    # With no markers at all an empty amount is a value that does not parse.
    for column in columns:
        column["null_values"] = []
    strict = tabular.read_table(write(tmp_path, text, "strict.csv"), columns)
    assert strict.column("customer_id").to_pylist()[4] == ""
    assert tabular.unparseable(strict)["order_amount"].rows == [2, 3]
