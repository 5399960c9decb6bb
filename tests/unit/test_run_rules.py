"""The rules a run applies, without I/O: frequency windows and the latest
missed fire time (tests/integration/test_run_rules.py runs them for real)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain import audience as a
from domain import plan as d
from domain.plan_calendar import TICK, PlanCalendar
from domain.runs import frequency_window

SHANGHAI = ZoneInfo("Asia/Shanghai")
PUBLISHED = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def plan(
    execution: str,
    window: d.FrequencyWindow = d.FrequencyWindow.PERIOD,
    audience: a.Rule | None = None,
    term: str = "",
) -> d.Plan:
    spec = d.PlanSpec(
        display_name="p",
        audience=audience or a.Levels(("V1",)),
        time=d.PlanTime(execution=execution, term=term),
        limits=d.PlanLimits(frequency=d.FrequencyLimit(1, window)),
    )
    return d.Plan(
        "s1", "p1", spec, d.PlanState.ACTIVE, 2, "a", PUBLISHED, "a", PUBLISHED, "",
        publish_time=PUBLISHED,
    )  # fmt: skip


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


def test_each_run_by_hand_is_a_period_of_its_own_that_fits_its_column() -> None:
    p = plan("0 0 9 * * ? * 31")
    now = datetime(2026, 11, 26, 7, 30, 7, 123456, tzinfo=UTC)
    window = frequency_window(p, now)
    assert len(window) <= 32  # frequency_claims.window
    assert window != frequency_window(p, now + timedelta(microseconds=1))
    assert frequency_window(p, now.astimezone(SHANGHAI)) == window


def test_a_birthday_week_across_new_year_is_one_window() -> None:
    p = plan("0 0 9 * * * * 42", d.FrequencyWindow.BIRTHDAY_YEAR)
    week = {frequency_window(p, local(2026, 12, 28 + n, 9)) for n in range(4)}
    week |= {frequency_window(p, local(2027, 1, n, 9)) for n in range(1, 4)}
    assert len(week) == 1
    assert frequency_window(p, local(2027, 1, 4, 9)) not in week
    # Three days ahead: the run of Friday 1 January is for the week of the 4th.
    ahead = plan("0 0 9 3 * * * 42", d.FrequencyWindow.BIRTHDAY_YEAR)
    assert frequency_window(ahead, local(2027, 1, 1, 9)) == frequency_window(
        p, local(2027, 1, 4, 9)
    )


def test_a_birthday_day_or_month_window_is_the_birthdays_year() -> None:
    day = plan("0 0 9 * * * * 41", d.FrequencyWindow.BIRTHDAY_YEAR)
    assert frequency_window(day, local(2027, 2, 28, 9)) == "birthday-year/2027"
    month = plan("0 0 9 3 * * * 43", d.FrequencyWindow.BIRTHDAY_YEAR)
    assert frequency_window(month, local(2026, 12, 30, 9)) == "birthday-year/2027"
    # A daily plan whose audience asks for a birthday 3 days ahead: the same.
    daily = plan(
        "0 0 9 * * ? * 31",
        d.FrequencyWindow.BIRTHDAY_YEAR,
        a.AllOf((a.Levels(("V1",)), a.Birthday(a.BirthdayScope.MONTH, 3))),
    )
    assert frequency_window(daily, local(2026, 12, 30, 9)) == "birthday-year/2027"


def latest_missed_fire(p: d.Plan, first: datetime, now: datetime) -> datetime | None:
    """The latest fire from `first` (a missed one, included) to `now`."""
    return PlanCalendar.of(p, now).latest_fire(first - TICK, now)


def test_the_latest_missed_fire_of_a_sparse_schedule() -> None:
    p = plan("0 0 9 * * ? * 31")
    first = local(2026, 11, 25, 9)
    assert latest_missed_fire(p, first, local(2026, 11, 28, 12)) == local(2026, 11, 28, 9)
    assert latest_missed_fire(p, first, local(2026, 11, 25, 12)) == first
    assert latest_missed_fire(p, first, local(2026, 11, 28, 9)) == local(2026, 11, 28, 9)


def test_the_latest_missed_fire_of_a_dense_schedule_long_down() -> None:
    p = plan("*/10 * * * * ? * 30")
    now = PUBLISHED + timedelta(days=30, seconds=5)
    assert latest_missed_fire(p, PUBLISHED, now) == PUBLISHED + timedelta(days=30)


def test_the_latest_missed_fire_inside_the_last_term_window() -> None:
    # Every second, but only within 08:00-20:00: at 23:00 the last was 19:59:59.
    p = plan("* * * * * ? * 30", term="* 0-0 8-20 * * ? * 31")
    now = local(2026, 11, 27, 23)
    assert latest_missed_fire(p, local(2026, 11, 25, 8), now) == local(2026, 11, 27, 19, 59, 59)
