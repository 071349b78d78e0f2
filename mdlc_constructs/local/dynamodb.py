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

from typing import Any

from .hooks import ServiceError, ServiceHooks
from .resources import raw_client

_SHARED = ("TableName", "ConditionExpression", "ExpressionAttributeNames",
           "ExpressionAttributeValues")


class TransactionCanceled(ServiceError):
    pass


#: Item operations answered in process, and moto's handler method for each.
FAST_OPERATIONS = {"GetItem": "get_item", "PutItem": "put_item", "UpdateItem": "update_item",
                   "DeleteItem": "delete_item", "BatchGetItem": "batch_get_item",
                   "BatchWriteItem": "batch_write_item", "Query": "query"}


class FastItems:
    """moto's DynamoDB handler called directly for the item operations."""

    def install(self, hooks: ServiceHooks) -> None:
        for operation in FAST_OPERATIONS:
            hooks.add("dynamodb", operation,
                      lambda params, operation=operation: self.call(operation, params))

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from moto.dynamodb.exceptions import DynamodbException
        from moto.dynamodb.responses import DynamoHandler

        from .assembly import ACCOUNT, REGION

        handler = DynamoHandler()
        handler.current_account = ACCOUNT
        handler.region = REGION
        handler.body = params
        try:
            result = getattr(handler, FAST_OPERATIONS[operation])()
        except DynamodbException as error:
            import json

            code = str(error.error_type).rsplit("#", 1)[-1]
            extra = {}
            try:
                described = json.loads(error.description)
                if "Item" in described:
                    extra["Item"] = described["Item"]
            except (TypeError, ValueError):
                pass
            raise ServiceError(code, error.message, extra=extra) from None
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
            before = self._items.call("GetItem", {"TableName": table, "Key": key,
                                                  "ConsistentRead": True}).get("Item")
            shared = {k: op[k] for k in _SHARED if k in op}
            if not shared.get("ExpressionAttributeNames"):
                shared.pop("ExpressionAttributeNames", None)
            if not shared.get("ExpressionAttributeValues"):
                shared.pop("ExpressionAttributeValues", None)
            call = self._items.call
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
                self._items.call("DeleteItem", {"TableName": table, "Key": key})
            else:
                self._items.call("PutItem", {"TableName": table, "Item": before})
