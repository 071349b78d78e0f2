"""CloudWatch alarms evaluated on the simulated clock, as CloudWatch evaluates them.

moto stores metric data but never evaluates an alarm. Each metric alarm of
the templates is evaluated over its last ``EvaluationPeriods`` periods of
``Period`` seconds with its statistic (from moto's ``GetMetricStatistics``),
``DatapointsToAlarm``, comparison and ``TreatMissingData``; composite alarms
evaluate their ``AlarmRule`` over the others' states. A state change is
published as EventBridge's "CloudWatch Alarm State Change" event and to the
alarm's actions (SNS topics), which is how alarms start re-training. Alarms
are evaluated when metric data arrives and at least hourly.

Alarms on metric math (``Metrics``) stay ``INSUFFICIENT_DATA`` locally: the
endpoint metrics they read (AWS/SageMaker invocations, errors) are not
emitted by the local endpoint (docs/local.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .hooks import ServiceError, ServiceHooks
from .resources import raw_client

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


@dataclass
class Alarm:
    name: str
    arn: str
    properties: dict[str, Any]
    composite: bool = False
    state: str = "INSUFFICIENT_DATA"
    reason: str = "Unchecked: initial alarm creation"
    changes: list[dict[str, Any]] = field(default_factory=list)


class AlarmEvaluator:
    """Every alarm of the deployed stacks."""

    def __init__(self, publish_event: Callable[[dict[str, Any]], None], *,
                 authorize: Callable[..., None] | None = None) -> None:
        self.alarms: dict[str, Alarm] = {}
        self.publish_event = publish_event
        #: CloudWatch publishes an alarm's actions as cloudwatch.amazonaws.com: the
        #: topic's policy and its key's policy must let it (permissions.py).
        self.authorize = authorize
        self.failed_actions: list[dict[str, Any]] = []
        self._cloudwatch = raw_client("cloudwatch")
        self._sns = raw_client("sns")
        # Metric alarms change when data arrives or time passes: evaluate them
        # when metrics were put, else at most hourly (an evaluation costs one
        # GetMetricStatistics per alarm).
        self._metrics_put = True
        self._evaluated_at: datetime | None = None

    def install(self, hooks: ServiceHooks) -> None:
        def put(params: dict[str, Any]) -> dict[str, Any]:
            self._metrics_put = True
            response = self._cloudwatch.put_metric_data(**params)
            response.pop("ResponseMetadata", None)
            return response

        hooks.add("cloudwatch", "PutMetricData", put)

    def add(self, alarm: Alarm) -> None:
        self.alarms[alarm.arn] = alarm

    @staticmethod
    def statistics(namespace: str, metric: str, dimensions: list[dict[str, str]],
                   start: datetime, end: datetime, period: int, statistic: str) -> list[float]:
        """``statistic`` of each period with data between ``start`` and ``end``, oldest
        first: moto's ``GetMetricStatistics``, asked of its backend in process.

        The same computation as the API call (moto's ``get_metric_statistics``
        on its stored data, which it keeps as naive UTC times, as it parses the
        request's), without serializing the request and the answer: an
        evaluation asks once per alarm, and through the API that cost more
        than the rest of the evaluation.
        """
        from moto.cloudwatch.models import cloudwatch_backends

        from .assembly import ACCOUNT, REGION

        def naive(moment: datetime) -> datetime:
            return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment

        points = cloudwatch_backends[ACCOUNT][REGION].get_metric_statistics(
            namespace, metric, naive(start), naive(end), period, [statistic],
            dimensions=dimensions, unit=None)
        return [float(point.get_statistics_for_type(statistic))
                for point in sorted(points, key=lambda point: point.timestamp)]

    def _metric_state(self, alarm: Alarm, now: datetime) -> tuple[str, str]:
        p = alarm.properties
        if "Metrics" in p:
            return "INSUFFICIENT_DATA", "metric math alarms are not evaluated locally"
        period = int(p.get("Period", 60))
        periods = int(p.get("EvaluationPeriods", 1))
        to_alarm = int(p.get("DatapointsToAlarm", periods))
        statistic = p.get("Statistic") or "Average"
        end = now
        start = end - timedelta(seconds=period * periods)
        values = self.statistics(p["Namespace"], p["MetricName"],
                                 [{"Name": d["Name"], "Value": str(d["Value"])}
                                  for d in p.get("Dimensions", [])],
                                 start, end, period, statistic)
        threshold = float(p["Threshold"])
        breaching = [_COMPARE[p["ComparisonOperator"]](v, threshold) for v in values]
        missing = periods - len(values)
        treat = p.get("TreatMissingData", "missing")
        if treat == "breaching":
            breaching += [True] * missing
        elif treat == "notBreaching":
            breaching += [False] * missing
        elif not values:
            return ("INSUFFICIENT_DATA" if treat == "missing" else alarm.state,
                    "no datapoints in the evaluation range")
        count = sum(breaching)
        shown = ", ".join(f"{v:g}" for v in values[-periods:]) or "none"
        if count >= to_alarm:
            return "ALARM", (f"Threshold Crossed: {count} out of the last {periods} datapoints "
                             f"[{shown}] were {p['ComparisonOperator']} {threshold:g}")
        return "OK", (f"Threshold not crossed: datapoints [{shown}] against "
                      f"{p['ComparisonOperator']} {threshold:g}")

    def _composite_state(self, alarm: Alarm) -> tuple[str, str]:
        rule = alarm.properties["AlarmRule"]

        def state_of(match: re.Match[str]) -> str:
            wanted, target = match.group(1), match.group(2)
            other = self.alarms.get(target) or next(
                (a for a in self.alarms.values() if a.name == target), None)
            return "True" if other is not None and other.state == wanted else "False"

        expression = re.sub(r'(ALARM|OK|INSUFFICIENT_DATA)\("?([^")]+)"?\)', state_of, rule)
        expression = expression.replace("AND", "and").replace("OR", "or").replace("NOT", "not")
        if not re.fullmatch(r"[\sA-Za-z()]*", expression):
            return alarm.state, f"rule not evaluated: {rule}"
        result = eval(expression, {"__builtins__": {}}, {})  # only True/False/and/or/not/()
        return ("ALARM" if result else "OK"), f"alarm rule {'true' if result else 'false'}"

    def evaluate(self, now: datetime | None = None) -> list[Alarm]:
        """Evaluate every alarm; returns those whose state changed."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        if not self._metrics_put and self._evaluated_at is not None and (
                now - self._evaluated_at).total_seconds() < 3600:
            return []
        self._metrics_put = False
        self._evaluated_at = now
        changed = []
        ordered = sorted(self.alarms.values(), key=lambda a: a.composite)
        for alarm in ordered:
            state, reason = (self._composite_state(alarm) if alarm.composite
                             else self._metric_state(alarm, now))
            if state == alarm.state:
                continue
            previous = alarm.state
            alarm.state, alarm.reason = state, reason
            change = {"time": now.isoformat(), "from": previous, "to": state, "reason": reason}
            alarm.changes.append(change)
            changed.append(alarm)
            self.publish_event({
                "source": "aws.cloudwatch",
                "detail-type": "CloudWatch Alarm State Change",
                "resources": [alarm.arn],
                "detail": {"alarmName": alarm.name,
                           "state": {"value": state, "reason": reason,
                                     "timestamp": now.isoformat()},
                           "previousState": {"value": previous}},
            })
            actions = {"ALARM": "AlarmActions", "OK": "OKActions",
                       "INSUFFICIENT_DATA": "InsufficientDataActions"}[state]
            for action in alarm.properties.get(actions, []):
                if ":sns:" in str(action) and self.authorize is not None:
                    try:
                        self.authorize("cloudwatch.amazonaws.com", "sns", "Publish",
                                       {"TopicArn": action}, source=alarm.arn)
                    except ServiceError as error:
                        self.failed_actions.append({"alarm": alarm.name, "action": action,
                                                    "error": error.message})
                        continue
                if ":sns:" in str(action):
                    self._sns.publish(TopicArn=action, Subject=f"ALARM: {alarm.name}"[:100]
                                      if state == "ALARM" else f"{state}: {alarm.name}"[:100],
                                      Message=json.dumps({"AlarmName": alarm.name,
                                                          "NewStateValue": state,
                                                          "NewStateReason": reason}))
        return changed
