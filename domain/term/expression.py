"""Parsing a term expression into a checked value, and writing it back.

    second minute hour day-of-month month day-of-week [year] type

Every problem is reported at once, each naming its field, its position and
what was expected. `parse(text).format()` is the canonical form: eight
fields, `?` written as `*`, names as numbers, list items sorted.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from domain.errors import FieldViolation, InvalidArgument
from domain.term.fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    DAYS_AHEAD,
    DELAY_DAYS,
    HOUR,
    LAST,
    MINUTE,
    MONTH,
    SECOND,
    SPECS,
    YEAR,
    Field,
    FieldError,
    Spec,
    parse_field,
)
from domain.term.kinds import TermKind

MAX_LENGTH = 200
MAX_DELAY = timedelta(days=3650)
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
            parts = [_as_range(f) for f in self._fields()[:5]]
            parts += ["*", _as_range(self.year)]
        else:
            parts = [f.format() for f in self._fields()]
        return " ".join([*parts, str(self.kind.value)])

    def _fields(self) -> tuple[Field, ...]:
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
        start, end = self._period_bounds()
        assert start is not None and end is not None
        return start, end

    def _period_bounds(self) -> tuple[datetime | None, datetime | None]:
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


def parse(text: str) -> TermExpression:
    """The checked expression, or TermExpressionError listing every problem."""
    if len(text) > MAX_LENGTH:
        raise TermExpressionError(
            [FieldViolation("expression", f"at most {MAX_LENGTH} characters, got {len(text)}")]
        )
    tokens, columns = _tokens(text)
    if len(tokens) not in (7, 8):
        raise TermExpressionError(
            [
                FieldViolation(
                    "expression",
                    "expected 7 or 8 fields: second minute hour day-of-month month "
                    f"day-of-week [year] type, got {len(tokens)}",
                )
            ]
        )
    if len(tokens) == 7:  # no year
        tokens.insert(6, "*")
        columns.insert(6, columns[6])
    violations: list[FieldViolation] = []
    kind = _kind(tokens[7], columns[7], violations)
    fields: list[Field] = []
    for i, spec in enumerate(_specs(kind)):
        # Fixed periods, and the time of day of windows, take start-end pairs.
        start_end = kind is TermKind.FIXED_PERIOD or (
            kind is not None and kind.has_daily_window and i < 3
        )
        try:
            fields.append(parse_field(tokens[i], spec, i + 1, columns[i], start_end=start_end))
        except FieldError as exc:
            violations.append(exc.violation)
            fields.append(Field(spec, any=True, position=i + 1, column=columns[i]))
    if violations or kind is None:
        raise TermExpressionError(violations)
    expression = TermExpression(kind, *fields)
    violations += _meaning(expression)
    if violations:
        raise TermExpressionError(violations)
    return expression


def canonical(text: str) -> str:
    return parse(text).format()


def violations(text: str) -> list[FieldViolation]:
    """Every problem of an expression (none when it is valid)."""
    try:
        parse(text)
    except TermExpressionError as exc:
        return list(exc.violations)
    return []


def _tokens(text: str) -> tuple[list[str], list[int]]:
    """The whitespace-separated fields and the 1-based column of each."""
    found = list(re.finditer(r"\S+", text))
    return [m.group() for m in found], [m.start() + 1 for m in found]


def _specs(kind: TermKind | None) -> tuple[Spec, ...]:
    if kind is TermKind.DELAY:
        return (*SPECS[:3], DELAY_DAYS, *SPECS[4:])
    if kind is not None and kind.is_birthday:
        return (*SPECS[:3], DAYS_AHEAD, *SPECS[4:])
    return SPECS


def _kind(token: str, column: int, violations: list[FieldViolation]) -> TermKind | None:
    codes = ", ".join(str(k.value) for k in sorted(TermKind, key=lambda k: k.value))
    if token.isascii() and token.isdigit() and len(token) <= 3:
        try:
            return TermKind(int(token))
        except ValueError:
            pass
    violations.append(
        FieldViolation(
            "type", f"type {token!r} is not a known code ({codes}) (at character {column})"
        )
    )
    return None


def _meaning(e: TermExpression) -> list[FieldViolation]:
    """What the fields must be for the expression's kind."""
    out: list[FieldViolation] = []

    def must_be_any(*fields: Field) -> None:
        for f in fields:
            if not f.any:
                out.append(
                    FieldViolation(
                        f.spec.name,
                        f"{f.spec.name} must be * for type {e.kind.value} "
                        f"({e.kind.label}) ({f.where()})",
                    )
                )

    kind = e.kind
    if kind is TermKind.IMMEDIATE:
        must_be_any(*e._fields())
    elif kind is TermKind.DELAY:
        must_be_any(e.month, e.day_of_week, e.year)
        for f in (e.second, e.minute, e.hour, e.day_of_month):
            if not f.any and f.single is None:
                out.append(
                    FieldViolation(
                        f.spec.name,
                        f"{f.spec.name} of a delay is one amount, e.g. 30 ({f.where()})",
                    )
                )
        if not out and not (timedelta(0) < e.delay <= MAX_DELAY):
            out.append(
                FieldViolation(
                    "expression",
                    "a delay must be longer than 0 and at most 3650 days; "
                    "use type 1 for immediately",
                )
            )
    elif kind is TermKind.FIXED_PERIOD:
        must_be_any(e.day_of_week)
        for f in (e.second, e.minute, e.hour, e.day_of_month, e.month, e.year):
            if not f.any and (
                len(f.items) != 1 or f.items[0].step != 1 or f.items[0].start == LAST
            ):
                out.append(
                    FieldViolation(
                        f.spec.name,
                        f"{f.spec.name} of a fixed period is start-end, e.g. 24-25 ({f.where()})",
                    )
                )
            elif f.any and f.spec in (DAY_OF_MONTH, MONTH, YEAR):
                out.append(
                    FieldViolation(
                        f.spec.name,
                        f"{f.spec.name} is required for a fixed period, e.g. "
                        f"{'2019-2019' if f.spec is YEAR else '24-25'} ({f.where()})",
                    )
                )
        if not out:
            start, end = e._period_bounds()
            if start is None:
                out.append(FieldViolation("expression", "the period's start is not a real date"))
            elif end is None:
                out.append(FieldViolation("expression", "the period's end is not a real date"))
            elif end <= start:
                out.append(
                    FieldViolation(
                        "expression",
                        f"the period must end after it starts; it starts {start} and ends {end}",
                    )
                )
    elif kind is TermKind.CRON:
        if not e.day_of_month.any and not e.day_of_week.any:
            out.append(
                FieldViolation(
                    "day-of-week",
                    "set day-of-month or day-of-week, not both; use ? for the other "
                    f"({e.day_of_week.where()})",
                )
            )
        out += _days_exist(e)
    else:  # windowed kinds
        out += _time_of_day(e)
        if kind is TermKind.DAILY:
            must_be_any(e.day_of_month, e.day_of_week)
        elif kind is TermKind.WEEKLY:
            must_be_any(e.day_of_month)
            if e.day_of_week.any:
                out.append(
                    FieldViolation(
                        "day-of-week",
                        f"weekly needs days of the week, e.g. 1,3; for every day use type 31 "
                        f"({e.day_of_week.where()})",
                    )
                )
        elif kind is TermKind.MONTHLY:
            must_be_any(e.day_of_week)
            if e.day_of_month.any:
                out.append(
                    FieldViolation(
                        "day-of-month",
                        f"monthly needs days of the month, e.g. 1,15,L; for every day use "
                        f"type 31 ({e.day_of_month.where()})",
                    )
                )
            else:
                out += _days_exist(e)
        else:  # birthday
            must_be_any(e.month, e.day_of_week)
            f = e.day_of_month
            if not f.any and f.single is None:
                out.append(
                    FieldViolation(
                        "day-of-month",
                        f"for a birthday type, day-of-month is the days ahead: * or one "
                        f"number 0-31 ({f.where()})",
                    )
                )
    return out


def _time_of_day(e: TermExpression) -> list[FieldViolation]:
    out = []
    for f in (e.second, e.minute, e.hour):
        if f.any:
            continue
        if f.star_step or len(f.items) != 1 or f.items[0].step != 1:
            out.append(
                FieldViolation(
                    f.spec.name,
                    f"{f.spec.name} of a time-of-day window is one value or start-end, "
                    f"e.g. 20-30 ({f.where()}); for repeated instants use type 30",
                )
            )
    if e.hour.any and not (e.minute.any and e.second.any):
        out.append(
            FieldViolation(
                "hour",
                f"give the hour (e.g. 9 or 8-20) when minute or second is set "
                f"({e.hour.where()}); for every hour use type 30",
            )
        )
    return out


def _days_exist(e: TermExpression) -> list[FieldViolation]:
    """A day-of-month set that no allowed month of an allowed year has (31
    February, or 29 February in 2100 only) never fires."""
    days = e.day_of_month.values()
    if e.day_of_month.any or LAST in days:
        return []
    leap = any(calendar.isleap(year) for year in e.year.values())
    if any(
        day <= (29 if month == 2 and leap else calendar.monthrange(2001, month)[1])
        for month in e.month.values()
        for day in days
    ):
        return []
    return [
        FieldViolation(
            "day-of-month",
            f"day-of-month {e.day_of_month.format()} never occurs in month "
            f"{e.month.format()}"
            + ("" if e.year.any else f" of year {e.year.format()}")
            + f" ({e.day_of_month.where()})",
        )
    ]


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
    "canonical",
    "matches_day",
    "parse",
]
