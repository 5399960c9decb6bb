"""Whose birthday a date matches: the rules the audience system applies for
birthday rules, and the birthday term types (41-43) fire by.

- 29 February, in a year without it, is celebrated on 28 February.
- Day: the run date (plus the days ahead) is the member's birthday this year.
- Week: the Monday-Sunday week of the run date (plus the days ahead)
  contains the member's birthday (its occurrence in that week's year or
  years, so a week across New Year counts both).
- Month: the run date (plus the days ahead) is in the birthday's month.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from domain.audience import BirthdayScope
from domain.term.kinds import TermKind
from domain.zones import zone as zone_of


def occurrence(month: int, day: int, year: int) -> date:
    """The member's birthday in `year`."""
    if month == 2 and day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def matches(
    scope: BirthdayScope, month: int, day: int, run_date: date, days_ahead: int = 0
) -> bool:
    target = run_date + timedelta(days=days_ahead)
    if scope is BirthdayScope.MONTH:
        return target.month == month
    if scope is BirthdayScope.DAY:
        return occurrence(month, day, target.year) == target
    monday = target - timedelta(days=target.weekday())
    sunday = monday + timedelta(days=6)
    return any(
        monday <= occurrence(month, day, year) <= sunday for year in {monday.year, sunday.year}
    )


def run_matches(
    scope: BirthdayScope, month: int, day: int, run_time: datetime, zone: str, days_ahead: int = 0
) -> bool:
    """Whether a birthday plan's run at `run_time` is for this birthday: the
    run's date is its local date in the plan's zone."""
    return matches(scope, month, day, run_time.astimezone(zone_of(zone)).date(), days_ahead)


def occasion(scope: BirthdayScope, run_date: date, days_ahead: int = 0) -> str:
    """Which birthday a run on `run_date` acts for, as a key: the same for
    every run that meets a member for one birthday, another for the next
    birthday. The year of the date (plus the days ahead) for a day or a
    month; for a week, its Monday ("w2026-12-28"), because a week across
    New Year holds birthdays of two years, and each birthday lies in exactly
    one week."""
    target = run_date + timedelta(days=days_ahead)
    if scope is BirthdayScope.WEEK:
        return f"w{(target - timedelta(days=target.weekday())).isoformat()}"
    return str(target.year)


def scope_of(kind: TermKind) -> BirthdayScope:
    """The birthday scope a birthday term type (41, 42, 43) runs for."""
    scopes = {
        TermKind.BIRTHDAY_DAY: BirthdayScope.DAY,
        TermKind.BIRTHDAY_WEEK: BirthdayScope.WEEK,
        TermKind.BIRTHDAY_MONTH: BirthdayScope.MONTH,
    }
    if kind not in scopes:
        raise ValueError(f"type {kind.value} is not a birthday type")
    return scopes[kind]
