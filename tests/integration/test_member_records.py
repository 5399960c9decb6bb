"""A member's operation timeline after plan runs, through a real server: what
the benefit stand-in granted shows up, newest first, paged, per shop."""

from __future__ import annotations

import uuid
from datetime import timedelta

import grpc
import pytest

from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.app import Platform
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import POPULATION, _finished, _publish, immediate_plan, running

__all__ = ["running"]  # the fixture, imported for pytest

# Shops of this module's own: on PostgreSQL the database lives for the whole
# session, and other tests' runs grant to the same member ids in "s1".
SHOP, OTHER_SHOP = f"records-{uuid.uuid4().hex[:8]}", f"others-{uuid.uuid4().hex[:8]}"


async def _records(
    client: AsyncCustopsClient, member_id: str, shop_id: str = SHOP, **kw: object
) -> spb.ListMemberRecordsResponse:
    response: spb.ListMemberRecordsResponse = await client.scenario.list_member_records(
        spb.ListMemberRecordsRequest(shop_id=shop_id, member_id=member_id, **kw)  # type: ignore[arg-type]
    ).first_page()
    return response


async def test_a_members_timeline_shows_each_grant_newest_first(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    platform, client = running
    plan = await _publish(client, immediate_plan(), SHOP)
    first = await _finished(client, plan)
    clock = platform.clock
    assert isinstance(clock, SteppingClock)
    clock.current += timedelta(hours=1)  # the manual run, an hour later
    manual = await client.plans.trigger_plan_run(
        pb.TriggerPlanRunRequest(shop_id=SHOP, plan_id=plan.plan_id, request_id="again")
    )
    second = await _finished(client, plan, manual.run.run_id)
    assert platform.stubs is not None
    instances = [
        i for i in platform.stubs.benefits.instances.values() if i.source == f"plans/{plan.plan_id}"
    ]
    member = instances[0].member_id
    mine = {i.instance_id for i in instances if i.member_id == member}
    assert len(mine) == 2  # one per run

    timeline = await _records(client, member)
    assert [r.kind for r in timeline.records] == [spb.RECORD_KIND_BENEFIT_GRANTED] * 2
    assert {r.benefit_instance_id for r in timeline.records} == mine
    assert [r.run_id for r in timeline.records] == [second.run_id, first.run_id]  # newest first
    assert all(r.plan_id == plan.plan_id and r.member_id == member for r in timeline.records)
    assert timeline.records[0].summary == "Benefit granted: coupon-10-off-100"
    assert timeline.next_page_token == ""

    # One at a time: the same two, in the same order, then the end.
    page = await _records(client, member, page_size=1)
    rest = await _records(client, member, page_size=1, page_token=page.next_page_token)
    assert [r.record_id for r in (*page.records, *rest.records)] == [
        r.record_id for r in timeline.records
    ]
    assert rest.next_page_token == ""
    # A kind filter: no messages were sent.
    only = await _records(client, member, kinds=[spb.RECORD_KIND_MESSAGE_SENT])
    assert list(only.records) == []

    # Another shop sees none of it; an id its audience system does not know
    # is NOT_FOUND, not an empty page.
    assert list((await _records(client, member, shop_id=OTHER_SHOP)).records) == []
    with pytest.raises(CustopsError) as err:
        await _records(client, f"m{POPULATION + 5:08d}")
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    # A token is bound to its query.
    other = next(i.member_id for i in instances if i.member_id != member)
    with pytest.raises(CustopsError) as err:
        await _records(client, other, page_token=page.next_page_token)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_timeline_requests_name_their_fields(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    _, client = running
    with pytest.raises(CustopsError) as err:
        await client.scenario.list_member_records(
            spb.ListMemberRecordsRequest(
                shop_id="s1", member_id="", page_size=-1, kinds=[spb.RECORD_KIND_UNSPECIFIED]
            )
        ).first_page()
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == ["member_id", "page_size", "kinds[0]"]
