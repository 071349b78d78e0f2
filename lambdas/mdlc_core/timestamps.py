"""Integer timestamps by the unit the spec declares (``data.columns[].unit``).

An integer is a timestamp only when its column names the unit it counts
since the epoch: ``s``, ``ms``, ``us`` or ``ns``. Without a unit an integer
is rejected, not guessed: read as microseconds, epoch seconds land in 1970
and pass every type check while meaning nothing.

A value must also fall in :data:`PLAUSIBLE` (1971-01-01 to 2200-01-01, UTC)
once converted. The window is what tells a wrong unit: the units are a
factor of 1000 apart, and for any moment inside the window its count read
one unit too fine lands before 1971-01-01 (the largest, 2200, becomes
84 days after the epoch) and read one unit too coarse lands after 2200
(the smallest, 1971, becomes the year 2969). So epoch seconds declared as
``ms`` are rejected with the reason, never read as 1970-01-21.

Pure Python (no NumPy or Arrow): the stream functions parse events with it
and the tabular reader applies the same bounds to whole columns.
"""

from __future__ import annotations

import numbers
from datetime import UTC, datetime
from typing import Any

#: The units an integer timestamp may count, by their number per second
#: (nanoseconds are truncated to the microsecond).
PER_SECOND: dict[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
#: The moments an integer timestamp may stand for: [start, end) in UTC.
PLAUSIBLE = (datetime(1971, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOW_SECONDS = int((PLAUSIBLE[0] - _EPOCH).total_seconds())
_HIGH_SECONDS = int((PLAUSIBLE[1] - _EPOCH).total_seconds())


class TimestampError(ValueError):
    """A value that is not a timestamp in its column's unit; the message says why."""


def bounds(unit: str) -> tuple[int, int]:
    """The plausible integer counts of ``unit``: [low, high)."""
    scale = PER_SECOND[check_unit(unit)]
    return _LOW_SECONDS * scale, _HIGH_SECONDS * scale


def check_unit(unit: Any) -> str:
    if unit not in PER_SECOND:
        raise TimestampError(f"unknown timestamp unit {unit!r}; expected one of "
                             f"{sorted(PER_SECOND)}")
    return str(unit)


def no_unit_reason() -> str:
    return ("an integer is a timestamp only with its column's unit "
            "(data.columns[].unit: s, ms, us or ns)")


def out_of_range_reason(value: Any, unit: str) -> str:
    return (f"{value} as epoch {unit} is outside {PLAUSIBLE[0].date()}..{PLAUSIBLE[1].date()}"
            " (another unit?)")


def fraction_reason(value: Any, unit: str | None) -> str:
    counted = f"epoch {unit}" if unit else "a unit the column does not declare"
    return f"{value!r} has a fraction; an integer timestamp counts whole {counted}"


def epoch_micros(value: Any, unit: str | None) -> int:
    """``value`` (an integer, or its decimal text) in ``unit`` as UTC microseconds.

    Raises :class:`TimestampError` with the reason: no unit, a float or a
    fraction, a count outside :data:`PLAUSIBLE`.
    """
    if isinstance(value, bool):
        raise TimestampError(f"{value!r} is a boolean, not a timestamp")
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isdigit():
            raise TimestampError(f"{value!r} is not an integer")
        number = int(text)
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real):
        raise TimestampError(fraction_reason(value, unit) if unit else
                             f"{value!r} is a number; {no_unit_reason()}")
    else:
        raise TimestampError(f"{value!r} is not a timestamp")
    if unit is None:
        raise TimestampError(f"{number}: {no_unit_reason()}")
    low, high = bounds(unit)
    if not low <= number < high:
        raise TimestampError(out_of_range_reason(number, unit))
    scale = PER_SECOND[unit]
    # Exact integer arithmetic: seconds and the remainder as microseconds.
    seconds, rest = divmod(number, scale)
    return seconds * 1_000_000 + rest * 1_000_000 // scale
