"""Time calculators as components: the term-expression one, and payday —
the 10th, or the weekday before it on a weekend — through the calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from domain import calculators
from domain.plan import PlanTime
from domain.plan_calendar import TICK, End, EndReason, PlanCalendar, Wait
from domain.term import Window

SHANGHAI = "Asia/Shanghai"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(SHANGHAI)).astimezone(UTC)


@pytest.mark.parametrize(
    ("year", "month", "paid"),
    [
        (2026, 12, date(2026, 12, 10)),  # a Thursday
        (2027, 1, date(2027, 1, 8)),  # the 10th is a Sunday: Friday the 8th
        (2026, 10, date(2026, 10, 9)),  # the 10th is a Saturday: Friday the 9th
        (2027, 4, date(2027, 4, 9)),  # a Saturday again
    ],
)
def test_payday_is_the_10th_or_the_weekday_before(year: int, month: int, paid: date) -> None:
    assert calculators.PaydayCalculator().pay_date(year, month) == paid


def test_a_pay_day_past_a_short_month_is_its_last_weekday() -> None:
    end_of_month = calculators.PaydayCalculator(day=31)
    assert end_of_month.pay_date(2027, 2) == date(2027, 2, 26)  # the 28th is a Sunday
    assert end_of_month.pay_date(2027, 3) == date(2027, 3, 31)


def test_payday_is_written_with_its_day_and_time() -> None:
    whole_day = calculators.parse("@payday")
    assert whole_day.format() == "@payday 10" and not whole_day.point
    at_nine = calculators.parse("@payday 09:00")
    assert at_nine.format() == "@payday 10 09:00" and at_nine.point
    assert at_nine.name == "payday" and at_nine.birthday is None
    assert "weekday before" in at_nine.describe() and "at 09:00" in at_nine.describe()
    window = calculators.parse("@payday 25 10:00-22:00")
    assert window.format() == "@payday 25 10:00-22:00" and not window.point
    (first,) = window.windows(local(2027, 1, 1), local(2027, 2, 1), SHANGHAI, None, 5)
    assert first == Window(local(2027, 1, 25, 10), local(2027, 1, 25, 22))


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("@payday 32", "day", "1-31"),
        ("@payday 25:00", "time", "not a time of day"),
        ("@payday 12:00-09:00", "end", "end after it starts"),
        ("@payday every friday", "expression", "@payday [DAY]"),
        ("@horoscope", "expression", "registered: @on, @payday"),
    ],
)
def test_bad_calculator_text_names_what_is_wrong(text: str, field: str, message: str) -> None:
    (problem,) = calculators.violations(text)
    assert problem.field == field and message in problem.description


def test_a_term_expression_is_the_default_calculator() -> None:
    daily = calculators.parse("0 0 9 * * ? * 31")
    assert daily.name == "daily" and daily.point and not daily.one_off
    assert calculators.parse("0 0 9 3 * * * 42").birthday is not None
    assert calculators.parse("* * * * * * * 1").open_ended
    assert {"payday", "daily", "birthday_week"} <= calculators.names()


def test_the_calendar_asks_the_payday_calculator() -> None:
    published = local(2026, 12, 1)
    c = PlanCalendar(PlanTime(execution="@payday 09:00"), SHANGHAI, published)
    assert c.fires(published - TICK, 3) == [
        local(2026, 12, 10, 9),
        local(2027, 1, 8, 9),  # a weekend 10th
        local(2027, 2, 10, 9),
    ]
    # An instant: its effects hold its day, and what comes next shows with its start.
    on_payday = c.executing(local(2027, 1, 8, 20))
    assert on_payday.applies
    assert on_payday.window == Window(local(2027, 1, 8), local(2027, 1, 9))
    weekend = c.executing(local(2027, 1, 10, 12))
    assert not weekend.applies and weekend.window is not None
    assert weekend.window.start == local(2027, 2, 10)


def test_an_event_trigger_is_written_and_read_back() -> None:
    reminder = calculators.parse("@on carted after 120m unless order_paid")
    assert reminder.name == "on" and not reminder.point and not reminder.one_off
    assert reminder.format() == "@on carted after 2h unless order_paid"
    assert calculators.parse(reminder.format()) == reminder
    trigger = reminder.trigger
    assert trigger is not None and trigger.unless is not None
    assert (trigger.event.value, trigger.unless.value) == ("carted", "order_paid")
    assert trigger.due(local(2026, 12, 1, 9)) == local(2026, 12, 1, 11)
    assert "2h later" in reminder.describe() and "order_paid" in reminder.describe()
    at_once = calculators.parse("@on followed")
    assert at_once.format() == "@on followed" and at_once.trigger is not None
    assert not at_once.trigger.delay and "at once" in at_once.describe()
    assert calculators.parse("@on registered after 1d1h1m1s").format() == (
        "@on registered after 1d1h1m1s"
    )
    assert calculators.parse("@payday").trigger is None
    assert calculators.parse("0 0 9 * * ? * 31").trigger is None


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("@on bought", "event", "one of order_paid"),
        ("@on carted unless paid", "unless", "'paid' is no event"),
        ("@on carted after 2 hours", "expression", "@on EVENT [after DELAY]"),
        ("@on carted after 2x", "after", "a delay such as"),
        ("@on carted after 91d", "after", "at most 90 days"),
    ],
)
def test_a_bad_event_trigger_names_what_is_wrong(text: str, field: str, message: str) -> None:
    (problem,) = calculators.violations(text)
    assert problem.field == field and message in problem.description


def test_a_plan_fired_by_events_waits_through_its_term_then_ends() -> None:
    published = local(2026, 12, 1)
    term = "0-0 0-0 0-0 1-31 12-12 * 2026-2026 2"  # December 2026
    c = PlanCalendar(
        PlanTime(term=term, execution="@on carted after 2h unless order_paid"),
        SHANGHAI,
        published,
    )
    assert c.fires(published - TICK, 3) == []  # the calendar fires nothing
    assert not c.executing(local(2026, 12, 5, 12)).applies  # no effects on pages
    assert c.allowed(local(2026, 12, 5, 12)) and not c.allowed(local(2027, 1, 2))
    waiting = c.next_decision(published)
    assert isinstance(waiting, Wait) and waiting.at == local(2027, 1, 1)
    over = c.next_decision(local(2027, 1, 1))
    assert isinstance(over, End) and over.reason is EndReason.TERM_OVER
    # Without a term or an end of effect: it waits as far as the calendar looks.
    forever = PlanCalendar(PlanTime(execution="@on followed"), SHANGHAI, published)
    assert isinstance(forever.next_decision(published), Wait)
