"""Five-field crontab expressions in UTC: parsed, validated and stepped through, stdlib only.

The one cron grammar of soak. Config validation (`cron_problem`), the daemon's triggers
(`soak.scheduler` builds its APScheduler triggers from a parsed `Cron`) and the dashboards'
staleness windows (`fire_times`) all read an expression the same way, and validating a config
never needs the scheduler.

Standard (Vixie) cron: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of
week 0-7 or sun-sat (0 and 7 are Sunday). A field is a comma list of `*`, `N` or `N-M`, each
with an optional `/step` (`N/step` runs from N to the field's maximum). When both day fields
are restricted a day matches either of them; when one starts with `*` both must match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))  # fmt: skip
"""Name, lowest and highest value of each field, in crontab order."""

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Weekday names by cron number (0 Sunday)."""

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a leap year: Feb 29 exists
_ITEM = re.compile(
    r"(?P<range>\*|(?P<first>[a-z0-9]+)(?:-(?P<last>[a-z0-9]+))?)(?:/(?P<step>[0-9]+))?"
)
_SEARCH_DAYS = 366 * 28 + 7
"""How far `next_after` looks: every weekday/date combination recurs within 28 years."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the values each field allows (weekdays 0 Sunday … 6 Saturday)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    """The day-of-month field starts with `*`: days are ANDed with weekdays, not ORed."""
    weekday_star: bool

    @property
    def days_or_weekdays(self) -> bool:
        """Both day fields restricted: a day matching either of them fires (cron's OR rule)."""
        return not (self.day_star or self.weekday_star)

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date, by_weekday = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return by_date or by_weekday if self.days_or_weekdays else by_date and by_weekday

    def next_after(self, when: datetime) -> datetime | None:
        """The first fire time strictly after `when` (a UTC datetime); None: it never fires."""
        t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(t.date()):
                for hour in (h for h in hours if h >= t.hour):
                    start = t.minute if hour == t.hour else 0
                    minute = next((m for m in minutes if m >= start), None)
                    if minute is not None:
                        return t.replace(hour=hour, minute=minute)
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
        return None


def parse_cron(expression: str) -> Cron:
    """The expression's `Cron`; ValueError with a short reason for anything else."""
    if not isinstance(expression, str):
        raise ValueError(f"expected a string, got {type(expression).__name__}")
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise ValueError(f"expected {len(FIELDS)} fields, got {len(parts)}")
    minutes, hours, days, months, weekdays = (
        _field(text, *spec) for text, spec in zip(parts, FIELDS, strict=True)
    )
    cron = Cron(
        minutes=minutes, hours=hours, days=days, months=months,
        weekdays=frozenset(d % 7 for d in weekdays),  # 7 is Sunday too
        day_star=parts[2].startswith("*"), weekday_star=parts[4].startswith("*"),
    )  # fmt: skip
    if not cron.days_or_weekdays and not any(
        d <= _DAYS_IN_MONTH[m - 1] for m in cron.months for d in cron.days
    ):
        raise ValueError("no month in it has that day: it never fires")
    return cron


def cron_problem(expression: str) -> str | None:
    """Why a five-field crontab expression is invalid, or None when it is valid."""
    try:
        parse_cron(expression)
    except ValueError as err:
        return str(err)
    return None


def fire_times(cron: Cron, start: datetime) -> Iterator[datetime]:
    """Every fire time after `start`, in order (ends only if the expression stops firing)."""
    when = cron.next_after(start)
    while when is not None:
        yield when
        when = cron.next_after(when)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    names = {"month": MONTH_NAMES, "day of week": WEEKDAY_NAMES}.get(name, ())
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item.lower())
        if match is None:
            raise ValueError(f"{name}: invalid item {item!r} (use *, N, N-M, each with /step)")
        if match["range"] == "*":
            first, last = low, high
        else:
            first = _value(match["first"], name, names, low, high)
            open_range = match["last"] is None and match["step"] is not None  # N/step
            last = high if open_range else _value(match["last"] or match["first"], name, names,
                                                  low, high)  # fmt: skip
            if first > last:
                raise ValueError(f"{name}: range {item!r} runs backwards")
        step = int(match["step"] or 1)
        if step < 1:
            raise ValueError(f"{name}: step must be at least 1 in {item!r}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(text: str, name: str, names: tuple[str, ...], low: int, high: int) -> int:
    if text in names:
        return names.index(text) + (1 if name == "month" else 0)
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range {low}-{high}")
    return value
