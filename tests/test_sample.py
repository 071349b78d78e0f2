"""``mdlc sample`` and the sampler: every day passes the spec's quality rules
(checked by the project's own engine), anomalies break exactly their rule,
and the generator works for specs other than fraud."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from mdlc_core import tabular
from mdlc_core.sql import quality as sql_quality

from mdlc_constructs import sampling
from mdlc_constructs.cli import main
from mdlc_constructs.sampling import Anomaly, SamplingError
from mdlc_constructs.spec import ModelSpec, parse_spec

from .test_quality_engine import ROOT

SPEC = str(ROOT / "models" / "fraud.yaml")
START = date(2026, 11, 1)

DEMAND = """
name: demand
owner: planning
data:
  entity_key: store_id
  event_id: sale_id
  timestamp: sold_at
  label: units
  columns:
    - {name: sale_id, type: int}
    - {name: store_id, type: string}
    - {name: sold_at, type: timestamp}
    - {name: price, type: float}
    - {name: store_size, type: float}
    - {name: promo, type: bool}
    - {name: channel, type: string}
    - {name: units, type: float}
  sources: [{kind: s3, name: sales, prefix: sales/}]
  schedule: "cron(0 2 * * ? *)"
quality:
  rules:
    - {kind: type, column: sale_id, type: int}
    - {kind: type, column: sold_at, type: timestamp}
    - {kind: range, column: price, min: 1, max: 20}
    - {kind: range, column: units, min: 0, max: 500}
    - {kind: allowed_values, column: channel, values: [web, store, app]}
    - {kind: unique, columns: [sale_id]}
    - {kind: unique, columns: [store_id, channel, sold_at]}
    - {id: size_is_fixed, kind: consistency, column: store_size, entity: store_id,
       change: constant}
    - {kind: completeness, column: units, min: 1.0}
    - {kind: row_count, min: 50, max: 1000}
    - {kind: freshness, column: sold_at, max_age_hours: 1}
training:
  algorithm: {kind: builtin, name: linear-learner}
  hyperparameters: {predictor_type: regressor}
  evaluation: {metric: "validation:mse", threshold: 100, goal: minimize}
"""


def demand_spec() -> ModelSpec:
    """A second, unrelated spec: int event id, float label, a constant per-store column."""
    return parse_spec(yaml.safe_load(DEMAND), "demand.yaml")


def tables(spec: ModelSpec, days: list[sampling.SampleDay], tmp_path: Path) -> list[pa.Table]:
    """Each day as the quality step reads its snapshot: the CSV through the tabular reader."""
    result = []
    for day in days:
        path = tmp_path / f"dt={day.date}" / "part-0000.csv"
        sampling.write_csv(spec, [day], path)
        result.append(tabular.read_table(path, spec.data.columns))
    return result


def reports(spec: ModelSpec, days: list[sampling.SampleDay], tmp_path: Path) -> list[dict]:
    """The quality report of every day, each compared with the day before."""
    config = spec.as_config()
    read = tables(spec, days, tmp_path)
    return [
        sql_quality.check(config, table, read[i - 1] if i else None, snapshot_date=day.date)
        for i, (day, table) in enumerate(zip(days, read, strict=True))
    ]


def failed(report: dict) -> dict[str, dict]:
    return {rule["id"]: rule for rule in report["rules"] if rule["status"] == "fail"}


# -- clean data ------------------------------------------------------------------------


def test_every_fraud_day_passes_every_quality_rule(fraud_spec, tmp_path):
    days = sampling.sample(fraud_spec, days=4, start=START, seed=1)
    results = reports(fraud_spec, days, tmp_path)
    for report in results:
        assert report["summary"]["passed"], failed(report)
        assert report["summary"]["rows"] == sampling.DEFAULT_ROWS_PER_DAY
    # The consistency rule really compared customers from day 1 on.
    statuses = [{r["id"]: r for r in report["rules"]}["tenure_grows_daily"]
                for report in results]
    assert statuses[0]["status"] == "skipped"
    assert all(s["status"] == "pass" and s["observed"]["entities_compared"] > 100
               for s in statuses[1:])


def test_rows_have_exactly_the_spec_columns_and_valid_values(fraud_spec):
    days = sampling.sample(fraud_spec, days=3, start=START, seed=2, rows_per_day=300)
    rows = list(csv.DictReader(io.StringIO(sampling.to_csv(fraud_spec, days))))
    assert list(rows[0]) == fraud_spec.data.column_names
    assert len(rows) == 900
    assert len({r["order_id"] for r in rows}) == 900
    for index, day in enumerate(days):
        assert day.date == START + timedelta(days=index)
        for row in rows[index * 300:(index + 1) * 300]:
            assert row["order_ts"].startswith(f"{day.date}T") and row["order_ts"].endswith("Z")
    assert {r["fraud_status"] for r in rows} == {"0", "1"}
    share = sum(r["fraud_status"] == "1" for r in rows) / len(rows)
    assert 0.05 < share < 0.15
    assert all(0 <= float(r["order_amount"]) <= 50000 for r in rows)


def test_tenure_grows_by_exactly_one_a_day_per_customer(fraud_spec):
    days = sampling.sample(fraud_spec, days=5, start=START, seed=3)
    tenure: dict[str, dict[int, set[int]]] = {}
    for index, day in enumerate(days):
        for customer, value in zip(day.columns["customer_id"], day.columns["account_tenure"],
                                   strict=True):
            tenure.setdefault(customer, {}).setdefault(index, set()).add(value)
    for customer, by_day in tenure.items():
        assert all(len(values) == 1 for values in by_day.values()), customer
        first = min(by_day)
        start_value = next(iter(by_day[first])) - first
        assert all(values == {start_value + index} for index, values in by_day.items())
    assert max(len(by_day) for by_day in tenure.values()) == 5  # customers recur


def test_output_is_deterministic_for_a_seed(fraud_spec):
    def text(seed: int, days: int = 3) -> str:
        return sampling.to_csv(
            fraud_spec, sampling.sample(fraud_spec, days=days, start=START, seed=seed,
                                        rows_per_day=100))

    assert text(5) == text(5)
    assert text(5) != text(6)
    # A longer run repeats a shorter one's days.
    assert text(5, days=4).startswith(text(5, days=3))


# -- anomalies --------------------------------------------------------------------------


def test_the_tenure_anomaly_fails_the_consistency_rule_from_its_day_naming_the_customer(
    fraud_spec, tmp_path
):
    anomaly_day = 2
    days = sampling.sample(fraud_spec, days=5, start=START, seed=4,
                           anomalies=[Anomaly("account_tenure", anomaly_day)])
    results = reports(fraud_spec, days, tmp_path)
    (customer,) = days[anomaly_day].affected["account_tenure"]
    for index, report in enumerate(results):
        failures = failed(report)
        if index < anomaly_day:
            assert not failures, (index, failures)
            continue
        # Only the consistency rule fails, and it names the customer.
        assert set(failures) == {"tenure_grows_daily"}, (index, failures)
        rule = failures["tenure_grows_daily"]
        assert rule["violations"] == 1
        assert rule["sample"][0]["customer_id"] == customer
        assert customer in rule["message"]
    # The talk's case: it jumps back (364 -> 54) and stops growing (54, 54, 54).
    history = []
    for day in days[anomaly_day - 1:]:
        values = {t for c, t in zip(day.columns["customer_id"], day.columns["account_tenure"],
                                    strict=True) if c == customer}
        history.append(values.pop())
    before, jumped, *stuck = history
    assert jumped == int(0.15 * (before + 1))
    assert stuck == [jumped] * len(stuck)


def test_an_anomaly_day_can_be_a_date(fraud_spec):
    assert sampling.parse_anomaly("account_tenure@2026-11-03", start=START, days=5) == \
        Anomaly("account_tenure", 2)
    assert sampling.parse_anomaly("account_tenure@2", start=START, days=5) == \
        Anomaly("account_tenure", 2)


@pytest.mark.parametrize(("column", "rule"), [
    ("order_amount", "range_order_amount"),
    ("fraud_status", "allowed_values_fraud_status"),
    ("order_id", "unique_order_id"),
])
def test_other_anomalies_break_their_columns_rule(fraud_spec, tmp_path, column, rule):
    days = sampling.sample(fraud_spec, days=3, start=START, seed=9, rows_per_day=100,
                           anomalies=[Anomaly(column, 1)])
    results = reports(fraud_spec, days, tmp_path)
    assert not failed(results[0])
    assert set(failed(results[1])) == set(failed(results[2])) == {rule}


# -- other specs ------------------------------------------------------------------------


def test_a_different_spec_is_sampled_by_its_own_rules(tmp_path):
    spec = demand_spec()
    days = sampling.sample(spec, days=3, start=START, seed=1, rows_per_day=200)
    results = reports(spec, days, tmp_path)
    for report in results:
        assert report["summary"]["passed"], failed(report)
    rows = list(csv.DictReader(io.StringIO(sampling.to_csv(spec, days))))
    assert list(rows[0]) == spec.data.column_names
    assert [int(r["sale_id"]) for r in rows] == list(range(1, 601))
    assert {r["channel"] for r in rows} == {"web", "store", "app"}
    assert {r["promo"] for r in rows} == {"true", "false"}
    assert all(0 <= float(r["units"]) <= 500 for r in rows)
    size: dict[str, set[str]] = {}
    for row in rows:
        size.setdefault(row["store_id"], set()).add(row["store_size"])
    assert all(len(values) == 1 for values in size.values())  # constant per store
    # A constant column's anomaly drifts: the consistency rule names the store.
    broken = sampling.sample(spec, days=3, start=START, seed=1, rows_per_day=200,
                             anomalies=[Anomaly("store_size", 1)])
    (store,) = broken[1].affected["store_size"]
    failures = failed(reports(spec, broken, tmp_path / "broken")[1])
    assert set(failures) == {"size_is_fixed"}
    assert failures["size_is_fixed"]["sample"][0]["store_id"] == store


def test_a_spec_that_admits_no_data_is_refused_with_the_reason(fraud_spec):
    with pytest.raises(SamplingError, match="row_count") as raised:
        sampling.sample(fraud_spec, days=1, start=START, rows_per_day=60_000_000)
    assert raised.value.argument == "rows_per_day"
    data: dict[str, Any] = yaml.safe_load(DEMAND)
    data["quality"]["rules"].append(
        {"kind": "consistency", "column": "price", "entity": "store_id", "change": "days"})
    with pytest.raises(SamplingError, match="grows by one a day for 30 days"):
        sampling.sample(parse_spec(data), days=30, start=START)


# -- the command line -------------------------------------------------------------------


def test_mdlc_sample_writes_a_file_that_mdlc_quality_passes(tmp_path, capsys):
    out = tmp_path / "orders.csv"
    code = main(["sample", SPEC, "--days", "2", "--out", str(out), "--start", "2026-11-01",
                 "--rows-per-day", "200", "--seed", "3"])
    assert code == 0
    assert "wrote 400 rows (2 day(s), 2026-11-01 to 2026-11-02)" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(["order_id", "customer_id", "order_ts", "order_amount",
                                 "account_tenure", "fraud_status"])
    assert len(lines) == 401
    assert main(["quality", SPEC, str(out), "--date", "2026-11-02"]) == 0


def test_mdlc_sample_names_the_anomaly_and_its_customer(tmp_path, capsys):
    out = tmp_path / "orders.csv"
    assert main(["sample", SPEC, "--days", "3", "--out", str(out), "--start", "2026-11-01",
                 "--anomaly", "account_tenure@2026-11-03", "--rows-per-day", "100"]) == 0
    text = capsys.readouterr().out
    assert "anomaly: account_tenure breaks its rule from 2026-11-03 on for customer-" in text


@pytest.mark.parametrize(("arguments", "named"), [
    (["--days", "0"], "argument --days: expected a positive integer, got '0'"),
    (["--days", "2", "--rows-per-day", "many"], "argument --rows-per-day"),
    (["--days", "2", "--start", "2026-13-01"], "argument --start: expected YYYY-MM-DD"),
    (["--days", "2", "--seed", "x"], "argument --seed"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys, arguments, named):
    with pytest.raises(SystemExit) as raised:
        main(["sample", SPEC, "--out", str(tmp_path / "x.csv"), *arguments])
    assert raised.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--anomaly", "account_tenure"], "--anomaly: expected COLUMN@DAY"),
    (["--anomaly", "tenure@1"], "--anomaly: 'tenure' is not one of the spec's columns"),
    (["--anomaly", "account_tenure@7"], "--anomaly: 'account_tenure@7': day 7 is outside"),
    (["--anomaly", "account_tenure@2026-10-01"], "is outside the sampled days 0..2"),
    (["--anomaly", "customer_id@1"], "--anomaly: column 'customer_id' has no"),
    (["--rows-per-day", "60000000"], "--rows-per-day: 60000000 rows a day"),
])
def test_unusable_values_exit_2_naming_the_argument(tmp_path, capsys, arguments, message):
    out = tmp_path / "x.csv"
    code = main(["sample", SPEC, "--days", "3", "--start", "2026-11-01", "--out", str(out),
                 *arguments])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_an_unusable_spec_or_output_exits_2(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "missing.yaml"), "--days", "1",
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["sample", SPEC, "--days", "1", "--rows-per-day", "10",
                 "--out", str(blocker / "x.csv")]) == 2
    assert f"--out {blocker / 'x.csv'}: cannot write" in capsys.readouterr().err
