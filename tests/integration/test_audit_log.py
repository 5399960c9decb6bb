"""The audit log over SQLite and PostgreSQL: what a change looked like before
and after, found by shop, resource and time; a failed change recorded as
failed; and rows the database itself refuses to change or remove."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from custops.audit.v1 import audit_pb2 as apb
from custops.client import AsyncCustopsClient, CustopsError, RetryPolicy
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from server.persistence.database import create_engine
from tests.integration.conftest import settings

SHOP = "audited-shop"


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[tuple[Platform, AsyncCustopsClient]]:
    platform = Platform(settings(database_url))
    await platform.start()
    async with AsyncCustopsClient(
        f"127.0.0.1:{platform.port}",
        retry=RetryPolicy(max_attempts=1),
        metadata=(("x-custops-actor", "ada"),),
    ) as client:
        yield platform, client
    await platform.stop(grace=1)


async def _entries(client: AsyncCustopsClient, **query: Any) -> list[apb.AuditEntry]:
    response = await client.audit.list_audit_entries(
        apb.ListAuditEntriesRequest(**query)
    ).first_page()
    return list(response.entries)


async def test_each_change_shows_who_what_and_how_it_changed(
    running: tuple[Platform, AsyncCustopsClient], database_url: str
) -> None:
    _, client = running
    shop = f"{SHOP}-{database_url[:6]}"
    started = datetime.now(UTC) - timedelta(seconds=1)
    made = (
        await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id=shop, plan=pb.Plan(display_name="Before"))
        )
    ).plan
    renamed = (
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=shop,
                plan=pb.Plan(plan_id=made.plan_id, display_name="After", etag=made.etag),
                update_mask=FieldMask(paths=["display_name"]),
            ),
            metadata=(("x-request-id", "rename-1"),),
        )
    ).plan
    # A stale etag: refused, nothing changed, and the attempt is on record.
    with pytest.raises(CustopsError) as err:
        await client.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id=shop,
                plan=pb.Plan(plan_id=made.plan_id, display_name="Lost", etag=made.etag),
                update_mask=FieldMask(paths=["display_name"]),
            ),
            metadata=(("x-request-id", "stale-1"),),
        )
    assert err.value.code is grpc.StatusCode.ABORTED
    await client.plans.delete_plan(
        pb.DeletePlanRequest(shop_id=shop, plan_id=made.plan_id, etag=renamed.etag)
    )
    other = (
        await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id=shop, plan=pb.Plan(display_name="Other"))
        )
    ).plan

    everything = await _entries(client, shop_id=shop)
    assert [(e.rpc.rsplit("/", 1)[1], e.outcome, e.resource) for e in everything] == [
        ("CreatePlan", "OK", f"plans/{other.plan_id}"),
        ("DeletePlan", "OK", f"plans/{made.plan_id}"),
        ("UpdatePlan", "ABORTED", f"plans/{made.plan_id}"),
        ("UpdatePlan", "OK", f"plans/{made.plan_id}"),
        ("CreatePlan", "OK", f"plans/{made.plan_id}"),
    ]
    assert {e.caller for e in everything} == {"ada"}
    assert all(e.shop_id == shop and e.time.ToDatetime(UTC) >= started for e in everything)
    created, renaming, stale = everything[4], everything[3], everything[2]
    assert not created.HasField("before") and created.after["display_name"] == "Before"
    # An update shows the fields that changed, as they were and became.
    assert renaming.request_id == "rename-1"
    assert renaming.before["display_name"] == "Before" and renaming.after["display_name"] == "After"
    assert "spec" in renaming.after and "create_time" not in renaming.after
    assert stale.request_id == "stale-1"
    assert not stale.HasField("before") and not stale.HasField("after")
    deleted = everything[1]
    assert deleted.before["display_name"] == "After" and not deleted.HasField("after")
    assert [e.sequence for e in everything] == sorted(
        (e.sequence for e in everything), reverse=True
    )

    # By resource, by time, page by page.
    assert [
        e.sequence for e in await _entries(client, shop_id=shop, resource=f"plans/{made.plan_id}")
    ] == [e.sequence for e in everything[1:]]
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(minutes=1))
    assert await _entries(client, shop_id=shop, start_time=later) == []
    assert len(await _entries(client, shop_id=shop, end_time=later)) == 5
    paged: list[apb.AuditEntry] = []
    token = ""
    for _ in range(10):  # bounded: 5 entries, 2 per page
        page = await client.audit.list_audit_entries(
            apb.ListAuditEntriesRequest(shop_id=shop, page_size=2, page_token=token)
        ).first_page()
        paged += page.entries
        token = page.next_page_token
        if not token:
            break
    assert paged == everything
    # Another shop's log holds none of it.
    assert await _entries(client, shop_id=f"{shop}-other") == []


async def test_the_database_refuses_to_change_or_remove_an_entry(
    running: tuple[Platform, AsyncCustopsClient], database_url: str
) -> None:
    _, client = running
    shop = f"{SHOP}-db-{database_url[:6]}"
    await client.plans.create_plan(
        pb.CreatePlanRequest(shop_id=shop, plan=pb.Plan(display_name="x"))
    )
    (entry,) = await _entries(client, shop_id=shop)
    engine = create_engine(database_url)
    try:
        for statement in (
            "UPDATE audit_entries SET outcome = 'OK', caller = 'mallory' WHERE shop_id = :shop",
            "DELETE FROM audit_entries WHERE shop_id = :shop",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement), {"shop": shop})
    finally:
        await engine.dispose()
    assert await _entries(client, shop_id=shop) == [entry]


async def test_bad_audit_queries_name_their_fields(
    running: tuple[Platform, AsyncCustopsClient],
) -> None:
    _, client = running
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))
    for query, field in (
        ({"shop_id": SHOP, "start_time": now, "end_time": now}, "end_time"),
        ({"shop_id": SHOP, "page_size": -1}, "page_size"),
        ({"shop_id": "no spaces"}, "shop_id"),
        ({"shop_id": SHOP, "resource": "r" * 301}, "resource"),
        ({"shop_id": SHOP, "page_token": "not-ours"}, "page_token"),
        ({"shop_id": SHOP, "start_time": Timestamp(seconds=10**15)}, "start_time"),
    ):
        with pytest.raises(CustopsError) as err:
            await _entries(client, **query)
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT, query
        assert [v.field for v in err.value.field_violations] == [field], query


async def test_a_failed_change_is_on_record_whatever_it_sent(
    running: tuple[Platform, AsyncCustopsClient], database_url: str
) -> None:
    """A shop id no shop can have, or a resource id over the column's size,
    is kept (cut, or among the platform's own entries), not lost to a
    database error."""
    _, client = running
    shop = f"{SHOP}-long-{database_url[:6]}"
    for request, request_id in (
        (pb.DeletePlanRequest(shop_id="s" * 100, plan_id="p"), "long-shop"),
        (pb.DeletePlanRequest(shop_id=shop, plan_id="p" * 5000), "long-plan"),
    ):
        with pytest.raises(CustopsError) as err:
            await client.plans.delete_plan(request, metadata=(("x-request-id", request_id),))
        assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    platform = {e.request_id: e for e in await _entries(client, shop_id="", page_size=500)}
    assert platform["long-shop"].outcome == "INVALID_ARGUMENT"
    (cut,) = await _entries(client, shop_id=shop)
    assert (cut.request_id, cut.outcome, len(cut.resource)) == (
        "long-plan",
        "INVALID_ARGUMENT",
        300,
    )
