"""DynamoDB condition expressions of the plain kind, evaluated on an item's wire form.

The local item shortcuts (``dynamodb.py``) need the conditions the stream
path writes with: the feature store's ``attribute_not_exists(pk)`` and
``version = :v``, and Powertools idempotency's
``attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND
attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)``.
moto parses each such expression at length on every call; this parses it
once (cached) into a small tree.

Covered, as DynamoDB documents them (Developer Guide, "Condition and filter
expressions" and "Comparison operator and function reference"): ``OR``,
``AND``, ``NOT`` (precedence NOT, AND, OR) and parentheses;
``attribute_exists`` and ``attribute_not_exists``; the comparators ``=``,
``<``, ``<=``, ``>``, ``>=`` between top-level attributes (plain or ``#name``)
and ``:values``. A comparison with a missing attribute is false; numbers
compare by value, strings by their UTF-8 bytes.

Anything else (nested paths, ``<>``, ``BETWEEN``, ``IN``, the other functions,
an unaliased reserved word, an undefined or unused ``#name``/``:value``) is
not parsed: :func:`parse` returns None and moto answers, with its errors. An
ordering comparison of values other than strings and numbers is judged by
moto too: :func:`evaluate` raises :class:`NotPlain`.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any

#: (kind, ...) nodes: ("or", a, b), ("and", a, b), ("not", a), ("exists", name),
#: ("not_exists", name), ("compare", operator, left, right); an operand is
#: ("path", name) or ("value", ref).
Node = tuple[Any, ...]

_TOKEN = re.compile(r"\s*(<=|>=|<>|[()=<>,]|#\w+|:\w+|[A-Za-z_]\w*)")
_COMPARATORS = {"=", "<", "<=", ">", ">="}
_FUNCTIONS = {"attribute_exists": "exists", "attribute_not_exists": "not_exists"}


class NotPlain(Exception):
    """The expression or its operands need moto's full implementation."""


def _tokens(expression: str) -> list[str] | None:
    tokens, position = [], 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            if expression[position:].strip():
                return None
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], reserved: frozenset[str]) -> None:
        self.tokens, self.position, self.reserved = tokens, 0, reserved
        self.names: set[str] = set()
        self.values: set[str] = set()

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise NotPlain(f"expected {expected or 'more'}, found {token}")
        self.position += 1
        return token

    def condition(self) -> Node:
        node = self.conjunction()
        while (self.peek() or "").upper() == "OR":
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while (self.peek() or "").upper() == "AND":
            self.take()
            node = ("and", node, self.negation())
        return node

    def negation(self) -> Node:
        if (self.peek() or "").upper() == "NOT":
            self.take()
            return ("not", self.negation())
        if self.peek() == "(":
            self.take()
            node = self.condition()
            self.take(")")
            return node
        token = self.peek() or ""
        if token.lower() in _FUNCTIONS and self.tokens[self.position + 1:self.position + 2] == [
                "("]:
            self.take()
            self.take("(")
            path = self.path()
            self.take(")")
            return (_FUNCTIONS[token.lower()], path)
        left = self.operand()
        operator = self.take()
        if operator not in _COMPARATORS:
            raise NotPlain(f"comparator {operator}")
        return ("compare", operator, left, self.operand())

    def path(self) -> str:
        token = self.take()
        if token.startswith("#"):
            self.names.add(token)
            return token
        if not re.fullmatch(r"[A-Za-z_]\w*", token) or token.upper() in self.reserved:
            raise NotPlain(f"attribute {token}")
        return token

    def operand(self) -> Node:
        if (self.peek() or "").startswith(":"):
            ref = self.take()
            self.values.add(ref)
            return ("value", ref)
        return ("path", self.path())


@functools.lru_cache(maxsize=256)
def _parse(expression: str, reserved: frozenset[str]) -> tuple[Node, frozenset[str],
                                                              frozenset[str]] | None:
    tokens = _tokens(expression)
    if not tokens:
        return None
    parser = _Parser(tokens, reserved)
    try:
        node = parser.condition()
    except NotPlain:
        return None
    if parser.peek() is not None:
        return None
    return node, frozenset(parser.names), frozenset(parser.values)


def parse_used(expression: str, reserved: frozenset[str]
               ) -> tuple[Node, set[str], set[str]] | None:
    """The unresolved tree and the ``#names`` and ``:values`` it uses, or None where
    moto must answer; for a caller that checks them together with another
    expression of the same request (an UpdateItem's update expression)."""
    return _parse(expression, reserved)


def resolve(node: Node, names: dict[str, str]) -> Node:
    """``node`` with its ``#names`` replaced by the attributes they stand for."""
    return _resolve(node, names)


def parse(expression: str, names: dict[str, str], values: dict[str, Any],
          reserved: frozenset[str]) -> Node | None:
    """The expression's tree with ``#names`` resolved, or None where moto must answer.

    Every ``#name`` and ``:value`` must be defined, and every one defined must
    be used, as DynamoDB requires.
    """
    parsed = _parse(expression, reserved)
    if parsed is None:
        return None
    node, used_names, used_values = parsed
    if set(names) != used_names or set(values) != used_values:
        return None
    return _resolve(node, names)


def _resolve(node: Node, names: dict[str, str]) -> Node:
    kind = node[0]
    if kind in ("or", "and"):
        return (kind, _resolve(node[1], names), _resolve(node[2], names))
    if kind == "not":
        return (kind, _resolve(node[1], names))
    if kind in ("exists", "not_exists"):
        return (kind, names.get(node[1], node[1]))
    if kind == "compare":
        return (kind, node[1], _resolve(node[2], names), _resolve(node[3], names))
    if kind == "path":
        return (kind, names.get(node[1], node[1]))
    return node


def _operand(node: Node, item: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
    return values[node[1]] if node[0] == "value" else item.get(node[1])


def _compare(operator: str, left: dict[str, Any] | None, right: dict[str, Any] | None) -> bool:
    if left is None or right is None:
        return False  # a missing attribute compares false
    (left_type, left_value), = left.items()
    (right_type, right_value), = right.items()
    if operator == "=":
        if left_type not in ("N", "S", "BOOL", "NULL") or right_type not in (
                "N", "S", "BOOL", "NULL"):
            raise NotPlain(f"= on {left_type} and {right_type}")  # sets, lists, maps
        if left_type == right_type == "N":
            return Decimal(left_value) == Decimal(right_value)
        return left == right
    if left_type not in ("N", "S") or right_type not in ("N", "S"):
        raise NotPlain(f"{operator} on {left_type} and {right_type}")
    if left_type != right_type:
        return False
    if left_type == "N":
        a, b = Decimal(left_value), Decimal(right_value)
    else:
        a, b = left_value.encode(), right_value.encode()
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[operator]


def evaluate(node: Node, item: dict[str, Any] | None, values: dict[str, Any]) -> bool:
    """Whether the condition holds for ``item`` (None: no such item) in wire form."""
    current = item or {}
    kind = node[0]
    if kind == "or":
        return evaluate(node[1], item, values) or evaluate(node[2], item, values)
    if kind == "and":
        return evaluate(node[1], item, values) and evaluate(node[2], item, values)
    if kind == "not":
        return not evaluate(node[1], item, values)
    if kind == "exists":
        return node[1] in current
    if kind == "not_exists":
        return node[1] not in current
    return _compare(node[1], _operand(node[2], current, values),
                    _operand(node[3], current, values))
