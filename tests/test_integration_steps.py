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
    assert state["features"]["amount_to_30d_mean"] == pytest.approx(2.6)
    assert "step" not in state

    state = module.handler({**state, "step": "run_inference"}, Context())
    assert state["score"] == pytest.approx(0.65)
    assert state["model_version"].endswith("model-package/fraud/3")
    assert steps["runtime"].calls == [["650.0,400.0,1000.0,4.0,2.6"]]

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
    assert state["features"]["order_total_30d"] == 1000.0
    with pytest.raises(module.MalformedEvent, match="base64"):
        module.handler({"step": "collect_features",
                        "state": {"record": {"data": "%%%", "sequenceNumber": "43"}}}, Context())
