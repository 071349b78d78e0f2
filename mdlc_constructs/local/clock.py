"""The simulated clock, and EventBridge schedule expressions evaluated on it.

The handlers read the time from the standard library (a scheduled data run
takes yesterday's snapshot), so the clock moves the process's time with
time-machine. Time keeps flowing between moves (``tick=True``): code that
waits on the wall clock is never stuck.

:func:`fire_times` is written here because no maintained library evaluates
EventBridge's six-field cron dialect (``?``, ``L``, ``W``, ``#``, a year
field, day-of-week 1-7 from Sunday); croniter speaks Unix cron.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import time_machine

_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


class SimulatedClock:
    """Process time set to the simulation's time; ``advance_to`` moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._travel = time_machine.travel(self._now, tick=True)
        self._coordinates: time_machine.Coordinates | None = None

    def start(self) -> None:
        self._coordinates = self._travel.start()

    def stop(self) -> None:
        if self._coordinates is not None:
            self._travel.stop()
            self._coordinates = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance_to(self, moment: datetime) -> None:
        moment = moment.astimezone(UTC)
        if self._coordinates is None:
            raise RuntimeError("the clock is not started")
        if moment > self.now():
            self._coordinates.move_to(moment)


def _values(field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            lo, hi = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = names.get(a.upper()) or int(a), names.get(b.upper()) or int(b)
        else:
            lo = names.get(base.upper()) or int(base)
            hi = high if step else lo
        values.update(range(lo, hi + 1, int(step) if step else 1))
    return values


def _day_matches(day: datetime, day_of_month: str, day_of_week: str) -> bool:
    last = calendar.monthrange(day.year, day.month)[1]
    weekday = (day.isoweekday() % 7) + 1  # EventBridge: 1 = Sunday
    if day_of_month != "?":
        for part in day_of_month.split(","):
            if part == "L":
                if day.day == last:
                    return True
            elif part == "LW":
                target = last
                while datetime(day.year, day.month, target).isoweekday() > 5:
                    target -= 1
                if day.day == target:
                    return True
            elif part.endswith("W"):
                target = min(int(part[:-1]), last)
                candidate = datetime(day.year, day.month, target)
                if candidate.isoweekday() == 6:
                    target = target - 1 if target > 1 else target + 2
                elif candidate.isoweekday() == 7:
                    target = target + 1 if target < last else target - 2
                if day.day == target:
                    return True
            elif day.day in _values(part, 1, 31, {}):
                return True
        return False
    for part in day_of_week.split(","):
        if "#" in part:
            name, nth = part.split("#")
            nth_of_month = (day.day - 1) // 7 + 1
            if weekday == (_DAYS.get(name.upper()) or int(name)) and nth_of_month == int(nth):
                return True
        elif part.endswith("L") and len(part) > 1:
            target = _DAYS.get(part[:-1].upper()) or int(part[:-1])
            if weekday == target and day.day + 7 > last:
                return True
        elif weekday in _values(part, 1, 7, _DAYS):
            return True
    return False


def fire_times(expression: str, start: datetime, end: datetime,
               *, created: datetime | None = None) -> Iterator[datetime]:
    """The times in ``[start, end)`` at which a schedule rule fires (UTC, minute precision).

    ``rate(...)`` rules fire every interval from ``created`` (the rule's
    creation, as EventBridge counts them); cron rules at each matching minute.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    rate = _RATE.match(expression.strip())
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        interval = timedelta(**{f"{unit}s": value})
        moment = (created or start).astimezone(UTC) + interval
        while moment < end:
            if moment >= start:
                yield moment
            moment += interval
        return
    match = re.match(r"^cron\((.+)\)$", expression.strip())
    if not match:
        raise ValueError(f"not a schedule expression: {expression!r}")
    minute, hour, day_of_month, month, day_of_week, year = match.group(1).split()
    minutes = _values(minute, 0, 59, {})
    hours = _values(hour, 0, 23, {})
    months = _values(month, 1, 12, _MONTHS)
    years = _values(year, 1970, 2199, {})
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        if day.year in years and day.month in months and _day_matches(
            day, day_of_month, day_of_week
        ):
            for h in sorted(hours):
                for m in sorted(minutes):
                    moment = day.replace(hour=h, minute=m)
                    if start <= moment < end:
                        yield moment
        day += timedelta(days=1)
