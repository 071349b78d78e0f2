"""The state-machine path's four steps, chained as the Express workflow chains them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.lambda_loader import load_handler
from tests.test_stream_consumer import (  # noqa: F401 - aws_env is a fixture
    Context,
    StubRuntime,
    aws_env,
    logged,
    messages,
    order,
)


@pytest.fixture
def steps(aws_env):  # noqa: F811
    module = load_handler("integration_step")
    runtime = StubRuntime()
    module.CLIENTS._clients["sagemaker-runtime"] = runtime
    return {**aws_env, "module": module, "runtime": runtime}


def run_workflow(module, event: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"event": event}
    for step in ("collect_features", "run_inference", "execute_rules", "perform_action"):
        state = module.handler({**state, "step": step}, Context())
        # Step Functions passes JSON between states.
        state = json.loads(json.dumps(state))
    return state


def test_each_step_adds_its_keys(steps):
    module = steps["module"]
    state = module.handler({"step": "collect_features", "event": order("o-1", 650.0)}, Context())
    assert state["event_id"] == "o-1" and state["entity_id"] == "c1"
    assert list(state["features"]) == [
        "order_amount", "account_tenure", "order_total_30d", "order_count_30d",
        "amount_to_30d_mean",
    ]
    # As of the event itself (its training row): c1's 4 stored orders and the event.
    assert state["features"]["order_total_30d"] == 1650.0
    assert state["features"]["amount_to_30d_mean"] == pytest.approx(650 / (1650 / 5))
    assert "step" not in state

    state = module.handler({**state, "step": "run_inference"}, Context())
    assert state["score"] == pytest.approx(0.65)
    assert state["model_version"].endswith("model-package/fraud/3")
    assert steps["runtime"].calls == [[f"650.0,400.0,1650.0,5.0,{650 / (1650 / 5)!r}"]]

    state = module.handler({**state, "step": "execute_rules"}, Context())
    assert state["decision"]["rule_id"] == "review_medium_risk"
    assert state["decision"]["action"] == "review"
    assert logged(steps["ddb"], "o-1") is None, "nothing is written before perform_action"

    state = module.handler({**state, "step": "perform_action"}, Context())
    assert state["receipt"]["kind"] == "sqs"
    assert logged(steps["ddb"], "o-1")["rule_id"] == {"S": "review_medium_risk"}
    assert [m["event_id"] for m in messages(steps["sqs"], steps["review"])] == ["o-1"]


def test_workflow_decides_like_the_rules(steps):
    for event_id, amount, action in (("a", 900.0, "block"), ("b", 899.9, "review"),
                                     ("c", 600.0, "review"), ("d", 599.9, "approve")):
        state = run_workflow(steps["module"], json.dumps(order(event_id, amount)))
        assert state["decision"]["action"] == action, event_id
    assert [m["event_id"] for m in messages(steps["sqs"], steps["blocked"])] == ["a"]


def test_a_redelivered_event_acts_once(steps):
    first = run_workflow(steps["module"], order("o-1", 950.0))
    second = run_workflow(steps["module"], order("o-1", 950.0))

    assert second["decision"] == first["decision"]
    assert [m["event_id"] for m in messages(steps["sqs"], steps["blocked"])] == ["o-1"]


def test_malformed_event_raises_a_non_retryable_error(steps):
    module = steps["module"]
    with pytest.raises(module.MalformedEvent, match="order_id"):
        module.handler({"step": "collect_features", "event": {"customer_id": "c1"}}, Context())
    with pytest.raises(module.MalformedEvent, match="unknown step"):
        module.handler({"step": "guess"}, Context())
    with pytest.raises(module.MalformedEvent, match="features"):
        module.handler({"step": "run_inference", "event_id": "x"}, Context())


def test_endpoint_failure_is_transient(steps):
    module = steps["module"]
    steps["runtime"].fail_with = RuntimeError("ModelError")
    state = module.handler({"step": "collect_features", "event": order("o-1", 10.0)}, Context())
    with pytest.raises(module.TransientError):
        module.handler({**state, "step": "run_inference"}, Context())


def test_a_kinesis_record_from_the_pipe_is_decoded(steps):
    """The state-machine path's input: EventBridge Pipes sends the Kinesis record,
    its data base64; the workflow wraps the state as {"step", "state"}."""
    import base64

    module = steps["module"]
    data = base64.b64encode(json.dumps(order("o-k", 650.0)).encode()).decode()
    record = {"data": data, "sequenceNumber": "42", "partitionKey": "c1"}

    state = module.handler({"step": "collect_features", "state": {"record": record}}, Context())

    assert state["event_id"] == "o-k" and state["record_id"] == "42"
    assert "record" not in state
    assert state["features"]["order_total_30d"] == 1650.0
    with pytest.raises(module.MalformedEvent, match="base64"):
        module.handler({"step": "collect_features",
                        "state": {"record": {"data": "%%%", "sequenceNumber": "43"}}}, Context())


class _ThrottledUpdates:
    """The decision table's client with its next ``failures`` UpdateItem calls
    throttled (after the SDK's own retries, as a persistent throttle ends)."""

    def __init__(self, client: Any, failures: int) -> None:
        self._client, self.failures = client, failures

    def update_item(self, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        if self.failures:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "throttled"}}, "UpdateItem")
        return self._client.update_item(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _decided(module, event_id: str, amount: float) -> dict[str, Any]:
    state: dict[str, Any] = {"event": order(event_id, amount)}
    for step in ("collect_features", "run_inference", "execute_rules"):
        state = json.loads(json.dumps(module.handler({**state, "step": step}, Context())))
    return state


def test_a_throttled_completion_after_the_action_is_retried_without_acting_again(steps):
    """Issue #14 item 2 on the state-machine path: the action ran, its completion
    cannot be written; the workflow's retry completes it and does not act again,
    and the decision log holds it once, done."""
    module = steps["module"]
    state = _decided(module, "o-9", 950.0)
    ledger = module._ledger()
    ledger.client = _ThrottledUpdates(ledger.client, failures=ledger.COMPLETE_ATTEMPTS)
    with pytest.raises(module.TransientError, match="completion not written"):
        module.handler({**state, "step": "perform_action"}, Context())
    assert [m["event_id"] for m in messages(steps["sqs"], steps["blocked"])] == ["o-9"]
    assert logged(steps["ddb"], "o-9")["action_status"] == {"S": "acting"}

    retried = module.handler({**state, "step": "perform_action"}, Context())  # the Retry
    assert retried["decision"]["action"] == "block"
    assert messages(steps["sqs"], steps["blocked"]) == [], "acted once"
    assert logged(steps["ddb"], "o-9")["action_status"] == {"S": "done"}


def test_an_event_claimed_elsewhere_is_retried_and_an_abandoned_claim_is_not_acted_on(steps):
    module = steps["module"]
    state = _decided(module, "o-10", 950.0)
    ledger = module._ledger()
    claims = {"o-10": 4_000_000_000.0, "o-11": 1.0}  # a live lease, and one long past
    for event_id, lease in claims.items():
        ledger._claim(event_id, {"event_id": event_id, "action": "block"}, "other", lease)
    with pytest.raises(module.TransientError, match="being acted on"):
        module.handler({**state, "step": "perform_action"}, Context())
    abandoned = _decided(module, "o-11", 950.0)
    with pytest.raises(module.UnconfirmedAction, match="o-11"):
        module.handler({**abandoned, "step": "perform_action"}, Context())
    assert messages(steps["sqs"], steps["blocked"]) == [], "neither is acted on"
    assert logged(steps["ddb"], "o-11")["action_status"] == {"S": "unconfirmed"}
