"""EventBridge schedule expressions, validated at synthesis.

EventBridge accepts ``cron(min hour day-of-month month day-of-week year)`` and
``rate(N unit)``. CloudFormation only finds a bad expression at deploy time,
minutes later; we find it when the spec is read.
"""

from __future__ import annotations

import re

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# (field, lowest, highest, whether '?' and 'L' are allowed, names allowed)
_Field = tuple[str, int, int, bool, tuple[str, ...]]
_FIELDS: tuple[_Field, ...] = (
    ("minutes", 0, 59, False, ()),
    ("hours", 0, 23, False, ()),
    ("day-of-month", 1, 31, True, ()),
    ("month", 1, 12, False, _MONTHS),
    ("day-of-week", 1, 7, True, _DAYS),
    ("year", 1970, 2199, False, ()),
)


def _check_value(token: str, low: int, high: int, names: tuple[str, ...], field: str) -> None:
    if token.upper() in names:
        return
    if not token.isdigit():
        raise ValueError(f"{field} value {token!r} is not a number")
    if not low <= int(token) <= high:
        raise ValueError(f"{field} value {token} is outside {low}-{high}")


def _check_field(text: str, spec: _Field) -> None:
    field, low, high, special, names = spec
    if text in ("*", "?"):
        if text == "?" and not special:
            raise ValueError(f"'?' is not allowed in the {field} field")
        return
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            raise ValueError(f"{field} step {step!r} is not a number")
        if field == "day-of-week" and "#" in base:
            day, _, nth = base.partition("#")
            _check_value(day, low, high, names, field)
            if nth not in {"1", "2", "3", "4", "5"}:
                raise ValueError(f"{field} '#{nth}' must be #1 to #5")
            continue
        if base == "*":
            continue
        if base in ("L", "LW") and special:
            continue
        if field == "day-of-month" and base.endswith("W") and base[:-1].isdigit():
            base = base[:-1]
        if field == "day-of-week" and base.endswith("L") and len(base) > 1:
            base = base[:-1]
        lo, _, hi = base.partition("-")
        _check_value(lo, low, high, names, field)
        if hi:
            _check_value(hi, low, high, names, field)


def validate_schedule(expression: str) -> str:
    """Return ``expression`` unchanged if EventBridge would accept it.

    Raises:
        ValueError: naming the part of the expression that is wrong.
    """
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError("a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"use '{value} {unit.rstrip('s') if value == 1 else unit + 's'}'")
        return expression
    cron = _CRON.match(expression)
    if not cron:
        raise ValueError(
            "expected 'cron(min hour day-of-month month day-of-week year)' or 'rate(N unit)'"
        )
    parts = cron.group(1).split()
    if len(parts) != 6:
        raise ValueError(f"a cron expression has 6 fields, got {len(parts)}: {cron.group(1)!r}")
    for text, spec in zip(parts, _FIELDS, strict=True):
        _check_field(text, spec)
    day_of_month, day_of_week = parts[2], parts[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError("exactly one of day-of-month and day-of-week must be '?'")
    return expression


def cron_fields(expression: str) -> dict[str, str] | None:
    """The cron fields as ``events.CronOptions`` keywords, or None for a rate."""
    cron = _CRON.match(expression.strip())
    if not cron:
        return None
    minute, hour, day, month, week_day, year = cron.group(1).split()
    fields = {"minute": minute, "hour": hour, "month": month, "year": year}
    if day != "?":
        fields["day"] = day
    if week_day != "?":
        fields["week_day"] = week_day
    return fields
