"""Decision rules: turn a model score and an event's features into an action.

The spec's ``integration.rules`` are compiled once (at cold start) into a
``RuleSet``. ``RuleSet.decide`` evaluates them in order and the first rule
whose condition holds picks the action; when none holds, the spec's
``default_action`` applies with the rule id ``"default"``.

A condition that reads a feature the event does not have (missing or null)
is unknown, and an unknown condition does not match: a rule never fires on
data it could not see. Scores are compared as given (no rounding), so
``score >= 0.9`` holds for 0.9 and not for 0.8999.

This module is on the hot path of the stream consumer: standard library
(and the spec's own expression parser) only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mdlc_core import expressions

DEFAULT_RULE_ID = "default"


def utc_now() -> str:
    """An ISO 8601 UTC timestamp with milliseconds, as stored in decision records."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Decision:
    """One event's decision, with everything needed to explain it later."""

    event_id: str
    entity_id: str | None
    model_version: str
    score: float
    rule_id: str
    action: str
    features: Mapping[str, float | None] = field(default_factory=dict)
    decided_at: str = field(default_factory=utc_now)
    variant: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The decision log item (plain JSON data; ``event_id`` is the key)."""
        record: dict[str, Any] = {
            "event_id": self.event_id,
            "entity_id": self.entity_id,
            "model_version": self.model_version,
            "score": self.score,
            "rule_id": self.rule_id,
            "action": self.action,
            "features": dict(self.features),
            "decided_at": self.decided_at,
        }
        if self.variant is not None:
            record["variant"] = self.variant
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Decision:
        """The inverse of ``to_record`` (for idempotency results and workflow state)."""
        return cls(
            event_id=str(record["event_id"]),
            entity_id=record.get("entity_id"),
            model_version=str(record["model_version"]),
            score=float(record["score"]),
            rule_id=str(record["rule_id"]),
            action=str(record["action"]),
            features=dict(record.get("features") or {}),
            decided_at=str(record.get("decided_at") or utc_now()),
            variant=record.get("variant"),
        )


@dataclass(frozen=True)
class CompiledRule:
    id: str
    when: str
    action: str
    condition: expressions.Expression = field(repr=False, compare=False)


class RuleSet:
    """The spec's rules, compiled once; ``decide`` is safe to call per event."""

    def __init__(
        self,
        rules: Sequence[Mapping[str, Any]],
        default_action: str,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        known = None if feature_names is None else {"score", *feature_names}
        self.rules: tuple[CompiledRule, ...] = tuple(
            CompiledRule(
                id=rule["id"],
                when=rule["when"],
                action=rule["action"],
                condition=expressions.parse(rule["when"], known=known, boolean=True),
            )
            for rule in rules
        )
        if not self.rules:
            raise ValueError("a rule set needs at least one rule")
        self.default_action = default_action
        # Every variable any rule reads: missing ones are filled with None once
        # per event instead of each condition raising KeyError.
        self._names = frozenset().union(*(rule.condition.names for rule in self.rules))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RuleSet:
        """Compile ``integration`` of a spec dumped by ``ModelSpec.as_config()``."""
        integration = config.get("integration")
        if not integration:
            raise ValueError(f"spec {config.get('name')!r} has no integration section")
        return cls(integration["rules"], integration["default_action"])

    @property
    def actions(self) -> list[str]:
        """Every action a decision can name, rules first, then the default."""
        return list(dict.fromkeys([rule.action for rule in self.rules] + [self.default_action]))

    def rule(self, rule_id: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    def match(self, score: float, features: Mapping[str, Any]) -> tuple[str, str]:
        """``(rule_id, action)`` of the first rule that holds, else the default."""
        scope = {name: features.get(name) for name in self._names}
        scope["score"] = score
        for rule in self.rules:
            result = rule.condition.evaluate(scope)
            # None is an unknown condition (a null feature), which must not match.
            if result is not None and bool(result):
                return rule.id, rule.action
        return DEFAULT_RULE_ID, self.default_action

    def decide(
        self,
        event_id: str,
        score: float,
        features: Mapping[str, Any],
        model_version: str,
        *,
        entity_id: str | None = None,
        variant: str | None = None,
        decided_at: str | None = None,
    ) -> Decision:
        """Evaluate the rules for one scored event."""
        number = isinstance(score, int | float) and not isinstance(score, bool)
        if not number or not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        rule_id, action = self.match(score, features)
        return Decision(
            event_id=str(event_id),
            entity_id=entity_id,
            model_version=model_version,
            score=float(score),
            rule_id=rule_id,
            action=action,
            features=dict(features),
            decided_at=decided_at or utc_now(),
            variant=variant,
        )
