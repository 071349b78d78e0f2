"""The monitoring metrics as SQL (mdlc_core.sql.monitoring): the retired NumPy engine's report.

Every case runs the compiled SQL on DuckDB and asserts the report the NumPy
engine gave on the same inputs, recorded in
``__snapshots__/test_sql_monitoring.ambr`` while it existed (keys, counts
and None exactly; floats to 1e-12 relative, as every snapshot of the suite:
the two agreed bit for bit on the machine that recorded them, and NumPy's
``log`` and ``exp`` give another last bit on a CPU without AVX-512, see
``tests/tolerant_snapshots.py``): the known answers of
``test_monitoring_metrics``, and random days with ties in scores, nulls,
NaN, infinities and signed zeros, duplicate labels and predictions,
unlabelled predictions, labels of no prediction, days without labels and
without predictions, several versions and per-version baselines. The
metrics are also held to scikit-learn (precision, recall, F1, ROC AUC) and
SciPy (``ks_2samp``: statistic, and p-value to 1e-6 relative where it is
above 1e-10). The same SQL rendered for Spark runs on local PySpark with
the same answers whenever PySpark and Java are installed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from mdlc_core import monitoring as m
from mdlc_core.sql import monitoring as sql

from .test_monitoring_metrics import SPEC, labels, predictions

# --- comparing reports --------------------------------------------------------------------


def assert_same(mine: Any, theirs: Any, path: str = "report") -> None:
    """Equal structure and keys, equal ints, strings and None, floats to 1e-12."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict), path
        assert list(mine) == list(theirs), f"{path}: keys {list(mine)} != {list(theirs)}"
        for key in theirs:
            assert_same(mine[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list) and len(mine) == len(theirs), f"{path}: {mine} != {theirs}"
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(mine, float), f"{path}: {mine!r} is not a float like {theirs!r}"
        assert mine == pytest.approx(theirs, rel=1e-12, abs=1e-300) or (
            math.isnan(mine) and math.isnan(theirs)), f"{path}: {mine} != {theirs}"
    else:
        assert type(mine) is type(theirs) and mine == theirs, f"{path}: {mine!r} != {theirs!r}"


def both(snapshot: Any, p: m.Predictions, lab: m.Labels | None, baseline: pa.Table | None,
         spec: Any, features: list[str], **kwargs: Any) -> dict[str, Any]:
    """The SQL report, asserted equal to the retired NumPy engine's, which
    ``snapshot`` recorded (``__snapshots__/test_sql_monitoring.ambr``); returned."""
    mine = sql.compute_metrics(p, lab, baseline, spec, features, threads=1, **kwargs)
    assert mine == snapshot
    return mine


# --- the known answers ---------------------------------------------------

KNOWN = {
    "auc_with_a_tie": lambda: (predictions([0.8, 0.4, 0.4, 0.3, 0.1]),
                               labels([(f"e{i}", y) for i, y in enumerate([1, 1, 0, 0, 0])]),
                               None, {}, []),
    "all_tied": lambda: (predictions([0.5] * 6),
                         labels([(f"e{i}", y) for i, y in enumerate([0, 1, 0, 1, 1, 0])]),
                         None, {}, []),
    "one_class": lambda: (predictions([0.1, 0.9]), labels([("e0", 0), ("e1", 0)]), None, {}, []),
    "unlabelled_and_coverage": lambda: (
        predictions([0.9, 0.7, 0.6, 0.2, 0.1, 0.8]),
        labels([("e0", 1), ("e1", 0), ("e2", 1), ("e3", 1), ("e4", 0)]), None, SPEC, []),
    "threshold_inclusive": lambda: (predictions([0.5, 0.49]), labels([("e0", 1), ("e1", 1)]),
                                    None, {"closed_loop": {"decision_threshold": 0.5}}, []),
    "day_without_positives": lambda: (
        predictions([0.9, 0.1, 0.2], days=["2024-05-01", "2024-05-02", "2024-05-02"]),
        labels([("e0", 1), ("e1", 0), ("e2", 0)]), None, {}, []),
    "day_without_labels": lambda: (predictions([0.9, 0.1], days=["2024-05-01", "2024-05-02"]),
                                   labels([("e0", 1)]), None, {}, []),
    "empty_predictions": lambda: (predictions([]), labels([("x", 1)]), None, {}, []),
    "empty_everything": lambda: (predictions([]), labels([]), None, SPEC, []),
    "no_labels": lambda: (predictions([0.1, 0.9]), None, None, {}, []),
    "ghost_and_duplicate_labels": lambda: (
        predictions([0.9, 0.1]),
        labels([("e0", 1), ("ghost", 1), ("ghost2", 0), ("ghost", 1)]), None, {}, []),
    "latest_label_wins": lambda: (
        predictions([0.9]),
        labels([("e0", 0), ("e0", 1), ("e0", 1)],
               ["2024-06-03T00:00:00Z", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"]),
        None, {}, []),
    "equal_label_ts_later_row_wins": lambda: (
        predictions([0.9, 0.2]),
        labels([("e0", 0), ("e0", 1), ("e1", 1), ("e1", 0)]), None, {}, []),
    "versions": lambda: (predictions([0.9, 0.1, 0.9, 0.1], versions=["v1", "v1", "v2", "v2"]),
                         labels([("e0", 1), ("e1", 0), ("e2", 0), ("e3", 1)]), None, {}, []),
    "versions_with_unknown": lambda: (
        predictions([0.9, 0.1, 0.9, 0.1], versions=["v2", None, "v1", "v2"]),
        labels([("e0", 1), ("e1", 0), ("e2", 0), ("e3", 1)]), None, {}, []),
    "psi_and_ks_and_actions": lambda: (
        predictions([0.1, 0.2, 0.9, 0.95], actions=["approve", "approve", "block", None],
                    order_amount=[10.0, 20.0, 30.0, 40.0]),
        None, pa.table({"score": [0.1, 0.2, 0.3, 0.4], "order_amount": [10.0, 20, 30, 40]}),
        {"open_loop": {"bins": 2}}, ["order_amount", "account_tenure"]),
    "discrete_feature_merges_edges": lambda: (
        predictions([0.1, 0.2, 0.3, 0.4], flag=[0.0, 1.0, 1.0, 1.0]),
        None, pa.table({"flag": [0.0] * 7 + [1.0] * 3}), {}, ["flag"]),
    "baseline_without_score": lambda: (
        predictions([0.1, 0.9], actions=["approve", "block"]), None,
        pa.table({"other": [1.0, 2.0]}), {}, []),
    "empty_baseline": lambda: (predictions([0.1, 0.9]), None,
                               pa.table({"score": pa.array([], pa.float64())}), {}, []),
    "one_bin": lambda: (predictions([0.1, 0.9]), None, pa.table({"score": [0.3, 0.5]}),
                        {"open_loop": {"bins": 1}}, []),
    "one_baseline_value": lambda: (predictions([0.1, 0.9]), None, pa.table({"score": [0.3]}),
                                   {}, []),
}


@pytest.mark.parametrize("case", sorted(KNOWN))
def test_known_answers_are_the_numpy_engines(snapshot: Any, case: str) -> None:
    both(snapshot, *KNOWN[case]())


def test_alarm_data_gives_the_same_report_and_alarms(snapshot: Any) -> None:
    """The alarm test's day (inverted truth, drift, a block share): same report, same alarms."""
    rng = np.random.default_rng(3)
    n = 400
    scores = rng.uniform(size=n)
    p = predictions(list(scores), actions=["block"] * 40 + ["approve"] * (n - 40))
    truth = labels([(f"e{i}", int(s < 0.5)) for i, s in enumerate(scores[:300])])
    report = both(snapshot, p, truth, pa.table({"score": rng.uniform(size=2000) * 0.5}), SPEC,
                  [])
    assert len(m.evaluate_alarms(report, SPEC)) == 7


def test_closed_and_open_loop_alone(snapshot: Any) -> None:
    p, lab, baseline, _, features = KNOWN["psi_and_ks_and_actions"]()
    lab = labels([("e0", 0), ("e2", 1)])
    assert sql.closed_loop(p, lab, 0.5) == snapshot
    assert sql.open_loop(p, baseline, 2, features) == snapshot


def test_a_fault_in_the_sql_is_caught() -> None:
    """The comparison is not blind: a threshold off by one ulp moves a tie."""
    p, lab, *_ = KNOWN["threshold_inclusive"]()
    plan = sql.prepare(p, lab, None, decision_threshold=math.nextafter(0.5, 1.0))
    mine = sql._duckdb_run(plan, lambda fetch: plan.closed_loop(fetch, "duckdb"),
                           memory_limit="256MB", temp_directory=None, threads=1)
    with pytest.raises(AssertionError, match="predicted_positive: 0 != 1"):
        assert_same(mine, sql.closed_loop(p, lab, 0.5))


# --- random days ----------------------------------------------------------------------------


def random_day(seed: int, n: int = 300) -> tuple[m.Predictions, m.Labels | None, pa.Table,
                                                  dict[str, Any], list[str]]:
    """Predictions with ties, nulls, duplicates, versions and actions, and their labels."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, n)) if seed % 7 == 0 else n
    levels = int(rng.choice([3, 10, 1000]))  # how tied the scores are
    score = np.round(rng.beta(2, 5, n) * levels) / levels
    score[rng.uniform(size=n) < 0.05] = -0.0 if seed % 2 else 0.0
    ids = [f"e{i}" for i in rng.integers(0, max(n, 1) * 2 // 3 + 1, n)]  # repeated events
    days = [f"2024-05-0{d}" for d in rng.integers(1, 1 + int(rng.integers(1, 4)), n)]
    version_pool = [["v1"], ["v1", "v2"], ["v2", "v1", None], [None]][seed % 4]
    versions = [version_pool[i] for i in rng.integers(0, len(version_pool), n)]
    actions = [[None, "approve", "review", "block", ""][i] for i in rng.integers(0, 5, n)]
    amount = np.round(rng.gamma(2, 50, n), int(rng.integers(0, 3)))
    amount_column: list[float | None] = list(amount)
    for i in np.flatnonzero(rng.uniform(size=n) < 0.1):
        amount_column[i] = None if i % 2 else float("nan")
    tenure = rng.integers(0, 20, n).astype(float)
    tenure[rng.uniform(size=n) < 0.03] = np.inf
    table = pa.table({
        "event_id": pa.array(ids, pa.string()),
        "score": pa.array(score, pa.float64()),
        "prediction_ts": pa.array([f"{d}T10:00:00Z" for d in days], pa.string()),
        "model_version": pa.array(versions, pa.string()),
        "action": pa.array(actions, pa.string()),
        "order_amount": pa.array(amount_column, pa.float64()),
        "account_tenure": pa.array(tenure),
    })
    features = ["order_amount", "account_tenure", "missing_feature"]
    p = m.Predictions.from_table(table, features)
    k = int(rng.integers(0, n + 5)) if seed % 5 else 0
    label_ids = [f"e{i}" for i in rng.integers(0, max(n, 1), k)]  # some match nothing
    lab = m.Labels.from_table(pa.table({
        "event_id": pa.array(label_ids, pa.string()),
        "label": pa.array(rng.integers(0, 2, k), pa.int64()),
        "label_ts": pa.array([f"2024-06-0{d}T00:00:00Z" for d in rng.integers(1, 3, k)],
                             pa.string()),
    })) if seed % 11 else None
    b = int(rng.integers(1, 500))
    baseline_amount: list[float | None] = list(np.round(rng.gamma(2.2, 50, b), 1))
    baseline_amount[0] = None
    baseline = pa.table({
        "score": pa.array(np.round(rng.beta(2, 5, b) * levels) / levels),
        "order_amount": pa.array(baseline_amount, pa.float64()),
        "account_tenure": pa.array(rng.integers(0, 25, b).astype(float)),
    })
    spec = {"closed_loop": {"decision_threshold": float(rng.choice([0.2, 0.3, 0.5]))},
            "open_loop": {"bins": int(rng.choice([2, 5, 10]))}}
    return p, lab, baseline, spec, features


@pytest.mark.parametrize("seed", range(24))
def test_random_days_give_the_numpy_engines_report(snapshot: Any, seed: int) -> None:
    both(snapshot, *random_day(seed))


def test_per_version_baselines(snapshot: Any) -> None:
    p, lab, baseline, spec, features = random_day(1)
    other = pa.table({"score": np.linspace(0, 1, 50), "account_tenure": np.arange(50.0)})
    report = both(snapshot, p, lab, baseline, spec, features, baselines={"v2": other, "v1": None})
    groups = {g["model_version"]: g for g in report["open_loop"]["by_version"]}
    assert groups["v1"]["score"] is None and groups["v1"]["baseline_rows"] == 0
    assert groups["v2"]["baseline_rows"] == 50
    assert groups["v2"]["features_not_compared"] == ["order_amount", "missing_feature"]


# --- against scikit-learn and SciPy ---------------------------------------------------------


def reference_groups(p: m.Predictions, lab: m.Labels) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(scores, labels) of the labelled predictions per version, computed the plain way."""
    winner: dict[str, tuple[int, int, int]] = {}
    for row, (event, label, ts) in enumerate(zip(lab.event_id.to_pylist(), lab.label.tolist(),
                                                 lab.label_ts.tolist(), strict=True)):
        if event not in winner or (ts, row) >= winner[event][1:]:
            winner[event] = (label, ts, row)
    groups: dict[str, tuple[list[float], list[int]]] = {"all": ([], [])}
    for event, score, code in zip(p.event_id.to_pylist(), p.score.tolist(),
                                  p.version_codes.tolist(), strict=True):
        if event in winner:
            for name in ("all", p.versions[code]):
                groups.setdefault(name, ([], []))
                groups[name][0].append(score)
                groups[name][1].append(winner[event][0])
    return {k: (np.array(s), np.array(y)) for k, (s, y) in groups.items()}


@pytest.mark.parametrize("seed", [1, 2, 6, 9, 13])
def test_accuracy_equals_scikit_learn(snapshot: Any, seed: int) -> None:
    from sklearn import metrics  # the dev extra's reference implementation
    p, lab, baseline, spec, features = random_day(seed, n=2000)
    assert lab is not None
    report = both(snapshot, p, lab, baseline, spec, features)
    threshold = spec["closed_loop"]["decision_threshold"]
    groups = reference_groups(p, lab)
    checked = 0
    for group in report["closed_loop"]["by_version"]:
        scores, truth = groups[group["model_version"]]
        predicted = (scores >= threshold).astype(int)
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            truth, predicted, average="binary", zero_division=np.nan)
        for name, value in (("precision", precision), ("recall", recall), ("f1", f1)):
            if math.isnan(value):
                assert group[name] is None, name
            else:
                assert group[name] == pytest.approx(value, rel=1e-12), name
        if len(set(truth.tolist())) == 2:
            assert group["auc"] == pytest.approx(metrics.roc_auc_score(truth, scores), rel=1e-12)
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("seed", [1, 2, 4, 5])
def test_ks_equals_scipy_for_every_group_and_column(snapshot: Any, seed: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    p, lab, baseline, spec, features = random_day(seed, n=3000)
    report = both(snapshot, p, lab, baseline, spec, features)
    masks = {"all": np.ones(len(p), dtype=bool)}
    masks.update({v: p.version_codes == i for i, v in enumerate(p.versions)})
    compared = 0
    for group in report["open_loop"]["by_version"]:
        mask = masks[group["model_version"]]
        columns = {"score": (p.score, group["score"]),
                   **{k: (p.features[k], v) for k, v in group["features"].items()}}
        for name, (values, drift) in columns.items():
            current = values[mask]
            current = current[~np.isnan(current)]
            reference = m.floats(baseline.column(name), name, "baseline")
            reference = reference[~np.isnan(reference)]
            expected = stats.ks_2samp(current, reference)
            assert drift["ks_statistic"] == pytest.approx(float(expected.statistic), rel=1e-12)
            if expected.pvalue > 1e-10:
                assert drift["ks_pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-6)
            compared += 1
    assert compared >= 3


def test_ks_pvalues_near_ks_alpha_decide_as_scipy(snapshot: Any) -> None:
    """Scores shifted so that SciPy's p-value falls on both sides of ks_alpha (0.01),
    exact (both samples up to 10,000) and asymptotic (above): the same alarm."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    sides = set()
    for n, b in ((800, 1500), (12_000, 11_000)):
        baseline = pa.table({"score": np.round(rng.normal(size=b), 2)})
        for shift in np.linspace(0.02, 0.2, 10) * 800 ** 0.5 / n ** 0.5:
            scores = np.round(rng.normal(shift, 1, n), 2)
            table = pa.table({"event_id": [f"e{i}" for i in range(n)], "score": scores,
                              "prediction_ts": ["2024-05-01T00:00:00Z"] * n})
            p = m.Predictions.from_table(table)
            spec = {"open_loop": {"ks_alpha": 0.01}}
            report = both(snapshot, p, None, baseline, spec, [])
            got = report["open_loop"]["by_version"][0]["score"]["ks_pvalue"]
            expected = float(stats.ks_2samp(scores, baseline.column("score").to_numpy()).pvalue)
            if expected > 1e-10:
                assert got == pytest.approx(expected, rel=1e-6)
            alarmed = bool(m.evaluate_alarms(report, spec))
            assert alarmed == (expected < 0.01)
            sides.add(alarmed)
    assert sides == {True, False}


# --- the Spark dialect ----------------------------------------------------------------------


def all_queries(plan: sql.Plan) -> list[str]:
    """Every statement the plan ran on DuckDB, captured as it ran."""
    texts: list[str] = []

    def work(fetch: Any) -> dict[str, Any]:
        def capture(text: str) -> list[dict[str, Any]]:
            texts.append(text)
            return fetch(text)
        return plan.metrics(capture, "duckdb")

    sql._duckdb_run(plan, work, memory_limit="256MB", temp_directory=None, threads=1)
    return texts


def test_every_query_renders_as_spark_sql_that_spark_parses() -> None:
    p, lab, baseline, spec, features = random_day(2)
    plan = sql.prepare(p, lab, baseline, spec, features)
    texts = all_queries(plan)
    assert len(texts) > 10
    for text in texts:
        spark_text = sqlglot.parse_one(text, read="duckdb").sql(dialect="spark")
        assert '"' not in spark_text, spark_text  # Spark quotes with backticks
        sqlglot.parse_one(spark_text, read="spark")
    with pytest.raises(ValueError, match="dialect 'trino'"):
        plan.render(sqlglot.parse_one("SELECT 1"), "trino")


def test_a_version_name_is_a_literal_not_sql(snapshot: Any) -> None:
    injected = "v1' OR TRUE OR model_version = '"
    p = predictions([0.9, 0.1, 0.8], versions=[injected, "v2", injected])
    both(snapshot, p, labels([("e0", 1), ("e1", 0), ("e2", 0)]),
         pa.table({"score": [0.2, 0.5, 0.7]}), {}, [])


# A random day with several versions, one with a baseline of its own, ties and
# nulls (each day costs seconds of Spark's query planning; the DuckDB tests
# above cover the other days, and the SQL is the same tree in both dialects).
@pytest.mark.parametrize("seed", [1])
def test_spark_gives_the_same_report(spark: Any, seed: int) -> None:
    """The Spark-dialect SQL on PySpark in local mode: DuckDB's report, exactly."""
    p, lab, baseline, spec, features = random_day(seed, n=400)
    baselines = {"v2": pa.table({"score": np.linspace(0, 1, 40)})} if seed == 1 else None
    plan = sql.prepare(p, lab, baseline, spec, features, baselines=baselines)
    for name, relation in plan.relations.items():
        spark.createDataFrame(relation).createOrReplaceTempView(name)

    def fetch(text: str) -> list[dict[str, Any]]:
        return [row.asDict() for row in spark.sql(text).collect()]

    on_spark = plan.metrics(fetch, "spark")
    on_duckdb = sql.compute_metrics(p, lab, baseline, spec, features, baselines=baselines)
    assert_same(on_spark, on_duckdb)
