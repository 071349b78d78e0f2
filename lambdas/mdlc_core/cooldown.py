"""Re-training admission: at most one training per cooldown, never two at once (no AWS calls).

The trigger handler asks two questions before it starts a training:

1. is a training of this model RUNNING? (ListExecutions) - then no;
2. did one start less than ``cooldown_hours`` ago? - then no.

The second is answered by a conditional write, so two triggers that arrive
together cannot both pass: the write that sets ``started_at`` succeeds only
when the stored ``started_at`` is older than the cooldown (or absent), and
DynamoDB applies conditional writes one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SOURCES = ("schedule", "event", "alarm")


@dataclass(frozen=True)
class Trigger:
    """Why a re-training was requested."""

    source: str
    reason: str
    requested_at: datetime

    def as_input(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "reason": self.reason,
            "requested_at": self.requested_at.isoformat(),
        }


def parse_trigger(event: dict[str, Any], now: datetime | None = None) -> Trigger:
    """The trigger from an EventBridge event: the schedule's constant input, a
    ``MDLC Retrain Requested`` event, or a CloudWatch alarm state change."""
    now = now or datetime.now(UTC)
    detail_type = event.get("detail-type")
    detail = event.get("detail") or {}
    if detail_type == "CloudWatch Alarm State Change":
        alarm = detail.get("alarmName", "unknown alarm")
        state = (detail.get("state") or {}).get("reason", "")
        return Trigger("alarm", f"alarm {alarm}: {state}"[:500], now)
    if detail_type == "MDLC Retrain Requested":
        return Trigger("event", str(detail.get("reason") or "retrain requested")[:500], now)
    if event.get("source") == "schedule":
        return Trigger("schedule", "scheduled re-training", now)
    raise ValueError(
        f"not a re-training trigger: detail-type {detail_type!r}, source {event.get('source')!r}"
    )


def cooldown_cutoff(now: datetime, cooldown_hours: float) -> str:
    """The newest ``started_at`` that still lets a training start now (ISO 8601, UTC)."""
    return (now - timedelta(hours=cooldown_hours)).astimezone(UTC).isoformat()


def execution_name(trigger: Trigger) -> str:
    """A Step Functions execution name (80 characters of [A-Za-z0-9-_])."""
    stamp = trigger.requested_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"retrain-{trigger.source}-{stamp}"
