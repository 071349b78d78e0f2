"""Queries on a synthesized template that the template tests of several modules share.

Each function takes either an ``aws_cdk.assertions.Template`` or the
template's ``Resources`` mapping, so a test may use whichever it has.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def of_type(source: Any, kind: str) -> dict[str, Any]:
    """The resources of ``kind`` (``AWS::IAM::Role``...), by logical id."""
    if hasattr(source, "find_resources"):
        return dict(source.find_resources(kind))
    return {k: v for k, v in source.items() if v["Type"] == kind}


def only(source: Any, kind: str, part: str) -> tuple[str, dict[str, Any]]:
    """The one resource of ``kind`` whose logical id contains ``part``."""
    (found,) = [(k, v) for k, v in of_type(source, kind).items() if part in k]
    return found


def statements(source: Any, role_id: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the role ``role_id``."""
    return [s for p in of_type(source, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def listed(value: Any) -> list[Any]:
    """A statement's ``Action`` or ``Resource`` as a list (IAM allows one string)."""
    return value if isinstance(value, list) else [value]


def actions(statement: Mapping[str, Any]) -> list[str]:
    return listed(statement["Action"])


def text(value: Any) -> str:
    """A canonical JSON text, to look for a token or an ARN anywhere in a value."""
    return json.dumps(value, sort_keys=True)


def synthesized_or_fail(outdir: str | Path, synthesize: Callable[[], T]) -> T:
    """``synthesize()``, or a test failure listing cdk-nag's findings (jsii
    raises with only the report's path when a finding is not acknowledged)."""
    from mdlc_constructs.compliance import read_findings

    try:
        return synthesize()
    except Exception as error:
        pytest.fail(f"synthesis failed: {error}\n"
                    + "\n".join(str(f) for f in read_findings(outdir)))
