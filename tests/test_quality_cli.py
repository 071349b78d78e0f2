"""``mdlc quality`` and ``mdlc baseline``: exit codes, summary, report file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml

from mdlc_constructs.cli import main
from mdlc_constructs.spec.data import QualitySpec

from .test_quality_engine import HEADER, ROOT, orders_csv, write

SPEC = str(ROOT / "models" / "fraud.yaml")


def snapshot(tmp_path: Path, day: str, text: str) -> Path:
    folder = tmp_path / "datasets" / "fraud" / f"dt={day}"
    write(folder, text, "part-0000.csv")
    write(folder, '{"rows": 6}', "_manifest.json")
    return folder


def test_clean_snapshot_exits_0_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot(tmp_path, "2026-11-01", orders_csv())
    previous = snapshot(tmp_path, "2026-10-31", orders_csv(day=date(2026, 10, 31), tenure=99))
    report_file = tmp_path / "report.json"
    code = main(["quality", SPEC, str(data), "--previous", str(previous),
                 "--report", str(report_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(report_file.read_text())
    # dates come from the dt= folders when not given
    assert (report["snapshot_date"], report["previous_date"]) == ("2026-11-01", "2026-10-31")
    assert report["summary"]["passed"] is True
    assert "PASS  tenure_grows_daily" in out
    assert out.strip().splitlines()[-1] == "PASSED: 19 rules passed"


def test_violation_exits_1_and_names_rule_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", 99999, 54, 0),
            ("o2", "c2", "2026-11-01T11:00:00Z", 20, 101, 1)]
    before = [("p1", "c1", "2026-10-31T10:00:00Z", 10, 364, 0),
              ("p2", "c2", "2026-10-31T11:00:00Z", 20, 100, 0)]
    data = snapshot(tmp_path, "2026-11-01", orders_csv(rows))
    previous = snapshot(tmp_path, "2026-10-31", orders_csv(before))
    report_file = tmp_path / "out" / "report.json"
    report_file.parent.mkdir()
    code = main(["quality", SPEC, str(data), "--previous", str(previous),
                 "--report", str(report_file)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  range_order_amount" in out and "order_id=o1, value=99999" in out
    assert "FAIL  tenure_grows_daily" in out
    assert "customer_id=c1, previous=364, current=54, expected=365" in out
    assert "c2" not in out.split("tenure_grows_daily", 1)[1]
    assert out.strip().splitlines()[-1] == "FAILED: 2 of 19 rules, 2 violation(s)"
    failed = {r["id"] for r in json.loads(report_file.read_text())["rules"] if not r["passed"]}
    assert failed == {"range_order_amount", "tenure_grows_daily"}


def test_date_option_overrides_and_drives_freshness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path, orders_csv(), "orders.csv")
    assert main(["quality", SPEC, str(data), "--date", "2026-11-01"]) == 0
    assert main(["quality", SPEC, str(data), "--date", "2026-11-05"]) == 1
    assert "FAIL  freshness_order_ts" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("orders.csv", "order_id,customer_id\no1,c1\n",
         "missing column(s) order_ts, order_amount, account_tenure, fraud_status"),
        ("orders.csv", "", "file is empty"),
        ("orders.txt.json", '[{"order_id": "o1"}]', "not a CSV or Parquet file"),
        ("orders.parquet", HEADER + "\n", "cannot be read as PARQUET"),
        ("orders.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe,\x00".decode("latin-1"),
         "orders.csv"),
    ],
)
def test_unusable_input_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="latin-1")
    assert main(["quality", SPEC, str(path), "--date", "2026-11-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdlc quality: ") and message in err and str(path) in err


def test_missing_data_bad_previous_and_bad_spec_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path, orders_csv(), "orders.csv")
    assert main(["quality", SPEC, str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "dt=2026-10-31"
    empty.mkdir()
    assert main(["quality", SPEC, str(data), "--previous", str(empty)]) == 2
    assert "folder has no CSV or Parquet files" in capsys.readouterr().err
    bad_spec = write(tmp_path, "name: Fraud\n", "bad.yaml")
    assert main(["quality", str(bad_spec), str(data)]) == 2
    assert "mdlc quality:" in capsys.readouterr().err


def test_bad_values_are_violations_not_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("o1", "c1", "2026-11-01T10:00:00Z", "ten", 1, 0)]
    data = write(tmp_path, orders_csv(rows), "orders.csv")
    assert main(["quality", SPEC, str(data), "--date", "2026-11-01"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  type_order_amount" in out and "order_id=o1, value=ten" in out


def test_baseline_prints_yaml_rules_that_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot(tmp_path, "2026-11-01", orders_csv())
    assert main(["baseline", SPEC, str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Baseline suggested by `mdlc baseline`")
    document = yaml.safe_load(out)
    assert document["statistics"]["order_amount"]["max"] == 60.0
    QualitySpec(**document["quality"])
    # rules print one per line, like the example spec
    assert "- {kind: completeness, column: order_id, min: 1.0}" in out


def test_baseline_exits_2_on_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["baseline", SPEC, str(write(tmp_path, "", "empty.csv"))]) == 2
    assert "file is empty" in capsys.readouterr().err


def test_stale_data_without_a_date_says_that_date_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old data read without --date fails freshness against today: the message
    names --date and the day the data is of; with a date (option or dt=
    folder) there is nothing to explain."""
    data = write(tmp_path, orders_csv(), "orders.csv")  # 2026-11-01, long before today
    assert main(["quality", SPEC, str(data)]) == 1
    captured = capsys.readouterr()
    assert "FAIL  freshness_order_ts" in captured.out
    assert "no --date was given" in captured.err and "--date 2026-11-01" in captured.err
    assert main(["quality", SPEC, str(data), "--date", "2026-11-05"]) == 1
    assert "--date" not in capsys.readouterr().err
    folder = snapshot(tmp_path, "2026-11-05", orders_csv())
    assert main(["quality", SPEC, str(folder)]) == 1
    assert capsys.readouterr().err == ""


def test_row_count_without_a_maximum_reads_at_least(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = yaml.safe_load((ROOT / "models" / "fraud.yaml").read_text())
    for rule in spec["quality"]["rules"]:
        if rule["kind"] == "row_count":
            rule.update(min=100)
            rule.pop("max")
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(spec))
    data = write(tmp_path, orders_csv(), "orders.csv")
    assert main(["quality", str(path), str(data), "--date", "2026-11-01"]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if "FAIL  row_count" in x)
    assert line.endswith("rows, expected at least 100"), line


def test_the_default_engine_is_duckdb_and_reads_csv_and_parquet_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same days as CSV (the shared reader) and as typed Parquet (scanned
    by DuckDB itself), checked with the spec's engine and with --engine
    duckdb: one printout, one report, one exit code."""
    import pyarrow.parquet as pq
    from mdlc_core import tabular
    from mdlc_core.sql import quality as sql_quality

    from .test_quality_engine import COLUMNS

    rows = [("o1", "c1", "2026-11-01T10:00:00Z", 99999, 54, 0),
            ("o1", "c2", "2026-11-01T11:00:00Z", None, 101, 3)]
    before = [("p1", "c1", "2026-10-31T10:00:00Z", 10, 364, 0),
              ("p2", "c2", "2026-10-31T11:00:00Z", 20, 100, 0)]
    outputs = {}
    for file_format in ("csv", "parquet"):
        paths = []
        for day, day_rows in (("2026-11-01", rows), ("2026-10-31", before)):
            folder = tmp_path / file_format / f"dt={day}"
            if file_format == "csv":
                write(folder, orders_csv(day_rows), "part-0000.csv")
            else:
                folder.mkdir(parents=True)
                table = tabular.read_bytes(orders_csv(day_rows).encode(), "d.csv", COLUMNS)
                pq.write_table(table.replace_schema_metadata(None), folder / "part-0000.parquet")
            paths.append(str(folder))
        scanned = sql_quality.parquet_files(paths[0], COLUMNS) is not None
        assert scanned == (file_format == "parquet")
        for engine in ([], ["--engine", "duckdb"]):
            report_file = tmp_path / f"{file_format}{len(engine)}.json"
            code = main(["quality", SPEC, paths[0], "--previous", paths[1], *engine,
                         "--report", str(report_file)])
            text = report_file.read_text().replace(str(tmp_path / file_format), "DAYS")
            report = json.loads(text)
            report.pop("checked_at")
            out = capsys.readouterr().out.replace(str(tmp_path / file_format), "DAYS")
            outputs[(file_format, len(engine))] = (code, out, report)
    assert len({json.dumps(output, sort_keys=True) for output in outputs.values()}) == 1, outputs
    code, out, report = outputs[("csv", 0)]
    assert code == 1 and "FAIL  unique_order_id" in out and "FAIL  tenure_grows_daily" in out
    assert sorted(r["id"] for r in report["rules"] if r["status"] == "fail") == [
        "allowed_values_fraud_status", "completeness_order_amount", "range_order_amount",
        "tenure_grows_daily", "unique_order_id"]
    assert report["source"] == "DAYS/dt=2026-11-01"


def test_the_retired_engine_is_not_an_engine_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot(tmp_path, "2026-11-01", orders_csv())
    with pytest.raises(SystemExit) as exited:
        main(["quality", SPEC, str(data), "--engine", "embedded"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.replace("'", "")  # Python 3.12 quotes the choices
    assert "--engine: invalid choice: embedded (choose from duckdb, spark)" in err, err


def test_a_memory_limit_duckdb_refuses_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = snapshot(tmp_path, "2026-11-01", orders_csv())
    code = main(["quality", SPEC, str(data), "--engine", "duckdb", "--memory-limit", "lots"])
    assert code == 2
    assert "memory_limit" in capsys.readouterr().err
