"""Decision rules (ordering, exact boundaries, default, features) and pluggable actions."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from mdlc_core import actions
from mdlc_core.actions import (
    Action,
    ActionError,
    Clients,
    DecisionLog,
    Dispatcher,
    Targets,
    register_action,
    to_attribute,
)
from mdlc_core.decisions import DEFAULT_RULE_ID, Decision, RuleSet

from mdlc_constructs.spec import SpecError, load_spec, parse_spec

SPEC = Path(__file__).resolve().parents[1] / "models" / "fraud.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_spec(SPEC).as_config()


@pytest.fixture(scope="module")
def fraud(config) -> RuleSet:
    return RuleSet.from_config(config)


def test_example_spec_rules_are_exactly_the_issue_s(config):
    integration = config["integration"]
    assert [(r["when"], r["action"]) for r in integration["rules"]] == [
        ("score >= 0.9", "block"),
        ("score >= 0.6", "review"),
    ]
    assert integration["default_action"] == "approve"


@pytest.mark.parametrize(
    ("score", "rule_id", "action"),
    [
        (1.0, "block_high_risk", "block"),
        (0.9, "block_high_risk", "block"),
        (0.8999, "review_medium_risk", "review"),
        (0.6, "review_medium_risk", "review"),
        (0.5999, DEFAULT_RULE_ID, "approve"),
        (0.0, DEFAULT_RULE_ID, "approve"),
        (1, "block_high_risk", "block"),
    ],
)
def test_exact_boundaries(fraud, score, rule_id, action):
    decision = fraud.decide("e-1", score, {}, "v3")
    assert (decision.rule_id, decision.action) == (rule_id, action)


_FRAUD = RuleSet.from_config(load_spec(SPEC).as_config())


@given(st.floats(min_value=-1, max_value=2, allow_nan=False))
def test_matches_the_reference_for_any_score(score):
    expected = "block" if score >= 0.9 else "review" if score >= 0.6 else "approve"
    assert _FRAUD.decide("e", score, {}, "v").action == expected


def test_first_match_wins_even_when_a_later_rule_also_holds():
    rules = RuleSet(
        [
            {"id": "broad", "when": "score >= 0.5", "action": "review"},
            {"id": "narrow", "when": "score >= 0.9", "action": "block"},
        ],
        "approve",
    )
    assert rules.decide("e", 0.95, {}, "v").rule_id == "broad"


def test_conditions_on_features():
    rules = RuleSet(
        [
            {"id": "big_new", "when": "score >= 0.5 and order_total_30d > 1000", "action": "block"},
            {"id": "risky", "when": "score >= 0.8 or account_tenure < 7", "action": "review"},
        ],
        "approve",
        feature_names=["order_total_30d", "account_tenure"],
    )
    assert rules.decide("e", 0.6, {"order_total_30d": 1500}, "v").rule_id == "big_new"
    assert rules.decide("e", 0.6, {"order_total_30d": 1000, "account_tenure": 3}, "v").action == (
        "review"
    )
    assert rules.decide("e", 0.6, {"order_total_30d": 900, "account_tenure": 30}, "v").action == (
        "approve"
    )


def test_an_unknown_feature_does_not_match():
    rules = RuleSet([{"id": "big", "when": "order_total_30d > 1000", "action": "block"}], "approve")
    assert rules.decide("e", 0.99, {}, "v").rule_id == DEFAULT_RULE_ID
    assert rules.decide("e", 0.99, {"order_total_30d": None}, "v").rule_id == DEFAULT_RULE_ID
    rules = RuleSet([{"id": "x", "when": "not (order_total_30d > 1000)", "action": "b"}], "a")
    assert rules.decide("e", 0.99, {}, "v").action == "a"


def test_unknown_names_and_bad_scores_are_refused():
    with pytest.raises(ValueError, match="nope"):
        RuleSet([{"id": "r", "when": "nope > 1", "action": "a"}], "b", feature_names=["x"])
    rules = RuleSet([{"id": "r", "when": "score > 1", "action": "a"}], "b")
    for score in (float("nan"), float("inf"), True, "0.9", None):
        with pytest.raises(ValueError, match="finite number"):
            rules.decide("e", score, {}, "v")  # type: ignore[arg-type]


def test_decision_record_round_trips(fraud):
    decision = fraud.decide(
        "o-1", 0.91, {"order_amount": 950.0, "order_total_30d": None}, "pkg/3",
        entity_id="c1", variant="blue",
    )
    record = decision.to_record()
    assert record == {
        "event_id": "o-1", "entity_id": "c1", "model_version": "pkg/3", "score": 0.91,
        "rule_id": "block_high_risk", "action": "block",
        "features": {"order_amount": 950.0, "order_total_30d": None},
        "decided_at": decision.decided_at, "variant": "blue",
    }
    assert decision.decided_at.endswith("Z")
    assert Decision.from_record(record) == decision
    with pytest.raises(AttributeError):
        decision.action = "approve"  # type: ignore[misc]


# --- actions ------------------------------------------------------------------------


class Recorder:
    """A stand-in for any boto3 client: records every call, answers minimally."""

    def __init__(self, **answers: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return self.answers.get(name, {})

        return call


def decision(action: str = "block", event_id: str = "o-1") -> Decision:
    return Decision(event_id, "c1", "pkg/3", 0.95, "block_high_risk", action, {"x": 1.0})


def test_dispatcher_routes_each_action_to_its_kind(config):
    sns, sqs = Recorder(publish={"MessageId": "m1"}), Recorder(send_message={"MessageId": "m2"})
    dispatcher = Dispatcher.from_config(
        config, Clients(sns=sns, sqs=sqs), Targets(topic_arn="arn:topic", queue_url="https://q")
    )
    assert dispatcher.perform(decision("block")) == {
        "action": "block", "kind": "sns", "message_id": "m1"
    }
    assert dispatcher.perform(decision("review"))["kind"] == "sqs"
    assert dispatcher.perform(decision("approve")) == {"action": "approve", "kind": "log"}
    name, published = sns.calls[0]
    assert name == "publish" and published["TopicArn"] == "arn:topic"
    assert published["MessageAttributes"]["action"]["StringValue"] == "block"
    assert '"model":"fraud"' in published["Message"]
    assert [c[0] for c in sqs.calls] == ["send_message"]


def test_missing_target_and_unknown_action_raise(config):
    dispatcher = Dispatcher.from_config(config, Clients(sns=Recorder()), Targets())
    with pytest.raises(ActionError, match="ACTION_TOPIC_ARN"):
        dispatcher.perform(decision("block"))
    with pytest.raises(ActionError, match="unknown action"):
        dispatcher.perform(decision("escalate"))


def test_eventbridge_failed_entries_raise():
    events = Recorder(put_events={"FailedEntryCount": 1,
                                  "Entries": [{"ErrorCode": "Throttled", "ErrorMessage": "x"}]})
    action = actions.EventBridgeAction(
        "notify", clients=Clients(events=events), targets=Targets(event_bus_name="bus"),
        model="fraud",
    )
    with pytest.raises(ActionError, match="Throttled"):
        action.perform(decision())
    entry = events.calls[0][1]["Entries"][0]
    assert entry["EventBusName"] == "bus" and entry["Source"] == "mdlc.fraud"


def test_a_team_adds_its_own_action_by_subclassing(config, monkeypatch):
    # A private copy of the registry, so the team's kind is gone after the test.
    monkeypatch.setattr(actions, "ACTION_KINDS", dict(actions.ACTION_KINDS))
    sent: list[Decision] = []

    @register_action("webhook")
    class WebhookAction(Action):
        def perform(self, decision: Decision) -> dict[str, Any]:
            sent.append(decision)
            return {"url": self.options["url"]}

    module = types.ModuleType("team_actions")
    module.WebhookAction = WebhookAction  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "team_actions", module)
    assert actions.ACTION_KINDS["webhook"] is WebhookAction
    custom = {
        **config,
        "integration": {
            **config["integration"],
            "actions": {
                **config["integration"]["actions"],
                "review": {"kind": "custom", "handler": "team_actions:WebhookAction",
                           "options": {"url": "https://hooks.example/review"}},
            },
        },
    }
    dispatcher = Dispatcher.from_config(custom, Clients(), Targets())
    receipt = dispatcher.perform(decision("review"))
    assert receipt == {"action": "review", "kind": "webhook", "url": "https://hooks.example/review"}
    assert [d.action for d in sent] == ["review"]


def test_custom_action_spec_needs_a_handler():
    raw = yaml.safe_load(SPEC.read_text())
    raw["integration"]["actions"]["review"] = {"kind": "custom"}
    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    assert "custom action needs a handler" in "\n".join(error.value.problems)
    raw["integration"]["actions"]["review"] = {"kind": "custom", "handler": "team:Hook"}
    assert parse_spec(raw).integration.actions["review"].handler == "team:Hook"


def test_decision_log_writes_dynamodb_and_s3():
    ddb = Recorder(batch_write_item={"UnprocessedItems": {}})
    s3 = Recorder()
    log = DecisionLog(Clients(dynamodb=ddb, s3=s3), table_name="decisions", bucket="b")
    many = [decision(event_id=f"o-{i}") for i in range(30)] + [decision(event_id="o-1")]
    assert log.write_many(many) == []
    writes = [c[1]["RequestItems"]["decisions"] for c in ddb.calls]
    assert [len(w) for w in writes] == [25, 5], "chunks of 25, the resend written once"
    item = writes[0][0]["PutRequest"]["Item"]
    assert item["event_id"] == {"S": "o-0"} and item["score"] == {"N": "0.95"}
    assert item["rule_id"] == {"S": "block_high_risk"} and item["model_version"] == {"S": "pkg/3"}
    assert len(s3.calls) == 30
    assert s3.calls[0][1]["Key"].startswith("decisions/dt=")


def test_decision_log_reports_what_it_could_not_write():
    stuck = {"decisions": [{"PutRequest": {"Item": {"event_id": {"S": "o-2"}}}}]}
    ddb = Recorder(batch_write_item={"UnprocessedItems": stuck})
    log = DecisionLog(Clients(dynamodb=ddb), table_name="decisions")
    assert log.write_many([decision(event_id="o-1"), decision(event_id="o-2")]) == ["o-2"]
    with pytest.raises(ValueError, match="DECISIONS_TABLE"):
        DecisionLog(Clients())


def test_to_attribute():
    assert to_attribute({"a": 1.5, "b": None, "c": float("nan"), "d": True, "e": [1]}) == {
        "M": {"a": {"N": "1.5"}, "b": {"NULL": True}, "c": {"NULL": True},
              "d": {"BOOL": True}, "e": {"L": [{"N": "1"}]}}
    }


# -- the action ledger (exactly once), against moto's DynamoDB ---------------------------


class _Throttling:
    """A DynamoDB client whose chosen operations fail as a throttled table answers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.failing: dict[str, int | None] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            left = self.failing.get(name, 0)
            if left is None or left > 0:
                if left is not None:
                    self.failing[name] = left - 1
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                             "Message": "injected"}}, name)
            return method(**kwargs)

        return call


@pytest.fixture
def ledger_table(monkeypatch):
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName="decisions", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "event_id",
                                                   "AttributeType": "S"}])
        yield _Throttling(client)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _ledger(client, clock=None):
    return actions.ActionLedger(client, "decisions", clock=clock or _Clock(),
                                sleep=lambda _: None)


def _decision(event_id: str = "o-1") -> dict[str, Any]:
    return Decision(event_id, "c1", "v3", 0.95, "block_high_risk", "block",
                    {"order_amount": 950.0}).to_record()


def test_the_ledger_acts_once_and_logs_the_decision_it_acted_on(ledger_table):
    performed: list[str] = []
    ledger = _ledger(ledger_table)
    first = ledger.perform_once("o-1", _decision(), lambda: performed.append("x") or
                                {"message_id": "m1"}, lease_seconds=60)
    again = _ledger(ledger_table).perform_once("o-1", _decision() | {"score": 0.1},
                                               lambda: performed.append("y"),
                                               lease_seconds=60)
    assert (first.status, again.status, performed) == ("acted", "already", ["x"])
    assert again.record["score"] == 0.95 and again.receipt == {"message_id": "m1"}
    item = ledger_table.client.get_item(TableName="decisions",
                                        Key={"event_id": {"S": "o-1"}})["Item"]
    assert item["action_status"] == {"S": "done"} and "action_lease_expires_at" not in item


def test_a_failed_action_releases_its_claim_so_the_retry_acts(ledger_table):
    ledger = _ledger(ledger_table)

    def refuse() -> dict[str, Any]:
        raise ActionError("target down")

    failed = ledger.perform_once("o-2", _decision("o-2"), refuse, lease_seconds=60)
    assert failed.status == "failed" and "target down" in failed.reason
    assert ledger.perform_once("o-2", _decision("o-2"), dict, lease_seconds=60).status == "acted"


def test_a_completion_that_cannot_be_written_is_never_followed_by_a_second_action(
        ledger_table):
    """Issue 14.2, each way the retry can land: in the same environment it writes
    the completion; in another within the lease it waits (in_progress); past the
    lease it reports unconfirmed and never acts."""
    clock = _Clock()
    performed: list[str] = []
    ledger_table.failing["update_item"] = None
    here = _ledger(ledger_table, clock)
    outcome = here.perform_once("o-3", _decision("o-3"), lambda: performed.append("1") or {},
                                lease_seconds=60)
    assert outcome.status == "failed" and "performed" in outcome.reason
    ledger_table.failing.clear()
    elsewhere = _ledger(ledger_table, clock)
    assert elsewhere.perform_once("o-3", _decision("o-3"), lambda: performed.append("2"),
                                  lease_seconds=60).status == "in_progress"
    clock.now += 61
    late = elsewhere.perform_once("o-3", _decision("o-3"), lambda: performed.append("3"),
                                  lease_seconds=60)
    assert late.status == "unconfirmed" and "not performed again" in late.reason
    # The environment that acted still knows: it records the action as done.
    assert here.perform_once("o-3", _decision("o-3"), lambda: performed.append("4"),
                             lease_seconds=60).status == "acted"
    assert performed == ["1"]


def test_a_throttled_claim_acts_on_nothing(ledger_table):
    ledger_table.failing["put_item"] = 1
    performed: list[str] = []
    ledger = _ledger(ledger_table)
    assert ledger.perform_once("o-4", _decision("o-4"), lambda: performed.append("x"),
                               lease_seconds=60).status == "failed"
    assert performed == []
    assert ledger.perform_once("o-4", _decision("o-4"), lambda: performed.append("x") or {},
                               lease_seconds=60).status == "acted"
    assert performed == ["x"]


def test_the_team_case_action_puts_its_event_and_raises_when_the_bus_refuses_it(monkeypatch):
    """The example team's action goes through ``Action.put_event``: its event on
    the model's bus (moto), and an entry refused inside a 200 response (as
    EventBridge answers under throttling; botocore's Stubber checks the answer
    against the service model) an ActionError naming the decision, so the
    integration retries it instead of losing the case."""
    import boto3
    from botocore.stub import ANY, Stubber
    from moto import mock_aws

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples" / "team_fraud"))
    monkeypatch.setattr(actions, "ACTION_KINDS", dict(actions.ACTION_KINDS))
    monkeypatch.delitem(sys.modules, "team_actions", raising=False)
    from team_actions import DETAIL_TYPE, CaseManagementAction

    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        events.create_event_bus(Name="cases")
        action = CaseManagementAction(
            "review", clients=Clients(events=events), targets=Targets(event_bus_name="cases"),
            model="fraud", options={"queue": "high-touch"},
        )
        receipt = action.perform(decision("review", event_id="o-7"))
        assert receipt["case_id"] == "fraud:o-7" and receipt["event_id"]

    refusing = boto3.client("events", region_name="us-east-1")
    stub = Stubber(refusing)
    stub.add_response(
        "put_events",
        {"FailedEntryCount": 1,
         "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}]},
        {"Entries": [{"Source": "mdlc.fraud.cases", "DetailType": DETAIL_TYPE,
                      "Detail": ANY, "EventBusName": "cases"}]},
    )
    action = CaseManagementAction(
        "review", clients=Clients(events=refusing), targets=Targets(event_bus_name="cases"),
        model="fraud",
    )
    with stub, pytest.raises(ActionError, match="EventBridge refused o-7: ThrottlingException"):
        action.perform(decision("review", event_id="o-7"))
