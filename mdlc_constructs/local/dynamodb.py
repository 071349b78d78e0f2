"""DynamoDB, locally: moto's item operations without the HTTP round trip.

The online feature store, the idempotency table and the decision log make
several DynamoDB calls per event, and a simulation makes tens of thousands:
through botocore and moto's generic response serializer each costs
milliseconds. :class:`FastItems` answers the item operations by calling
moto's own DynamoDB request handler in process (the same code, conditions,
expressions and errors, without serializing the request and the response);
everything else still goes through moto as usual.

``TransactWriteItems``, in time proportional to the items written:

moto implements a transaction by deep-copying every table it touches
first (for the rollback), so each one costs as much as the table is large:
the online feature store, which writes one transaction per event, slows
down quadratically over a simulation. This implementation applies each
operation with moto's own single-item calls, conditions included
(``PutItem``/``UpdateItem``/``DeleteItem`` with the operation's
``ConditionExpression``; a ``ConditionCheck`` as a conditional re-put of the
item as it is), and on the first failed condition restores the items it
already changed and raises ``TransactionCanceledException`` with AWS's
per-item ``CancellationReasons``. Local invocations are serialized, so no
other writer sees the intermediate state.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from typing import Any

from .hooks import ServiceError, ServiceHooks
from .resources import raw_client

_SHARED = ("TableName", "ConditionExpression", "ExpressionAttributeNames",
           "ExpressionAttributeValues")


class TransactionCanceled(ServiceError):
    """``TransactionCanceledException`` with AWS's per-item ``CancellationReasons``."""


#: Item operations answered in process, and moto's handler method for each.
FAST_OPERATIONS = {"GetItem": "get_item", "PutItem": "put_item", "UpdateItem": "update_item",
                   "DeleteItem": "delete_item", "BatchGetItem": "batch_get_item",
                   "BatchWriteItem": "batch_write_item", "Query": "query"}


_NAME = r"(?:#\w+|[A-Za-z_]\w*)"
_SIMPLE_SET = re.compile(rf"^\s*SET\s+{_NAME}\s*=\s*:\w+(?:\s*,\s*{_NAME}\s*=\s*:\w+)*\s*$",
                         re.IGNORECASE)
_SIMPLE_PROJECTION = re.compile(rf"^\s*{_NAME}(?:\s*,\s*{_NAME})*\s*$")
_NOT_EXISTS = re.compile(rf"^\s*attribute_not_exists\(\s*({_NAME})\s*\)\s*$")
_EQUALS = re.compile(rf"^\s*({_NAME})\s*=\s*(:\w+)\s*$")


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """DynamoDB equality of two attribute values: numbers by value, the rest as given."""
    if "N" in left and "N" in right:
        from decimal import Decimal

        return Decimal(left["N"]) == Decimal(right["N"])
    return left == right


@functools.cache
def _reserved_words() -> frozenset[str]:
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    return frozenset(w.upper() for w in ReservedKeywords.get_reserved_keywords())


class FastItems:
    """moto's DynamoDB handler called directly for the item operations.

    Four operations the stream path makes per event take a shortcut through
    moto's backend where their expressions are plain, as tests/test_local_runtime.py
    checks against moto's own answers: an ``UpdateItem`` that only ``SET``s
    attributes to values (Powertools idempotency's), a ``GetItem`` of a whole
    item, a ``PutItem`` whose
    condition is ``attribute_not_exists(a)`` or ``a = :v`` (the feature
    store's), and a ``BatchGetItem`` whose projection names top-level
    attributes (the online feature reader's). moto parses and validates such
    expressions at length for each call; anything else goes to moto.
    """

    def install(self, hooks: ServiceHooks) -> None:
        for operation in FAST_OPERATIONS:
            hooks.add("dynamodb", operation,
                      lambda params, operation=operation: self.run(operation, params))

    def run(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.shortcut(operation, params)
        return self.call(operation, params) if answer is None else answer

    @staticmethod
    def _plain(names: list[str]) -> bool:
        """No unaliased reserved word (moto and DynamoDB refuse those: let moto say so)."""
        reserved = _reserved_words()
        return not any(n.upper() in reserved for n in names if not n.startswith("#"))

    @staticmethod
    def _backend() -> Any:
        from moto.dynamodb.models import dynamodb_backends

        from .assembly import ACCOUNT, REGION

        return dynamodb_backends[ACCOUNT][REGION]

    def shortcut(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The answer without moto's expression machinery, or None where moto must answer
        (anything the shortcut does not cover, and every error it does not raise itself:
        an unknown table, an undefined ``#name`` or ``:value``, a bad key)."""
        shortcuts = {"UpdateItem": self._simple_update, "BatchGetItem": self._simple_batch_get,
                     "PutItem": self._simple_put, "GetItem": self._simple_get}
        if operation not in shortcuts:
            return None
        return shortcuts[operation](params)

    def _table(self, name: Any) -> Any:
        """moto's table, or None when there is none (moto reports ResourceNotFound)."""
        return self._backend().tables.get(name) if isinstance(name, str) else None

    @staticmethod
    def _key_names(table: Any) -> set[str]:
        return {k for k in (table.hash_key_attr, table.range_key_attr) if k}

    @staticmethod
    def _attribute(reference: str, names: dict[str, str]) -> str | None:
        """The attribute a ``#name`` or plain name stands for; None if the alias is undefined."""
        return names.get(reference) if reference.startswith("#") else reference

    def _simple_update(self, params: dict[str, Any]) -> dict[str, Any] | None:
        expression = params.get("UpdateExpression", "")
        if (not _SIMPLE_SET.match(expression) or params.get("ConditionExpression")
                or params.get("Expected") or params.get("ReturnValues", "NONE") != "NONE"):
            return None
        table = self._table(params.get("TableName"))
        key = params.get("Key") or {}
        if table is None or set(key) != self._key_names(table):
            return None
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        assignments = [tuple(part.strip() for part in assignment.partition("=")[::2])
                       for assignment in expression.strip()[3:].split(",")]
        if not self._plain([target for target, _ in assignments]):
            return None
        updates = {}
        for target, value_ref in assignments:
            name = self._attribute(target, names)
            if name is None or value_ref not in values or name in key:
                return None  # undefined alias or value, or a key attribute: moto's errors
            updates[name] = values[value_ref]
        backend = self._backend()
        existing = backend.get_item(params["TableName"], key)
        attributes = dict(existing.to_json()["Attributes"]) if existing else dict(key)
        attributes.update(updates)
        backend.put_item(params["TableName"], attributes, overwrite=True)
        # What moto's handler answers (its fixed capacity figure included).
        return {"ConsumedCapacity": {"TableName": params["TableName"], "CapacityUnits": 0.5}}

    def _simple_get(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("ProjectionExpression") or params.get("AttributesToGet") or params.get(
                "ExpressionAttributeNames") is not None:
            return None
        table = self._table(params.get("TableName"))
        key = params.get("Key") or {}
        if table is None or set(key) != self._key_names(table) or any(
                not next(iter(v.values()), None) for v in key.values()):
            return None
        item = self._backend().get_item(params["TableName"], key)
        return {"Item": item.to_json()["Attributes"]} if item else {}

    def _simple_put(self, params: dict[str, Any]) -> dict[str, Any] | None:
        condition = params.get("ConditionExpression")
        if (not condition or params.get("Expected")
                or params.get("ReturnValues", "NONE") != "NONE"):
            return None
        not_exists, equals = _NOT_EXISTS.match(condition), _EQUALS.match(condition)
        if not (not_exists or equals):
            return None
        table = self._table(params.get("TableName"))
        if table is None or getattr(table, "global_indexes", None):
            return None
        item = params.get("Item") or {}
        key_names = sorted(self._key_names(table))
        if any(not next(iter(item.get(k, {"": ""}).values())) for k in key_names):
            return None  # a missing or empty key: moto's validation message
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        target = (not_exists or equals).group(1)  # type: ignore[union-attr]
        name = self._attribute(target, names)
        value_ref = equals.group(2) if equals else None
        if name is None or not self._plain([target]) or (
                value_ref is not None and value_ref not in values):
            return None  # undefined alias or value, or a reserved word: moto's errors
        backend = self._backend()
        existing = backend.get_item(params["TableName"], {k: item[k] for k in key_names})
        current = existing.to_json()["Attributes"] if existing else None
        if value_ref is None:
            passed = current is None or name not in current
        else:
            passed = current is not None and name in current and _same(current[name],
                                                                       values[value_ref])
        if not passed:
            extra = {"Item": current} if current and params.get(
                "ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else {}
            raise ServiceError("ConditionalCheckFailedException",
                               "The conditional request failed", extra=extra)
        backend.put_item(params["TableName"], item, overwrite=True)
        return {}  # what moto's handler answers for a put without ReturnValues

    def _simple_batch_get(self, params: dict[str, Any]) -> dict[str, Any] | None:
        backend = self._backend()
        responses: dict[str, list[dict[str, Any]]] = {}
        for table_name, request in params.get("RequestItems", {}).items():
            projection = request.get("ProjectionExpression")
            table = self._table(table_name)
            if table is None or request.get("AttributesToGet") or (
                    projection and not _SIMPLE_PROJECTION.match(projection)):
                return None
            wanted: set[str] | None = None
            if projection:
                references = [p.strip() for p in projection.split(",")]
                names = request.get("ExpressionAttributeNames") or {}
                attributes = [self._attribute(r, names) for r in references]
                if not self._plain(references) or None in attributes:
                    return None  # a reserved word or undefined alias: moto's errors
                wanted = set(attributes)  # type: ignore[arg-type]
            found = []
            for key in request.get("Keys", []):
                if set(key) != self._key_names(table):
                    return None
                item = backend.get_item(table_name, key)
                if item is None:
                    continue
                values = item.to_json()["Attributes"]
                found.append(values if wanted is None else
                             {k: v for k, v in values.items() if k in wanted})
            responses[table_name] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from moto.core.exceptions import JsonRESTError
        from moto.dynamodb.responses import DynamoHandler

        from .assembly import ACCOUNT, REGION

        handler = DynamoHandler()
        handler.current_account = ACCOUNT
        handler.region = REGION
        handler.body = params
        try:
            result = getattr(handler, FAST_OPERATIONS[operation])()
        except JsonRESTError as error:
            # Every error moto's DynamoDB raises (ResourceNotFound is not a
            # DynamodbException), as the service's error with its code.
            code = str(error.error_type).rsplit("#", 1)[-1]
            extra = {}
            with contextlib.suppress(TypeError, ValueError):
                described = json.loads(error.description)
                if "Item" in described:
                    extra["Item"] = described["Item"]
            raise ServiceError(code, error.message, extra=extra) from None
        except (KeyError, IndexError) as error:
            # moto trips over some malformed requests (an undefined #name in an
            # update) that DynamoDB refuses with a ValidationException.
            raise ServiceError("ValidationException",
                               f"Invalid request: {type(error).__name__} {error}") from None
        return dict(result.result)  # type: ignore[call-overload]


class LocalTransactions:
    def __init__(self, items: FastItems) -> None:
        self._client = raw_client("dynamodb")
        self._items = items
        self._schemas: dict[str, list[str]] = {}

    def install(self, hooks: ServiceHooks) -> None:
        hooks.add("dynamodb", "TransactWriteItems", self.transact_write_items)

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        if table not in self._schemas:
            schema = self._client.describe_table(TableName=table)["Table"]["KeySchema"]
            self._schemas[table] = [k["AttributeName"] for k in schema]
        return {name: item[name] for name in self._schemas[table]}

    def transact_write_items(self, params: dict[str, Any]) -> dict[str, Any]:
        items = params.get("TransactItems", [])
        if len(items) > 100:
            raise ServiceError("ValidationException", "Member must have length less than or "
                               "equal to 100")
        undo: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        reasons: list[dict[str, Any]] = [{"Code": "None"} for _ in items]
        for index, entry in enumerate(items):
            (kind, op), = entry.items()
            table = op["TableName"]
            key = self._key_of(table, op["Item"]) if kind == "Put" else op["Key"]
            before = self._items.run("GetItem", {"TableName": table, "Key": key,
                                                  "ConsistentRead": True}).get("Item")
            shared = {k: op[k] for k in _SHARED if k in op}
            if not shared.get("ExpressionAttributeNames"):
                shared.pop("ExpressionAttributeNames", None)
            if not shared.get("ExpressionAttributeValues"):
                shared.pop("ExpressionAttributeValues", None)
            call = self._items.run
            try:
                if kind == "Put":
                    call("PutItem", {"Item": op["Item"], **shared})
                elif kind == "Update":
                    call("UpdateItem", {"Key": key, "UpdateExpression": op["UpdateExpression"],
                                        **shared})
                elif kind == "Delete":
                    call("DeleteItem", {"Key": key, **shared})
                elif kind == "ConditionCheck":
                    if before is None:
                        # A condition on an absent item: check it by a conditional
                        # put of nothing that is deleted straight away.
                        call("PutItem", {"Item": key, **shared})
                        call("DeleteItem", {"TableName": table, "Key": key})
                    else:
                        call("PutItem", {"Item": before, **shared})
                else:
                    raise ServiceError("ValidationException", f"unknown operation {kind}")
            except ServiceError as error:
                if error.code != "ConditionalCheckFailedException":
                    self._rollback(undo)
                    raise
                reasons[index] = {"Code": "ConditionalCheckFailed",
                                  "Message": "The conditional request failed"}
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and before:
                    reasons[index]["Item"] = before
                self._rollback(undo)
                raise TransactionCanceled(
                    "TransactionCanceledException",
                    "Transaction cancelled, please refer cancellation reasons for specific "
                    f"reasons [{', '.join(r['Code'] for r in reasons)}]",
                    extra={"CancellationReasons": reasons}) from None
            if kind != "ConditionCheck":
                undo.append((table, key, before))
        return {}

    def _rollback(self, undo: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> None:
        for table, key, before in reversed(undo):
            if before is None:
                self._items.run("DeleteItem", {"TableName": table, "Key": key})
            else:
                self._items.run("PutItem", {"TableName": table, "Item": before})
