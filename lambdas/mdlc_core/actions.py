"""Pluggable actions, and the decision log every decision is written to.

An action turns a ``Decision`` into a side effect: publish to SNS, send to
SQS, put to EventBridge, or nothing beyond the decision log (``log``). The
spec maps each action name to a target kind (``integration.actions``); an
action name without an entry is ``log``.

Teams add their own kind by subclassing ``Action`` and registering it::

    from mdlc_core.actions import Action, register_action

    @register_action("webhook")
    class WebhookAction(Action):
        def perform(self, decision):
            ...  # self.clients.get("lambda"), self.options, self.name
            return {"sent": True}

and naming it in the spec as ``{kind: custom, handler: "team_actions:WebhookAction"}``
(the module must be bundled with the function; importing it registers the
class). Clients are injected through ``Clients``, so nothing here imports
boto3 until a client is first needed, and tests pass stubs.

Every decision goes to the ``DecisionLog`` (a DynamoDB table keyed by
``event_id``, env ``DECISIONS_TABLE``, and/or dated JSON objects in S3, env
``DECISIONS_BUCKET``) with the event id, model package version, score,
rule id, action and the features the model saw.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from mdlc_core.decisions import Decision


class ActionError(RuntimeError):
    """An action's target refused the decision; the event is retried."""


class Clients:
    """AWS clients by service name: injected ones first, else created on first use."""

    def __init__(
        self,
        factory: Callable[[str], Any] | None = None,
        **clients: Any,
    ) -> None:
        self._factory = factory
        self._clients: dict[str, Any] = {
            name.replace("_", "-"): client for name, client in clients.items()
        }

    def get(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            if self._factory is None:
                import boto3  # deferred: the pure logic must load without it

                self._factory = boto3.client
            client = self._clients[service] = self._factory(service)
        return client


@dataclass(frozen=True)
class Targets:
    """Where the built-in kinds send: one topic, queue and bus per model."""

    topic_arn: str | None = None
    queue_url: str | None = None
    event_bus_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Targets:
        env = os.environ if environ is None else environ
        return cls(
            topic_arn=env.get("ACTION_TOPIC_ARN") or None,
            queue_url=env.get("ACTION_QUEUE_URL") or None,
            event_bus_name=env.get("ACTION_EVENT_BUS_NAME") or None,
        )


ACTION_KINDS: dict[str, type[Action]] = {}


def register_action(kind: str) -> Callable[[type[Action]], type[Action]]:
    """Class decorator: make ``kind`` resolve to this ``Action`` subclass."""

    def decorate(cls: type[Action]) -> type[Action]:
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise TypeError(f"{cls!r} is not an Action subclass")
        cls.kind = kind
        ACTION_KINDS[kind] = cls
        return cls

    return decorate


class Action(ABC):
    """Base class: one named action of the spec, bound to its target.

    ``perform`` is called at most once per event id (the callers wrap it in
    idempotency), must raise on failure so the event is retried, and returns
    a small JSON-serializable receipt (message id, ...), kept with the result.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        *,
        clients: Clients,
        targets: Targets,
        model: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.clients = clients
        self.targets = targets
        self.model = model
        self.options = dict(options or {})

    @abstractmethod
    def perform(self, decision: Decision) -> dict[str, Any]:
        """Act on ``decision``; return a receipt (what was sent, its id)."""

    def message(self, decision: Decision) -> str:
        return json.dumps({"model": self.model, **decision.to_record()}, separators=(",", ":"))

    def _require(self, value: str | None, env: str) -> str:
        if not value:
            raise ActionError(f"action {self.name!r} ({self.kind}) needs {env}, which is not set")
        return value


@register_action("log")
class LogAction(Action):
    """Nothing beyond the decision log, which every decision is written to anyway."""

    def perform(self, decision: Decision) -> dict[str, Any]:
        return {}


@register_action("sns")
class SnsAction(Action):
    """Publish to the model's topic; subscribers filter on the ``action`` attribute."""

    def perform(self, decision: Decision) -> dict[str, Any]:
        topic = self._require(self.targets.topic_arn, "ACTION_TOPIC_ARN")
        response = self.clients.get("sns").publish(
            TopicArn=topic,
            Message=self.message(decision),
            MessageAttributes=_attributes(decision),
        )
        return {"message_id": response.get("MessageId")}


@register_action("sqs")
class SqsAction(Action):
    """Send to the model's queue; on a FIFO queue the event id deduplicates."""

    def perform(self, decision: Decision) -> dict[str, Any]:
        queue = self._require(self.targets.queue_url, "ACTION_QUEUE_URL")
        extra: dict[str, Any] = {}
        if queue.endswith(".fifo"):
            extra = {
                "MessageGroupId": decision.entity_id or decision.event_id,
                "MessageDeduplicationId": decision.event_id[:128],
            }
        response = self.clients.get("sqs").send_message(
            QueueUrl=queue,
            MessageBody=self.message(decision),
            MessageAttributes=_attributes(decision),
            **extra,
        )
        return {"message_id": response.get("MessageId")}


@register_action("eventbridge")
class EventBridgeAction(Action):
    """Put a ``MDLC Decision`` event on the model's bus (default: the account's default bus)."""

    def perform(self, decision: Decision) -> dict[str, Any]:
        entry = {
            "Source": f"mdlc.{self.model or 'model'}",
            "DetailType": "MDLC Decision",
            "Detail": self.message(decision),
        }
        if self.targets.event_bus_name:
            entry["EventBusName"] = self.targets.event_bus_name
        response = self.clients.get("events").put_events(Entries=[entry])
        # put_events reports per-entry failures in a 200 response, not as an error.
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise ActionError(
                f"EventBridge refused {decision.event_id}: "
                f"{failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            )
        return {"event_id": response["Entries"][0].get("EventId")}


def _attributes(decision: Decision) -> dict[str, dict[str, str]]:
    return {
        "action": {"DataType": "String", "StringValue": decision.action},
        "rule_id": {"DataType": "String", "StringValue": decision.rule_id},
    }


def _action_class(name: str, target: Mapping[str, Any]) -> type[Action]:
    kind = target.get("kind", "log")
    if kind == "custom":
        module_name, _, class_name = str(target.get("handler") or "").partition(":")
        if not module_name or not class_name:
            raise ValueError(f"action {name!r}: a custom action needs handler 'module:Class'")
        cls = getattr(importlib.import_module(module_name), class_name)
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise TypeError(f"action {name!r}: {target['handler']} is not an Action subclass")
        return cls
    try:
        return ACTION_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"action {name!r}: unknown kind {kind!r}; registered: {sorted(ACTION_KINDS)}"
        ) from None


class Dispatcher:
    """Every action of a spec, built once; ``perform`` runs the decision's action."""

    def __init__(self, actions: Mapping[str, Action]) -> None:
        self.actions = dict(actions)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        clients: Clients,
        targets: Targets | None = None,
    ) -> Dispatcher:
        integration = config.get("integration") or {}
        declared: Mapping[str, Any] = integration.get("actions") or {}
        names = [rule["action"] for rule in integration.get("rules", [])]
        names.append(integration.get("default_action", "log"))
        targets = targets or Targets.from_env()
        actions = {}
        for name in dict.fromkeys([*names, *declared]):
            target = declared.get(name) or {"kind": "log"}
            actions[name] = _action_class(name, target)(
                name,
                clients=clients,
                targets=targets,
                model=str(config.get("name", "")),
                options=target.get("options"),
            )
        return cls(actions)

    def perform(self, decision: Decision) -> dict[str, Any]:
        action = self.actions.get(decision.action)
        if action is None:
            raise ActionError(
                f"decision {decision.event_id} names unknown action {decision.action!r}"
            )
        receipt = action.perform(decision) or {}
        return {"action": decision.action, "kind": action.kind, **receipt}


# --- the decision log -------------------------------------------------------------


def to_attribute(value: Any) -> dict[str, Any]:
    """A JSON-like value as a DynamoDB attribute (floats as numbers, NaN as null)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return {"NULL": True}
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in the decision log")


class DecisionLog:
    """Where every decision is recorded so it can be explained later.

    DynamoDB items are keyed by ``event_id`` (a string partition key) and
    overwritten by a redelivery with the same record, so writing is
    idempotent. S3 objects are ``<prefix>dt=YYYY-MM-DD/<event_id>.json``.
    """

    BATCH = 25  # BatchWriteItem's limit
    RETRIES = 3

    def __init__(
        self,
        clients: Clients,
        table_name: str | None = None,
        bucket: str | None = None,
        prefix: str = "decisions/",
    ) -> None:
        if not table_name and not bucket:
            raise ValueError("the decision log needs DECISIONS_TABLE, DECISIONS_BUCKET or both")
        self.clients = clients
        self.table_name = table_name
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_env(cls, clients: Clients, environ: Mapping[str, str] | None = None) -> DecisionLog:
        env = os.environ if environ is None else environ
        return cls(
            clients,
            table_name=env.get("DECISIONS_TABLE") or None,
            bucket=env.get("DECISIONS_BUCKET") or None,
        )

    def write(self, decision: Decision) -> None:
        record = decision.to_record()
        if self.table_name:
            self.clients.get("dynamodb").put_item(
                TableName=self.table_name,
                Item={k: to_attribute(v) for k, v in record.items()},
            )
        if self.bucket:
            self._put_object(record)

    def write_many(self, decisions: Iterable[Decision]) -> list[str]:
        """Write many decisions; returns the event ids that could not be written."""
        # BatchWriteItem rejects a request with the same key twice; a batch may
        # hold a producer's resend, whose record is identical anyway.
        records = {d.event_id: d.to_record() for d in decisions}
        failed: set[str] = set()
        if self.table_name:
            items = list(records.values())
            for start in range(0, len(items), self.BATCH):
                failed.update(self._batch_write(items[start : start + self.BATCH]))
        if self.bucket:
            for event_id, record in records.items():
                try:
                    self._put_object(record)
                except Exception:  # reported per event, so the others still count
                    failed.add(event_id)
        return sorted(failed)

    def _batch_write(self, records: Sequence[dict[str, Any]]) -> list[str]:
        requests = [
            {"PutRequest": {"Item": {k: to_attribute(v) for k, v in r.items()}}} for r in records
        ]
        client = self.clients.get("dynamodb")
        for _ in range(self.RETRIES):
            try:
                response = client.batch_write_item(RequestItems={self.table_name: requests})
            except Exception:
                return [r["event_id"] for r in records]
            requests = (response.get("UnprocessedItems") or {}).get(self.table_name) or []
            if not requests:
                return []
        return [r["PutRequest"]["Item"]["event_id"]["S"] for r in requests]

    def _put_object(self, record: Mapping[str, Any]) -> None:
        name = quote(record["event_id"], safe="")
        key = f"{self.prefix}dt={record['decided_at'][:10]}/{name}.json"
        self.clients.get("s3").put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(record, separators=(",", ":")).encode(),
            ContentType="application/json",
        )
