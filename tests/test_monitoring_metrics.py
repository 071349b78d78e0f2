"""Known answers for the monitoring metrics, as DuckDB computes them (mdlc_core.sql.monitoring).

The inputs are typed by the shared reader (``mdlc_core.monitoring``'s
``Predictions`` and ``Labels``); AUC, precision, recall, PSI and KS are the
compiled SQL's, the p-values :mod:`mdlc_core.kolmogorov`'s (held to SciPy).
These expectations were the NumPy engine's until it was retired (issue #18).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mdlc_core import kolmogorov
from mdlc_core import monitoring as m
from mdlc_core.sql import monitoring as sql


def predictions(scores, days=None, versions=None, actions=None, ids=None, **features):
    n = len(scores)
    columns = {
        "event_id": ids or [f"e{i}" for i in range(n)],
        "score": [float(s) for s in scores],
        "prediction_ts": [f"{d}T12:00:00" for d in (days or ["2024-05-01"] * n)],
    }
    if versions is not None:
        columns["model_version"] = versions
    if actions is not None:
        columns["action"] = actions
    columns.update(features)
    return m.Predictions.from_table(pa.table(columns), feature_columns=list(features))


def labels(pairs, ts=None):
    ids = [event_id for event_id, _ in pairs]
    return m.Labels.from_table(
        pa.table(
            {
                "event_id": ids,
                "label": [label for _, label in pairs],
                "label_ts": ts or ["2024-06-01T00:00:00Z"] * len(ids),
            }
        )
    )


def all_versions(result):
    return next(g for g in result["by_version"] if g["model_version"] == "all")


def closed_loop(p, lab, threshold):
    return sql.closed_loop(p, lab, threshold, threads=1)


def scores(values):
    """Predictions of one day with ``values`` as their scores (numpy, for large samples)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return m.Predictions.from_table(pa.table({
        "event_id": pa.array([f"e{i}" for i in range(n)], pa.string()),
        "score": pa.array(values, pa.float64()),
        "prediction_ts": pa.array(["2024-05-01T12:00:00"] * n, pa.string())}))


def drift(current, baseline, bins=10):
    """The score's drift entry DuckDB reports for ``current`` against ``baseline``."""
    table = pa.table({"score": pa.array(np.asarray(baseline, dtype=np.float64), pa.float64())})
    return sql.open_loop(scores(current), table, bins, threads=1)["by_version"][0]["score"]


def psi(current, baseline, bins=10):
    return drift(current, baseline, bins)["psi"]


def ks_2samp(a, b):
    """(statistic, p-value) of the two-sample KS test, as the report gives them."""
    entry = drift(a, b)
    return entry["ks_statistic"], entry["ks_pvalue"]


# ----------------------------------------------------------------------- AUC


def auc_of(scores, truth):
    p = predictions(scores)
    result = closed_loop(p, labels([(f"e{i}", y) for i, y in enumerate(truth)]), 0.5)
    return all_versions(result)["auc"]


def test_perfect_classifier_has_auc_1():
    assert auc_of([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0


def test_inverted_classifier_has_auc_0():
    assert auc_of([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


def test_all_tied_scores_give_auc_one_half():
    assert auc_of([0.5] * 6, [0, 1, 0, 1, 1, 0]) == 0.5


def test_auc_hand_computed_with_a_tie():
    # Positives 0.8, 0.4; negatives 0.4, 0.3, 0.1. Pairs (pos > neg):
    # 0.8 beats all 3; 0.4 ties 0.4 (1/2) and beats 0.3, 0.1 -> 5.5 / 6.
    assert auc_of([0.8, 0.4, 0.4, 0.3, 0.1], [1, 1, 0, 0, 0]) == pytest.approx(5.5 / 6)


def test_auc_is_none_without_both_classes():
    assert auc_of([0.1, 0.9], [0, 0]) is None
    assert auc_of([0.1, 0.9], [1, 1]) is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]), st.integers(0, 1)),
        min_size=2,
        max_size=40,
    )
)
def test_auc_matches_pairwise_definition(rows):
    scores = [s for s, _ in rows]
    truth = [y for _, y in rows]
    pos = [s for s, y in rows if y == 1]
    neg = [s for s, y in rows if y == 0]
    expected = None
    if pos and neg:
        wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
        expected = wins / (len(pos) * len(neg))
    got = auc_of(scores, truth)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_auc_keeps_version_groups_apart():
    versions = ["v0"] * 4 + ["v1"] * 4 + ["v2"] * 2
    p = predictions([0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9, 0.3, 0.7], versions=versions)
    truth = [0, 0, 1, 1, 1, 1, 0, 0, 1, 1]
    result = closed_loop(p, labels([(f"e{i}", y) for i, y in enumerate(truth)]), 0.5)
    auc = {g["model_version"]: g["auc"] for g in result["by_version"]}
    assert [auc["v0"], auc["v1"], auc["v2"]] == [1.0, 0.0, None]


# ------------------------------------------------------ precision, recall, days


def test_precision_recall_f1_coverage_hand_computed():
    p = predictions([0.9, 0.7, 0.6, 0.2, 0.1, 0.8])
    # e5 has no label yet. Threshold 0.5: predicted positive e0, e1, e2.
    result = closed_loop(p, labels([("e0", 1), ("e1", 0), ("e2", 1), ("e3", 1), ("e4", 0)]), 0.5)
    group = all_versions(result)
    assert (group["tp"], group["fp"], group["fn"], group["tn"]) == (2, 1, 1, 1)
    assert group["precision"] == pytest.approx(2 / 3)
    assert group["recall"] == pytest.approx(2 / 3)
    assert group["f1"] == pytest.approx(2 / 3)
    assert group["label_coverage"] == pytest.approx(5 / 6)
    assert group["predictions"] == 6 and group["labelled"] == 5


def test_decision_threshold_is_inclusive():
    p = predictions([0.5, 0.49])
    group = all_versions(closed_loop(p, labels([("e0", 1), ("e1", 1)]), 0.5))
    assert (group["tp"], group["fn"]) == (1, 1)


def test_day_without_positives_gives_none_not_zero():
    p = predictions([0.9, 0.1, 0.2], days=["2024-05-01", "2024-05-02", "2024-05-02"])
    result = closed_loop(p, labels([("e0", 1), ("e1", 0), ("e2", 0)]), 0.5)
    day2 = next(g for g in result["by_day"] if g["date"] == "2024-05-02")
    assert day2["recall"] is None and day2["auc"] is None and day2["precision"] is None
    assert day2["f1"] is None
    day1 = next(g for g in result["by_day"] if g["date"] == "2024-05-01")
    assert day1["recall"] == 1.0 and day1["precision"] == 1.0


def test_day_without_labels_has_zero_coverage_and_no_accuracy():
    p = predictions([0.9, 0.1], days=["2024-05-01", "2024-05-02"])
    result = closed_loop(p, labels([("e0", 1)]), 0.5)
    day2 = next(g for g in result["by_day"] if g["date"] == "2024-05-02")
    assert day2["label_coverage"] == 0.0
    assert day2["precision"] is None and day2["recall"] is None


def test_empty_predictions_do_not_crash():
    p = predictions([])
    result = closed_loop(p, labels([("x", 1)]), 0.5)
    group = all_versions(result)
    assert group["predictions"] == 0
    assert group["label_coverage"] is None and group["auc"] is None
    assert result["by_day"] == []
    assert result["unmatched_labels"] == 1
    report = sql.compute_metrics(p, None, None, {})
    assert report["closed_loop"] is None and report["predictions"] == 0


def test_labels_without_predictions_are_counted_not_dropped():
    p = predictions([0.9, 0.1])
    result = closed_loop(p, labels([("e0", 1), ("ghost", 1), ("ghost2", 0), ("ghost", 1)]), 0.5)
    assert result["unmatched_labels"] == 2
    assert result["labels"] == 4 and result["duplicate_labels"] == 1
    assert all_versions(result)["labelled"] == 1


def test_duplicate_labels_latest_label_ts_wins():
    p = predictions([0.9])
    ts = ["2024-06-03T00:00:00Z", "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z"]
    result = closed_loop(p, labels([("e0", 0), ("e0", 1), ("e0", 1)], ts), 0.5)
    assert all_versions(result)["fp"] == 1  # the label 0 of 06-03 wins
    assert result["duplicate_labels"] == 2


def test_per_model_version_groups():
    p = predictions([0.9, 0.1, 0.9, 0.1], versions=["v1", "v1", "v2", "v2"])
    result = closed_loop(p, labels([("e0", 1), ("e1", 0), ("e2", 0), ("e3", 1)]), 0.5)
    by = {g["model_version"]: g for g in result["by_version"]}
    assert set(by) == {"all", "v1", "v2"}
    assert by["v1"]["auc"] == 1.0 and by["v2"]["auc"] == 0.0 and by["all"]["auc"] == 0.5
    assert {(g["date"], g["model_version"]) for g in result["by_day"]} == {
        ("2024-05-01", "all"),
        ("2024-05-01", "v1"),
        ("2024-05-01", "v2"),
    }


# ------------------------------------------------------------------ input checks


def test_labels_must_be_zero_or_one():
    with pytest.raises(m.MonitoringInputError, match="0 or 1"):
        labels([("e0", 2)])


def test_missing_event_id_is_reported():
    with pytest.raises(m.MonitoringInputError, match="event_id"):
        m.Predictions.from_table(pa.table({"score": [0.1], "prediction_ts": ["2024-05-01"]}))


def test_timestamps_with_and_without_zone():
    a = predictions([0.1], days=["2024-05-01"])
    table = pa.table(
        {"event_id": ["a"], "score": [0.1], "prediction_ts": ["2024-05-01T23:30:00-02:00"]}
    )
    b = m.Predictions.from_table(table)
    assert m.iso_date(int(a.day[0])) == "2024-05-01"
    assert m.iso_date(int(b.day[0])) == "2024-05-02"  # 01:30 UTC


# ------------------------------------------------------------------------- PSI


def test_psi_hand_computed():
    # Baseline 1..10, 2 bins: edge at the median 5.5, so 50% / 50%.
    # Current [1, 1, 1, 10]: 75% / 25%.
    # PSI = (0.75-0.5) ln(0.75/0.5) + (0.25-0.5) ln(0.25/0.5) = 0.25 ln 1.5 + 0.25 ln 2
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2)
    assert psi(np.array([1, 1, 1, 10.0]), np.arange(1, 11.0), bins=2) == pytest.approx(expected)


def test_psi_empty_bin_uses_epsilon():
    # Current has nothing above the median: its upper bin counts as PSI_EPSILON.
    eps = m.PSI_EPSILON
    expected = (1 - 0.5) * math.log(1 / 0.5) + (eps - 0.5) * math.log(eps / 0.5)
    got = psi(np.array([1.0, 2.0]), np.arange(1, 11.0), bins=2)
    assert got == pytest.approx(expected)
    assert math.isfinite(got)


def test_psi_of_identical_distributions_is_zero():
    values = np.random.default_rng(1).normal(size=5000)
    assert psi(values, values, bins=10) == pytest.approx(0.0, abs=1e-12)


def test_psi_none_when_a_side_is_empty():
    assert psi(np.array([]), np.arange(10.0)) is None
    assert psi(np.arange(10.0), np.array([])) is None


def test_psi_on_a_discrete_feature_merges_equal_edges():
    baseline = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=float)
    current = np.array([0, 1, 1, 1], dtype=float)
    # Edges collapse to {0, 1}: bins (<0), [0,1), [1,inf) -> 0 / 70% / 30% vs 0 / 25% / 75%.
    expected = (0.25 - 0.7) * math.log(0.25 / 0.7) + (0.75 - 0.3) * math.log(0.75 / 0.3)
    assert psi(current, baseline, bins=10) == pytest.approx(expected, rel=1e-3)


# -------------------------------------------------------------------------- KS


def test_ks_statistic_hand_computed():
    # ECDFs: a = {1,2,3,4}, b = {3,4,5,6}; at x=2: F_a = 0.5, F_b = 0 -> D = 0.5.
    statistic, pvalue = ks_2samp(np.array([1, 2, 3, 4.0]), np.array([3, 4, 5, 6.0]))
    assert statistic == 0.5
    # Exact for two samples of 4 (reflection principle): P(D >= 2/4) =
    # 2 (C(8, 4-2) - C(8, 4-4)) / C(8, 4) = 2 (28 - 1) / 70.
    assert pvalue == pytest.approx(54 / 70, rel=1e-15)
    assert ks_2samp(np.array([1, 2.0]), np.array([3, 4.0]))[0] == 1.0
    assert ks_2samp(np.array([]), np.array([1.0])) == (None, None)


def test_ks_exact_unequal_sizes_hand_computed():
    # a = {1, 2}, b = {3, 4, 5}: D = 1, and of the C(5, 2) = 10 orders of the
    # five values only the two that put all of one sample first reach D = 1.
    statistic, pvalue = ks_2samp(np.array([1, 2.0]), np.array([3, 4, 5.0]))
    assert statistic == 1.0
    assert pvalue == pytest.approx(2 / 10, rel=1e-15)


def test_ks_counts_refuse_impossible_input():
    with pytest.raises(ValueError, match="non-empty"):
        kolmogorov.ks_2samp_counts(0, 3, 0)
    with pytest.raises(ValueError, match="impossible"):
        kolmogorov.ks_2samp_counts(2, 4, 3)  # gcd 2 divides every gap


def _scipy_ks(a, b):
    stats = pytest.importorskip("scipy.stats")
    return stats.ks_2samp(a, b)


@pytest.mark.parametrize(
    ("n1", "n2"),
    [(5, 5), (7, 3), (40, 40), (100, 37), (999, 1000), (3000, 2000), (10_000, 4_999),
     (10_001, 60), (20_000, 15_000), (60_000, 40_000)],
)
# SciPy's own exact sum exceeds 1 for two samples of 5 and falls back, with a warning.
@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
def test_ks_pvalue_is_scipys_exact_and_asymptotic(n1, n2):
    """Exact up to 10,000 values a sample, asymptotic above, ties or not, from
    no shift to p-values near 1e-10: SciPy's to 1e-6 relative (the alarm at
    ks_alpha decides as SciPy would)."""
    rng = np.random.default_rng(n1 * 7 + n2)
    for shift in (0.0, 0.03, 0.08, 0.15, 0.3, 0.6):
        for decimals in (None, 1):
            a = rng.normal(size=n1)
            b = rng.normal(shift * (1 + 30 / math.sqrt(min(n1, n2))), 1, size=n2)
            if decimals is not None:
                a, b = np.round(a, decimals), np.round(b, decimals)
            statistic, pvalue = ks_2samp(a, b)
            expected = _scipy_ks(a, b)
            assert statistic == pytest.approx(float(expected.statistic), rel=1e-14)
            if expected.pvalue > 1e-10:
                assert pvalue == pytest.approx(float(expected.pvalue), rel=1e-6), (shift, decimals)
            else:
                assert pvalue <= 1e-9


@pytest.mark.parametrize("n", [1, 2, 3, 10, 139, 140, 141, 1000, 30_000, 100_001, 2_000_000])
def test_kstwo_sf_is_scipys_in_every_regime(n):
    """The one-sample distribution behind the asymptotic two-sample p-value:
    every regime (closed forms, Durbin matrix, Pelz-Good, Smirnov's tail)."""
    distributions = pytest.importorskip("scipy.stats").distributions
    for lam in np.linspace(0.05, 4.6, 14):
        x = float(lam / math.sqrt(n))
        if x >= 1:
            continue
        expected = float(distributions.kstwo.sf(x, n))
        if expected > 1e-10:
            assert kolmogorov.kstwo_sf(n, x) == pytest.approx(expected, rel=1e-6), x


def test_ks_pvalue_near_ks_alpha_decides_as_scipy():
    """Shifts that put SciPy's p-value on both sides of 0.01 (a usual ks_alpha):
    the alarm (p < alpha) is SciPy's in every case."""
    rng = np.random.default_rng(11)
    decided = set()
    for n1, n2 in ((300, 500), (2_000, 2_000), (12_000, 30_000)):
        base = rng.normal(size=n2)
        for shift in np.linspace(0.0, 0.25, 26):
            current = np.round(rng.normal(shift * 300 / math.sqrt(n1), 1, size=n1), 2)
            expected = float(_scipy_ks(current, base).pvalue)
            if not 1e-3 < expected < 1e-1:
                continue
            _, pvalue = ks_2samp(current, base)
            assert pvalue == pytest.approx(expected, rel=1e-6)
            assert (pvalue < 0.01) == (expected < 0.01)
            decided.add(expected < 0.01)
    assert decided == {True, False}


def test_ks_detects_shift_and_accepts_same_distribution():
    rng = np.random.default_rng(7)
    base = rng.normal(size=4000)
    _, same = ks_2samp(rng.normal(size=4000), base)
    _, shifted = ks_2samp(rng.normal(0.3, 1, size=4000), base)
    assert same > 0.01
    assert shifted < 1e-6


# ----------------------------------------------------------------- open loop


def test_open_loop_actions_and_features():
    p = predictions(
        [0.1, 0.2, 0.9, 0.95],
        actions=["approve", "approve", "block", None],
        order_amount=[10.0, 20.0, 30.0, 40.0],
    )
    baseline = pa.table({"score": [0.1, 0.2, 0.3, 0.4], "order_amount": [10.0, 20, 30, 40]})
    result = sql.open_loop(p, baseline, bins=2, feature_columns=["order_amount", "account_tenure"])
    group = result["by_version"][0]
    assert group["actions"] == {"approve": pytest.approx(2 / 3), "block": pytest.approx(1 / 3)}
    assert group["features"]["order_amount"]["psi"] == pytest.approx(0.0)
    # Two of four scores on each side of the baseline median: no PSI, but KS sees
    # the upper half moved from 0.3-0.4 to 0.9-0.95.
    assert group["score"]["psi"] == pytest.approx(0.0)
    assert group["score"]["ks_statistic"] == 0.5
    assert result["features_not_compared"] == ["account_tenure"]


def test_open_loop_without_baseline_still_reports_actions():
    p = predictions([0.1, 0.9], actions=["approve", "block"])
    group = sql.open_loop(p, None)["by_version"][0]
    assert group["score"] is None and group["actions"] == {"approve": 0.5, "block": 0.5}


# -------------------------------------------------------------------- alarms

SPEC = {
    "closed_loop": {
        "min_precision": 0.5,
        "min_recall": 0.4,
        "min_auc": 0.75,
        "min_label_coverage": 0.9,
        "decision_threshold": 0.5,
    },
    "open_loop": {
        "max_psi": 0.2,
        "ks_alpha": 0.01,
        "max_action_share": {"block": 0.05},
        "bins": 10,
    },
}


def test_evaluate_alarms_lists_each_crossed_threshold():
    rng = np.random.default_rng(3)
    n = 400
    scores = rng.uniform(size=n)
    p = predictions(list(scores), actions=["block"] * 40 + ["approve"] * (n - 40))
    # Inverted truth: AUC near 0 -> precision, recall and AUC all low.
    truth = [(f"e{i}", int(s < 0.5)) for i, s in enumerate(scores[:300])]
    baseline = pa.table({"score": rng.uniform(size=2000) * 0.5})
    metrics = sql.compute_metrics(p, labels(truth), baseline, SPEC)
    crossed = {(c["metric"], c["threshold"]) for c in m.evaluate_alarms(metrics, SPEC)}
    assert crossed == {
        ("precision", "min_precision"),
        ("recall", "min_recall"),
        ("auc", "min_auc"),
        ("label_coverage", "min_label_coverage"),
        ("score_psi", "max_psi"),
        ("score_ks_pvalue", "ks_alpha"),
        ("action_share", "max_action_share.block"),
    }


def test_evaluate_alarms_quiet_on_a_healthy_day_and_on_none():
    rng = np.random.default_rng(4)
    scores = rng.uniform(size=2000)
    p = predictions(list(scores), actions=["approve"] * 2000)
    truth = [(f"e{i}", int(s > 0.5)) for i, s in enumerate(scores)]
    baseline = pa.table({"score": rng.uniform(size=4000)})
    metrics = sql.compute_metrics(p, labels(truth), baseline, SPEC)
    assert m.evaluate_alarms(metrics, SPEC) == []
    empty = sql.compute_metrics(predictions([]), labels([]), None, SPEC)
    assert m.evaluate_alarms(empty, SPEC) == []


def test_evaluate_alarms_accepts_the_pydantic_spec():
    from mdlc_constructs.spec import load_spec

    spec = load_spec("models/fraud.yaml").monitoring
    p = predictions([0.9, 0.1])
    metrics = sql.compute_metrics(p, labels([("e0", 0), ("e1", 1)]), None, spec)
    names = {c["metric"] for c in m.evaluate_alarms(metrics, spec)}
    assert {"precision", "recall", "auc"} <= names
