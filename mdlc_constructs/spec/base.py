"""Shared building blocks of the model spec."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .schedule import validate_schedule


class SpecModel(BaseModel):
    """Every spec section rejects unknown fields (a typo must not pass silently)
    and is immutable once read, so constructs cannot disagree about it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"expected a snake_case identifier (lower-case letters, digits, '_'), got {value!r}"
        )
    return value


def _model_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "expected 1-20 lower-case letters, digits or '-', starting with a letter "
            f"(it becomes part of AWS resource names), got {value!r}"
        )
    return value


def _instance_type(value: str) -> str:
    if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", value):
        raise ValueError(
            f"expected a SageMaker instance type such as 'ml.m5.xlarge', got {value!r}"
        )
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
ModelName = Annotated[str, AfterValidator(_model_name)]
InstanceType = Annotated[str, AfterValidator(_instance_type)]
Schedule = Annotated[str, AfterValidator(validate_schedule)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]
