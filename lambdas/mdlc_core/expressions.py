"""Small, safe expressions for derived features and decision rules.

Spec authors write ``order_amount / (account_tenure + 1)`` or
``score >= 0.9 and order_total_30d > 1000``. We parse them with ``ast``, allow
only arithmetic, comparisons, boolean operators, numbers, names and a few
pure functions, and compile them once. Nothing else (attribute access,
calls to anything not listed, subscripts, lambdas) is accepted, so a spec
cannot run code.

The same compiled expression evaluates a dict of scalars (one event) or a
dict of NumPy arrays (a whole column, for arithmetic-only expressions).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def log1p(x: Any) -> float:
    """``math.log1p`` extended as NumPy's ``log1p`` is: ``-inf`` at -1 and NaN
    below it (a null feature, as every result that is not finite), where
    ``math.log1p`` raises "math domain error", which failed every event of a
    batch for one odd value. The compiled SQL gives the same nulls."""
    number = float(x)
    if number > -1.0 or math.isnan(number):
        return math.log1p(number)
    return -math.inf if number == -1.0 else math.nan


FUNCTIONS: dict[str, Any] = {"abs": abs, "min": min, "max": max, "log1p": log1p}

_ARITHMETIC_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.USub,
    ast.UAdd,
    ast.Call,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
)
_BOOLEAN_NODES = (
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
)


class ExpressionError(ValueError):
    """An expression that does not parse or uses something not allowed."""


@dataclass(frozen=True)
class Expression:
    """A parsed expression; ``names`` are the variables it reads."""

    source: str
    names: frozenset[str]
    boolean: bool
    _code: Any = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """Evaluate against ``values``; a missing variable raises KeyError.

        A division by zero gives None (a null feature), never an exception,
        so one odd row cannot fail a whole batch.
        """
        scope = {name: values[name] for name in self.names}
        try:
            return eval(self._code, {"__builtins__": {}, **FUNCTIONS}, scope)
        except ZeroDivisionError:
            return None
        except TypeError as error:
            # None in arithmetic or comparisons: the result is unknown.
            if any(scope[name] is None for name in self.names):
                return None
            raise ExpressionError(f"{self.source!r}: {error}") from error


def _check(node: ast.AST, source: str, allow_boolean: bool) -> None:
    for child in ast.walk(node):
        allowed = isinstance(child, _ARITHMETIC_NODES) or (
            allow_boolean and isinstance(child, _BOOLEAN_NODES)
        )
        if not allowed:
            what = type(child).__name__
            kind = "a rule condition" if allow_boolean else "a feature expression"
            raise ExpressionError(f"{source!r}: {what} is not allowed in {kind}")
        if isinstance(child, ast.Constant) and not isinstance(child.value, int | float | bool):
            raise ExpressionError(f"{source!r}: only numbers are allowed as constants")
        if isinstance(child, ast.Call):
            if not isinstance(child.func, ast.Name) or child.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"{source!r}: only the functions {sorted(FUNCTIONS)} may be called"
                )
            if child.keywords:
                raise ExpressionError(f"{source!r}: functions take no keyword arguments")


def parse(
    source: str, *, known: set[str] | frozenset[str] | None = None, boolean: bool = False
) -> Expression:
    """Parse ``source``; with ``known``, every variable must be one of them.

    ``boolean=True`` allows comparisons and and/or/not (rule conditions);
    otherwise only arithmetic (feature expressions, which must vectorize).
    """
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"{source!r} does not parse: {error.msg}") from error
    _check(tree, source, boolean)
    names = frozenset(
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS
    )
    if known is not None:
        unknown = sorted(names - set(known))
        if unknown:
            raise ExpressionError(
                f"{source!r} uses {', '.join(unknown)}, which is not one of: "
                f"{', '.join(sorted(known))}"
            )
    return Expression(source, names, boolean, compile(tree, "<spec>", "eval"))
