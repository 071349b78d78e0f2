"""The retired NumPy batch feature engine's answers, recorded (issue #18).

The SQL feature engines (DuckDB, Spark) were proven against the hand-written
NumPy engine (``compute_per_event``, ``compute_batch``, ``training_table``,
``entity_table``) on the same events; its answers were recorded as syrupy
snapshots while it still existed (``--snapshot-update``), and the tests now
hold DuckDB's (and Spark's) results to them. Use the ``answers`` fixture
(import :func:`recorded_answers`):
``answers(result)`` asserts ``result`` equals the next recorded answer of the
test; several results in one call are each held to the same answer.

Floats compare as the engines' equality tests always did: to 1e-9 relative
(or absolute, near 0), since the engines add in other orders; everything
else (ids, keys, counts as ints, nulls, timestamps, labels, column order)
exactly. A result is recorded one line per row (a table's columns are
transposed), floats to 12 significant digits: far inside that tolerance,
and a third of the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from itertools import count
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from .tolerant_snapshots import TolerantAmber


class FeatureAnswers(TolerantAmber):
    """Amber snapshots compared with the engines' float tolerance."""

    REL_TOL = ABS_TOL = 1e-9


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(f"{value:.12g}")) if math.isfinite(value) else repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)  # ids and keys quoted, counts, bools, None


def _rows(names: list[str], rows: Iterator[tuple[Any, ...]]) -> dict[str, Any]:
    return {"columns": " | ".join(names),
            "rows": [" | ".join(_cell(v) for v in row) for row in rows]}


def shape(result: Any) -> Any:
    """A result as recorded: a table's columns (``{name: values}``, what
    ``compute_per_event``/``training_table``/``entity_table`` give, or a
    pyarrow Table: its schema too) or rows (``[{name: value}]``, what
    ``compute_batch`` gives) as one line per row; anything else as is."""
    if hasattr(result, "schema") and hasattr(result, "to_pydict"):  # a pyarrow Table
        return {"schema": [f"{f.name}: {f.type}" for f in result.schema],
                **shape(result.to_pydict())}
    if isinstance(result, Mapping) and all(isinstance(v, list) for v in result.values()):
        names = list(result)
        return _rows(names, zip(*(result[n] for n in names), strict=True))
    if isinstance(result, list) and all(isinstance(r, Mapping) for r in result):
        names = list(result[0]) if result else []
        assert all(list(r) == names for r in result), "rows of different columns"
        return {"kind": "rows", **_rows(names, (tuple(r.values()) for r in result))}
    return result


class Answers:
    """Calls hold results to the test's recorded answers, in order."""

    def __init__(self, snapshot: SnapshotAssertion) -> None:
        self._snapshot = snapshot.use_extension(FeatureAnswers)
        self._names = count()

    def __call__(self, *results: Any) -> Any:
        name = str(next(self._names))
        for result in results:
            assert self._snapshot(name=name) == shape(result)
        return results[-1] if results else None


@pytest.fixture(name="answers")
def recorded_answers(snapshot: SnapshotAssertion) -> Answers:
    """``answers``: import this into a test module to use it."""
    return Answers(snapshot)
