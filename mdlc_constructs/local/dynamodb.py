"""DynamoDB, locally: moto's item operations without the HTTP round trip.

The online feature store, the idempotency table and the decision log make
several DynamoDB calls per event, and a simulation makes tens of thousands:
through botocore and moto's generic response serializer each costs
milliseconds. :class:`FastItems` answers the item operations by calling
moto's own DynamoDB request handler in process (the same code, conditions,
expressions and errors, without serializing the request and the response);
everything else still goes through moto as usual.

Items, between moto calls:

moto keeps each item as a tree of ``DynamoType`` objects, which it builds on
every write and turns back into JSON on every read; for the feature store's
30-day aggregate items that costs more than the handler's own work. The
shortcuts keep the items they touch as the JSON text of their wire form
(``json.loads`` is the copy a caller may mutate, and the text's length
bounds the item's DynamoDB size from above, so only items near the 400 KB
limit need moto's exact count) and write them back into moto's table before
anything else reads or writes that table: moto's own handler, any other
DynamoDB operation through the local hooks, a client of its own
(:func:`~mdlc_constructs.local.resources.raw_client`), or :meth:`FastItems.flush`.

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
import threading
from collections.abc import Iterator
from typing import Any

from . import conditions
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
_ASSIGN = rf"{_NAME}\s*=\s*:\w+"
#: ``SET a = :x, #b = :y`` with an optional ``REMOVE c, #d``: what the feature
#: updater and the action ledger write.
_SIMPLE_UPDATE = re.compile(
    rf"^\s*SET\s+(?P<set>{_ASSIGN}(?:\s*,\s*{_ASSIGN})*)"
    rf"(?:\s+REMOVE\s+(?P<remove>{_NAME}(?:\s*,\s*{_NAME})*))?\s*$", re.IGNORECASE)
_SIMPLE_PROJECTION = re.compile(rf"^\s*{_NAME}(?:\s*,\s*{_NAME})*\s*$")


def _condition_holds(tree: Any, item: dict[str, Any] | None, values: dict[str, Any],
                     params: dict[str, Any]) -> bool:
    """True when ``item`` meets the condition; False where moto must judge it (not
    plain); a failed condition raises DynamoDB's ConditionalCheckFailedException
    (with the item under ``ReturnValuesOnConditionCheckFailure: ALL_OLD``)."""
    try:
        passed = conditions.evaluate(tree, item, values)
    except conditions.NotPlain:
        return False
    if not passed:
        extra = {"Item": item} if item and params.get(
            "ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else {}
        raise ServiceError("ConditionalCheckFailedException",
                           "The conditional request failed", extra=extra)
    return True


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


#: Larger than any item DynamoDB accepts (400 KB): an item whose wire JSON is
#: at most this long fits, a longer one goes to moto for the exact size rule.
_ITEM_LIMIT = 400 * 1024

#: A table's key as the store indexes it: ((attribute, type, value), ...).
Key = tuple[tuple[str, str, str], ...]


@contextlib.contextmanager
def _as_service_errors() -> Iterator[None]:
    """moto's DynamoDB errors (ResourceNotFound is not a DynamodbException), as the
    service's errors; and the malformed requests moto trips over (an undefined #name
    in an update), which DynamoDB refuses with a ValidationException."""
    from moto.core.exceptions import JsonRESTError

    try:
        yield
    except JsonRESTError as error:
        code = str(error.error_type).rsplit("#", 1)[-1]
        extra = {}
        with contextlib.suppress(TypeError, ValueError):
            described = json.loads(error.description)
            if "Item" in described:
                extra["Item"] = described["Item"]
        raise ServiceError(code, error.message, extra=extra) from None
    except (KeyError, IndexError) as error:
        raise ServiceError("ValidationException",
                           f"Invalid request: {type(error).__name__} {error}") from None


class FastItems:
    """moto's DynamoDB handler called directly for the item operations.

    Four operations the stream path makes per event take a shortcut where
    their expressions are plain, as tests/test_local_runtime.py checks against
    moto's own answers: an ``UpdateItem`` that only ``SET``s attributes to
    values (Powertools idempotency's), a ``GetItem`` of a whole item, a
    ``PutItem`` whose condition is ``attribute_not_exists(a)`` or ``a = :v``
    (the feature store's), and a ``BatchGetItem`` whose projection names
    top-level attributes (the online feature reader's). moto parses and
    validates such expressions at length for each call; anything else goes
    to moto, after the items the shortcuts hold for its tables are written
    back (see the module's docstring).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: table -> key -> the item's wire JSON text, or None: known to be absent.
        self._items: dict[str, dict[Key, str | None]] = {}
        #: table -> keys whose text moto does not have yet.
        self._dirty: dict[str, set[Key]] = {}
        self._raw_events: Any = None

    def install(self, hooks: ServiceHooks) -> None:
        for operation in FAST_OPERATIONS:
            hooks.add("dynamodb", operation,
                      lambda params, operation=operation: self.run(operation, params))
        hooks.observe("dynamodb", self._before_moto)
        # A client of its own reads moto directly: write everything back first.
        self._raw_events = raw_client("dynamodb").meta.events
        self._raw_events.unregister("before-call.dynamodb", unique_id="mdlc-local-items")
        self._raw_events.register("before-call.dynamodb", self._before_raw,
                                  unique_id="mdlc-local-items")

    def uninstall(self) -> None:
        if self._raw_events is not None:
            self._raw_events.unregister("before-call.dynamodb", unique_id="mdlc-local-items")
            self._raw_events = None

    def run(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            answer = self.shortcut(operation, params)
            return self.call(operation, params) if answer is None else answer

    # -- the store --------------------------------------------------------------------

    def flush(self, tables: Any = None) -> None:
        """Write the held items of ``tables`` (default: all) back into moto's tables."""
        with self._lock:
            backend = self._backend()
            for name in list(self._dirty) if tables is None else list(tables):
                keys = self._dirty.pop(name, set())
                table = backend.tables.get(name)
                if table is None:
                    continue
                held = self._items.get(name, {})
                for key in keys:
                    text = held.get(key)
                    if text is None:
                        table.delete_item(*self._moto_key(table, key))
                    else:
                        table.put_item(json.loads(text), overwrite=True)

    def forget(self, tables: Any = None) -> None:
        """Write back, then drop what the store holds of ``tables`` (moto may change them)."""
        with self._lock:
            self.flush(tables)
            for name in list(self._items) if tables is None else list(tables):
                self._items.pop(name, None)

    def all_items(self, table_name: str) -> list[dict[str, Any]]:
        """Every item of a table in wire form, unpaginated, in no particular order:
        the runtime's own view (the simulation's report), not an API call."""
        with self._lock:
            table = self._backend().tables[table_name]
            # The held items as they are, instead of writing them into moto to read
            # them back (building and serializing moto's item trees cost seconds
            # for a simulation's decision log); moto's copy of a held item is older.
            dirty = self._dirty.get(table_name, set())
            held = self._items.get(table_name, {})
            items = []
            for item in table.all_items():
                attributes = item.to_json()["Attributes"]
                if not dirty or self._key(table, attributes) not in dirty:
                    items.append(attributes)
            items += [json.loads(text) for key in dirty
                      if (text := held.get(key)) is not None]
            return items

    def _before_moto(self, operation: str, params: dict[str, Any]) -> None:
        """Any other DynamoDB operation is about to reach moto."""
        self.forget(self._tables_of(params))

    def _before_raw(self, **_: Any) -> None:
        self.forget()

    @staticmethod
    def _tables_of(params: dict[str, Any]) -> list[str] | None:
        """The tables a request names; None (all of them) where it names none."""
        names = set()
        if isinstance(params.get("TableName"), str):
            names.add(params["TableName"])
        names.update(n for n in params.get("RequestItems") or {} if isinstance(n, str))
        for entry in params.get("TransactItems") or []:
            for op in entry.values() if isinstance(entry, dict) else ():
                if isinstance(op, dict) and isinstance(op.get("TableName"), str):
                    names.add(op["TableName"])
        return sorted(names) or None

    def _key(self, table: Any, attributes: dict[str, Any]) -> Key | None:
        """The store's key of an item or key; None where moto must judge it (a missing,
        empty, oversized or mistyped key attribute gets moto's message)."""
        parts = []
        for name, wanted in ((table.hash_key_attr, table.hash_key_type),
                             (table.range_key_attr, table.range_key_type)):
            if not name:
                continue
            value = attributes.get(name)
            if not isinstance(value, dict) or len(value) != 1:
                return None
            (kind, raw), = value.items()
            if (kind != wanted or not isinstance(raw, str) or not raw
                    or len(raw.encode()) > 1024):
                return None
            if kind == "N":
                from decimal import Decimal, InvalidOperation

                try:
                    raw = str(Decimal(raw).normalize())
                except InvalidOperation:
                    return None
            parts.append((name, kind, raw))
        return tuple(parts)

    def _moto_key(self, table: Any, key: Key) -> tuple[Any, Any]:
        from moto.dynamodb.models.dynamo_type import DynamoType

        values = {name: DynamoType({kind: raw}) for name, kind, raw in key}
        return values[table.hash_key_attr], values.get(table.range_key_attr)

    def _read(self, name: str, table: Any, key_attributes: dict[str, Any]) -> str | None:
        key = self._key(table, key_attributes)
        assert key is not None
        held = self._items.setdefault(name, {})
        if key not in held:
            item = self._backend().get_item(name, key_attributes)
            held[key] = json.dumps(item.to_json()["Attributes"]) if item else None
        return held[key]

    def _write(self, name: str, table: Any, item: dict[str, Any]) -> bool:
        """Hold ``item`` for moto; False (nothing written) where moto must take it."""
        try:
            text = json.dumps(item)
        except (TypeError, ValueError):
            return False  # binary values: leave them to moto
        if len(text) > _ITEM_LIMIT:
            return False
        key = self._key(table, item)
        if key is None:
            return False
        with _as_service_errors():
            table._validate_item_types(item)  # moto's value checks, before the write  # noqa: SLF001
        self._items.setdefault(name, {})[key] = text
        self._dirty.setdefault(name, set()).add(key)
        return True

    # -- the shortcuts ----------------------------------------------------------------

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
        with self._lock:
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

    def _usable_key(self, table: Any, key: dict[str, Any]) -> bool:
        return set(key) == self._key_names(table) and self._key(table, key) is not None

    def _keyed_item(self, params: dict[str, Any]) -> tuple[str, Any, dict[str, Any]] | None:
        """(table name, moto's table, key) of a call that names one item by its key;
        None where moto must answer (no such table, a bad key)."""
        name = params.get("TableName")
        table = self._table(name)
        key = params.get("Key") or {}
        if table is None or not self._usable_key(table, key):
            return None
        return name, table, key

    def _simple_update(self, params: dict[str, Any]) -> dict[str, Any] | None:
        match = _SIMPLE_UPDATE.match(params.get("UpdateExpression", ""))
        if (match is None or params.get("Expected")
                or params.get("ReturnValues", "NONE") != "NONE"):
            return None
        target = self._keyed_item(params)
        if target is None:
            return None
        name, table, key = target
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        assignments = [tuple(part.strip() for part in assignment.partition("=")[::2])
                       for assignment in match["set"].split(",")]
        removals = [r.strip() for r in match["remove"].split(",")] if match["remove"] else []
        references = [target for target, _ in assignments] + removals
        if not self._plain(references):
            return None
        used_names = {r for r in references if r.startswith("#")}
        used_values = {value for _, value in assignments}
        condition = params.get("ConditionExpression")
        tree = None
        if condition:
            parsed = conditions.parse_used(condition, _reserved_words())
            if parsed is None:
                return None  # not plain: moto's
            node, condition_names, condition_values = parsed
            used_names |= condition_names
            used_values |= condition_values
        if set(names) != used_names or set(values) != used_values:
            return None  # an undefined or unused name or value: moto's errors
        if condition:
            tree = conditions.resolve(node, names)
        updates = {self._attribute(t, names): values[v] for t, v in assignments}
        removed = {self._attribute(r, names) for r in removals}
        if len(updates) != len(assignments) or len(removed) != len(removals) or (
                set(updates) & removed) or (set(updates) | removed) & set(key):
            return None  # a path twice, or a key attribute: moto's errors
        current = self._read(name, table, key)
        item = json.loads(current) if current else None
        if tree is not None and not _condition_holds(tree, item, values, params):
            return None
        attributes = item if item is not None else dict(key)
        attributes.update(updates)
        for attribute in removed:
            attributes.pop(attribute, None)
        if not self._write(name, table, attributes):
            return None
        # What moto's handler answers (its fixed capacity figure included).
        return {"ConsumedCapacity": {"TableName": name, "CapacityUnits": 0.5}}

    def _simple_get(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("ProjectionExpression") or params.get("AttributesToGet") or params.get(
                "ExpressionAttributeNames") is not None:
            return None
        target = self._keyed_item(params)
        if target is None:
            return None
        current = self._read(*target)
        return {"Item": json.loads(current)} if current else {}

    def _simple_put(self, params: dict[str, Any]) -> dict[str, Any] | None:
        condition = params.get("ConditionExpression")
        if (not condition or params.get("Expected")
                or params.get("ReturnValues", "NONE") != "NONE"):
            return None
        name = params.get("TableName")
        table = self._table(name)
        if table is None or getattr(table, "global_indexes", None):
            return None
        item = params.get("Item") or {}
        key = {k: item.get(k) for k in self._key_names(table)}
        if not self._usable_key(table, key):
            return None  # a missing or empty key: moto's validation message
        values = params.get("ExpressionAttributeValues") or {}
        tree = conditions.parse(condition, params.get("ExpressionAttributeNames") or {},
                                values, _reserved_words())
        if tree is None:
            return None  # not plain, or an undefined or unused name or value: moto's
        text = self._read(name, table, key)
        current = json.loads(text) if text else None
        if not _condition_holds(tree, current, values, params):
            return None
        if not self._write(name, table, item):
            return None
        return {}  # what moto's handler answers for a put without ReturnValues

    def _simple_batch_get(self, params: dict[str, Any]) -> dict[str, Any] | None:
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
            keys = request.get("Keys", [])
            if not all(self._usable_key(table, key) for key in keys):
                return None
            found = []
            for key in keys:
                text = self._read(table_name, table, key)
                if text is None:
                    continue
                values = json.loads(text)
                found.append(values if wanted is None else
                             {k: v for k, v in values.items() if k in wanted})
            responses[table_name] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """moto's own handler, after writing back (and dropping) the items it may touch."""
        from moto.dynamodb.responses import DynamoHandler

        from .assembly import ACCOUNT, REGION

        with self._lock:
            self.forget(self._tables_of(params))
            handler = DynamoHandler()
            handler.current_account = ACCOUNT
            handler.region = REGION
            handler.body = params
            with _as_service_errors():
                result = getattr(handler, FAST_OPERATIONS[operation])()
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
