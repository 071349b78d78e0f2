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

``ActionLedger`` is how an action is performed once and recorded once,
whatever call fails: a conditional put claims the key before acting, the
action runs, and an update completes the claim (see its docstring).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from mdlc_core.decisions import Decision

logger = logging.getLogger("mdlc.actions")


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

    ``perform`` is called at most once per event id (the stream consumer and
    the batch decisions call it through ``ActionLedger``, the state-machine
    step through Powertools idempotency), must raise on failure so the event
    is retried, and returns
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

    def put_event(
        self, decision: Decision, *, source: str, detail_type: str, detail: str
    ) -> str | None:
        """Put one event on the model's bus (``targets.event_bus_name``, default
        the account's default bus) and return its EventBridge id.

        ``put_events`` reports a refused entry in a 200 response, not as an
        error; this raises :class:`ActionError` naming the decision's event id,
        so the caller's retry acts again instead of losing the event.
        """
        entry = {"Source": source, "DetailType": detail_type, "Detail": detail}
        if self.targets.event_bus_name:
            entry["EventBusName"] = self.targets.event_bus_name
        response = self.clients.get("events").put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            failed = response["Entries"][0]
            raise ActionError(
                f"EventBridge refused {decision.event_id}: "
                f"{failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            )
        return response["Entries"][0].get("EventId")

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
        event_id = self.put_event(decision, source=f"mdlc.{self.model or 'model'}",
                                  detail_type="MDLC Decision", detail=self.message(decision))
        return {"event_id": event_id}


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


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """The inverse of :func:`to_attribute` (numbers come back as float or int)."""
    (kind, value), = attribute.items()
    if kind == "NULL":
        return None
    if kind == "BOOL":
        return bool(value)
    if kind == "N":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in \
            value.lower() else number
    if kind == "S":
        return value
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    raise TypeError(f"decision log attribute of type {kind} is not supported")


# --- exactly once: the action ledger ---------------------------------------------

#: ``action_status`` of a ledger item.
ACTING, DONE, UNCONFIRMED = "acting", "done", "unconfirmed"


@dataclass(frozen=True)
class Outcome:
    """What :meth:`ActionLedger.perform_once` did for one key.

    ``status``:

    * ``acted``: performed now and recorded (``record`` is what was logged);
    * ``already``: recorded as done by an earlier delivery; not performed again;
    * ``in_progress``: claimed by an attempt whose lease is still running; the
      caller reports the record as failed so it is retried later, not lost;
    * ``unconfirmed``: claimed by an attempt that ended without recording
      whether it acted; never performed again (it may have been performed), the
      ledger item says ``unconfirmed`` and the caller dead-letters it with
      ``reason``;
    * ``failed``: a call failed; nothing was performed, or it was performed and
      the completion is kept in memory for the retry (``reason`` says which).
    """

    status: str
    record: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class _Unrecorded:
    token: str
    record: dict[str, Any]
    receipt: dict[str, Any]


def _error_code(error: BaseException) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


class ActionLedger:
    """Perform each key's action once, and record it once, in a DynamoDB table.

    Powertools idempotency stores its lock apart from the record of what was
    done, and when saving the result fails after the action (a throttled
    ``UpdateItem``), the lock stays in progress: retries fail until it expires
    and the next one acts again, with nothing in the decision log (issue 14.2).
    Here the record *is* the lock:

    1. **claim**: ``PutItem`` of the record with ``action_status = acting``, a
       claim token and a lease (``action_lease_expires_at``: when the claiming
       invocation must have ended), conditional on the key being absent;
    2. **perform** the action (only after the claim succeeded);
    3. **complete**: ``UpdateItem`` to ``done`` with the receipt, conditional on
       the claim token; retried with backoff, and if it still fails the
       completion is kept in memory, so the retry of the record in the same
       execution environment completes it without acting again.

    A delivery that finds the key ``done`` returns the stored record (it was
    acted on; the log holds it once). One that finds it ``acting`` within the
    lease reports ``in_progress`` (the record is retried). One that finds it
    ``acting`` past the lease cannot know whether the action ran (the claimant
    died, or could not record it from another environment): it never acts
    again, marks the item ``unconfirmed`` and reports it, to be dead-lettered
    with that reason. If the action raises, the claim is deleted (the action
    did not happen; the retry acts).

    ``nest``: store the record under that attribute (the idempotency table of
    batch inference) instead of as the item's own attributes (the decision
    log, whose items are the decision records). ``ttl_attribute``/``ttl_seconds``:
    an expiry for tables with a TTL.
    """

    #: Attempts of the completion (and of a release) after the SDK's own retries;
    #: the backoff between them is short so a batch of 100 under persistent
    #: throttling still ends well within a Lambda timeout (about 0.14 s each).
    COMPLETE_ATTEMPTS = 4

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        key_name: str = "event_id",
        nest: str | None = None,
        ttl_attribute: str | None = None,
        ttl_seconds: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        backoff_seconds: float = 0.02,
    ) -> None:
        if not table_name:
            raise ValueError("the action ledger needs a table (DECISIONS_TABLE or "
                             "IDEMPOTENCY_TABLE), which is not set")
        self.client = client
        self.table_name = table_name
        self.key_name = key_name
        self.nest = nest
        self.ttl_attribute = ttl_attribute
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.sleep = sleep
        self.backoff_seconds = backoff_seconds
        #: Performed here, completion not yet written: key -> what to write.
        self._unrecorded: dict[str, _Unrecorded] = {}

    def perform_once(self, key: str, record: Mapping[str, Any],
                     perform: Callable[[], Mapping[str, Any]], *,
                     lease_seconds: float) -> Outcome:
        """Claim ``key``, call ``perform`` (returns a receipt), complete; see the class."""
        record = dict(record)
        pending = self._unrecorded.get(key)
        if pending is not None:  # performed by an earlier attempt in this environment
            return self._complete(key, pending.token, pending.record, pending.receipt)
        token = uuid.uuid4().hex
        now = self.clock()
        try:
            self._claim(key, record, token, now + lease_seconds)
        except Exception as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                return Outcome("failed", reason=f"claim of {key} failed: {error}")
            return self._claimed_before(key, now)
        try:
            receipt = dict(perform() or {})
        except Exception as error:
            self._release(key, token)
            return Outcome("failed", reason=f"action of {key} failed: "
                                            f"{type(error).__name__}: {error}")
        return self._complete(key, token, record, receipt)

    # -- the three writes ----------------------------------------------------------

    def _key(self, key: str) -> dict[str, Any]:
        return {self.key_name: {"S": key}}

    def _claim(self, key: str, record: dict[str, Any], token: str, lease: float) -> None:
        if self.nest:
            item = {self.nest: to_attribute(record)}
        else:
            item = {k: to_attribute(v) for k, v in record.items() if k != self.key_name}
        item.update(self._key(key))
        item["action_status"] = {"S": ACTING}
        item["action_claim"] = {"S": token}
        item["action_lease_expires_at"] = {"N": repr(round(lease, 3))}
        if self.ttl_attribute and self.ttl_seconds:
            item[self.ttl_attribute] = {"N": str(int(self.clock()) + self.ttl_seconds)}
        self.client.put_item(
            TableName=self.table_name, Item=item,
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": self.key_name},
        )

    def _complete(self, key: str, token: str, record: dict[str, Any],
                  receipt: dict[str, Any]) -> Outcome:
        error: Exception | None = None
        for attempt in range(self.COMPLETE_ATTEMPTS):
            try:
                self.client.update_item(
                    TableName=self.table_name, Key=self._key(key),
                    UpdateExpression="SET action_status = :done, action_receipt = :receipt, "
                                     "acted_at = :at REMOVE action_lease_expires_at",
                    ConditionExpression="action_claim = :token",
                    ExpressionAttributeValues={
                        ":done": {"S": DONE}, ":receipt": to_attribute(receipt),
                        ":at": {"N": repr(round(self.clock(), 3))}, ":token": {"S": token},
                    },
                )
            except Exception as failure:
                error = failure
                if _error_code(failure) == "ConditionalCheckFailedException":
                    break  # no longer our claim: nothing this attempt can fix
                if attempt + 1 < self.COMPLETE_ATTEMPTS:
                    self.sleep(self.backoff_seconds * 2**attempt)
                continue
            self._unrecorded.pop(key, None)
            return Outcome("acted", record=record, receipt=receipt)
        self._unrecorded[key] = _Unrecorded(token, record, receipt)
        logger.error("action performed but not recorded", extra={"key": key})
        return Outcome("failed", record=record, receipt=receipt,
                       reason=f"action of {key} performed, its completion not written: {error}")

    def _release(self, key: str, token: str) -> None:
        for attempt in range(self.COMPLETE_ATTEMPTS):
            try:
                self.client.delete_item(
                    TableName=self.table_name, Key=self._key(key),
                    ConditionExpression="action_claim = :token",
                    ExpressionAttributeValues={":token": {"S": token}},
                )
                return
            except Exception as failure:
                if _error_code(failure) == "ConditionalCheckFailedException":
                    return
                if attempt + 1 < self.COMPLETE_ATTEMPTS:
                    self.sleep(self.backoff_seconds * 2**attempt)
        # The claim stays: after its lease the key is reported unconfirmed, never doubled.
        logger.error("claim of a failed action not released", extra={"key": key})

    # -- a key claimed before --------------------------------------------------------

    def _claimed_before(self, key: str, now: float) -> Outcome:
        try:
            item = self.client.get_item(TableName=self.table_name, Key=self._key(key),
                                        ConsistentRead=True).get("Item")
        except Exception as error:
            return Outcome("failed", reason=f"read of {key} failed: {error}")
        if item is None:  # released between our put and our read: retry the record
            return Outcome("failed", reason=f"claim of {key} was released meanwhile")
        stored = self._record(item)
        status = item.get("action_status", {}).get("S", DONE)  # older items: written after acting
        receipt = from_attribute(item["action_receipt"]) if "action_receipt" in item else None
        if status == DONE:
            return Outcome("already", record=stored, receipt=receipt)
        if status == UNCONFIRMED:
            return Outcome("unconfirmed", record=stored, reason=self._unconfirmed(key, stored))
        lease = float(item.get("action_lease_expires_at", {}).get("N", "0"))
        if lease > now:
            return Outcome("in_progress", record=stored,
                           reason=f"{key} is being acted on by another attempt until "
                                  f"{lease:.0f} (epoch seconds)")
        try:
            self.client.update_item(
                TableName=self.table_name, Key=self._key(key),
                UpdateExpression="SET action_status = :unconfirmed",
                ConditionExpression="action_claim = :token AND action_status = :acting",
                ExpressionAttributeValues={":unconfirmed": {"S": UNCONFIRMED},
                                           ":acting": {"S": ACTING},
                                           ":token": item["action_claim"]},
            )
        except Exception as error:
            return Outcome("failed", reason=f"marking {key} unconfirmed failed: {error}")
        return Outcome("unconfirmed", record=stored, reason=self._unconfirmed(key, stored))

    def _record(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self.nest:
            return from_attribute(item[self.nest]) if self.nest in item else {}
        ledger = {"action_status", "action_claim", "action_lease_expires_at",
                  "action_receipt", "acted_at", self.ttl_attribute}
        return {k: from_attribute(v) for k, v in item.items() if k not in ledger}

    @staticmethod
    def _unconfirmed(key: str, record: Mapping[str, Any]) -> str:
        action = record.get("action") or "the action"
        return (f"action {action!r} of {key} was claimed by an attempt that ended without "
                "recording whether it acted (lease past); it may have been performed, so it "
                "is not performed again: confirm it at the target, then replay or discard")
