"""Term expressions: the seed's three, every type code, edges, DST, errors."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain import term
from domain.audience import BirthdayScope
from domain.birthday import matches, occurrence

SHANGHAI = "Asia/Shanghai"
SH = ZoneInfo(SHANGHAI)
SECOND = timedelta(seconds=1)


def local(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    zone: str = SHANGHAI,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone))


def active(text: str, at: datetime, zone: str = SHANGHAI, anchor: datetime | None = None) -> bool:
    return term.is_active(term.parse(text), at, zone, anchor)


# The seed's expressions, at and one second around each edge.

WEEKLY = "* * * * * 1,3 * 32"
DAILY = "* 20-30 8-20 * * ? 31"
FIXED = "0-0 0-0 0-0 24-25 4-4 * 2019-2019 2"


@pytest.mark.parametrize(
    ("text", "edge", "expected"),
    [
        # Monday 2026-11-30 and Wednesday 2026-12-02 are active all day.
        (WEEKLY, local(2026, 11, 30), (False, True, True)),
        (WEEKLY, local(2026, 12, 1), (True, False, False)),
        (WEEKLY, local(2026, 12, 2), (False, True, True)),
        (WEEKLY, local(2026, 12, 3), (True, False, False)),
        # Every day from 08:20 until 20:30.
        (DAILY, local(2026, 11, 24, 8, 20), (False, True, True)),
        (DAILY, local(2026, 11, 24, 20, 30), (True, False, False)),
        # 2019-04-24 to 2019-04-25, both whole days.
        (FIXED, local(2019, 4, 24), (False, True, True)),
        (FIXED, local(2019, 4, 26), (True, False, False)),
    ],
)
def test_seed_expressions_at_their_edges(
    text: str, edge: datetime, expected: tuple[bool, bool, bool]
) -> None:
    before, at, after = edge - SECOND, edge, edge + SECOND
    assert (active(text, before), active(text, at), active(text, after)) == expected


def test_seed_expressions_inside_and_outside() -> None:
    assert active(WEEKLY, local(2026, 11, 30, 12)) and not active(WEEKLY, local(2026, 11, 29, 12))
    assert active(DAILY, local(2026, 11, 24, 12)) and not active(DAILY, local(2026, 11, 24, 21))
    assert not active(DAILY, local(2026, 11, 24, 8, 19, 59))
    assert active(FIXED, local(2019, 4, 25, 23, 59, 59))
    assert not active(FIXED, local(2020, 4, 24, 12))  # a fixed period does not recur


def test_seed_expressions_fire_at_window_starts() -> None:
    after = local(2026, 11, 24, 9)
    assert term.next_fire_times(term.parse(DAILY), after, SHANGHAI, 2) == [
        local(2026, 11, 25, 8, 20).astimezone(UTC),
        local(2026, 11, 26, 8, 20).astimezone(UTC),
    ]
    assert term.next_fire_times(term.parse(WEEKLY), after, SHANGHAI, 3) == [
        local(2026, 11, 25).astimezone(UTC),
        local(2026, 11, 30).astimezone(UTC),
        local(2026, 12, 2).astimezone(UTC),
    ]
    assert term.windows(term.parse(FIXED), local(2019, 1, 1), local(2020, 1, 1), SHANGHAI) == [
        term.Window(local(2019, 4, 24).astimezone(UTC), local(2019, 4, 26).astimezone(UTC))
    ]


def test_seed_descriptions() -> None:
    assert term.describe(term.parse(WEEKLY), "zh") == "每周一、周三"
    assert term.describe(term.parse(WEEKLY)) == "every Monday and Wednesday"
    assert term.describe(term.parse(DAILY), "zh") == "每天 08:20 至 20:30"
    assert term.describe(term.parse(FIXED)) == "from 2019-04-24 to 2019-04-25, whole days"


# Every type code.


def test_immediately_and_after_a_delay_count_from_the_anchor() -> None:
    anchor = local(2026, 11, 24, 10)
    now = term.parse("* * * * * * * 1")
    assert term.next_fire_times(now, anchor - SECOND, SHANGHAI, 3, anchor) == [anchor]
    assert not active("* * * * * * * 1", anchor - SECOND, anchor=anchor)
    assert active("* * * * * * * 1", anchor + timedelta(days=400), anchor=anchor)
    later = term.parse("0 30 2 1 * * * 3")
    assert term.next_fire_times(later, anchor, SHANGHAI, 1, anchor) == [
        anchor + timedelta(days=1, hours=2, minutes=30)
    ]
    with pytest.raises(term.AnchorRequired):
        term.next_fire_times(later, anchor, SHANGHAI, 1)


def test_daily_window_overnight_and_point() -> None:
    assert active("0 0 22-6 * * * * 31", local(2026, 11, 25, 5, 59, 59))
    assert not active("0 0 22-6 * * * * 31", local(2026, 11, 25, 6))
    at_nine = term.parse("0 0 9 * * * * 31")
    assert term.next_fire_times(at_nine, local(2026, 11, 24, 9), SHANGHAI, 1) == [
        local(2026, 11, 25, 9).astimezone(UTC)
    ]
    assert active("0 0 9 * * * * 31", local(2026, 11, 24, 9))
    assert not active("0 0 9 * * * * 31", local(2026, 11, 24, 9, 0, 1))
    # Month and year limits.
    december = term.parse("* * * * 12 * 2026 31")
    assert term.next_fire_times(december, local(2026, 1, 1), SHANGHAI, 1) == [
        local(2026, 12, 1).astimezone(UTC)
    ]
    assert term.next_fire_times(december, local(2027, 1, 1), SHANGHAI, 1) == []


def test_monthly_with_the_last_day() -> None:
    e = term.parse("0 0 10 15,L * * * 33")
    fires = term.next_fire_times(e, local(2027, 1, 31, 12), SHANGHAI, 4)
    assert [f.astimezone(SH).date() for f in fires] == [
        date(2027, 2, 15),
        date(2027, 2, 28),
        date(2027, 3, 15),
        date(2027, 3, 31),
    ]
    # Day 31 is skipped in months without it.
    day31 = term.parse("* * * 31 * * * 33")
    fires = term.next_fire_times(day31, local(2027, 1, 31, 1), SHANGHAI, 2)
    assert [f.astimezone(SH).date() for f in fires] == [date(2027, 3, 31), date(2027, 5, 31)]


def test_cron_instants() -> None:
    every_quarter = term.parse("0 */15 9-18 * * ? * 30")
    fires = term.next_fire_times(every_quarter, local(2026, 11, 24, 18, 40), SHANGHAI, 3)
    assert [f.astimezone(SH).strftime("%d %H:%M") for f in fires] == [
        "24 18:45",
        "25 09:00",
        "25 09:15",
    ]
    mondays = term.parse("0 0 9 ? * 1 * 30")  # day-of-week 1 is Monday here too
    (fire,) = term.next_fire_times(mondays, local(2026, 11, 24), SHANGHAI, 1)
    assert fire.astimezone(SH) == local(2026, 11, 30, 9)
    leap_day = term.parse("0 0 0 29 2 ? * 30")
    fires = term.next_fire_times(leap_day, local(2026, 1, 1), SHANGHAI, 2)
    assert [f.astimezone(SH).year for f in fires] == [2028, 2032]
    in_2030 = term.parse("0 0 12 1 1 ? 2030 30")
    assert term.next_fire_times(in_2030, local(2026, 1, 1), SHANGHAI, 5) == [
        local(2030, 1, 1, 12).astimezone(UTC)
    ]


@pytest.mark.parametrize(("code", "scope"), [(41, "day"), (42, "week"), (43, "month")])
def test_birthday_types_run_daily(code: int, scope: str) -> None:
    e = term.parse(f"0 0 9 3 * * * {code}")
    assert e.days_ahead == 3
    fires = term.next_fire_times(e, local(2026, 11, 24, 10), SHANGHAI, 2)
    assert [f.astimezone(SH) for f in fires] == [local(2026, 11, 25, 9), local(2026, 11, 26, 9)]
    assert scope in term.describe(e)


def test_fixed_period_across_new_year_and_with_times() -> None:
    new_year = "0-0 0-0 0-0 30-2 12-1 * 2026-2027 2"
    assert active(new_year, local(2027, 1, 2, 23, 59, 59))
    assert not active(new_year, local(2027, 1, 3))
    evening = "0-0 0-0 10-18 24-25 12-12 * 2026-2026 2"
    assert active(evening, local(2026, 12, 24, 10)) and active(evening, local(2026, 12, 25, 17))
    assert not active(evening, local(2026, 12, 25, 18))


# Birthdays.


def test_birthday_rules() -> None:
    assert occurrence(2, 29, 2027) == date(2027, 2, 28)
    assert occurrence(2, 29, 2028) == date(2028, 2, 29)
    assert matches(BirthdayScope.DAY, 2, 29, date(2027, 2, 28))
    assert not matches(BirthdayScope.DAY, 2, 29, date(2027, 3, 1))
    assert matches(BirthdayScope.DAY, 5, 20, date(2026, 5, 17), days_ahead=3)
    # The Monday-Sunday week of 2026-12-29 runs into 2027: a 2 January birthday is in it.
    assert matches(BirthdayScope.WEEK, 1, 2, date(2026, 12, 29))
    assert not matches(BirthdayScope.WEEK, 1, 4, date(2026, 12, 29))
    assert matches(BirthdayScope.WEEK, 12, 28, date(2027, 1, 3))
    assert matches(BirthdayScope.MONTH, 12, 1, date(2026, 11, 30), days_ahead=1)
    assert not matches(BirthdayScope.MONTH, 12, 1, date(2026, 11, 30))


# Time zones with daylight saving.

NEW_YORK = "America/New_York"


def test_a_skipped_wall_time_moves_forward_and_a_window_inside_the_gap_is_empty() -> None:
    half_past_two = term.parse("0 30 2 * * * * 31")
    fires = term.next_fire_times(half_past_two, local(2026, 3, 7, 12, zone=NEW_YORK), NEW_YORK, 2)
    # 2026-03-08 02:30 does not exist in New York: it fires at 03:30 EDT.
    assert fires[0] == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert fires[1] == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    span = (local(2026, 3, 7, zone=NEW_YORK), local(2026, 3, 10, zone=NEW_YORK))
    # Each end moves forward on its own: 02:10-02:50 becomes 03:10-03:50 EDT...
    inside_gap = term.windows(term.parse("0 10-50 2 * * * * 31"), *span, NEW_YORK)
    assert inside_gap[1] == term.Window(
        datetime(2026, 3, 8, 7, 10, tzinfo=UTC), datetime(2026, 3, 8, 7, 50, tzinfo=UTC)
    )
    # ...and 02:00-03:00 (the skipped hour itself) is empty, so it does not open that day.
    the_gap = term.windows(term.parse("0 0 2-3 * * * * 31"), *span, NEW_YORK)
    assert [w.start.astimezone(ZoneInfo(NEW_YORK)).day for w in the_gap] == [7, 9]


def test_a_repeated_wall_time_is_its_first_occurrence() -> None:
    half_past_one = term.parse("0 30 1 * * * * 31")
    fires = term.next_fire_times(half_past_one, local(2026, 10, 31, 12, zone=NEW_YORK), NEW_YORK, 2)
    assert fires == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, not 01:30 EST
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]
    # A window across the repeated hour lasts its real length: 01:00-02:00 is two hours.
    (window,) = term.windows(
        term.parse("0 0 1-2 * * * * 31"),
        local(2026, 11, 1, zone=NEW_YORK),
        local(2026, 11, 1, 3, zone=NEW_YORK),
        NEW_YORK,
    )
    assert window.end is not None and window.end - window.start == timedelta(hours=2)


# Errors name the field, the position and what was expected.


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            "* * 8-25 * * ? 31",
            "hour",
            "hour range 8-25: 25 is out of 0-23 (field 3 at character 5)",
        ),
        ("* * * 31 2 ? * 33", "day-of-month", "day-of-month 31 never occurs in month 2"),
        ("* * * * * * * 99", "type", "type '99' is not a known code"),
        ("* * * * *", "expression", "expected 7 or 8 fields"),
        ("* * * * * * * 32", "day-of-week", "weekly needs days of the week"),
        ("* 0,30 9 * * * * 31", "minute", "one value or start-end"),
        ("* * * * * 8 * 32", "day-of-week", "day-of-week value 8: 8 is out of 1-7"),
        ("* * * 24-25 4-4 * * 2", "year", "year is required for a fixed period"),
        ("0-0 0-0 0-0 30-31 2-2 * 2027-2027 2", "expression", "start is not a real date"),
        ("0 0 9 5 * 1 * 30", "day-of-week", "not both"),
        ("0 0 0 0 * * * 3", "expression", "longer than 0"),
        ("* * * * * * 1899 31", "year", "1899 is out of 1970-2199"),
        ("* * * L * * * 31", "day-of-month", "must be * for type 31"),
        ("* * * * JAN-MAR * * 31", None, None),  # names are fine
    ],
)
def test_errors_name_field_position_and_expectation(
    text: str, field: str | None, message: str | None
) -> None:
    if field is None or message is None:
        assert term.parse(text).format() == "* * * * 1-3 * * 31"
        return
    with pytest.raises(term.TermExpressionError) as err:
        term.parse(text)
    assert any(v.field == field and message in v.description for v in err.value.violations), (
        err.value.violations
    )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(term.TermExpressionError) as err:
        term.parse("61 * 24 * 13 * * 31")
    assert {v.field for v in err.value.violations} == {"second", "hour", "month"}


def test_sparse_or_past_expressions_answer_at_once() -> None:
    past = term.parse("* * * * * * 2019 31")
    assert term.next_fire_times(past, local(2026, 11, 24), SHANGHAI, 5) == []
    far = term.parse("* * * * * * 2199 31")
    assert term.next_fire_times(far, local(2026, 11, 24), SHANGHAI, 1) == []  # beyond the horizon


def test_canonical_form() -> None:
    assert term.canonical("* 20-30 8-20 * * ? 31") == "* 20-30 8-20 * * * * 31"
    assert term.canonical("0 0 9 ? * WED,MON * 32") == "0 0 9 * * 1,3 * 32"
    assert term.canonical("* * * L,15,1 * * 33") == "* * * 1,15,L * * * 33"
    assert term.canonical("0 0 0 24-25 4 * 2019 2") == FIXED


# Found in review: cron across DST, reversed ranges, steps, fractions, limits.

LORD_HOWE = "Australia/Lord_Howe"  # moves its clocks by 30 minutes


@pytest.mark.parametrize(
    ("text", "zone", "after"),
    [
        ("0 */15 * * * ? * 30", NEW_YORK, datetime(2026, 3, 8, 6, 20, tzinfo=UTC)),
        ("0 */10 2 * * ? * 30", LORD_HOWE, datetime(2026, 10, 3, 14, 0, tzinfo=UTC)),
        ("0 */15 * * * ? * 30", NEW_YORK, datetime(2026, 11, 1, 4, 20, tzinfo=UTC)),
    ],
)
def test_cron_fire_times_stay_increasing_across_dst(text: str, zone: str, after: datetime) -> None:
    fires = term.next_fire_times(term.parse(text), after, zone, 12)
    assert len(fires) == 12
    assert all(a < b for a, b in itertools.pairwise(fires))
    assert fires[0] > after


def test_reversed_set_ranges_are_refused_but_windows_and_periods_may_run_backwards() -> None:
    for text in ("0 0 9 * * 1 2030-2020 32", "* * * * * FRI-MON * 32", "0 0 9 * DEC-JAN * * 31"):
        with pytest.raises(term.TermExpressionError) as err:
            term.parse(text)
        assert "is after" in err.value.violations[0].description
    assert term.parse("0 0 22-6 * * * * 31").day_window.end > 86_400
    assert term.parse("0-0 0-0 0-0 30-2 12-1 * 2026-2027 2").kind is term.TermKind.FIXED_PERIOD


def test_a_start_with_a_step_runs_to_the_top_of_the_field_for_every_type() -> None:
    monthly = term.parse("0 0 10 1/7 * * * 33")
    cron = term.parse("0 0 10 1/7 * ? * 30")
    after = local(2026, 11, 30)
    days = [f.astimezone(SH).day for f in term.next_fire_times(monthly, after, SHANGHAI, 5)]
    assert days == [1, 8, 15, 22, 29]
    assert term.next_fire_times(cron, after, SHANGHAI, 5) == term.next_fire_times(
        monthly, after, SHANGHAI, 5
    )
    assert monthly.format() == "0 0 10 1/7 * * * 33"


def test_activity_is_exact_below_a_second() -> None:
    before_nine = datetime(2026, 11, 24, 8, 59, 59, 500_000, tzinfo=UTC)
    assert not active("0 0 9 * * * * 31", before_nine, zone="UTC")
    assert active("0 0 9 * * * * 31", before_nine + timedelta(seconds=0.5), zone="UTC")
    assert not active(DAILY, local(2026, 11, 24, 8, 19, 59) + timedelta(microseconds=500_000))


def test_29_february_in_a_year_without_it_is_refused() -> None:
    with pytest.raises(term.TermExpressionError) as err:
        term.parse("0 0 0 29 2 * 2100 33")
    assert "never occurs in month 2 of year 2100" in err.value.violations[0].description
    assert term.parse("0 0 0 29 2 * 2100-2104 33")


def test_descriptions_read_well() -> None:
    assert term.describe(term.parse("0 0 10 L * * * 33")) == (
        "on the last day of every month at 10:00"
    )
    assert term.describe(term.parse("0 0 9 1 * * * 41")).endswith(", 1 day ahead")
    assert term.describe(term.parse("* * * * * * 2026,2028-2030 31")) == (
        "every day in 2026, 2028-2030"
    )
    assert "every 2 years" in term.describe(term.parse("* * * * * * */2 31"))


def test_canonical_single_value_ranges() -> None:
    assert term.canonical("0 20-20 8 * * ? * 31") == "0 20 8 * * * * 31"


def test_extreme_instants_do_not_overflow() -> None:
    e = term.parse("0 0 0 10 * * * 3")
    latest = datetime.max.replace(tzinfo=UTC)
    assert term.next_fire_times(e, latest - timedelta(days=1), "UTC", 1, anchor=latest) == []
    assert term.windows(
        term.parse(DAILY), datetime.min.replace(tzinfo=UTC), local(1970, 1, 2), "UTC"
    )


# A birthday plan's run decides whose birthday it is, in the plan's zone.


def test_birthday_runs_match_by_local_date_and_days_ahead() -> None:
    from domain.birthday import run_matches, scope_of

    e = term.parse("0 0 9 1 * * * 41")  # daily 09:00, one day ahead
    run = term.next_fire_times(e, local(2027, 2, 27, 0), SHANGHAI, 1)[0]  # 27 Feb 09:00
    scope = scope_of(e.kind)
    assert run_matches(scope, 2, 28, run, SHANGHAI, e.days_ahead)
    assert run_matches(scope, 2, 29, run, SHANGHAI, e.days_ahead)  # 2027 has no 29 Feb
    assert not run_matches(scope, 2, 27, run, SHANGHAI, e.days_ahead)
    # The same instant is still 26 February in New York: another date, other birthdays.
    assert run_matches(scope, 2, 27, run, NEW_YORK, e.days_ahead)


# Issue 18, item 6: what a field says is what fires.


def _fires(text: str, after: datetime, zone: str, count: int) -> list[datetime]:
    return [
        f.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        for f in term.next_fire_times(term.parse(text), after, zone, count)
    ]


def test_a_range_with_equal_ends_and_a_step_is_its_one_value() -> None:
    fires = _fires("0 5-5/3 * * * ? * 30", local(2026, 12, 6, zone="UTC"), "UTC", 3)
    assert [f.minute for f in fires] == [5, 5, 5]
    assert [f.hour for f in fires] == [0, 1, 2]
    assert term.canonical("0 5-5/3 * * * ? * 30") == "0 5 * * * * * 30"


def test_a_step_of_one_runs_to_the_top_of_the_field() -> None:
    minutes = _fires("0 8/1 * ? * * 30", local(2026, 12, 6, 10, zone="UTC"), "UTC", 53)
    assert [f.minute for f in minutes] == [*range(8, 60), 8]
    months = _fires("0 0 9 * 9/1 * * 31", local(2026, 8, 1, zone="UTC"), "UTC", 122)
    assert {f.month for f in months} == {9, 10, 11, 12}
    assert term.canonical("0 0 9 * 9/1 * * 31") == "0 0 9 * 9-12 * * 31"


def test_a_start_just_after_a_skipped_hour_keeps_the_fire_moved_past_it() -> None:
    after = local(2026, 3, 8, 3, 10, zone=NEW_YORK)  # 03:10 EDT, just after the gap
    assert _fires("0 30 2 * * ? * 30", after, NEW_YORK, 2) == [
        datetime(2026, 3, 8, 3, 30),  # 02:30 does not exist that night: 03:30 EDT
        datetime(2026, 3, 9, 2, 30),
    ]


def test_a_half_hour_gap_keeps_real_and_moved_fires_in_order() -> None:
    after = local(2026, 10, 4, 1, zone=LORD_HOWE)  # 02:00 -> 02:30 that night
    assert _fires("0 20,40 2 ? * * 30", after, LORD_HOWE, 3) == [
        datetime(2026, 10, 4, 2, 40),  # real
        datetime(2026, 10, 4, 2, 50),  # 02:20 moved forward by the 30-minute gap
        datetime(2026, 10, 5, 2, 20),
    ]


def test_a_star_step_is_an_item_of_a_list_too() -> None:
    after = local(2026, 12, 6, 10, zone="UTC")
    assert [f.minute for f in _fires("0 7,*/20 * * * ? * 30", after, "UTC", 5)] == [
        7,
        20,
        40,
        0,
        7,
    ]
    assert term.canonical("0 7,*/20 * * * ? * 30") == "0 0-59/20,7 * * * * * 30"
    with pytest.raises(term.TermExpressionError) as err:
        term.parse("0 7,* * * * ? * 30")
    assert "in a list write */n" in err.value.violations[0].description
