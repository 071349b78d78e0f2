"""Values that cost a jsii round trip to create, created once per value.

Each ``Duration.minutes(5)`` or ``JsonPath.string_at("$.x")`` is a call into the
jsii kernel (a node process); a model stack made about 170 of them for about 40
distinct values (issue #12: synthesis cost per model). A Duration is an
immutable value and a JsonPath token resolves to its path wherever it is used,
so one instance per value serves every construct. Written by hand: aws-cdk-lib
has no such cache, and functools.cache is all it takes.
"""

from __future__ import annotations

import weakref
from functools import cache

from aws_cdk import Duration, Stack
from aws_cdk import aws_stepfunctions as sfn
from constructs import IConstruct


@cache
def seconds(amount: int | float) -> Duration:
    return Duration.seconds(amount)


@cache
def minutes(amount: int | float) -> Duration:
    return Duration.minutes(amount)


@cache
def hours(amount: int | float) -> Duration:
    return Duration.hours(amount)


@cache
def days(amount: int | float) -> Duration:
    return Duration.days(amount)


@cache
def string_at(path: str) -> str:
    """``sfn.JsonPath.string_at(path)``, one token per path."""
    return sfn.JsonPath.string_at(path)


@cache
def task_timeout(duration: Duration) -> sfn.Timeout:
    """``sfn.Timeout.duration(duration)``, one per Duration (they are cached above)."""
    return sfn.Timeout.duration(duration)


#: The stack of each scope asked about, while the scope lives.
_STACKS: weakref.WeakKeyDictionary[IConstruct, Stack] = weakref.WeakKeyDictionary()


def stack_of(scope: IConstruct) -> Stack:
    """``Stack.of(scope)`` without the round trip when ``scope`` is a stack or
    was asked about before (a construct never moves to another stack)."""
    if isinstance(scope, Stack):
        return scope
    stack = _STACKS.get(scope)
    if stack is None:
        stack = _STACKS[scope] = Stack.of(scope)
    return stack


__all__ = ["days", "hours", "minutes", "seconds", "stack_of", "string_at", "task_timeout"]
