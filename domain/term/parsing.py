"""Parsing a term expression into a checked value.

    second minute hour day-of-month month day-of-week [year] type

Every problem is reported at once, each naming its field, its position and
what was expected: first the fields' syntax, then what the fields must be
for the expression's type.
"""

from __future__ import annotations

import calendar
import re
from datetime import timedelta

from domain.errors import FieldViolation
from domain.term.expression import TermExpression, TermExpressionError
from domain.term.fields import (
    DAY_OF_MONTH,
    DAYS_AHEAD,
    DELAY_DAYS,
    LAST,
    MONTH,
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
        must_be_any(*e.fields())
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
            start, end = e.period_bounds()
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
