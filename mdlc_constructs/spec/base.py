"""Shared building blocks of the model spec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .schedule import validate_schedule


class SpecModel(BaseModel):
    """Every spec section rejects unknown fields (a typo must not pass silently)
    and is immutable once read, so constructs cannot disagree about it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"expected a snake_case identifier (lower-case letters, digits, '_'), got {value!r}"
        )
    return value


def _model_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
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


def duckdb_engine(section: str, retired: str, same: str) -> Any:
    """The ``engine`` field of a batch stage: ``duckdb`` only, and the retired
    hand-written engine's value (``embedded``, issue #18) refused saying what to
    change, not only that ``duckdb`` is expected. ``section`` is the spec
    section; ``retired`` names the engine as the message says it (``(pyarrow)
    quality``); ``same`` what stays the same on DuckDB."""

    def refuse_retired(value: Any) -> Any:
        if value == "embedded":
            raise ValueError(
                f"the embedded {retired} engine was retired (issue #18): remove "
                f"{section}.engine, or set it to duckdb, the engine every runner uses now; "
                f"{same} (docs/upgrading.md)"
            )
        return value

    return Annotated[Literal["duckdb"], BeforeValidator(refuse_retired)]
