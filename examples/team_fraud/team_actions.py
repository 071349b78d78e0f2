"""The fraud team's rule action: open a case in the case-management system.

The case-management system consumes ``Fraud Case Requested`` events from
EventBridge; the event id is the order id, so a redelivered decision opens
no second case (the consumer deduplicates on it, and the integration calls
``perform`` at most once per event id anyway).

Bundled with the integration function (the module must be importable as
``team_actions``); the spec names it::

    actions:
      review: {kind: custom, handler: "team_actions:CaseManagementAction",
               options: {queue: high-touch}}
"""

from __future__ import annotations

import json
from typing import Any

from mdlc_core.actions import Action, register_action
from mdlc_core.decisions import Decision

DETAIL_TYPE = "Fraud Case Requested"


@register_action("case_management")
class CaseManagementAction(Action):
    """Put one ``Fraud Case Requested`` event per decision on the model's bus.

    Options: ``queue`` (the analysts' queue; default ``standard``).
    """

    def perform(self, decision: Decision) -> dict[str, Any]:
        detail = {
            "case_id": f"{self.model}:{decision.event_id}",
            "queue": self.options.get("queue", "standard"),
            "decision": decision.to_record(),
        }
        # put_event raises on a refused entry: the integration retries the
        # event instead of losing the case.
        event_id = self.put_event(
            decision,
            source=f"mdlc.{self.model or 'model'}.cases",
            detail_type=DETAIL_TYPE,
            detail=json.dumps(detail, separators=(",", ":"), default=str),
        )
        return {"case_id": detail["case_id"], "event_id": event_id}
