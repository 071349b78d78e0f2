"""The spec's validation rejects what synthesis would, all at once, with the
file and the field named (issue #13 items 6 and 10, issue #14 item 7).

``test_every_construct_raise_is_classified`` walks every ``raise`` of the
construct modules: each is either a rule on the spec alone, with a spec that
breaks it here (and ``mdlc validate`` must reject that spec naming the
field), or it is listed with the reason it is not about the spec. A new
``raise`` fails the test until it is put in one of the two lists.
"""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from mdlc_constructs.cli import EXIT_OK, EXIT_USAGE, main
from mdlc_constructs.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
FRAUD = ROOT / "models" / "fraud.yaml"
BASE: dict[str, Any] = yaml.safe_load(FRAUD.read_text())

Mutation = Callable[[dict[str, Any]], None]


def _spec(mutate: Mutation | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(data)
    return data


def _validate(tmp_path: Path, data: dict[str, Any] | str | bytes,
              capsys: pytest.CaptureFixture[str], name: str = "model.yaml") -> tuple[int, str]:
    """``mdlc validate`` on ``data`` written to a file: the exit code and stderr."""
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


# --- the constructs' raises ------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A raise on a spec combination: each mutation breaks it, and validation
    must name ``field``."""

    field: str
    mutations: tuple[Mutation, ...]


@dataclass(frozen=True)
class NotSpec:
    """A raise about something else than the spec (a construct argument, the
    stack's region, cdk.json context...)."""

    reason: str


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value

    return mutate


ARGUMENT = "a construct argument, not a spec field"
CONTEXT = "cdk.json's mdlc:pipeline context, not a model spec"

#: module -> enclosing function -> one entry per raise, in source order.
RAISES: dict[str, dict[str, list[Spec | NotSpec]]] = {
    "algorithms": {
        "builtin_image_uris": [
            Spec("training.algorithm.name", (_set("training.algorithm.name", "xgbost"),)),
            Spec("training.algorithm.version", (_set("training.algorithm.version", "9.9-9"),)),
        ],
        "BuiltinImage.__init__": [NotSpec("the stack's region, not the spec")],
        "CustomImage.__init__": [
            Spec("training.algorithm.source", (
                _set("training.algorithm", {"kind": "custom", "source": "no-such-folder"}),
            )),
        ],
        "training_algorithm": [
            Spec("training.algorithm", (_set("training.algorithm", {"kind": "other"}),)),
        ],
    },
    "batch_inference": {
        "BatchInferenceWorkflow.__init__": [
            Spec("name", (_set("name", "a" * 21),)),
            NotSpec(ARGUMENT + " (max_concurrency, action_concurrency)"),
        ],
    },
    "features": {
        "FeatureEngineering.__init__": [NotSpec(
            ARGUMENT + ": MdlcModelStack passes the stream whenever features.online has "
            "aggregates")],
        "FeatureEngineering.grant_read_online": [NotSpec(
            "a grant asked of a stage the spec turned off; MdlcModelStack asks only when on")],
        "FeatureEngineering.grant_processing": [NotSpec(
            "a grant asked of a runner the spec did not choose; asked only for processing")],
    },
    "functions": {
        "_handler_folder": [NotSpec("a handler folder of the library itself")],
        "stage_code": [NotSpec(ARGUMENT + " (extra_code paths)")],
    },
    "integration": {
        "ClientIntegration.__init__": [
            NotSpec("ClientIntegration used directly; MdlcModelStack builds it only for an "
                    "enabled integration section"),
            NotSpec(ARGUMENT + " (endpoint_name)"),
        ],
    },
    "model_stack": {
        "MdlcModelStack.build_integration": [
            Spec("features.online", (_set("features.online", False),)),
            Spec("inference.realtime.enabled", (_set("inference.realtime.enabled", False),)),
        ],
    },
    "monitoring": {
        "ModelMonitoring.__init__": [NotSpec(ARGUMENT)] * 4,
        "ModelMonitoring.connect_retraining": [NotSpec(ARGUMENT + " (the retrain target)")],
        "ModelMonitoring._check_action_caps": [
            Spec("monitoring.open_loop.max_action_share.decline",
                 (_set("monitoring.open_loop.max_action_share", {"decline": 0.1}),)),
        ],
        "ModelMonitoring._create_alarm": [NotSpec("alarm definitions of the library or a "
                                                  "subclass, not the spec")],
        "_prefix": [NotSpec(ARGUMENT + " (labels_prefix)")],
    },
    "network": {
        "ModelNetwork.__init__": [
            Spec("network: private_subnet_ids", (
                _set("network", {"vpc_id": "vpc-0123456789abcdef0", "endpoints": False}),)),
            NotSpec(ARGUMENT + " (key: the stack passes its own)"),
            Spec("network: vpc_cidr", (_set("network", {
                "vpc_id": "vpc-0123456789abcdef0", "availability_zones": ["eu-west-1a"],
                "private_subnet_ids": ["subnet-0123456789abcdef0"],
                "route_table_ids": ["rtb-0123456789abcdef0"]}),)),
            Spec("network.max_azs", (_set("network", {"create": True, "max_azs": 7}),)),
        ],
        "_service_names": [NotSpec("a malformed answer of the CDK CLI's endpoint lookup "
                                   "(cdk.context.json), not the spec")],
    },
    "pipeline": {
        "DeploymentTarget.validate": [NotSpec(CONTEXT)] * 2,
        "PipelineConfig.__post_init__": [NotSpec(CONTEXT)] * 6,
        "PipelineConfig.from_mapping": [NotSpec(CONTEXT)] * 3,
        "PipelineConfig.from_context": [NotSpec(CONTEXT)] * 2,
        "MdlcPipelineStack._check_cross_account": [NotSpec(CONTEXT)],
        "build": [NotSpec("the mdlc:only context given to a pipeline, not a model spec")],
    },
    "platform": {
        "shared_network": [NotSpec("across the specs of one shared platform "
                                   "(build_app(shared_platform=True)); each spec alone is valid")],
        "build_app": [NotSpec("a models folder without any spec"),
                      NotSpec("the mdlc:only context naming a model without a spec")],
    },
    "processing": {
        "ProcessingRunner.__init__": [NotSpec(ARGUMENT + " (environment: more than 100)")],
    },
    "quality": {
        "DataQuality.grant_processing": [NotSpec(
            "a grant asked of a runner the spec did not choose; asked only for processing")],
    },
    "realtime": {
        "validate_realtime": [
            Spec("inference.realtime", (
                _set("inference.realtime.deployment", {"strategy": "canary", "step_percent": 60}),
                _set("inference.realtime.deployment", {"strategy": "linear", "step_percent": 5}),
                _set("inference.realtime.initial_instance_count", 9),
            )),
        ],
    },
    "scale_out": {
        "ScaleOutRunner.__init__": [NotSpec(ARGUMENT + " (an unknown prop)"),
                                    NotSpec(ARGUMENT + " (a missing prop)"),
                                    NotSpec(ARGUMENT + " (a kind the runner's entry point "
                                            "does not run)")],
        **{f"ScaleOutRunner.{hook}": [NotSpec("a runner subclass that does not implement "
                                              "this hook (refused where the class is "
                                              "written when it sets kinds), not the spec")]
           for hook in ("_grant_service", "start_statements", "acknowledge_start_resources",
                        "_job_state")},
        "ScaleOutRunner.run": [NotSpec(ARGUMENT + " (result_path)")],
        "require_overrides": [NotSpec("a runner or stage class defined without its hooks "
                                      "(when the class is written), not the spec")],
    },
    "scale_out_stage": {
        "ScaleOutStage._scale_out_job": [NotSpec("a stage class that does not implement this "
                                                 "hook, not the spec")],
    },
    "spark": {
        "SparkRunner.__init__": [
            Spec("quality.spark.python_environment", (_set("quality.runner", "spark"),)),
        ],
        "_split_s3_uri": [NotSpec("python_environment, whose s3://bucket/key pattern the "
                                  "spec validates before any construct runs")],
    },
    "training": {
        "TrainingWorkflow.__init__": [
            Spec("training.evaluation.metric", (_set("training.evaluation.metric", "auc'x"),)),
            Spec("training.content_type", (
                _set("training.content_type", "application/x-recordio-protobuf"),)),
            NotSpec(ARGUMENT + " (preparation and the deprecated prepare_data both given)"),
        ],
    },
    "workflow": {
        "state_machine_name": [NotSpec("a stack whose name is a token: the app's stack "
                                       "name, not a spec field")],
    },
    "wheels": {
        "lambda_target": [NotSpec("the library's own RUNTIME and ARCHITECTURE constants")] * 2,
        "pinned": [NotSpec("the library's own DUCKDB_PACKAGES, all in PINS")],
        "installed": [NotSpec("the machine's wheelhouse: not built (make lambda-wheels), or "
                              "without the pinned wheel")] * 2
        + [NotSpec("the machine building the data layer has no binutils strip")],
        "vendor_into": [NotSpec("a team's extra_code named like a vendored package")],
        "download": [NotSpec("make lambda-wheels: pip download failed (network)")],
        "_main": [NotSpec("python -m mdlc_constructs.wheels called without its folder")],
    },
}

#: Modules whose raises are not synthesis: mdlc sample's generator and the
#: testing helpers (they check their own arguments and files). Modules that
#: never mention a spec (storage, compliance...) cannot raise on one either,
#: and are skipped until they do.
NOT_SYNTHESIS = {"sampling", "testing"}


def _raises() -> dict[str, dict[str, int]]:
    """module -> enclosing function -> number of ``raise X`` statements."""
    found: dict[str, dict[str, int]] = {}
    for path in sorted((ROOT / "mdlc_constructs").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if path.stem in NOT_SYNTHESIS or path.stem == "__init__" or "spec" not in source.lower():
            continue

        def walk(node: ast.AST, scope: list[str], module: str = path.stem) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    walk(child, [*scope, child.name])
                    continue
                if isinstance(child, ast.Raise) and child.exc is not None:
                    where = found.setdefault(module, {})
                    key = ".".join(scope)
                    where[key] = where.get(key, 0) + 1
                walk(child, scope)

        walk(ast.parse(source), [])
    return found


def test_every_construct_raise_is_classified():
    listed = {module: {name: len(entries) for name, entries in functions.items()}
              for module, functions in RAISES.items()}
    assert _raises() == listed, (
        "a construct raises where RAISES does not say: if the spec can cause it, make the "
        "spec's validation (mdlc_constructs/spec/rules.py) reject it and list it as Spec, "
        "else list it as NotSpec with the reason"
    )


SPEC_RULES = [
    (f"{module}:{name}[{index}]", entry, mutation)
    for module, functions in RAISES.items()
    for name, entries in functions.items()
    for index, entry in enumerate(entries)
    if isinstance(entry, Spec)
    for mutation in entry.mutations
]


@pytest.mark.parametrize(("where", "rule", "mutation"), SPEC_RULES,
                         ids=[f"{w}-{i}" for i, (w, _, _) in enumerate(SPEC_RULES)])
def test_validate_rejects_what_synthesis_would(where, rule, mutation, tmp_path, capsys):
    code, err = _validate(tmp_path, _spec(mutation), capsys)
    assert code == EXIT_USAGE, where
    assert f"{tmp_path / 'model.yaml'}: {rule.field}" in err, err
    assert "Traceback" not in err


def test_the_example_and_its_variants_stay_valid(tmp_path, capsys):
    assert _validate(tmp_path, _spec(), capsys) == (EXIT_OK, "")
    allowed: list[Mutation] = [
        # a metric that is not bounded may have any threshold
        _set("training.evaluation", {"metric": "validation:rmse", "threshold": 15.0,
                                     "goal": "minimize"}),
        # without declared targets every action only goes to the decision log
        _set("integration.actions", {}),
        # a disabled integration needs no endpoint
        lambda d: (d["integration"].update(enabled=False),
                   d["inference"]["realtime"].update(enabled=False)),
        # the endpoint's settings are not checked while it is off
        lambda d: (d.pop("integration"), d["monitoring"]["open_loop"].pop("max_action_share"),
                   d["inference"]["realtime"].update(
                       enabled=False, deployment={"strategy": "canary", "step_percent": 60})),
    ]
    for index, mutate in enumerate(allowed):
        code, err = _validate(tmp_path, _spec(mutate), capsys)
        assert (code, err) == (EXIT_OK, ""), index


def test_a_custom_algorithm_folder_is_found_relative_to_the_spec(tmp_path, capsys):
    (tmp_path / "container").mkdir()
    data = _spec(_set("training.algorithm", {"kind": "custom", "source": "container"}))
    assert _validate(tmp_path, data, capsys)[0] == EXIT_USAGE
    (tmp_path / "container" / "Dockerfile").write_text("FROM python:3.12-slim\n")
    assert _validate(tmp_path, data, capsys) == (EXIT_OK, "")


# --- issue #14 item 7: specs that validated but were wrong ------------------------------


@pytest.mark.parametrize("metric", ["validation:auc", "validation:f1", "test:accuracy",
                                    "validation:precision", "validation:recall",
                                    "validation:map@5"])
def test_a_threshold_above_1_fails_for_a_metric_bounded_by_1(metric, tmp_path, capsys):
    code, err = _validate(
        tmp_path, _spec(_set("training.evaluation", {"metric": metric, "threshold": 1.5})),
        capsys)
    assert code == EXIT_USAGE
    assert (f"training.evaluation.threshold: 1.5 can never be reached: {metric} lies "
            "between 0 and 1") in err


def test_an_undeclared_action_fails_with_the_names_that_exist(tmp_path, capsys):
    code, err = _validate(tmp_path, _spec(_set("integration.rules.0.action", "blokc")), capsys)
    assert code == EXIT_USAGE
    assert ("integration.rules[0].action: 'blokc' is not a declared action; "
            "integration.actions declares ['approve', 'block', 'review']; declared but "
            "decided by no rule: ['block']") in err
    code, err = _validate(tmp_path, _spec(_set("integration.default_action", "aprove")), capsys)
    assert "integration.default_action: 'aprove' is not a declared action" in err


def test_an_action_cap_must_name_a_decided_action(tmp_path, capsys):
    code, err = _validate(
        tmp_path, _spec(_set("monitoring.open_loop.max_action_share", {"blokc": 0.05})), capsys)
    assert code == EXIT_USAGE
    assert ("monitoring.open_loop.max_action_share.blokc: 'blokc' is no action an "
            "integration rule or default_action decides; expected some of "
            "['block', 'review', 'approve']") in err
    code, err = _validate(tmp_path, _spec(lambda d: d.pop("integration")), capsys)
    assert code == EXIT_USAGE
    assert "max_action_share: caps the share of actions ['block', 'review'], but the spec " \
        "has no integration section" in err


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("name: fraud\nowner: a\nname: other\n", "name", 3, 1),
        ("training:\n  evaluation: {metric: a, threshold: 1}\n"
         "  evaluation: {metric: b, threshold: 2}\n", "evaluation", 3, 2),
        ("data: {entity_key: a, entity_key: b}\n", "entity_key", 1, 1),
    ],
    ids=["top-level", "nested", "flow"],
)
def test_duplicate_yaml_keys_fail_naming_key_and_lines(text, key, line, first, tmp_path,
                                                       capsys):
    code, err = _validate(tmp_path, text, capsys)
    assert code == EXIT_USAGE
    assert f"not valid YAML at line {line}" in err
    assert f"duplicate key {key!r} (first given at line {first})" in err


def test_yaml_merge_keys_still_override(tmp_path):
    path = tmp_path / "merge.yaml"
    text = FRAUD.read_text().replace(
        "  realtime:\n    instance_type: ml.m5.large\n",
        "  realtime:\n    <<: {instance_type: ml.m5.xlarge, initial_instance_count: 1}\n"
        "    instance_type: ml.m5.large\n",
    )
    assert "<<:" in text
    path.write_text(text)
    assert load_spec(path).inference.realtime.instance_type == "ml.m5.large"


def test_a_spec_that_is_not_utf8_names_the_file_and_line(tmp_path, capsys):
    text = FRAUD.read_bytes().replace(b"Scores each order", b"Scores each \xe9order", 1)
    code, err = _validate(tmp_path, text, capsys, name="latin1.yaml")
    assert code == EXIT_USAGE
    assert err.strip() == (f"{tmp_path / 'latin1.yaml'}: not UTF-8 text: byte 0xe9 at line 4 "
                           "(save the spec as UTF-8)")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (FRAUD.read_bytes().replace(b"Scores each order", b"Scores each \xe9order", 1),
         "not UTF-8 text: byte 0xe9 at line 4"),
        (FRAUD.read_bytes().replace(b"threshold: 0.8", b"threshold: 1.5", 1),
         "training.evaluation.threshold: 1.5 can never be reached"),
    ],
    ids=["not-utf8", "invalid"],
)
def test_app_exits_2_on_a_bad_spec_with_the_message_and_no_traceback(content, expected,
                                                                     tmp_path):
    (tmp_path / "models").mkdir()
    spec = tmp_path / "models" / "fraud.yaml"
    spec.write_bytes(content)
    env = {**os.environ, "CDK_CONTEXT_JSON": f'{{"mdlc:models": "{tmp_path / "models"}"}}',
           "CDK_OUTDIR": str(tmp_path / "out"),
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run([sys.executable, str(ROOT / "app.py")], capture_output=True,
                            text=True, env=env, timeout=300, check=False, cwd=ROOT)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{spec}: {expected}" in result.stderr


# --- issue #13 item 10: every independent error at once --------------------------------


def test_type_errors_do_not_hide_cross_field_errors_of_other_sections():
    def mutate(d: dict[str, Any]) -> None:
        d["data"]["columns"][3]["type"] = "flaot"  # a type error in data
        d["training"]["instance_count"] = "two"  # and in training
        d["quality"]["rules"][12]["column"] = "amount"  # a misspelt column
        d["features"]["aggregates"][0]["column"] = "order_amout"  # another one
        d["features"]["expressions"][0]["expression"] = "order_amount / nope"
        d["integration"]["rules"][0]["when"] = "scor >= 0.9"
        d["integration"]["rules"][1]["action"] = "reveiw"
        d["inference"]["realtime"]["enabled"] = False
        d["training"]["evaluation"]["threshold"] = 1.5  # in the section that failed
        d["data"]["label"] = "fraud"

    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(mutate), "models/fraud.yaml")
    fields = [line.split(": ")[1] for line in caught.value.problems]
    assert fields == [
        "data.columns[3].type",
        "training.instance_count",
        "data.label",
        "quality.rules[12].column",
        "features.aggregates[0].column",
        "features.expressions[0].expression",
        "integration.rules[0].when",
        "integration.rules[1].action",
        "monitoring.open_loop.max_action_share.review",  # no rule decides review any more
        "inference.realtime.enabled",
        "training.evaluation.threshold",
    ], caught.value.problems


def test_errors_inside_one_section_do_not_hide_its_cross_field_errors():
    def mutate(d: dict[str, Any]) -> None:
        d["quality"]["rules"][3]["min"] = "high"
        d["quality"]["rules"].append({"kind": "completeness", "column": "order_id"})
        d["data"]["retention_days"] = "forever"
        d["data"]["entity_key"] = "customer"

    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(mutate), "models/fraud.yaml")
    text = "\n".join(caught.value.problems)
    assert "quality.rules[3].min: Input should be a valid number" in text
    assert "quality.rules: rule ids must be unique; give these an 'id': " \
        "['completeness_order_id']" in text
    assert "data.retention_days: Input should be a valid integer" in text
    assert "data.entity_key: 'customer' is not one of data.columns" in text


def test_a_broken_shape_does_not_invent_reference_errors():
    """Where the columns themselves are unreadable, references are not
    checked against them (every rule would be 'unknown')."""
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(_set("data.columns", "order_id, customer_id")), "models/fraud.yaml")
    assert [line.split(": ")[1] for line in caught.value.problems] == ["data.columns"]


def test_the_same_problem_is_reported_once():
    with pytest.raises(SpecError) as caught:
        parse_spec(_spec(_set("quality.rules.12.column", "amount")), "models/fraud.yaml")
    assert len(caught.value.problems) == 1


def test_the_sdk_versions_read_without_importing_it_are_the_sdks():
    """``rules.builtin_versions`` reads the SageMaker SDK's configuration file
    directly (importing the SDK takes seconds); it must agree with the SDK."""
    from mdlc_constructs.algorithms import known_versions
    from mdlc_constructs.spec import rules
    from mdlc_constructs.spec.training import BUILTIN_ALGORITHMS

    for name in BUILTIN_ALGORITHMS:
        assert rules.builtin_versions(name) == tuple(known_versions(name)), name


# --- rules the engines would refuse on every run ------------------------------------------


@pytest.fixture(scope="module")
def sample_orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orders") / "orders.csv"
    assert main(["sample", str(FRAUD), "--days", "2", "--start", "2026-11-01",
                 "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ({"kind": "range", "column": "customer_id", "min": 0},
         "column", "'customer_id' is a string column; a range rule needs int or float"),
        ({"kind": "freshness", "column": "order_amount", "max_age_hours": 1},
         "column", "'order_amount' is a float column; a freshness rule needs timestamp"),
        ({"kind": "consistency", "id": "ts_grows", "column": "order_ts", "entity": "customer_id"},
         "column", "'order_ts' is a timestamp column; a consistency rule needs int or float"),
        ({"kind": "allowed_values", "id": "flags", "column": "fraud_status",
          "values": ["no", "yes"]},
         "values", "['no', 'yes'] are not int values, the type of column 'fraud_status'"),
        ({"kind": "consistency", "id": "id_fixed", "column": "order_id", "entity": "customer_id",
          "change": "constant"},
         "column", "'order_id' is a string column; a consistency rule needs int or float or bool"),
        ({"kind": "type", "id": "ts_text", "column": "order_id", "type": "timestamp"},
         "type", "'order_id' is a string column; a type rule checks the declared type, or int, "
                 "float, bool in a string column: to check timestamp values, declare the column "
                 "as timestamp (its reader records what does not parse)"),
        ({"kind": "type", "id": "whole_amounts", "column": "order_amount", "type": "int"},
         "type", "'order_amount' is a float column; a type rule checks the declared type"),
    ],
    ids=["range-on-text", "freshness-on-number", "consistency-on-timestamp", "values-type",
         "constant-on-text", "type-reparse-as-timestamp", "type-reparse-non-text"],
)
def test_a_quality_rule_the_engine_refuses_fails_validation(rule, field, message,
                                                            sample_orders, tmp_path, capsys):
    """Validation names the rule; the quality engine, given the same rule in
    a configuration that skipped validation, refuses it as unusable input."""
    from mdlc_core import tabular
    from mdlc_core.sql import quality as sql_quality

    data = _spec(lambda d: d["quality"]["rules"].append(rule))
    index = len(data["quality"]["rules"]) - 1
    code, err = _validate(tmp_path, data, capsys)
    assert code == EXIT_USAGE
    assert f"quality.rules[{index}].{field}: {message}" in err, err
    config = load_spec(FRAUD).as_config()
    config["quality"]["rules"].append(rule)
    table = tabular.read_table(sample_orders, config["data"]["columns"])
    # Refused as unusable input (RuleError), naming the rule.
    with pytest.raises(tabular.DataError, match=rule.get("id") or rule["kind"]):
        sql_quality.check(config, table, table, snapshot_date=date(2026, 11, 2),
                          previous_date=date(2026, 11, 1))


def test_an_aggregate_of_a_text_column_fails_validation_as_the_engine_fails(sample_orders,
                                                                            tmp_path, capsys):
    from mdlc_core import tabular
    from mdlc_core.features import FeatureError, FeatureSet
    from mdlc_core.sql import features as sql_features

    code, err = _validate(
        tmp_path, _spec(_set("features.aggregates.0.column", "customer_id")), capsys)
    assert code == EXIT_USAGE
    assert ("features.aggregates[0].column: 'customer_id' is a string column; a sum "
            "aggregate needs int or float") in err
    config = load_spec(FRAUD).as_config()
    config["features"]["aggregates"][0]["column"] = "customer_id"
    table = tabular.read_table(sample_orders, config["data"]["columns"])
    # The batch engine (the compiled SQL on DuckDB) refuses the text as a number.
    with pytest.raises(FeatureError, match="customer_id"):
        sql_features.as_of(table, FeatureSet.from_config(config), "2026-11-02")
