"""The spec: the example is valid; each kind of mistake gets its precise error."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mdlc_constructs.cli import main
from mdlc_constructs.spec import SpecError, load_spec, parse_spec
from tests.conftest import FRAUD_SPEC

BASE = yaml.safe_load(FRAUD_SPEC.read_text())


def _error(mutate) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(SpecError) as caught:
        parse_spec(data, "models/fraud.yaml")
    return str(caught.value)


def test_example_spec_is_valid(fraud_spec):
    assert fraud_spec.name == "fraud"
    assert fraud_spec.data.label == "fraud_status"
    assert fraud_spec.training.algorithm.name == "xgboost"
    assert "order_total_30d" in fraud_spec.feature_columns
    assert fraud_spec.source == FRAUD_SPEC


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["training"].update(instnce_type="ml.m5.large"),
            "models/fraud.yaml: training.instnce_type: unknown field",
        ),
        (
            lambda d: d["training"]["evaluation"].update(threshold=-0.1),
            "models/fraud.yaml: training.evaluation.threshold: Input should be greater "
            "than or equal to 0 (got -0.1)",
        ),
        (
            lambda d: d["data"].update(schedule="cron(0 25 * * ? *)"),
            "models/fraud.yaml: data.schedule: hours value 25 is outside 0-23",
        ),
        (
            lambda d: d["data"].update(schedule="every day"),
            "models/fraud.yaml: data.schedule: expected 'cron(min hour day-of-month month "
            "day-of-week year)' or 'rate(N unit)'",
        ),
        (
            lambda d: d["data"].update(schedule="cron(0 2 * * * *)"),
            "data.schedule: exactly one of day-of-month and day-of-week must be '?'",
        ),
        (
            lambda d: d["training"].update(instance_type="m5.xlarge"),
            "models/fraud.yaml: training.instance_type: expected a SageMaker instance type "
            "such as 'ml.m5.xlarge', got 'm5.xlarge'",
        ),
        (
            lambda d: d["training"].update(instance_count="two"),
            "models/fraud.yaml: training.instance_count: Input should be a valid integer",
        ),
        (
            lambda d: d["quality"]["rules"][12].update(min="low"),
            "models/fraud.yaml: quality.rules[12].min: Input should be a valid number",
        ),
        (
            lambda d: d["quality"]["rules"][12].update(column="amount"),
            "models/fraud.yaml: quality.rules[12].column: 'amount' is not one of data.columns",
        ),
        (
            lambda d: d["quality"]["rules"][0].update(kind="completenes"),
            "models/fraud.yaml: quality.rules[0]: Input tag 'completenes' found using 'kind' "
            "does not match any of the expected tags",
        ),
        (
            lambda d: d["features"]["expressions"][0].update(expression="open('x')"),
            "models/fraud.yaml: features.expressions[0].expression: \"open('x')\": only the "
            "functions",
        ),
        (
            lambda d: d["integration"]["rules"][0].update(when="scor >= 0.9"),
            "models/fraud.yaml: integration.rules[0].when: 'scor >= 0.9' uses scor",
        ),
        (
            lambda d: d.pop("training"),
            "models/fraud.yaml: training: Field required",
        ),
        (
            lambda d: d.update(name="Fraud Model"),
            "models/fraud.yaml: name: expected 1-20 lower-case letters",
        ),
        (
            lambda d: d["inference"]["realtime"]["autoscaling"].update(min_capacity=5),
            "inference.realtime.autoscaling: min_capacity (5) exceeds max_capacity (4)",
        ),
        (
            lambda d: d["data"].update(timestamp="order_amount"),
            "models/fraud.yaml: data.timestamp: the timestamp column 'order_amount' must "
            "have type 'timestamp', not 'float'",
        ),
    ],
    ids=[
        "unknown-field",
        "negative-threshold",
        "cron-range",
        "not-a-schedule",
        "cron-days",
        "instance-type",
        "wrong-type",
        "rule-type",
        "rule-column",
        "rule-kind",
        "unsafe-expression",
        "rule-condition",
        "missing-section",
        "model-name",
        "capacity-order",
        "timestamp-type",
    ],
)
def test_bad_spec_names_file_field_and_expectation(mutate, expected):
    assert expected in _error(mutate)


def test_every_problem_is_reported_at_once():
    def mutate(d):
        d["training"]["instance_type"] = "big"
        d["data"]["schedule"] = "daily"

    message = _error(mutate)
    assert "training.instance_type" in message and "data.schedule" in message


def test_yaml_syntax_error_names_line(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: fraud\ndata: {a: [1,\n")
    with pytest.raises(SpecError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_spec(path)


def test_spec_must_be_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(path)


def test_cli_validate_exit_codes(tmp_path: Path, capsys):
    assert main(["validate", str(FRAUD_SPEC)]) == 0
    assert "ok (model 'fraud')" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    data = copy.deepcopy(BASE)
    data["training"]["instance_type"] = "m5.large"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(FRAUD_SPEC), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: training.instance_type: expected a SageMaker instance type" in err


def test_spec_is_immutable(fraud_spec):
    with pytest.raises(Exception, match="frozen"):
        fraud_spec.name = "other"


def test_clock_skew_defaults_to_15_minutes_and_is_bounded(fraud_spec):
    assert fraud_spec.features.max_clock_skew_seconds == 900
    assert fraud_spec.as_config()["features"]["max_clock_skew_seconds"] == 900
    for bad, expected in ((-1, "greater than or equal to 0"), (86_401, "less than or equal to")):
        error = _error(lambda d, bad=bad: d["features"].update(max_clock_skew_seconds=bad))
        assert "features.max_clock_skew_seconds" in error
        assert expected in error


def test_null_values_default_to_the_empty_field_and_are_distinct(fraud_spec):
    assert all(c.null_values == [""] for c in fraud_spec.data.columns)
    assert fraud_spec.as_config()["data"]["columns"][0]["null_values"] == [""]

    def twice(d):
        d["data"]["columns"][0]["null_values"] = ["NA", "NA"]

    assert "models/fraud.yaml: data.columns[0]: null_values lists a marker twice" in _error(twice)


def test_validate_refuses_two_specs_of_one_name(tmp_path: Path, capsys):
    """The app builds one stack per model name (load_specs refuses the folder):
    validate says so too, naming both files."""
    copy_path = tmp_path / "copy.yaml"
    copy_path.write_text(FRAUD_SPEC.read_text())
    assert main(["validate", str(FRAUD_SPEC), str(copy_path)]) == 2
    captured = capsys.readouterr()
    assert f"{copy_path}: name: 'fraud' is also the name of {FRAUD_SPEC}" in captured.err
    with pytest.raises(SpecError, match="two specs use the name 'fraud'"):
        from mdlc_constructs.spec import load_specs

        (tmp_path / "fraud.yaml").write_text(FRAUD_SPEC.read_text())
        load_specs(tmp_path)


@pytest.mark.parametrize(("section", "retired"), [
    ("quality", "(pyarrow) quality"), ("features", "(NumPy) feature"),
    ("monitoring", "(NumPy) monitoring")])
def test_a_spec_naming_a_retired_engine_fails_validation_saying_what_to_do(
        section: str, retired: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each batch stage's hand-written engine was retired (issue #18): its
    ``engine: embedded`` fails ``mdlc validate`` naming the file and field and
    what to set instead; ``duckdb``, or no engine, validates."""
    from mdlc_constructs.cli import EXIT_OK, EXIT_USAGE

    text = FRAUD_SPEC.read_text(encoding="utf-8")
    assert f"\n{section}:\n" in text
    for engine, code in (("embedded", EXIT_USAGE), ("duckdb", EXIT_OK), (None, EXIT_OK)):
        path = tmp_path / f"fraud-{engine}.yaml"
        line = f"\n{section}:\n  engine: {engine}\n" if engine else f"\n{section}:\n"
        path.write_text(text.replace(f"\n{section}:\n", line), encoding="utf-8")
        assert main(["validate", str(path)]) == code, engine
        err = capsys.readouterr().err
        if engine == "embedded":
            assert (f"{path}: {section}.engine: the embedded {retired} engine was retired "
                    f"(issue #18): remove {section}.engine, or set it to duckdb") in err, err
            assert "docs/upgrading.md" in err
        else:
            assert getattr(load_spec(path), section).engine == "duckdb"
