"""Values that cost a jsii round trip to create, created once per value.

Each ``Duration.minutes(5)`` or ``JsonPath.string_at("$.x")`` is a call into the
jsii kernel (a node process); a model stack made about 170 of them for about 40
distinct values (issue #12: synthesis cost per model). A Duration is an
immutable value and a JsonPath token resolves to its path wherever it is used,
so one instance per value serves every construct. Written by hand: aws-cdk-lib
has no such cache, and functools.cache is all it takes.
"""

from __future__ import annotations

from functools import cache

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn


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


__all__ = ["days", "hours", "minutes", "seconds", "string_at"]
