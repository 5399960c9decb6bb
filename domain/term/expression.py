"""A term expression as a checked value, and writing it back.

    second minute hour day-of-month month day-of-week [year] type

`format()` is the canonical form: eight fields, `?` written as `*`, names
as numbers, list items sorted. Parsing and checking text is
domain.term.parsing.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from domain.errors import FieldViolation, InvalidArgument
from domain.term.fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    HOUR,
    LAST,
    MINUTE,
    MONTH,
    SECOND,
    YEAR,
    Field,
)
from domain.term.kinds import TermKind

DAY_SECONDS = 86_400


class TermExpressionError(InvalidArgument):
    """An expression that does not parse or means nothing; `violations`
    name the term fields (second, minute, ..., type)."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__(violations, reason="INVALID_TERM_EXPRESSION")


@dataclass(frozen=True)
class DayWindow:
    """A time-of-day window: [start, end) in seconds after local midnight.

    `end` may exceed 86400 (the window runs past midnight into the next
    day); `end == start + 1` is a point in time (fires once)."""

    start: int
    end: int

    @property
    def whole_day(self) -> bool:
        return self.start == 0 and self.end == DAY_SECONDS

    @property
    def is_point(self) -> bool:
        return self.end == self.start + 1


@dataclass(frozen=True)
class TermExpression:
    kind: TermKind
    second: Field
    minute: Field
    hour: Field
    day_of_month: Field
    month: Field
    day_of_week: Field
    year: Field

    def format(self) -> str:
        if self.kind is TermKind.FIXED_PERIOD:
            parts = [_as_range(f) for f in self.fields()[:5]]
            parts += ["*", _as_range(self.year)]
        else:
            parts = [f.format() for f in self.fields()]
        return " ".join([*parts, str(self.kind.value)])

    def fields(self) -> tuple[Field, ...]:
        return (
            self.second,
            self.minute,
            self.hour,
            self.day_of_month,
            self.month,
            self.day_of_week,
            self.year,
        )

    # Derived meanings, one per family of kinds.

    @property
    def day_window(self) -> DayWindow:
        """The time-of-day window of a windowed kind."""
        if self.hour.any:
            return DayWindow(0, DAY_SECONDS)
        start = _seconds(self.hour, self.minute, self.second, first=True)
        end = _seconds(self.hour, self.minute, self.second, first=False)
        return _window(start, end)

    @property
    def period(self) -> tuple[datetime, datetime]:
        """[start, end) of a fixed period, as naive local times."""
        start, end = self.period_bounds()
        assert start is not None and end is not None
        return start, end

    def period_bounds(self) -> tuple[datetime | None, datetime | None]:
        def at(first: bool) -> datetime | None:
            fields = (self.year, self.month, self.day_of_month, self.hour, self.minute, self.second)
            try:
                year, month, day, hour, minute, second = (_bound(f, first) for f in fields)
                moment = datetime(year, month, day, hour, minute, second)
            except ValueError:
                return None
            if not first and moment.time() in (time(0, 0, 0), time(23, 59, 59)):
                # An end at 00:00:00 or 23:59:59 means the end of that day.
                moment = datetime.combine(moment.date() + timedelta(days=1), time())
            return moment

        return at(True), at(False)

    @property
    def delay(self) -> timedelta:
        return timedelta(
            days=_amount(self.day_of_month),
            hours=_amount(self.hour),
            minutes=_amount(self.minute),
            seconds=_amount(self.second),
        )

    @property
    def days_ahead(self) -> int:
        """Birthday kinds: act this many days before the birthday."""
        return _amount(self.day_of_month)


def _bound(f: Field, first: bool) -> int:
    """A start-end field's start (or end); `*` stands for 0."""
    if f.any:
        return 0
    return f.items[0].start if first else f.items[0].end


def _as_range(f: Field) -> str:
    if f.any:
        return "0-0"
    item = f.items[0]
    return f"{item.start}-{item.end}"


def _seconds(hour: Field, minute: Field, second: Field, *, first: bool) -> int:
    def pick(f: Field) -> int:
        if f.any:
            return 0
        item = f.items[0]
        return item.start if first else item.end

    return pick(hour) * 3600 + pick(minute) * 60 + pick(second)


def _window(start: int, end: int) -> DayWindow:
    if end == start:
        # A single time: midnight alone is the whole day; any other is a point.
        return DayWindow(0, DAY_SECONDS) if start == 0 else DayWindow(start, start + 1)
    if end in (0, DAY_SECONDS - 1):
        end = DAY_SECONDS  # an end at 00:00:00 or 23:59:59 is the end of the day
    if end < start:
        end += DAY_SECONDS  # overnight: ends the next day
    return DayWindow(start, end)


def _amount(f: Field) -> int:
    return 0 if f.any or f.single is None else f.single


def last_day(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def matches_day(e: TermExpression, day: date) -> bool:
    """Whether a windowed kind opens a window on this local date."""
    if not e.year.any and day.year not in e.year.values():
        return False
    if not e.month.any and day.month not in e.month.values():
        return False
    if e.kind is TermKind.WEEKLY:
        return day.isoweekday() in e.day_of_week.values()
    if e.kind is TermKind.MONTHLY:
        days = e.day_of_month.values()
        return day.day in days or (LAST in days and day.day == last_day(day.year, day.month))
    return True


__all__ = [
    "DAY_OF_MONTH",
    "DAY_OF_WEEK",
    "HOUR",
    "MINUTE",
    "MONTH",
    "SECOND",
    "YEAR",
    "DayWindow",
    "TermExpression",
    "TermExpressionError",
    "matches_day",
]
