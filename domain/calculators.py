"""Time calculators: the components that compute one time notion of a plan
(effective time, operation term or execution time) — its windows between two
instants, in a zone. The plan calendar (domain/plan_calendar.py) asks them
and knows nothing of how they compute.

A notion is written in `PlanTime` as text:

- a term expression (`0 0 9 8 * * * 33`): the term-expression calculator,
  the default for every notion, named after its type (`monthly`, ...);
- `@name arguments`: a calculator registered here by name, for a product
  that needs a behaviour term expressions cannot say: `@payday`, and the
  event trigger `@on EVENT [after DELAY] [unless EVENT]` of an execution
  time driven by members' events rather than the calendar (it has no
  windows of its own: each event it names makes one member's due time).

A product template names, per notion, the calculators it allows
(server/products/*.toml, `[allowed]`); a new product that needs a new
behaviour registers one calculator in `REGISTRY`.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from domain import birthday, term
from domain.audience import Birthday
from domain.errors import FieldViolation
from domain.member_events import MAX_EVENT_AGE, EventType
from domain.term import TermExpression, TermKind, Window
from domain.zones import zone as zone_of

# The term-expression calculator's names, one per type code (the names a
# template's [allowed] uses).
TERM_KINDS: dict[str, TermKind] = {
    "immediately": TermKind.IMMEDIATE,
    "delay": TermKind.DELAY,
    "fixed_period": TermKind.FIXED_PERIOD,
    "cron": TermKind.CRON,
    "daily": TermKind.DAILY,
    "weekly": TermKind.WEEKLY,
    "monthly": TermKind.MONTHLY,
    "birthday_day": TermKind.BIRTHDAY_DAY,
    "birthday_week": TermKind.BIRTHDAY_WEEK,
    "birthday_month": TermKind.BIRTHDAY_MONTH,
}
_KIND_NAMES = {kind: name for name, kind in TERM_KINDS.items()}


class Calculator(Protocol):
    """One notion's windows, and the shape the calendar reasons with."""

    @property
    def name(self) -> str:
        """The registry name a template allows it by."""
        ...

    @property
    def point(self) -> bool:
        """Each window is an instant: it fires once, its effects hold its day."""
        ...

    @property
    def open_ended(self) -> bool:
        """One window from an anchored instant on (immediately, after a delay)."""
        ...

    @property
    def one_off(self) -> bool:
        """At most one window ever."""
        ...

    @property
    def birthday(self) -> Birthday | None:
        """Runs select members by this birthday (a birthday type), else None."""
        ...

    @property
    def trigger(self) -> Trigger | None:
        """Members' events fire it, each for its member (no windows of its own)."""
        ...

    def format(self) -> str:
        """The canonical text."""
        ...

    def describe(self, language: str = "en") -> str: ...

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]:
        """The windows meeting [start, end), in order, at most `limit`."""
        ...


class CalculatorError(ValueError):
    """Text that names no calculator, or arguments it refuses."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(v.description for v in violations))
        self.violations = violations


@dataclass(frozen=True)
class TermCalculator:
    """The default: a term expression (docs/term-expressions.md)."""

    expression: TermExpression

    @property
    def name(self) -> str:
        return _KIND_NAMES[self.expression.kind]

    @property
    def point(self) -> bool:
        e = self.expression
        return e.kind is TermKind.CRON or (e.kind.has_daily_window and e.day_window.is_point)

    @property
    def open_ended(self) -> bool:
        return self.expression.kind in (TermKind.IMMEDIATE, TermKind.DELAY)

    @property
    def one_off(self) -> bool:
        return self.open_ended or self.expression.kind is TermKind.FIXED_PERIOD

    @property
    def birthday(self) -> Birthday | None:
        e = self.expression
        if not e.kind.is_birthday:
            return None
        return Birthday(birthday.scope_of(e.kind), e.days_ahead)

    trigger = None

    def format(self) -> str:
        return self.expression.format()

    def describe(self, language: str = "en") -> str:
        return term.describe(self.expression, language)

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]:
        return term.windows(self.expression, start, end, zone, anchor, limit=limit)


_PAYDAY = re.compile(
    r"@payday(?:\s+(?P<day>\d{1,2}))?"
    r"(?:\s+(?P<start>\d{2}:\d{2})(?:-(?P<end>\d{2}:\d{2}))?)?"
)


@dataclass(frozen=True)
class PaydayCalculator:
    """Payday: the `day` of each month (the 10th unless told), or the last
    Monday-Friday before it when it falls on a weekend; a month shorter than
    `day` pays on its last day (or the weekday before). No holiday calendar:
    only Saturdays and Sundays move it.

    Written `@payday [DAY] [HH:MM[-HH:MM]]`: the whole day, an instant at
    HH:MM (fires once, its effects hold the day), or a window."""

    day: int = 10
    start: time | None = None
    end: time | None = None

    name = "payday"
    open_ended = False
    one_off = False
    birthday = None
    trigger = None

    @property
    def point(self) -> bool:
        return self.start is not None and self.end is None

    @staticmethod
    def parse(text: str) -> PaydayCalculator:
        match = _PAYDAY.fullmatch(text.strip())
        if match is None:
            raise CalculatorError(
                [FieldViolation("expression", "payday is '@payday [DAY] [HH:MM[-HH:MM]]'")]
            )
        day = int(match["day"] or 10)
        problems = []
        if not 1 <= day <= 31:
            problems.append(FieldViolation("day", f"the pay day is 1-31, got {day}"))
        start, end = _clock(match["start"], problems), _clock(match["end"], problems)
        if start is not None and end is not None and end <= start:
            problems.append(FieldViolation("end", "the window must end after it starts"))
        if problems:
            raise CalculatorError(problems)
        return PaydayCalculator(day, start, end)

    def pay_date(self, year: int, month: int) -> date:
        paid = date(year, month, min(self.day, calendar.monthrange(year, month)[1]))
        while paid.weekday() >= 5:  # Saturday, Sunday: the Friday before
            paid -= timedelta(days=1)
        return paid

    def format(self) -> str:
        out = f"@payday {self.day}"
        if self.start is not None:
            out += f" {self.start:%H:%M}"
            if self.end is not None:
                out += f"-{self.end:%H:%M}"
        return out

    def describe(self, language: str = "en") -> str:
        if language == "zh":
            when = "全天"
            if self.start is not None:
                when = f"{self.start:%H:%M}" + (f"至{self.end:%H:%M}" if self.end else "")
            return f"每月{self.day}日发薪日(遇周末提前至之前的工作日),{when}"
        when = "all day"
        if self.start is not None:
            when = (
                f"from {self.start:%H:%M} to {self.end:%H:%M}"
                if self.end
                else f"at {self.start:%H:%M}"
            )
        day = _ordinal(self.day)
        return f"on payday ({day} of the month, or the weekday before on a weekend), {when}"

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]:
        tz = zone_of(zone)
        local = start.astimezone(tz)
        year, month = local.year, local.month - 1  # the month before: a window may reach in
        if month == 0:
            year, month = year - 1, 12
        out: list[Window] = []
        while len(out) < limit:
            paid = self.pay_date(year, month)
            window = self._window(paid, zone)
            if window.start >= end:
                break
            if window.end is not None and window.end > start:
                out.append(window)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    def _window(self, paid: date, zone: str) -> Window:
        def at(clock: time, day: date = paid) -> datetime:
            return datetime.combine(day, clock).replace(tzinfo=zone_of(zone)).astimezone(UTC)

        if self.start is None:
            return Window(at(time()), at(time(), paid + timedelta(days=1)))
        if self.end is None:
            begin = at(self.start)
            return Window(begin, begin + timedelta(seconds=1))
        return Window(at(self.start), at(self.end))


_TRIGGER = re.compile(
    r"@on\s+(?P<event>[a-z_]+)"
    r"(?:\s+after\s+(?P<delay>\S+))?"
    r"(?:\s+unless\s+(?P<unless>[a-z_]+))?"
)
_DELAY = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
# A wait longer than an event may be old would outlive the event it waits on.
MAX_DELAY = MAX_EVENT_AGE
_EVENT_NAMES = ", ".join(t.value for t in EventType)


@dataclass(frozen=True)
class Trigger:
    """On each `event` of a member, act for that member `delay` later,
    unless the member's `unless` event happens first."""

    event: EventType
    delay: timedelta
    unless: EventType | None = None

    def due(self, occurred: datetime) -> datetime:
        return occurred + self.delay


@dataclass(frozen=True)
class TriggerCalculator:
    """An execution time driven by members' events: `@on carted after 2h
    unless order_paid`. The calendar fires nothing for it; the plan acts
    for each member an event names, at the event's time plus the delay
    (0 allowed, up to 90 days: `90s`, `2h`, `1d12h`), while the plan is in
    effect and in term then, and not if the member's `unless` event came
    first."""

    trigger: Trigger

    name = "on"
    point = False
    open_ended = False
    one_off = False
    birthday = None

    @staticmethod
    def parse(text: str) -> TriggerCalculator:
        match = _TRIGGER.fullmatch(text.strip())
        if match is None:
            raise CalculatorError(
                [
                    FieldViolation(
                        "expression",
                        "an event trigger is '@on EVENT [after DELAY] [unless EVENT]', "
                        "e.g. '@on carted after 2h unless order_paid'",
                    )
                ]
            )
        problems: list[FieldViolation] = []
        event = _event(match["event"], "event", problems)
        unless = _event(match["unless"], "unless", problems) if match["unless"] else None
        delay = _delay(match["delay"] or "0s", problems)
        if problems or event is None:
            raise CalculatorError(problems)
        return TriggerCalculator(Trigger(event, delay, unless))

    def format(self) -> str:
        t = self.trigger
        out = f"@on {t.event.value}"
        if t.delay:
            out += f" after {format_delay(t.delay)}"
        if t.unless is not None:
            out += f" unless {t.unless.value}"
        return out

    def describe(self, language: str = "en") -> str:
        t = self.trigger
        delay = format_delay(t.delay)
        if language == "zh":
            out = f"会员发生{t.event.value}事件" + (f"{delay}后" if t.delay else "时")
            return out + (f",期间若发生{t.unless.value}则不执行" if t.unless else "")
        out = f"when a member's {t.event.value} event happens"
        out += f", {delay} later" if t.delay else ", at once"
        return out + (f", unless {t.unless.value} happens first" if t.unless else "")

    def windows(
        self, start: datetime, end: datetime, zone: str, anchor: datetime | None, limit: int
    ) -> list[Window]:
        return []  # events, not the calendar, make its due times


def format_delay(delay: timedelta) -> str:
    """The shortest text for a delay: 2h, 1h30m, 90s becomes 1m30s, 0s."""
    seconds = int(delay.total_seconds())
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _event(name: str, field: str, problems: list[FieldViolation]) -> EventType | None:
    try:
        return EventType(name)
    except ValueError:
        problems.append(FieldViolation(field, f"{name!r} is no event; one of {_EVENT_NAMES}"))
        return None


def _delay(text: str, problems: list[FieldViolation]) -> timedelta:
    match = _DELAY.fullmatch(text)
    if match is None or not text:
        problems.append(FieldViolation("after", f"{text!r}: a delay such as 90s, 30m, 2h, 1d12h"))
        return timedelta(0)
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    delay = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if delay > MAX_DELAY:
        problems.append(FieldViolation("after", f"at most {MAX_DELAY.days} days"))
    return delay


# name -> how its text (after the @name) becomes a calculator
REGISTRY: dict[str, Callable[[str], Calculator]] = {
    "payday": PaydayCalculator.parse,
    "on": TriggerCalculator.parse,
}


def parse(text: str) -> Calculator:
    """The calculator a notion's text names; CalculatorError, or the term
    expression's own error, when it names none."""
    if text.startswith("@"):
        name = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
        make = REGISTRY.get(name)
        if make is None:
            known = ", ".join(f"@{n}" for n in sorted(REGISTRY))
            raise CalculatorError(
                [FieldViolation("expression", f"no calculator @{name}; registered: {known}")]
            )
        return make(text)
    return _term_calculator(text)


@functools.lru_cache(maxsize=4096)
def _term_calculator(text: str) -> TermCalculator:
    # Immutable, and parsed for every plan the scheduler or a shopper's call looks at.
    return TermCalculator(term.parse(text))


def violations(text: str) -> list[FieldViolation]:
    """Every problem of a notion's text (none when it is valid)."""
    try:
        parse(text)
    except CalculatorError as exc:
        return list(exc.violations)
    except term.TermExpressionError as exc:
        return list(exc.violations)
    return []


def names() -> frozenset[str]:
    """Every calculator a template may allow."""
    return frozenset(TERM_KINDS) | frozenset(REGISTRY)


def _clock(text: str | None, problems: list[FieldViolation]) -> time | None:
    if text is None:
        return None
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        problems.append(FieldViolation("time", f"{text} is not a time of day"))
        return None
    return time(hours, minutes)


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
