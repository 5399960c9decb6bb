"""The type codes of the term-expression language: one per kind of
operation time. The codes are stable; docs/term-expressions.md has the table."""

from __future__ import annotations

import enum


class TermKind(enum.Enum):
    # The seed's three codes.
    FIXED_PERIOD = 2
    DAILY = 31
    WEEKLY = 32
    # Ours.
    IMMEDIATE = 1
    DELAY = 3
    CRON = 30
    MONTHLY = 33
    BIRTHDAY_DAY = 41
    BIRTHDAY_WEEK = 42
    BIRTHDAY_MONTH = 43

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_birthday(self) -> bool:
        return self in (TermKind.BIRTHDAY_DAY, TermKind.BIRTHDAY_WEEK, TermKind.BIRTHDAY_MONTH)

    @property
    def has_daily_window(self) -> bool:
        """Kinds whose second/minute/hour fields are a time-of-day window."""
        return self in _WINDOWED


_LABELS = {
    TermKind.IMMEDIATE: "immediately",
    TermKind.FIXED_PERIOD: "fixed period",
    TermKind.DELAY: "after a delay",
    TermKind.CRON: "cron instants",
    TermKind.DAILY: "daily",
    TermKind.WEEKLY: "weekly",
    TermKind.MONTHLY: "monthly",
    TermKind.BIRTHDAY_DAY: "birthday: on the day",
    TermKind.BIRTHDAY_WEEK: "birthday: in the week",
    TermKind.BIRTHDAY_MONTH: "birthday: in the month",
}
_WINDOWED = {
    TermKind.DAILY,
    TermKind.WEEKLY,
    TermKind.MONTHLY,
    TermKind.BIRTHDAY_DAY,
    TermKind.BIRTHDAY_WEEK,
    TermKind.BIRTHDAY_MONTH,
}
