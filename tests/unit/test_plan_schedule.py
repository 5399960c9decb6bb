"""A plan's fire times: execution inside the effective time and the term."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.plan import PlanTime
from domain.plan_schedule import next_fire_times

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def test_fine_grained_execution_inside_a_distant_term() -> None:
    time = PlanTime(execution="*/5 * * * * ? * 30", term="0-0 0-0 0-0 1-1 6-6 * 2026-2026 2")
    assert next_fire_times(time, "UTC", NOW, 3, NOW) == [
        datetime(2026, 6, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 0, 5, tzinfo=UTC),
        datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC),
    ]


def test_fires_span_several_term_windows_and_wait_for_the_effective_time() -> None:
    time = PlanTime(
        effective="0 0 0 10 * * * 3",  # ten days after publishing
        term="0 0 9-12 * * 1,3 * 32",  # Mondays and Wednesdays 09:00-12:00
        execution="0 0 */2 * * ? * 30",  # every two hours
    )
    fires = next_fire_times(time, "UTC", NOW, 4, NOW)
    assert fires == [
        datetime(2026, 5, 11, 10, tzinfo=UTC),  # Monday 11 May, the first day in effect
        datetime(2026, 5, 13, 10, tzinfo=UTC),
        datetime(2026, 5, 18, 10, tzinfo=UTC),
        datetime(2026, 5, 20, 10, tzinfo=UTC),
    ]


def test_nothing_when_the_term_is_over() -> None:
    time = PlanTime(execution="0 0 9 * * * * 31", term="0-0 0-0 0-0 1-2 1-1 * 2020-2020 2")
    assert next_fire_times(time, "UTC", NOW, 3, NOW) == []


def test_immediately_fires_once_when_the_plan_may_act() -> None:
    """One fire time, the same however late the question: a scheduler that
    asks for the next one after it gets none."""
    just_before = NOW - timedelta(microseconds=1)
    now = PlanTime(execution="* * * * * * * 1", term="0-0 0-0 0-0 1-31 1-12 * 2026-2030 2")
    assert next_fire_times(now, "UTC", just_before, 3, NOW) == [NOW]
    for after in (NOW, NOW + timedelta(seconds=1), NOW + timedelta(days=400)):
        assert next_fire_times(now, "UTC", after, 3, NOW) == []
    in_effect = PlanTime(effective="0 0 0 10 * * * 3", execution="* * * * * * * 1")
    ten_days = NOW + timedelta(days=10)
    assert next_fire_times(in_effect, "UTC", just_before, 3, NOW) == [ten_days]
    assert next_fire_times(in_effect, "UTC", ten_days, 3, NOW) == []
    term_opens = PlanTime(execution="* * * * * * * 1", term="0-0 0-0 0-0 1-1 6-6 * 2026-2026 2")
    june = datetime(2026, 6, 1, tzinfo=UTC)
    assert next_fire_times(term_opens, "UTC", just_before, 3, NOW) == [june]
    assert next_fire_times(term_opens, "UTC", june, 3, NOW) == []
