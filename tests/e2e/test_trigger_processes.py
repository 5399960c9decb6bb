"""Event-triggered plans across real processes (issue 26): 1,000 members'
waits outlive a server killed (SIGKILL) while they wait, or killed half-way
through the batch that acts on them; the restarted server acts on each
member once. The benefit stand-in, in its own process, is the witness."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import func, select

from custops.benefit.v1 import benefit_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.persistence.database import create_engine
from server.persistence.tables import trigger_waits
from tests.e2e import process
from tests.e2e.test_run_processes import (
    RUN_WAIT,
    SHOP,
    _audience,
    _benefit_counters,
    _instances,
    _server,
    _stubs,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

WAITING = 1_000
DELAY_SECONDS = 6  # long enough to tell the events and kill a server before they are due


async def _cart_plan(client: AsyncCustopsClient) -> pb.Plan:
    """The abandoned-cart template, a coupon only, a few seconds' wait."""
    overrides = pb.Plan(
        time=pb.PlanTime(execution=f"@on carted after {DELAY_SECONDS}s unless order_paid"),
        actions=[
            pb.Action(
                grant_benefit=pb.GrantBenefitAction(
                    benefits=[
                        pb.BenefitGrant(
                            template_id="coupon-10-off-100",
                            kind=benefit_pb2.BENEFIT_KIND_COUPON,
                            quantity=1,
                        )
                    ]
                )
            )
        ],
    )
    draft = (
        await client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id=SHOP,
                template_id="abandoned_cart",
                overrides=overrides,
                override_mask=FieldMask(paths=["time.execution", "actions"]),
            )
        )
    ).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=SHOP, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    return published


async def _cart(client: AsyncCustopsClient, members: list[str], when: datetime) -> None:
    for start in range(0, len(members), 500):
        events = []
        for member in members[start : start + 500]:
            e = spb.MemberEvent(
                event_id=f"cart-{member}", member_id=member, type=spb.MEMBER_EVENT_TYPE_CARTED
            )
            e.occur_time.FromDatetime(when)
            events.append(e)
        reply = await client.scenario.record_member_events(
            spb.RecordMemberEventsRequest(shop_id=SHOP, events=events)
        )
        assert {r.result for r in reply.results} == {spb.MEMBER_EVENT_RESULT_ACCEPTED}


async def _waits(database: str, plan_id: str) -> Counter[str]:
    """The plan's waits by state, as the database holds them."""
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(trigger_waits.c.state, func.count())
                .where(trigger_waits.c.plan_id == plan_id)
                .group_by(trigger_waits.c.state)
            )
            return Counter({str(state): int(n) for state, n in rows})
    finally:
        await engine.dispose()


async def _acted(
    client: AsyncCustopsClient, plan: pb.Plan, servers: list[process.ServerProcess]
) -> list[pb.PlanRun]:
    """The plan's runs once they have ended and account for every wait."""
    async with asyncio.timeout(RUN_WAIT):
        while True:
            for server in servers:
                assert server.process.returncode is None, "\n".join(server.output[-30:])
            found = (
                await client.plans.list_plan_runs(
                    pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan.plan_id)
                ).first_page()
            ).runs
            ended = (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES)
            over = found and all(r.state in ended for r in found)
            if over and sum(r.progress.done for r in found) >= WAITING:
                return list(found)
            await asyncio.sleep(0.25)


@pytest.mark.parametrize("killed", ["while_waiting", "mid_batch"])
async def test_waiting_members_outlive_a_killed_server(
    database: str, redis_url: str, prefix: str, killed: str
) -> None:
    stubs = await _stubs(population=4_000)
    started: list[process.ServerProcess] = [stubs]
    try:
        # mid_batch: the server dies after the first grant call of the run's
        # batch (1,000 members: two calls of 500) was acknowledged.
        fault = {"CUSTOPS_FAULT_POINT": "mid_batch"} if killed == "mid_batch" else {}
        doomed = await _server(database, redis_url, prefix, stubs, **fault)
        started.append(doomed)
        async with (
            AsyncCustopsClient(f"127.0.0.1:{doomed.port}", timeout=30) as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel,
        ):
            plan = await _cart_plan(client)
            members = sorted(await _audience(channel, plan))[:WAITING]
            assert len(members) == WAITING
            await _cart(client, members, datetime.now(UTC))
        assert await _waits(database, plan.plan_id) == Counter({"waiting": WAITING})
        if killed == "while_waiting":
            doomed.process.send_signal(signal.SIGKILL)
        assert await doomed.wait(timeout=120) == -signal.SIGKILL, "\n".join(doomed.output[-30:])
        after_kill = await _waits(database, plan.plan_id)
        if killed == "while_waiting":
            assert after_kill == Counter({"waiting": WAITING})  # none lost, none acted on
        else:
            assert after_kill == Counter({"launched": WAITING})  # in the run the kill broke

        again = await _server(database, redis_url, prefix, stubs)
        started.append(again)
        async with (
            AsyncCustopsClient(f"127.0.0.1:{again.port}", timeout=30) as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel,
        ):
            runs = await _acted(client, plan, [again])
            instances = await _instances(channel, plan.plan_id)
            counters = await _benefit_counters(channel)
        per_member = Counter(i.member_id for i in instances)
        assert set(per_member) == set(members), "a waiting member was lost"
        assert set(per_member.values()) == {1}, "a waiting member was acted on twice"
        assert counters.succeeded == WAITING
        assert await _waits(database, plan.plan_id) == Counter({"launched": WAITING})
        assert {r.trigger for r in runs} == {pb.RUN_TRIGGER_EVENT}
        assert sum(r.progress.granted for r in runs) == WAITING
        print(
            f"\n{killed}: {WAITING} waiting members, {len(runs)} run(s), {len(instances)} "
            f"coupons, 0 twice, 0 missing; {counters.duplicates} replayed grants recognised"
        )
    finally:
        for running in reversed(started):
            await running.stop()
