"""Faults on the batch decisions (``lambdas/batch_decisions``), deployed from the synthesized stack.

The day's data comes from the real steps (sourcing, ``feature_job.run``, the
``prepare_input`` step of the deployed function); the transform job's part
(SageMaker's, which moto lacks) scores each input line. Then the ``decide``
step runs as its role with each AWS call it makes throttled on every attempt
of a first try, and is retried as the workflow's map retries a part, then run
again whole (a rerun of the day): every entity's action is performed once,
the decisions file lists each entity once with the decision acted on, and no
call is refused to the function's role.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests import producers
from tests.fault_harness import Stack, drain, fraud_stack

DAY = date(2026, 11, 27)
VERSION = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mdlc-fraud/3"


def score_of(row: list[float | None]) -> float:
    """The transform's stand-in model: a spread of scores over the three actions."""
    amount = row[0] or 0.0
    return round((amount * 7) % 1000 / 1000, 3)


@pytest.fixture(scope="module")
def batch(synthesized, fraud_spec) -> dict[str, Any]:
    """The deployed stack with the day's transform input and output in place."""
    _, assembly = synthesized
    with fraud_stack(Path(assembly.directory)) as stack:
        s3 = stack.cloud.client("s3")
        config = fraud_spec.as_config()
        function = stack.find("BatchInferenceDecisions")
        env = stack.cloud.lambdas.get(function).environment
        raw, datasets = stack.find("DataLakeRaw"), stack.find("DataLakeDatasets")
        producers.snapshot(s3, config, DAY, producers.orders_csv(DAY, 120, customers=40),
                           raw=raw, datasets=datasets)
        from mdlc_core import feature_job

        features = feature_job.run(config, DAY, s3=s3, datasets_bucket=datasets,
                                   features_bucket=env["FEATURES_BUCKET"])
        prepared = _invoke(stack, function, {"step": "prepare_input", "date": DAY.isoformat(),
                                             "entities_key": features["entities_key"]})
        bucket = env["PREDICTIONS_BUCKET"]
        outputs = []
        for item in s3.list_objects_v2(Bucket=bucket,
                                       Prefix=prepared["input_key_prefix"])["Contents"]:
            text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
            scores = [str(score_of([float(v) if v else None for v in line.split(",")]))
                      for line in text.splitlines()]
            out = (prepared["output_key_prefix"]
                   + item["Key"].removeprefix(prepared["input_key_prefix"]) + ".out")
            s3.put_object(Bucket=bucket, Key=out, Body=("\n".join(scores) + "\n").encode())
            outputs.append(out)
        yield {"stack": stack, "function": function, "env": env, "outputs": outputs,
               "bucket": bucket, "prepared": prepared}


def _invoke(stack: Stack, function: str, event: dict[str, Any]) -> dict[str, Any]:
    invocation = stack.cloud.lambdas.invoke(function, json.dumps(event).encode())
    body = json.loads(invocation.payload)
    if invocation.error:
        return {"error": body.get("errorType"), "message": body.get("errorMessage")}
    return body


def _actions(batch: dict[str, Any], queued: list[dict[str, Any]]) -> Counter[str]:
    stack = batch["stack"]
    acted: Counter[str] = Counter()
    for note in stack.cloud.notifications:
        if note["topic"] == batch["env"]["ACTION_TOPIC_ARN"]:
            acted[json.loads(note["message"])["event_id"]] += 1
    queued += drain(stack, batch["env"]["ACTION_QUEUE_URL"])
    for message in queued:
        acted[message["event_id"]] += 1
    return acted


def _is_decisions_object(params) -> bool:
    return "/decisions/" in str(params.get("Key", ""))


FAULTS = {
    "claim (PutItem)": ("dynamodb", "PutItem", None),
    "claim read-back on the retry (GetItem)": ("dynamodb", "GetItem", None),
    "completion after the action (UpdateItem)": ("dynamodb", "UpdateItem", None),
    "action to the topic (Publish)": ("sns", "Publish", None),
    "action to the queue (SendMessage)": ("sqs", "SendMessage", None),
    "decisions file (PutObject)": ("s3", "PutObject", _is_decisions_object),
    "transform output read (GetObject)": ("s3", "GetObject", None),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_throttled_call_of_the_decide_step_neither_loses_nor_doubles_an_action(
        batch: dict[str, Any], fault: str) -> None:
    stack, function = batch["stack"], batch["function"]
    stack.faults.clear()
    stack.cloud.notifications.clear()
    queued: list[dict[str, Any]] = []
    _actions(batch, queued)
    queued.clear()
    # Each case decides under its own model version: its own keys in the ledger.
    version = f"{VERSION}-{list(FAULTS).index(fault)}"
    (key,) = batch["outputs"]
    event = {"step": "decide", "date": DAY.isoformat(), "Key": key, "model_version": version}
    service, operation, when = FAULTS[fault]
    if operation == "GetItem":  # read back only when a key was claimed before
        assert "error" not in _invoke(stack, function, event)
    rule = stack.faults.fail(service, operation, times=None, when=when)
    first = _invoke(stack, function, event)
    assert rule.injected >= 1, f"the fault on {fault} was never reached"
    stack.faults.clear()

    results = [first]
    for _ in range(3):  # the map's retries of the part, until it succeeds
        if "error" not in results[-1]:
            break
        results.append(_invoke(stack, function, event))
    assert "error" not in results[-1], results
    again = _invoke(stack, function, event)  # a rerun of the day: acts on nothing
    assert again["actions"] == results[-1]["actions"]

    acted = _actions(batch, queued)
    s3 = stack.cloud.client("s3")
    lines = s3.get_object(Bucket=batch["bucket"], Key=again["key"])["Body"].read().decode()
    decisions = [json.loads(line) for line in lines.splitlines() if line]
    entities = [d["entity_id"] for d in decisions]
    assert len(entities) == len(set(entities)) == batch["prepared"]["rows"]
    with_targets = {d["event_id"] for d in decisions if d["action"] in ("block", "review")}
    assert with_targets, "the stand-in model's scores reach both targets"
    assert {e: n for e, n in acted.items() if n != 1} == {}, "no action twice"
    assert set(acted) == with_targets, "every action once, and only the decided ones"
    assert stack.cloud.authorizer.denied == [], stack.cloud.authorizer.report()
