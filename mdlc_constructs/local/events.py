"""EventBridge, locally: rules from the templates, their patterns, schedules and targets.

Events reach the bus from ``PutEvents`` (a handler's or the simulation's),
from SageMaker approvals, CloudWatch alarm state changes and Step Functions
execution status changes; schedule rules fire from the simulated clock.
Each matching rule's targets receive the event (or the target's ``Input`` /
``InputPath``) as EventBridge delivers it: a state machine is started, a
function invoked asynchronously, a topic or queue sent the JSON.

The pattern matcher is written here (moto's is internal to its backend): it
covers the content filters EventBridge documents (exact values, prefix,
suffix, anything-but, numeric, exists, equals-ignore-case, wildcard) over
nested fields and arrays.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .assembly import ACCOUNT, REGION
from .clock import fire_times
from .hooks import ServiceHooks


def _matches_value(condition: Any, value: Any, present: bool) -> bool:
    if not isinstance(condition, dict):
        if isinstance(value, list):
            return condition in value
        return present and condition == value
    values = value if isinstance(value, list) else [value]
    if "exists" in condition:
        return present == bool(condition["exists"])
    if not present:
        return "anything-but" in condition and False
    for candidate in values:
        if "prefix" in condition and isinstance(candidate, str):
            prefix = condition["prefix"]
            if isinstance(prefix, dict):
                if candidate.lower().startswith(prefix["equals-ignore-case"].lower()):
                    return True
            elif candidate.startswith(prefix):
                return True
        text = candidate if isinstance(candidate, str) else None
        if text is not None and "suffix" in condition and text.endswith(condition["suffix"]):
            return True
        if text is not None and "equals-ignore-case" in condition and (
                text.lower() == condition["equals-ignore-case"].lower()):
            return True
        if text is not None and "wildcard" in condition and fnmatch.fnmatchcase(
                text, condition["wildcard"]):
            return True
        if "anything-but" in condition:
            excluded = condition["anything-but"]
            if isinstance(excluded, dict) and "prefix" in excluded:
                if not str(candidate).startswith(excluded["prefix"]):
                    return True
            elif candidate not in (excluded if isinstance(excluded, list) else [excluded]):
                return True
        if "numeric" in condition and isinstance(candidate, int | float):
            spec = condition["numeric"]
            ok = True
            for op, bound in zip(spec[::2], spec[1::2], strict=False):
                ok &= {"<": candidate < bound, "<=": candidate <= bound,
                       "=": candidate == bound, ">": candidate > bound,
                       ">=": candidate >= bound}[op]
            if ok:
                return True
    return False


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether ``event`` matches an EventBridge event ``pattern``."""
    for key, condition in pattern.items():
        if key == "$or":
            if not any(matches(p, event) for p in condition):
                return False
            continue
        present = isinstance(event, dict) and key in event
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(condition, dict):
            if not present or not isinstance(value, dict):
                return False
            if not matches(condition, value):
                return False
            continue
        if not any(_matches_value(c, value, present) for c in condition):
            return False
    return True


def _json_path(document: Any, path: str) -> Any:
    if path in ("$", ""):
        return document
    for part in path.lstrip("$").strip(".").split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


@dataclass
class Rule:
    stack: str
    logical_id: str
    name: str
    arn: str
    pattern: dict[str, Any] | None
    schedule: str | None
    targets: list[dict[str, Any]]
    enabled: bool = True
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    fired: int = 0


#: Delivers one event to one target: (target, payload, rule) -> None.
Deliver = Callable[[dict[str, Any], Any, Rule], None]


class EventBus:
    """The default event bus of the local account."""

    def __init__(self, deliver: Deliver) -> None:
        self.rules: list[Rule] = []
        self.deliver = deliver
        self.history: list[dict[str, Any]] = []
        self.failed_deliveries: list[dict[str, Any]] = []

    def install(self, hooks: ServiceHooks) -> None:
        hooks.add("eventbridge", "PutEvents", self._put_events)

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def _put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = []
        for entry in params.get("Entries", []):
            event = {
                "source": entry.get("Source"),
                "detail-type": entry.get("DetailType"),
                "resources": entry.get("Resources", []),
                "detail": json.loads(entry.get("Detail") or "{}"),
            }
            entries.append({"EventId": self.put(event)})
        return {"FailedEntryCount": 0, "Entries": entries}

    def put(self, event: dict[str, Any]) -> str:
        """Route one event (``source``, ``detail-type``, ``detail``, ``resources``)."""
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [],
            **event,
        }
        self.history.append(event)
        for rule in list(self.rules):
            if rule.enabled and rule.pattern is not None and matches(rule.pattern, event):
                self._fire(rule, event)
        return event["id"]

    def _fire(self, rule: Rule, event: dict[str, Any]) -> None:
        rule.fired += 1
        for target in rule.targets:
            if "Input" in target:
                payload = json.loads(target["Input"])
            elif "InputPath" in target:
                payload = _json_path(event, target["InputPath"])
            elif "InputTransformer" in target:
                transformer = target["InputTransformer"]
                text = transformer["InputTemplate"]
                for name, path in transformer.get("InputPathsMap", {}).items():
                    value = _json_path(event, path)
                    text = text.replace(f"<{name}>", value if isinstance(value, str)
                                        else json.dumps(value))
                payload = json.loads(text)
            else:
                payload = event
            try:
                self.deliver(target, payload, rule)
            except Exception as error:  # a failed delivery is reported, not fatal
                self.failed_deliveries.append({"rule": rule.name, "target": target.get("Arn"),
                                               "error": f"{type(error).__name__}: {error}"})

    def fire_schedules(self, start: datetime, end: datetime) -> list[tuple[datetime, Rule]]:
        """Every scheduled firing in ``[start, end)``, in time order (not yet delivered)."""
        due = [(moment, rule) for rule in self.rules if rule.enabled and rule.schedule
               for moment in fire_times(rule.schedule, start, end, created=rule.created)]
        return sorted(due, key=lambda item: item[0])

    def scheduled_event(self, rule: Rule, moment: datetime) -> None:
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": [rule.arn], "detail": {},
        }
        self.history.append(event)
        self._fire(rule, event)
