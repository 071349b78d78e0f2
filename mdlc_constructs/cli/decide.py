"""``mdlc decide SPEC --input JSON``: evaluate a spec's rules for one scored event.

The input is ``{"event_id": ..., "score": <number>, "features": {...}}``
(features optional; values numbers or null), given inline, as ``@FILE`` or
as ``-`` for standard input. The same rule code as the deployed handlers
decides; nothing calls AWS.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from mdlc_constructs.spec import SpecError, load_spec

from . import EXIT_OK, UsageError

try:
    from mdlc_core.decisions import Decision, RuleSet
except ImportError:  # pragma: no cover - a source checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lambdas"))
    from mdlc_core.decisions import Decision, RuleSet


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decide",
        help="evaluate a spec's decision rules for one scored event",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="model spec YAML file")
    parser.add_argument(
        "--input",
        required=True,
        metavar="JSON",
        help='the event: \'{"event_id": "o-1", "score": 0.72, "features": {...}}\', @FILE or -',
    )
    parser.add_argument(
        "--model-version", default="cli", help="recorded in the decision (default: cli)"
    )
    parser.add_argument("--json", action="store_true", help="print the decision record as JSON")
    parser.set_defaults(run=run)


def parse_input(text: str) -> tuple[str, float, dict[str, float | None], str | None]:
    """The event's id, score and features, or a ``UsageError`` saying what is wrong."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise UsageError(f"--input is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--input must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"event_id", "score", "features", "entity_id"})
    if unknown:
        raise UsageError(f"--input has unknown keys {unknown}; expected event_id, score, features")
    event_id = data.get("event_id")
    if isinstance(event_id, bool) or not isinstance(event_id, str | int) or event_id == "":
        raise UsageError("--input needs an event_id (a string)")
    if "score" not in data:
        raise UsageError("--input needs a score")
    score = data["score"]
    if not _is_number(score):
        raise UsageError(f"score must be a finite number, got {score!r}")
    features = data.get("features", {})
    if not isinstance(features, dict):
        raise UsageError(f"features must be a JSON object, got {type(features).__name__}")
    for name, value in features.items():
        if value is not None and not _is_number(value):
            raise UsageError(f"features.{name} must be a number or null, got {value!r}")
    entity_id = data.get("entity_id")
    return str(event_id), float(score), features, None if entity_id is None else str(entity_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _read(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read {value[1:]}: {error.strerror}") from None
    return value


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        raise UsageError("\n".join(error.problems)) from None
    if spec.integration is None:
        raise UsageError(f"{args.spec}: the spec has no integration section (no rules)")
    event_id, score, features, entity_id = parse_input(_read(args.input))
    rules = RuleSet.from_config(spec.as_config())
    known = {"score", *spec.feature_columns}
    extra = sorted(set(features) - known)
    if extra:
        raise UsageError(f"features {extra} are not model features: {sorted(known - {'score'})}")
    decision: Decision = rules.decide(
        event_id, score, features, args.model_version, entity_id=entity_id
    )
    rule = rules.rule(decision.rule_id)
    when = rule.when if rule else f"no rule matched; default_action {decision.action}"
    if args.json:
        print(json.dumps({**decision.to_record(), "when": when}, indent=2))
    else:
        print(f"event {decision.event_id}: {decision.action}")
        print(f"rule: {decision.rule_id} ({when})")
    return EXIT_OK
