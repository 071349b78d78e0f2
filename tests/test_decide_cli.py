"""``mdlc decide SPEC --input JSON``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mdlc_constructs.cli import main

SPEC = str(Path(__file__).resolve().parents[1] / "models" / "fraud.yaml")


def decide(capsys, payload: str, *extra: str) -> tuple[int, str, str]:
    code = main(["decide", SPEC, "--input", payload, *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("score", "action", "rule"),
    [(0.9, "block", "block_high_risk"), (0.8999, "review", "review_medium_risk"),
     (0.6, "review", "review_medium_risk"), (0.5999, "approve", "default")],
)
def test_prints_the_decision_and_the_rule(capsys, score, action, rule):
    code, out, _ = decide(capsys, json.dumps({"event_id": "o-1", "score": score}))
    assert code == 0
    assert out.splitlines()[0] == f"event o-1: {action}"
    assert out.splitlines()[1].startswith(f"rule: {rule} (")


def test_json_output_is_the_decision_record(capsys):
    payload = {"event_id": "o-7", "score": 0.93, "features": {"order_amount": 950.0}}
    code, out, _ = decide(capsys, json.dumps(payload), "--json", "--model-version", "pkg/3")
    record = json.loads(out)
    assert code == 0
    assert record["action"] == "block" and record["rule_id"] == "block_high_risk"
    assert record["when"] == "score >= 0.9"
    assert record["model_version"] == "pkg/3"
    assert record["features"] == {"order_amount": 950.0}


def test_input_from_a_file_and_stdin(capsys, tmp_path, monkeypatch):
    path = tmp_path / "event.json"
    path.write_text('{"event_id": 12, "score": 0.7, "features": {}}')
    code, out, _ = decide(capsys, f"@{path}")
    assert (code, out.splitlines()[0]) == (0, "event 12: review")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"event_id": "s", "score": 0.1}'))
    code, out, _ = decide(capsys, "-")
    assert (code, out.splitlines()[0]) == (0, "event s: approve")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"event_id": "o-1"}', "needs a score"),
        ('{"event_id": "o-1", "score": "0.9"}', "score must be a finite number"),
        ('{"event_id": "o-1", "score": true}', "score must be a finite number"),
        ('{"event_id": "o-1", "score": NaN}', "not JSON"),
        ('{"event_id": "o-1", "score": 0.5, "features": [1]}', "features must be a JSON object"),
        ('{"event_id": "o-1", "score": 0.5, "features": {"order_amount": "x"}}',
         "features.order_amount must be a number"),
        ('{"event_id": "o-1", "score": 0.5, "features": {"colour": 1}}', "not model features"),
        ('{"score": 0.5}', "needs an event_id"),
        ('{"event_id": "o-1", "scores": 0.5}', "unknown keys"),
    ],
)
def test_bad_input_exits_2_with_the_reason(capsys, payload, reason):
    code, out, err = decide(capsys, payload)
    assert code == 2
    assert out == ""
    assert err.startswith("mdlc decide: ") and reason in err


def test_missing_file_and_bad_spec_exit_2(capsys, tmp_path):
    code, _, err = decide(capsys, f"@{tmp_path / 'missing.json'}")
    assert code == 2 and "cannot read" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    assert main(["decide", str(bad), "--input", '{"event_id": "e", "score": 1}']) == 2
