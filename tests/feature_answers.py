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
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from itertools import count
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.amber import AmberSnapshotExtension

REL_TOL = ABS_TOL = 1e-9

#: A float as repr writes it (an int never matches: it has no point nor exponent).
_FLOAT = re.compile(r"(-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf)|nan)")


def _same_line(recorded: str, received: str) -> bool:
    """Equal, but for floats within the tolerance (and of the same kind: a
    float never matches an int)."""
    if recorded == received:
        return True
    mine, theirs = _FLOAT.split(recorded), _FLOAT.split(received)
    if len(mine) != len(theirs):
        return False
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if index % 2 == 0:  # the text between floats
            if a != b:
                return False
        elif not math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL):
            return False
    return True


class FeatureAnswers(AmberSnapshotExtension):
    """Amber snapshots compared with the engines' float tolerance."""

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        if not isinstance(serialized_data, str) or not isinstance(snapshot_data, str):
            return bool(serialized_data == snapshot_data)
        mine, theirs = snapshot_data.splitlines(), serialized_data.splitlines()
        return len(mine) == len(theirs) and all(
            _same_line(a, b) for a, b in zip(mine, theirs, strict=True))


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
