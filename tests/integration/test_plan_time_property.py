"""A plan's time as users meet it, over random plans: a real server (SQLite,
the stand-ins), its real scheduler ticked on a clock the test moves, and the
member view asked at random instants. The expectations come from oracles
built from the term expressions alone (tests/unit/test_plan_calendar.py),
never from the calendar under test:

- the runs the scheduler starts are exactly the fires that count, and
  none lies after the term;
- every skipped fire on record lies outside effective ∩ term;
- GetMemberView shows the plan exactly when its effects hold for the member;
- once nothing of its time lies ahead and its last run ended, it is ENDED.

The scheduler is ticked 10 s after every instant where something may change
(the starts and ends of the three notions' windows, and local midnights),
as the server's own loop would within a second.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custops.audience.v1 import audience_pb2
from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from domain import term
from domain.plan import PlanTime
from domain.plan_calendar import TICK, PlanCalendar
from server.app import Platform
from server.tasks.worker import Worker
from tests.integration.conftest import settings as platform_settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, POPULATION
from tests.unit.test_plan_calendar import oracle_applies, oracle_fires, plan_times

T = TypeVar("T")
CI = os.environ.get("CI") == "true"
PROPERTY = settings(
    max_examples=40 if CI else 12,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SPAN = timedelta(days=7)
ENDED_RUNS = (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES)


class Served:
    """A platform and a client on an event loop of their own thread, so a
    hypothesis test (which is not async) can call them example by example."""

    def __init__(self, database_url: str) -> None:
        self.clock = SteppingClock(NOW)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.platform = Platform(
            platform_settings(database_url, stubs_population=POPULATION, engine_concurrency=0),
            clock=self.clock,
        )
        self.call(self.platform.start)
        self.client = self.call(self._client)
        # Each run pages its audience in four shards of up to 500 members,
        # each page taking 500 of the audience system's tokens: at the
        # default rate a run of one member waits for the bucket, not for work.
        self.call(
            lambda: self.client.plans.update_throttle_setting(
                pb.UpdateThrottleSettingRequest(
                    setting=pb.ThrottleSetting(
                        downstream=pb.DOWNSTREAM_AUDIENCE, rate_per_second=1e6, burst=1_000_000
                    )
                )
            )
        )

    async def _client(self) -> AsyncCustopsClient:
        client = AsyncCustopsClient(f"127.0.0.1:{self.platform.port}", timeout=30)
        return await client.__aenter__()

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        done: Future[T] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return done.result(timeout=120)

    def close(self) -> None:
        self.call(lambda: self.client.__aexit__(None, None, None))
        self.call(lambda: self.platform.stop(grace=1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path: Path = tmp_path_factory.mktemp("plan-time")
    running = Served(f"sqlite+aiosqlite:///{path}/custops.db")
    yield running
    running.close()


def _instants(time: PlanTime, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Where something may change: the notions' window edges, and midnights."""
    out: set[datetime] = set()
    for text in (time.effective, time.term, time.execution):
        if text:
            for w in term.windows(term.parse(text), start, end, zone, start, limit=400):
                out |= {w.start} | ({w.end} if w.end else set())
    day = start.astimezone(ZoneInfo(zone)).date()
    while (midnight := datetime.combine(day, datetime.min.time(), ZoneInfo(zone))) < end:
        out.add(midnight.astimezone(UTC))
        day += timedelta(days=1)
    return sorted(i for i in out if start <= i <= end)


@PROPERTY
@given(
    plan_times(datetime(2026, 12, 1), datetime(2027, 11, 1)).map(
        lambda t: (t[0], t[1], t[2].replace(microsecond=0))
    ),
    st.lists(st.integers(0, int(SPAN.total_seconds())), min_size=3, max_size=10),
)
def test_a_plans_time_through_the_server(
    served: Served, case: tuple[PlanTime, str, datetime], samples: list[int]
) -> None:
    time, zone, publish = case
    shop = f"time-{uuid.uuid4().hex[:8]}"
    population = served.platform.stubs.population if served.platform.stubs else None
    assert population is not None
    # A member (of a shop of its own) whose birthday falls in the span, when one does.
    members = [population.member(shop, i) for i in range(200)]
    local_days = {
        ((publish + timedelta(days=n)).astimezone(ZoneInfo(zone)).month,
         (publish + timedelta(days=n)).astimezone(ZoneInfo(zone)).day)
        for n in range(SPAN.days)
    }  # fmt: skip
    member = next((m for m in members if (m.birth_month, m.birth_day) in local_days), members[0])
    born = (member.birth_month, member.birth_day)
    plan = pb.Plan(
        display_name="Random time",
        business_product=pb.BUSINESS_PRODUCT_PRECISE_AUDIENCE,
        front_office=pb.FRONT_OFFICE_MICRO_MALL,
        time_zone=zone,
        audience=audience_pb2.AudienceRule(
            members=audience_pb2.MemberList(member_ids=[member.member_id])
        ),
        time=pb.PlanTime(effective=time.effective, term=time.term, execution=time.execution),
    )
    plan.actions.add().grant_benefit.benefits.add(
        template_id="coupon-10-off-100", kind=benefit_pb2.BENEFIT_KIND_COUPON, quantity=1
    )
    served.clock.current = publish
    draft = served.call(
        lambda: served.client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=plan))
    ).plan
    try:
        published = served.call(
            lambda: served.client.plans.publish_plan(
                pb.PublishPlanRequest(shop_id=shop, plan_id=draft.plan_id, etag=draft.etag)
            )
        ).plan
    except Exception as refused:  # nothing ahead at all: refused, as the oracle must agree
        assert "NO_FIRE_AHEAD" in str(refused) or "TERM_OVER" in str(refused)
        assert (
            oracle_fires(
                _calendar(time, zone, publish), time, publish - TICK, publish + timedelta(days=400)
            )
            == []
        )
        return
    calendar = _calendar(time, zone, publish)
    end = publish + SPAN
    ticks = [i + timedelta(seconds=10) for i in _instants(time, zone, publish, end)]
    views = [publish + timedelta(seconds=s) for s in sorted(set(samples))]
    events = sorted([(t, "tick") for t in ticks] + [(v, "view") for v in views])
    runs = served.platform.runs
    assert runs is not None
    assert served.platform.jobs is not None
    worker = Worker(
        served.platform.jobs, served.platform.job_kinds, served.clock.now, served.platform.buckets
    )
    for instant, what in events:
        served.clock.current = instant
        if what == "tick":
            served.call(runs.tick)
            served.call(worker.drain)
            continue
        view = served.call(
            lambda: served.client.scenario.get_member_view(
                spb.GetMemberViewRequest(
                    shop_id=shop,
                    member_id=member.member_id,
                    front_office=pb.FRONT_OFFICE_MICRO_MALL,
                )
            )
        )
        shown = any(p.plan_id == published.plan_id for p in view.plans)
        assert shown == oracle_applies(calendar, time, instant, born), instant
    listed = _listed(served, shop, published.plan_id)
    fired = sorted(r.fire_time.ToDatetime(UTC) for r in listed if r.state != pb.RUN_STATE_SKIPPED)
    last_tick = ticks[-1] if ticks else publish
    assert fired == oracle_fires(calendar, time, publish - TICK, last_tick)
    if time.term:  # nothing fires after (or before) the term
        assert all(term.is_active(term.parse(time.term), f, zone, publish) for f in fired)
    for skipped in (r for r in listed if r.state == pb.RUN_STATE_SKIPPED):
        at = skipped.fire_time.ToDatetime(UTC)
        inside = all(
            not text or term.is_active(term.parse(text), at, zone, publish)
            for text in (time.effective, time.term)
        )
        assert not inside, (skipped.skip_reason, at)
    # Two days on (missed fires caught up, runs drained): a plan with nothing
    # ahead has ended once its effects are over, and only such a plan.
    later = end + timedelta(days=2)
    for instant in (later, later + timedelta(seconds=10)):
        served.clock.current = instant
        served.call(runs.tick)
        served.call(worker.drain)
    ahead = oracle_fires(calendar, time, later, later + timedelta(days=400))
    until_later = oracle_fires(calendar, time, publish - TICK, later)
    state = served.call(
        lambda: served.client.plans.get_plan(
            pb.GetPlanRequest(shop_id=shop, plan_id=published.plan_id)
        )
    ).plan.state
    if ahead:
        assert state != pb.PLAN_STATE_ENDED
    # Effects last a day, a window (at most three days here), or for birthday
    # plans up to a month: only the short ones are surely over.
    short = not term.parse(time.execution).kind.is_birthday
    if short and not ahead and until_later and until_later[-1] < later - timedelta(days=4):
        assert state == pb.PLAN_STATE_ENDED
    if state == pb.PLAN_STATE_ENDED:
        finished = _listed(served, shop, published.plan_id)
        assert all(r.state in (*ENDED_RUNS, pb.RUN_STATE_SKIPPED) for r in finished)


def _calendar(time: PlanTime, zone: str, publish: datetime) -> PlanCalendar:
    """Only a carrier of zone and anchor for the oracles."""
    return PlanCalendar(time, zone, publish)


def _listed(served: Served, shop: str, plan_id: str) -> list[pb.PlanRun]:
    return list(
        served.call(
            lambda: served.client.plans.list_plan_runs(
                pb.ListPlanRunsRequest(shop_id=shop, plan_id=plan_id, page_size=500)
            ).first_page()
        ).runs
    )
