"""Whole workflows executed on the local cloud: the hand-offs between steps, run for real.

Every test drives the synthesized stack with `mdlc_constructs.local.simulation`
(moto, the real handlers, the SageMaker stand-ins) and asserts what the run
produced: rows, metrics, messages and objects, not only SUCCEEDED. Nothing a
step hands the next is written by hand here.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date
from pathlib import Path

import pytest
import yaml

from mdlc_constructs.sampling import parse_anomaly, sample, write_csv
from mdlc_constructs.spec import load_spec

START = date(2026, 11, 1)  # a Sunday: the weekly re-training runs on days 7, 14, 21

pytestmark = pytest.mark.slow


def _orders(spec, path: Path, *, days: int, rows: int = 250, anomaly: str | None = None,
            seed: int = 7) -> Path:
    anomalies = [parse_anomaly(anomaly, start=START, days=days)] if anomaly else []
    write_csv(spec, sample(spec, days=days, start=START, rows_per_day=rows,
                           anomalies=anomalies, seed=seed), path)
    return path


def _run(spec, orders: Path, assembly: Path, **kwargs):
    from mdlc_constructs.local.simulation import simulate

    return simulate(spec, orders, assembly=assembly, stack=f"Mdlc-{spec.name}", **kwargs)


def _by_workflow(report, workflow):
    return [e for e in report["executions"] if e["workflow"] == workflow]


@pytest.fixture(scope="module")
def fraud_assembly(synthesized) -> Path:
    return Path(synthesized[1].directory)


def test_the_tenure_anomaly_blocks_its_day_at_the_quality_gate(fraud_spec, fraud_assembly,
                                                                  tmp_path, monkeypatch):
    import tempfile

    orders = _orders(fraud_spec, tmp_path / "orders.csv", days=4,
                     anomaly="account_tenure@2026-11-03")
    temp = tmp_path / "temp"  # where the run makes its scratch folder
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    run = _run(fraud_spec, orders, fraud_assembly, out=tmp_path / "out")
    assert not list(temp.glob("mdlc-simulate-*"))  # removed with the run; the report is in out
    report = run.report
    prepared = {e["date"]: e for e in _by_workflow(report, "data_preparation")}
    assert prepared["2026-11-01"]["status"] == "SUCCEEDED"
    assert prepared["2026-11-02"]["status"] == "SUCCEEDED"
    blocked = prepared["2026-11-03"]
    assert blocked["status"] == "FAILED" and blocked["error"] == "DataPreparationFailed"
    # The day's batch inference stops at the same gate: nothing is scored on bad data.
    batch = {e["date"]: e for e in _by_workflow(report, "batch_inference")}
    assert batch["2026-11-03"]["status"] == "FAILED"
    # (real-time decisions go on: the stream is not gated by the daily check).
    scored = tmp_path / "out" / "s3"
    assert not list(scored.glob("*/predictions/fraud/dt=2026-11-03/scored/part-*"))
    assert list(scored.glob("*/predictions/fraud/dt=2026-11-02/scored/part-*"))
    failures = [json.loads(n["message"]) for n in report["notifications"]
                if n["subject"] == "MDLC fraud: data preparation failed"]
    assert failures, report["notifications"]
    assert failures[0]["error"] == "DataQualityViolations"
    assert "tenure_grows_daily" in failures[0]["cause"]
    reports = list((tmp_path / "out" / "s3").glob(
        "*/quality-reports/fraud/dt=2026-11-03/report.json"))
    rule = next(r for r in json.loads(reports[0].read_text())["rules"]
                if r["id"] == "tenure_grows_daily")
    assert rule["status"] == "fail" and rule["violations"] >= 1


def test_random_labels_are_rejected_by_the_evaluation_gate(fraud_spec, fraud_assembly,
                                                            tmp_path):
    orders = _orders(fraud_spec, tmp_path / "learnable.csv", days=1, rows=2000)
    rows = list(csv.DictReader(orders.open()))
    shuffled = [r["fraud_status"] for r in rows]
    random.Random(3).shuffle(shuffled)
    random_labels = tmp_path / "random.csv"
    with random_labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "fraud_status": label} for r, label in zip(rows, shuffled,
                                                                            strict=True))
    report = _run(fraud_spec, random_labels, fraud_assembly).report
    training = _by_workflow(report, "training")
    assert [t["status"] for t in training] == ["FAILED"]
    assert training[0]["error"] == "ModelBelowThreshold"
    assert report["model_versions"] == []
    below = [json.loads(n["message"]) for n in report["notifications"]
             if "below threshold" in (n["subject"] or "")]
    assert below and abs(below[0]["value"] - 0.5) < 0.1, below


#: The commit the lifecycle's stack is synthesized from (``-c mdlc:codeVersion``).
DEPLOYED_COMMIT = "0f1e2d3c4b5a"


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """21 days of the fraud model (7-day windows) with labels two days late, a
    drift from day 16, and a green fleet that fails for version 4: one run, many
    assertions.

    Drift is measured against the training data of the version in service.
    Versions 1 and 2 were trained on the first two days, when the 7-day
    windows held one or two days: traffic drifts from them as the windows fill,
    and RetrainNeeded stays in ALARM until version 3 (trained on 11-07, full
    windows) serves. Its fleet must not be the failing one, or version 2 would
    keep serving and the composite would still be in ALARM when the drift of
    day 16 comes (an alarm starts re-training only on its way into ALARM).
    """
    from mdlc_constructs.local.simulation import synthesize

    root = tmp_path_factory.mktemp("lifecycle")
    document = yaml.safe_load((Path(__file__).resolve().parents[1] / "models" / "fraud.yaml")
                              .read_text())
    document["monitoring"]["closed_loop"]["label_delay_days"] = 2
    # 7-day windows: they fill within the first week, before the drift. Served
    # features are the training rows (first day and event included), so 30-day
    # windows would keep filling through the 21 days: their PSI against the
    # earlier training rows would stay above max_psi, the RetrainNeeded
    # composite would stay in ALARM from day 3, and the drift could not fire it.
    document["features"] = {
        "aggregates": [
            {"name": "order_total_7d", "function": "sum", "column": "order_amount",
             "window_days": 7},
            {"name": "order_count_7d", "function": "count", "window_days": 7},
        ],
        "expressions": [{"name": "amount_to_7d_mean",
                         "expression": "order_amount / (order_total_7d / order_count_7d)"}],
    }
    (root / "fraud.yaml").write_text(yaml.safe_dump(document))
    spec = load_spec(root / "fraud.yaml")
    orders = _orders(spec, root / "orders.csv", days=21)
    rows = list(csv.DictReader(orders.open()))
    drift_from = "2026-11-16"
    for row in rows:
        if row["order_ts"][:10] >= drift_from:
            row["order_amount"] = f"{float(row['order_amount']) * 6:.2f}"
    with orders.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    stack = synthesize(spec, root / "cdk.out", context={"mdlc:codeVersion": DEPLOYED_COMMIT})
    retrain_requests: list[dict] = []

    def on_day(simulation, day):
        # The day after an alarm started a re-training run, ask for another:
        # the cooldown must refuse it.
        alarm_runs = [e for e in simulation.cloud.executions.values()
                      if e.started_by == "alarm"]
        if alarm_runs and not retrain_requests:
            retrain_requests.append({"day": day.isoformat(),
                                     "executions": len(simulation.cloud.executions)})
            simulation.cloud.client("events").put_events(Entries=[{
                "Source": "mdlc.test", "DetailType": "MDLC Retrain Requested",
                "Detail": json.dumps({"model": "fraud", "reason": "operator request"})}])
            simulation.cloud.settle()
            retrain_requests[0]["after"] = len(simulation.cloud.executions)

    run = _run(spec, orders, root / "cdk.out", out=root / "out", on_day=on_day,
               configure=lambda cloud: cloud.sagemaker.fail_deployments_of(4))
    assert stack == "Mdlc-fraud"
    return run, root / "out", retrain_requests


@pytest.mark.slow  # the 21-day lifecycle fixture
def test_every_scheduled_run_of_the_lifecycle_succeeds(lifecycle):
    run, _, _ = lifecycle
    failed = [e for e in run.report["executions"]
              if e["status"] != "SUCCEEDED" and e["workflow"] != "deployment"]
    assert failed == []
    prepared = [e["date"] for e in _by_workflow(run.report, "data_preparation")]
    assert prepared == [f"2026-11-{d:02d}" for d in range(1, 22)]
    assert len(_by_workflow(run.report, "monitoring")) == 21


def test_every_call_of_the_lifecycle_is_allowed_to_its_role(lifecycle):
    run, _, _ = lifecycle
    assert run.report["denied_calls"] == []
    callers = run.cloud.authorizer.callers
    roles = {arn.rsplit("/", 1)[-1].split("-")[2] for arn in callers if ":role/" in arn}
    # Handlers, state machines, job roles and the services' own principals were checked.
    assert {"DataSourcingFunctionServiceRole47863BBD", "IntegrationConsumerServiceRole89BCB7E8",
            "TrainingStateMachineRoleC2A5852B", "TrainingTrainingRole444F28B6",
            "RealtimeExecutionRole11F1A59A", "BatchInferenceModelRole18321C27"} <= roles
    assert callers["events.amazonaws.com"] > 0
    assert sum(callers.values()) > 50_000


def test_a_revoked_grant_fails_exactly_its_call_and_is_reported(fraud_spec, fraud_assembly,
                                                                tmp_path):
    orders = _orders(fraud_spec, tmp_path / "orders.csv", days=2, rows=60)
    run = _run(fraud_spec, orders, fraud_assembly, configure=lambda cloud: (
        cloud.authorizer.revoke("IntegrationConsumerServiceRole", "sagemaker:InvokeEndpoint")))
    denied = run.report["denied_calls"]
    assert denied, "the consumer scores through the endpoint: it must be refused"
    assert {(d["principal"].rsplit("/", 1)[-1].split("-")[2], d["action"], d["operation"])
            for d in denied} == {("IntegrationConsumerServiceRole89BCB7E8",
                                  "sagemaker:InvokeEndpoint", "sagemaker-runtime:InvokeEndpoint")}
    assert denied[0]["resource"].endswith(":endpoint/mdlc-fraud")
    assert "no statement of the identity policies allows it" in denied[0]["reason"]
    # Without scores there are no stream decisions; every other workflow ran as before.
    assert run.report["decisions"]["stream"]["total"] == 0
    assert run.report["dead_letters"] > 0
    assert [e for e in run.report["executions"] if e["status"] != "SUCCEEDED"] == []


def test_versions_come_from_real_fits_and_name_their_data(lifecycle):
    run, out, _ = lifecycle
    versions = run.report["model_versions"]
    assert [v["version"] for v in versions][:4] == [1, 2, 3, 4]
    for version in versions:
        assert version["approval"] == "Approved"
        assert 0.8 <= version["metrics"]["validation:auc"] <= 1.0
        assert version["dataset_date"] and version["training_job"]
        # Scheduled, alarm-started and requested runs alike name the deployed commit.
        assert version["code_version"] == DEPLOYED_COMMIT, version
    # The registered artifact is a real XGBoost model.
    import tarfile

    import xgboost

    artifact = next((out / "s3").glob(
        f"*/training-output/fraud/{versions[0]['training_job']}/output/model.tar.gz"))
    with tarfile.open(artifact) as archive:
        archive.extract("xgboost-model", artifact.parent, filter="data")
    booster = xgboost.Booster(model_file=str(artifact.parent / "xgboost-model"))
    assert booster.num_boosted_rounds() > 0


def test_blue_green_deploys_and_rolls_back_a_failing_green_fleet(lifecycle):
    run, _, _ = lifecycle
    deployments = run.report["endpoint"]["deployments"]
    outcomes = {d["version"]: d["outcome"] for d in deployments}
    assert outcomes[1] == outcomes[2] == outcomes[3] == "deployed"
    assert outcomes[4] == "rolled_back"
    assert outcomes[5] == "deployed"
    rolled_back = [e for e in _by_workflow(run.report, "deployment") if e["status"] == "FAILED"]
    assert len(rolled_back) == 1 and rolled_back[0]["error"] == "DeploymentFailed", [
        (e["error"], (e["cause"] or "")[:400]) for e in rolled_back]
    notices = [json.loads(n["message"]) for n in run.report["notifications"]
               if "deployment to mdlc-fraud failed" in (n["subject"] or "")]
    assert notices and notices[0]["error"] == "DeploymentRolledBack"
    assert "health check" in notices[0]["cause"]


def test_stream_decisions_come_from_the_served_model_and_act_once(lifecycle):
    run, out, _ = lifecycle
    stream = run.report["decisions"]["stream"]
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert stream["total"] == len(decisions) == 20 * 250  # every event from day 2 on
    assert len({d["event_id"] for d in decisions}) == len(decisions)
    assert set(stream["by_action"]) <= {"approve", "review", "block"}
    assert stream["by_action"].get("block", 0) > 0
    for decision in decisions[:50]:
        assert 0.0 <= decision["score"] <= 1.0
        assert decision["model_version"]
        assert set(decision["features"]) >= {"order_total_7d", "order_count_7d"}
    # Each block acted once: one message on the action topic per blocked event
    # (stream and batch), none doubled, none missing.
    action_topics = {f.environment["ACTION_TOPIC_ARN"] for f in run.cloud.lambdas.functions.values()
                     if "ACTION_TOPIC_ARN" in f.environment}
    published = [json.loads(n["message"]) for n in run.cloud.notifications
                 if n["topic"] in action_topics]
    blocked = {d["event_id"] for d in decisions if d["action"] == "block"}
    blocked |= {d["event_id"] for d in run.batch_decisions if d["action"] == "block"}
    assert [m["action"] for m in published] == ["block"] * len(published)
    assert sorted(m["event_id"] for m in published) == sorted(blocked)


def test_every_stream_decision_scored_its_events_training_row(lifecycle):
    """The features each stream decision recorded are the row the feature job
    wrote for its event (features.parquet): the same window, the event included."""
    run, _, _ = lifecycle
    parity = run.report["feature_parity"]
    assert parity == {"checked": run.report["decisions"]["stream"]["total"],
                      "mismatches": 0, "missing_rows": 0, "examples": []}


def test_batch_decisions_scored_each_entitys_row_as_of_their_day(lifecycle):
    """Batch inference's input rows (the features each batch decision recorded)
    are the batch engine's rows as of the day (the compiled SQL on DuckDB),
    computed here from the orders themselves, not from the snapshots."""
    from mdlc_core.features import FeatureSet
    from mdlc_core.sql import features as sql_features

    run, out, _ = lifecycle
    features = FeatureSet.from_config(run.spec.as_config())
    orders = list(csv.DictReader((out.parent / "orders.csv").open()))
    by_day: dict[str, dict[str, dict]] = {}
    for decision in run.batch_decisions:
        day, _, entity = decision["event_id"].partition("#")
        by_day.setdefault(day, {})[entity] = decision["features"]
    assert len(by_day) == 21
    columns = run.spec.feature_columns
    for day, decided in by_day.items():
        expected = {row["customer_id"]: row for row in sql_features.as_of(
            [o for o in orders if o["order_ts"][:10] <= day], features, day,
            inputs=features.inputs)}
        assert set(decided) <= set(expected), day
        for entity, scored in decided.items():
            want = expected[entity]
            assert all((scored[c] is None and want[c] is None)
                       or abs(scored[c] - want[c]) <= 1e-9 * max(1.0, abs(want[c]))
                       for c in columns), (day, entity, scored, want)


def test_batch_decisions_are_written_per_day(lifecycle):
    run, out, _ = lifecycle
    batch = run.report["decisions"]["batch"]
    assert batch["total"] > 0
    days = {p.parent.parent.name for p in (out / "s3").glob(
        "*/predictions/fraud/dt=*/decisions/*.jsonl")}
    assert len(days) == 21


def test_closed_loop_metrics_come_from_late_labels(lifecycle):
    _, out, _ = lifecycle
    reports = {p.parent.name: json.loads(p.read_text()) for p in
               (out / "s3").glob("*/monitoring/fraud/dt=*/report.json")}
    # Labels arrive two days late: the report of day D measures day D-2.
    late = reports["dt=2026-11-20"]
    assert late["closed_loop_date"] == "2026-11-18"
    days = {d["date"]: d for d in late["closed_loop"]["by_day"]}
    day = days["2026-11-18"]
    assert day["labelled"] > 0 and 0.5 < day["auc"] <= 1.0
    assert late["closed_loop"]["matched_predictions"] >= day["labelled"]
    # The first days had no labels yet: nothing measured, nothing invented.
    assert reports["dt=2026-11-01"]["closed_loop"]["by_day"] == []


def test_alarms_start_retraining_within_the_cooldown(lifecycle):
    run, _, requests = lifecycle
    trainings = _by_workflow(run.report, "training")
    by_alarm = [e for e in trainings if e["started_by"] == "alarm"]
    assert by_alarm, [(e["date"], e["started_by"]) for e in trainings]
    # The drift of order_amount from 2026-11-16 raised its PSI alarm...
    drift = [a for a in run.report["alarms"]
             if "FeaturePSIorderamount" in a["alarm"] and a["to"] == "ALARM"]
    assert drift and drift[0]["time"] >= "2026-11-17"
    # ...which re-trained the model after it.
    assert any(e["started_at"] >= drift[0]["time"] for e in by_alarm), (
        drift[0]["time"], [e["started_at"] for e in by_alarm],
        [(a["alarm"].rsplit("-", 1)[-1], a["to"], a["time"]) for a in run.report["alarms"]])
    # Never two alarm-started runs within the 24-hour cooldown.
    from datetime import datetime
    from itertools import pairwise

    starts = sorted(datetime.fromisoformat(e["started_at"]) for e in by_alarm)
    assert all((b - a).total_seconds() >= 24 * 3600 for a, b in pairwise(starts))
    # A request right after an alarm's run is refused by the cooldown.
    assert requests and requests[0]["after"] == requests[0]["executions"]


def test_a_spec_unlike_the_example_runs_its_lifecycle(tmp_path):
    """A regression model on Linear Learner, int event ids, bool and text columns."""
    from mdlc_constructs.local.simulation import synthesize
    from tests.test_sample import DEMAND

    document = yaml.safe_load(DEMAND)
    for rule in document["quality"]["rules"]:
        if rule["kind"] == "freshness":
            rule["max_age_hours"] = 36  # checked the morning after, as scheduled
    (tmp_path / "demand.yaml").write_text(yaml.safe_dump(document))
    spec = load_spec(tmp_path / "demand.yaml")
    synthesize(spec, tmp_path / "cdk.out")
    orders = _orders(spec, tmp_path / "sales.csv", days=3, rows=300)
    report = _run(spec, orders, tmp_path / "cdk.out").report
    assert [e for e in report["executions"] if e["status"] != "SUCCEEDED"] == []
    (version,) = report["model_versions"]
    assert version["approval"] == "Approved"
    assert 0 <= version["metrics"]["validation:mse"] < 100  # the spec's gate
    assert report["endpoint"]["serving_version"] == 1
    assert len(_by_workflow(report, "batch_inference")) == 3
