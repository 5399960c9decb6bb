"""The plan calendar: fires, skips, the end, effect windows — examples for
each rule (docs/time.md), then properties over random plans checked against
oracles written apart from it, from the term expressions alone."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import term
from domain.audience import BirthdayScope
from domain.birthday import matches, scope_of
from domain.plan import MissedFirePolicy, PlanTime
from domain.plan_calendar import TICK, End, EndReason, Fire, PlanCalendar, Skip, SkipReason
from domain.scheduling import step
from domain.term import TermKind

SHANGHAI = "Asia/Shanghai"
SH = ZoneInfo(SHANGHAI)
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, zone: str = SHANGHAI
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def calendar(
    anchor: datetime = NOW,
    zone: str = "UTC",
    effective: str = "",
    term: str = "",
    execution: str = "",
) -> PlanCalendar:
    return PlanCalendar(PlanTime(effective, term, execution), zone, anchor)


# Fires: inside effective ∩ term.


def test_fine_grained_execution_inside_a_distant_term() -> None:
    c = calendar(execution="*/5 * * * * ? * 30", term="0-0 0-0 0-0 1-1 6-6 * 2026-2026 2")
    assert c.fires(NOW, 3) == [
        datetime(2026, 6, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC),
    ]


def test_fires_span_several_term_windows_and_wait_for_the_effective_time() -> None:
    c = calendar(
        effective="0 0 0 10 * * * 3",  # ten days after publishing
        term="0 0 9-12 * * 1,3 * 32",  # Mondays and Wednesdays 09:00-12:00
        execution="0 0 */2 * * ? * 30",  # every two hours
    )
    assert c.fires(NOW, 4) == [
        datetime(2026, 5, 11, 10, tzinfo=UTC),  # Monday 11 May, the first day in effect
        datetime(2026, 5, 13, 10, tzinfo=UTC),
        datetime(2026, 5, 18, 10, tzinfo=UTC),
        datetime(2026, 5, 20, 10, tzinfo=UTC),
    ]


def test_a_recurring_effective_time_skips_the_fires_outside_it() -> None:
    """Weekends only, every day at nine: the weekday fires are skipped, one
    record for each stretch, naming the next fire that counts."""
    c = calendar(SHANGHAI_MONDAY, SHANGHAI, effective="* * * * * 6,7 * 32", execution=DAILY_AT_9)
    first = c.next_decision(SHANGHAI_MONDAY)
    assert first == Skip(local(2026, 11, 30, 9), SkipReason.NOT_IN_EFFECT, local(2026, 12, 5, 9))
    assert c.next_decision(first.resume - TICK) == Fire(local(2026, 12, 5, 9))
    assert c.fires(SHANGHAI_MONDAY, 3) == [
        local(2026, 12, 5, 9),
        local(2026, 12, 6, 9),
        local(2026, 12, 12, 9),
    ]


SHANGHAI_MONDAY = local(2026, 11, 30, 8)
DAILY_AT_9 = "0 0 9 * * ? * 31"


def test_a_window_clipped_by_the_effective_time_fires_where_its_part_starts() -> None:
    """08:00-20:00 every day, in effect from 12:00 on the 1st: the first
    window fires at 12:00; a window split in two fires once."""
    c = calendar(
        local(2026, 12, 1, 7),
        SHANGHAI,
        effective="0-0 0-0 12-0 1-10 12-12 * 2026-2026 2",
        execution="0 0 8-20 * * ? * 31",
    )
    assert c.fires(local(2026, 12, 1, 7), 2) == [local(2026, 12, 1, 12), local(2026, 12, 2, 8)]
    split = calendar(
        local(2026, 12, 1, 7),
        SHANGHAI,
        effective="* * * * * 2,3 * 32",  # Tuesday and Wednesday
        term="0-0 0-0 0-0 1-1 12-12 * 2026-2026 2",  # Tuesday 1 December only
        execution="0 0 20-10 * * ? * 31",  # overnight, 20:00 to 10:00
    )
    # The window of Monday 30 November 20:00 - Tuesday 10:00 meets the term
    # from Tuesday 00:00: it fires then, once; Tuesday's window fires at 20:00.
    assert split.fires(local(2026, 11, 30, 7), 3) == [local(2026, 12, 1), local(2026, 12, 1, 20)]


def test_immediately_fires_once_when_the_plan_may_act() -> None:
    just_before = NOW - TICK
    now = calendar(execution="* * * * * * * 1", term="0-0 0-0 0-0 1-31 1-12 * 2026-2030 2")
    assert now.fires(just_before, 3) == [NOW]
    for after in (NOW, NOW + timedelta(seconds=1), NOW + timedelta(days=400)):
        assert now.fires(after, 3) == []
    in_effect = calendar(effective="0 0 0 10 * * * 3", execution="* * * * * * * 1")
    ten_days = NOW + timedelta(days=10)
    assert in_effect.fires(just_before, 3) == [ten_days]
    assert in_effect.fires(ten_days, 3) == []
    term_opens = calendar(execution="* * * * * * * 1", term="0-0 0-0 0-0 1-1 6-6 * 2026-2026 2")
    june = datetime(2026, 6, 1, tzinfo=UTC)
    assert term_opens.fires(just_before, 3) == [june]
    assert term_opens.next_decision(june) == End(
        datetime(2026, 6, 2, tzinfo=UTC), EndReason.ONE_OFF_FIRED
    )


# The end: nothing ahead, once the last fire's effects are over.


def test_the_end_comes_when_the_last_effect_window_closes() -> None:
    c = calendar(
        local(2026, 12, 1, 8),
        SHANGHAI,
        term="0-0 0-0 0-0 1-3 12-12 * 2026-2026 2",
        execution=DAILY_AT_9,
    )
    assert c.fires(local(2026, 12, 1, 8), 5) == [
        local(2026, 12, 1, 9),
        local(2026, 12, 2, 9),
        local(2026, 12, 3, 9),
    ]
    # After the last fire, its day is the effect window: the end is at midnight.
    assert c.next_decision(local(2026, 12, 3, 9)) == End(local(2026, 12, 4), EndReason.TERM_OVER)


@pytest.mark.parametrize(
    ("time", "reason"),
    [
        ({"effective": "0-0 0-0 0-0 1-2 5-5 * 2026-2026 2"}, EndReason.EFFECTIVE_TIME_OVER),
        ({"execution": "0 0 9 1 5 ? 2026 30"}, EndReason.EXECUTION_TIME_OVER),
        ({"execution": "0-0 0-0 9-10 1-1 5-5 * 2026-2026 2"}, EndReason.ONE_OFF_FIRED),
    ],
)
def test_why_nothing_lies_ahead(time: dict[str, str], reason: EndReason) -> None:
    c = calendar(effective=time.get("effective", ""), execution=time.get("execution", DAILY_AT_9))
    (last,) = c.fires(NOW - TICK, 5)[-1:]
    decision = c.next_decision(last)
    assert isinstance(decision, End) and decision.reason is reason


# Effect windows.


def test_an_instant_holds_for_its_day_and_what_comes_next_shows_with_its_start() -> None:
    """Member day: 09:00 on the 8th."""
    c = calendar(local(2026, 12, 1), SHANGHAI, execution="0 0 9 8 * * * 33")
    before = c.executing(local(2026, 12, 7, 12))
    assert not before.applies and before.window is not None
    assert before.window.start == local(2026, 12, 8) and before.until == local(2026, 12, 8)
    for hour in (0, 8, 23):
        on = c.executing(local(2026, 12, 8, hour))
        assert on.applies and on.window == term.Window(local(2026, 12, 8), local(2026, 12, 9))
    after = c.executing(local(2026, 12, 9))
    assert not after.applies and after.window is not None
    assert after.window.start == local(2027, 1, 8)


def test_a_window_holds_for_the_window_clipped_to_the_term() -> None:
    c = calendar(
        local(2026, 12, 1),
        SHANGHAI,
        term="0-0 0-0 12-0 1-10 12-12 * 2026-2026 2",  # from 12:00 on the 1st
        execution="* 20-30 8-20 * * ? 31",
    )
    assert not c.executing(local(2026, 12, 1, 9)).applies  # before the term
    first = c.executing(local(2026, 12, 1, 13))
    assert first.window == term.Window(local(2026, 12, 1, 12), local(2026, 12, 1, 20, 30))
    assert not c.executing(local(2026, 12, 1, 20, 30)).applies  # half-open


def test_birthday_effects_are_the_members_period() -> None:
    c = calendar(local(2026, 12, 1), SHANGHAI, execution="0 0 10 3 * * * 42")
    effect = c.executing(local(2026, 12, 2, 12))
    assert effect.applies and effect.birthday is BirthdayScope.WEEK
    assert effect.window == term.Window(local(2026, 11, 30), local(2026, 12, 7))
    # The run of Wednesday the 2nd selects the week of the 5th (3 days ahead);
    # its grants hold for that week.
    assert c.effect_window_of(local(2026, 12, 2, 10)) == term.Window(
        local(2026, 11, 30), local(2026, 12, 7)
    )
    assert c.effect_window_of(local(2026, 12, 4, 10)) == term.Window(
        local(2026, 12, 7), local(2026, 12, 14)
    )


# Properties over random plans.

CI = os.environ.get("CI") == "true"
PROPERTY = settings(
    max_examples=300 if CI else 120,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
ZONES = [SHANGHAI, "UTC", "America/New_York", "Australia/Lord_Howe"]
EFFECTIVE = [
    "",
    "* * * * * * * 1",
    "0 0 12 2 * * * 3",  # two days and twelve hours after publishing
    "0-0 0-0 12-0 3-12 {m}-{m} * {y}-{y} 2",  # a fixed period from noon
    "* * * * * 6,7 * 32",  # weekends
    "0 0 0-2 * * * * 31",  # every day until 02:00 (across a DST change)
]
TERM = [
    "",
    "0-0 0-0 0-0 2-9 {m}-{m} * {y}-{y} 2",
    "0 0 8-22 * * * * 31",
    "* * * * * 1-5 * 32",  # weekdays
]
EXECUTION = [
    "0 0 */6 * * ? * 30",
    "0 30 2 * * ? * 30",  # in the small hours: DST gaps
    DAILY_AT_9,
    "0 0 8-20 * * ? * 31",
    "0 0 22-6 * * ? * 31",  # overnight
    "* * * * * 2,5 * 32",
    "0 0 10 1,15,L * * * 33",
    "* * * * * * * 1",
    "0 0 6 1 * * * 3",  # a day and six hours after publishing
    "0-0 0-0 10-18 4-6 {m}-{m} * {y}-{y} 2",
    "0 0 10 * * * * 41",
    "0 0 10 2 * * * 42",
    "* * * * * * * 43",
]
SPAN = timedelta(days=16)


@st.composite
def plan_times(
    draw: st.DrawFn, first: datetime = datetime(2026, 1, 1), last: datetime = datetime(2027, 12, 1)
) -> tuple[PlanTime, str, datetime]:
    """A random plan's time, its zone and its publish instant (a fixed
    period lies in the publish month, so that it is near)."""
    zone = draw(st.sampled_from(ZONES))
    start = draw(st.datetimes(first, last, timezones=st.just(UTC))).replace(
        microsecond=draw(st.sampled_from([0, 123456]))
    )
    month_of = start.astimezone(ZoneInfo(zone))
    fill = {"m": month_of.month, "y": month_of.year}
    time = PlanTime(
        effective=draw(st.sampled_from(EFFECTIVE)).format(**fill),
        term=draw(st.sampled_from(TERM)).format(**fill),
        execution=draw(st.sampled_from(EXECUTION)).format(**fill),
    )
    return time, zone, start


def plans() -> st.SearchStrategy[tuple[PlanCalendar, datetime]]:
    return plan_times().map(lambda t: (PlanCalendar(t[0], t[1], t[2]), t[2]))


def _active(e: str, at: datetime, c: PlanCalendar) -> bool:
    return not e or term.is_active(term.parse(e), at, c.zone, c.anchor)


def oracle_fires(
    c: PlanCalendar, time: PlanTime, after: datetime, until: datetime
) -> list[datetime]:
    """The fires in (after, until], from the term expressions alone: an
    instant when it is in effect and in term; a window at the first instant
    of its part in effect and in term (the candidates: its start, and the
    effective and term windows' starts inside it)."""
    x = term.parse(time.execution)
    e = term.parse(time.effective) if time.effective else None
    t = term.parse(time.term) if time.term else None

    def allowed(at: datetime) -> bool:
        return all(n is None or term.is_active(n, at, c.zone, c.anchor) for n in (e, t))

    out = []
    earliest = c.anchor - timedelta(days=3)
    for w in term.windows(x, earliest, until + TICK, c.zone, c.anchor):
        point = w.end is not None and w.end - w.start <= timedelta(seconds=1)
        if point:
            fire = w.start if allowed(w.start) else None
        else:
            end = w.end or until + timedelta(days=1)
            starts = [w.start] + [
                o.start
                for n in (e, t)
                if n is not None
                for o in term.windows(n, w.start, end, c.zone, c.anchor)
                if w.start < o.start < end
            ]
            fire = next((s for s in sorted(starts) if allowed(s)), None)
        if fire is not None and after < fire <= until:
            out.append(fire)
    return sorted(out)


def oracle_applies(c: PlanCalendar, time: PlanTime, at: datetime, born: tuple[int, int]) -> bool:
    """Whether the plan's effects hold at `at` for a member born on `born`."""
    for text in (time.effective, time.term):
        if text and not term.is_active(term.parse(text), at, c.zone, c.anchor):
            return False
    x = term.parse(time.execution)
    day = at.astimezone(ZoneInfo(c.zone)).date()
    if x.kind.is_birthday:
        return matches(scope_of(x.kind), *born, day)
    if x.kind in (TermKind.IMMEDIATE, TermKind.DELAY):
        fired = oracle_fires(c, time, c.anchor - TICK, c.anchor + timedelta(days=60))
        return bool(fired) and fired[0].astimezone(ZoneInfo(c.zone)).date() == day
    if x.kind is TermKind.CRON or (x.kind.has_daily_window and x.day_window.is_point):
        midnight = datetime.combine(day, datetime.min.time(), ZoneInfo(c.zone))
        following = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(c.zone))
        instants = term.windows(
            x, midnight.astimezone(UTC), following.astimezone(UTC), c.zone, c.anchor
        )
        # The day of an instant that counts (in effect and in term).
        return any(
            w.start.astimezone(ZoneInfo(c.zone)).date() == day
            and all(
                not text or term.is_active(term.parse(text), w.start, c.zone, c.anchor)
                for text in (time.effective, time.term)
            )
            for w in instants
        )
    return term.is_active(x, at, c.zone, c.anchor)


@PROPERTY
@given(plans(), st.lists(st.integers(0, 55), min_size=1, max_size=40))
def test_the_scheduler_makes_exactly_the_calendars_fires(
    case: tuple[PlanCalendar, datetime], delays: list[int]
) -> None:
    """The scheduler's steps, each run when its decision is due (a few
    seconds late, never a minute), start a run for every fire that counts
    and no other; every skip lies outside effective ∩ term; nothing fires
    after the term; the end comes once nothing is ahead."""
    c, publish = case
    time = PlanTime(*_texts(c))
    cursor, now = publish - TICK, publish
    started: list[datetime] = []
    ended: End | None = None
    for i in range(400):
        result = step(c, cursor, now, MissedFirePolicy.RUN_ONCE)
        assert all(s.fire_time == s.named_for for s in result.starts)  # nothing was missed
        started += [s.fire_time for s in result.starts]
        for skip in result.skips:
            assert skip.reason is not SkipReason.MISSED
            assert not (_active(time.effective, skip.at, c) and _active(time.term, skip.at, c))
        cursor = result.cursor
        if result.end is not None:
            ended = result.end
            break
        if result.next_check is None or result.next_check > publish + SPAN:
            break
        now = result.next_check + timedelta(seconds=delays[i % len(delays)])
    assert started == sorted(set(started))
    assert all(_active(time.term, f, c) and _active(time.effective, f, c) for f in started)
    expected = oracle_fires(c, time, publish - TICK, started[-1] if started else publish)
    assert started == expected
    if ended is not None:
        assert not started or ended.at >= started[-1]
        assert c.fires(cursor, 1) == []
        assert oracle_fires(c, time, cursor, cursor + timedelta(days=400)) == []


@PROPERTY
@given(
    plans(),
    st.lists(st.integers(0, 16 * 24 * 3600), min_size=1, max_size=12),
    st.tuples(st.integers(1, 12), st.integers(1, 28)),
)
def test_applies_now_agrees_with_the_effect_windows(
    case: tuple[PlanCalendar, datetime], offsets: list[int], born: tuple[int, int]
) -> None:
    c, publish = case
    time = PlanTime(*_texts(c))
    for offset in offsets:
        at = publish + timedelta(seconds=offset)
        effect = c.executing(at)
        member = effect.applies and (
            effect.birthday is None
            or matches(effect.birthday, *born, at.astimezone(ZoneInfo(c.zone)).date())
        )
        assert member == oracle_applies(c, time, at, born), at
        if effect.applies:
            assert effect.window is not None and effect.window.contains(at)
        # The answer holds until it says.
        if effect.until is not None and effect.until - at > timedelta(seconds=2):
            later = at + (effect.until - at) / 2
            assert c.executing(later).applies == effect.applies


def _texts(c: PlanCalendar) -> tuple[str, str, str]:
    return (
        c._effective.format() if c._effective else "",
        c._term.format() if c._term else "",
        c.execution.format() if c.execution else "",
    )


def test_the_oracles_see_the_examples_alike() -> None:
    """The oracles above, on a case worked by hand."""
    c = calendar(SHANGHAI_MONDAY, SHANGHAI, effective="* * * * * 6,7 * 32", execution=DAILY_AT_9)
    time = PlanTime(*_texts(c))
    assert oracle_fires(c, time, SHANGHAI_MONDAY, local(2026, 12, 7)) == [
        local(2026, 12, 5, 9),
        local(2026, 12, 6, 9),
    ]
    assert oracle_applies(c, time, local(2026, 12, 5, 1), (1, 1))
    assert not oracle_applies(c, time, local(2026, 12, 4, 23), (1, 1))
