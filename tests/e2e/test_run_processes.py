"""Plan runs across real processes: the stand-ins in a process of their own,
so that what they granted outlives a server killed mid-run, and two server
processes sharing one run. The benefit stand-in's own instances are the
witness, never the platform's counters."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from domain import runs
from server.persistence.database import create_engine
from server.persistence.tables import operation_records, plan_runs, shards
from server.runs.delivery import GRANT_CHUNK, Delivery
from tests.e2e import process
from tests.integration.test_runs import immediate_plan

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOP = "s1"
TEMPLATES = ("coupon-10-off-100", "free-shipping")  # two grants per member
# What the delivery kind does per batch: BATCH members, and grant calls of
# at most GRANT_CHUNK items, so a full batch with 2 benefits is several calls.
BATCH = Delivery.batch_size
# The engine's lease (--engine-lease): a killed worker's shard is free again
# once it has run out; short here so the restarted server need not wait long.
LEASE_SECONDS = 4
RUN_WAIT = 240.0  # seconds any run may take here, lease expiry included (a bound, not a timing)


async def _stubs(population: int) -> process.ServerProcess:
    stubs = await process.start_stubs(
        ROOT,
        "--stubs-population",
        str(population),
        "--stubs-seed",
        "7",
        env={"PYTHONPATH": process.CHECKOUT},
    )
    stubs.follow()
    return stubs


async def _server(
    database: str, redis_url: str, prefix: str, stubs: process.ServerProcess, **env: str
) -> process.ServerProcess:
    """`custops serve` on the shared database and Redis, calling the stand-ins' process."""
    target = f"127.0.0.1:{stubs.stubs_port}"
    server = await process.start(
        ROOT,
        "--stubs",
        "external",
        "--audience-target",
        target,
        "--benefit-target",
        target,
        "--notification-target",
        target,
        "--database-url",
        database,
        "--auto-migrate",
        "true",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--shutdown-grace",
        "2",
        "--engine-lease",
        str(LEASE_SECONDS),
        env={"PYTHONPATH": process.CHECKOUT, "CUSTOPS_ENGINE_POLL": "0.2", **env},
    )
    server.follow()
    return server


# When the plans fire: once, one second after publishing ("after a delay"),
# so the test has the run's id before its first batch; and immediately.
ONCE_SOON = "1 0 0 0 * * * 3"
IMMEDIATELY = "* * * * * * * 1"


def _plan(execution: str = ONCE_SOON) -> pb.Plan:
    """Everyone but V0, once, two benefits each."""
    plan = immediate_plan()
    plan.time.execution = execution
    grants = plan.actions[0].grant_benefit.benefits
    second = pb.BenefitGrant()
    second.CopyFrom(grants[0])
    second.template_id, second.kind = TEMPLATES[1], benefit_pb2.BENEFIT_KIND_FREE_SHIPPING
    grants.append(second)
    assert tuple(g.template_id for g in grants) == TEMPLATES
    return plan


async def _publish(client: AsyncCustopsClient, execution: str = ONCE_SOON) -> pb.Plan:
    draft = (
        await client.plans.create_plan(pb.CreatePlanRequest(shop_id=SHOP, plan=_plan(execution)))
    ).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=SHOP, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    return published


async def _run_started(client: AsyncCustopsClient, plan: pb.Plan) -> pb.PlanRun:
    for _ in range(300):  # bounded: the scheduler makes the run within a poll or two
        found = (
            await client.plans.list_plan_runs(
                pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan.plan_id)
            ).first_page()
        ).runs
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no run was made for the immediate plan")


async def _run_finished(
    client: AsyncCustopsClient, plan: pb.Plan, run_id: str, servers: list[process.ServerProcess]
) -> pb.PlanRun:
    async with asyncio.timeout(RUN_WAIT):
        while True:
            for server in servers:
                assert server.process.returncode is None, "\n".join(server.output[-30:])
            run: pb.PlanRun = (
                await client.plans.get_plan_run(
                    pb.GetPlanRunRequest(shop_id=SHOP, plan_id=plan.plan_id, run_id=run_id)
                )
            ).run
            if run.state in (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES):
                return run
            await asyncio.sleep(0.25)


async def _audience(
    channel: grpc.aio.Channel, plan: pb.Plan, shard: tuple[int, int] = (0, 1)
) -> set[str]:
    """The plan's audience (or one shard of it: index, count) as the audience
    stand-in tells it."""
    stub = audience_pb2_grpc.AudienceServiceStub(channel)
    members: set[str] = set()
    token = ""
    for _ in range(1000):
        page = await stub.ListAudienceMembers(
            audience_pb2.ListAudienceMembersRequest(
                shop_id=SHOP,
                rule=plan.audience,
                page_size=5000,
                page_token=token,
                shard_index=shard[0],
                shard_count=shard[1],
            )
        )
        members |= set(page.member_ids)
        token = page.next_page_token
        if not token:
            return members
    raise AssertionError("the audience did not end")


async def _instances(channel: grpc.aio.Channel, plan_id: str) -> list[benefit_pb2.BenefitInstance]:
    """Every benefit instance the plan's grants made, as the benefit stand-in holds them."""
    stub = benefit_pb2_grpc.BenefitServiceStub(channel)
    found: list[benefit_pb2.BenefitInstance] = []
    token = ""
    for _ in range(10_000):
        page = await stub.ListBenefitInstances(
            benefit_pb2.ListBenefitInstancesRequest(
                shop_id=SHOP,
                source=runs.grant_source(plan_id),
                page_size=500,
                page_token=token,
            ),
            timeout=60,
        )
        found += page.instances
        token = page.next_page_token
        if not token:
            return found
    raise AssertionError("the instances did not end")


async def _benefit_counters(channel: grpc.aio.Channel) -> stubadmin_pb2.StubCounters:
    reply = await stubadmin_pb2_grpc.StubAdminServiceStub(channel).GetStubCounters(
        stubadmin_pb2.GetStubCountersRequest(system=stubadmin_pb2.STUB_SYSTEM_BENEFIT)
    )
    counters: stubadmin_pb2.StubCounters = reply.counters
    return counters


def _granted_once(
    instances: list[benefit_pb2.BenefitInstance], plan_id: str, run_id: str, audience: set[str]
) -> None:
    """One instance per (member, benefit) of the plan's action: none twice, none missing."""
    per = Counter((i.member_id, i.template_id) for i in instances)
    duplicated = {k: n for k, n in per.items() if n > 1}
    missing = {(m, t) for m in audience for t in TEMPLATES} - set(per)
    extra = set(per) - {(m, t) for m in audience for t in TEMPLATES}
    assert not duplicated, f"{len(duplicated)} (member, benefit) granted twice or more"
    assert not missing, f"{len(missing)} (member, benefit) never granted"
    assert not extra, f"{len(extra)} instances outside the audience"
    expected_keys = {
        runs.grant_key(plan_id, run_id, m, 0, b) for m in audience for b in range(len(TEMPLATES))
    }
    assert Counter(i.idempotency_key for i in instances) == Counter(expected_keys)


async def _run_id(database: str, plan_id: str) -> str:
    """The plan's only run, as the database holds it (its server may be dead)."""
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            found = (
                await conn.scalars(select(plan_runs.c.run_id).where(plan_runs.c.plan_id == plan_id))
            ).all()
    finally:
        await engine.dispose()
    assert len(found) == 1, found
    return str(found[0])


async def _job_of(database: str, run_id: str) -> tuple[str, list[tuple[int, str, str, int]], int]:
    """The run's job: (job id, its shards as (index, state, last owner, items
    done), 1 if any user operation record of the run was written else 0)."""
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            job_id = str(
                await conn.scalar(select(plan_runs.c.job_id).where(plan_runs.c.run_id == run_id))
            )
            rows = await conn.execute(
                select(shards.c.shard_index, shards.c.state, shards.c.lease_owner, shards.c.done)
                .where(shards.c.job_id == job_id)
                .order_by(shards.c.shard_index)
            )
            found = [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
            records = await conn.scalar(
                select(operation_records.c.record_id)
                .where(operation_records.c.run_id == run_id)
                .limit(1)
            )
    finally:
        await engine.dispose()
    return job_id, found, 0 if records is None else 1


def _leases(server: process.ServerProcess, job_id: str) -> list[dict[str, object]]:
    """The shard leases a server process took for the job, from its log."""
    leased = []
    for line in server.output:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "shard leased" and entry.get("job_id") == job_id:
            leased.append(entry)
    return leased


@pytest.mark.parametrize(
    ("fault", "replayed"),
    [
        # Killed after the first of the batch's grant calls was
        # acknowledged: that call's items come back as duplicates.
        ("mid_batch", GRANT_CHUNK),
        # Killed after every call, before any record: all of them come back.
        ("after_grant", 2 * BATCH),
    ],
)
async def test_a_killed_run_resumes_without_duplicates_or_gaps(
    database: str, redis_url: str, prefix: str, fault: str, replayed: int
) -> None:
    stubs = await _stubs(population=4 * BATCH * 2)
    started: list[process.ServerProcess] = [stubs]
    try:
        # One shard at a time, so exactly one batch is in flight at the kill.
        doomed = await _server(
            database,
            redis_url,
            prefix,
            stubs,
            CUSTOPS_FAULT_POINT=fault,
            CUSTOPS_ENGINE_CONCURRENCY="1",
        )
        started.append(doomed)
        async with AsyncCustopsClient(f"127.0.0.1:{doomed.port}", timeout=30) as client:
            plan = await _publish(client)
        assert await doomed.wait(timeout=120) == -signal.SIGKILL, "\n".join(doomed.output[-30:])
        run_id = await _run_id(database, plan.plan_id)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel:
            audience = await _audience(channel, plan)
            # The first shard's first batch is a full one.
            assert len(await _audience(channel, plan, (0, 4))) > BATCH
            at_kill = await _benefit_counters(channel)
            assert (at_kill.succeeded, at_kill.duplicates) == (replayed, 0)
            job_id, before, records = await _job_of(database, run_id)
            assert records == 0  # the kill came before any record was written
            assert [done for *_, done in before] == [0, 0, 0, 0]
            assert before[0][1] == "running" and before[0][2]  # still leased by the dead one

            again = await _server(database, redis_url, prefix, stubs)
            started.append(again)
            async with AsyncCustopsClient(f"127.0.0.1:{again.port}", timeout=30) as client:
                finished = await _run_finished(client, plan, run_id, [again])
                listed = (
                    await client.plans.list_plan_runs(
                        pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan.plan_id)
                    ).first_page()
                ).runs
            assert [r.run_id for r in listed] == [run_id]  # the restart made no second run

            instances = await _instances(channel, plan.plan_id)
            _granted_once(instances, plan.plan_id, run_id, audience)
            counters = await _benefit_counters(channel)
            # Every grant made once; the replayed batch recognised by its keys.
            assert counters.succeeded == 2 * len(audience) == len(instances)
            assert counters.duplicates == replayed
            assert counters.failed == 0

        _, after, _ = await _job_of(database, run_id)
        assert {state for _, state, _, _ in after} == {"done"}
        assert sum(done for *_, done in after) == len(audience)
        # The dead worker's shard went to the new process once its lease ran out.
        new_owner = {str(e["owner"]) for e in _leases(again, job_id)}
        assert after[0][2] in new_owner and after[0][2] != before[0][2]
        p = finished.progress
        assert finished.state == pb.RUN_STATE_SUCCEEDED
        assert (p.total, p.done, p.targeted) == (len(audience),) * 3
        assert p.granted == 2 * len(audience)
        print(
            f"\n{fault}: {len(audience)} members, {len(instances)} instances, "
            f"0 duplicated, 0 missing; the stand-in recognised {counters.duplicates} "
            f"replayed grants as duplicates"
        )
    finally:
        for running in reversed(started):
            await running.stop()


async def test_two_server_processes_share_a_run(database: str, redis_url: str, prefix: str) -> None:
    stubs = await _stubs(population=20_000)
    started: list[process.ServerProcess] = [stubs]
    try:
        # Two shards at a time each: neither process can hold all four of
        # the run's shards, so the other takes some.
        first = await _server(  # migrates the database
            database, redis_url, prefix, stubs, CUSTOPS_ENGINE_CONCURRENCY="2"
        )
        started.append(first)
        second = await _server(database, redis_url, prefix, stubs, CUSTOPS_ENGINE_CONCURRENCY="2")
        started.append(second)
        async with (
            AsyncCustopsClient(f"127.0.0.1:{first.port}", timeout=30) as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel,
        ):
            # One benefit rate for both processes (kept in the shared Redis):
            # high enough for a short run, low enough that it lasts seconds.
            await client.plans.update_throttle_setting(
                pb.UpdateThrottleSettingRequest(
                    setting=pb.ThrottleSetting(
                        downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=5000, burst=5000
                    ),
                    request_id=uuid.uuid4().hex,
                )
            )
            plan = await _publish(client)
            run_id = (await _run_started(client, plan)).run_id
            finished = await _run_finished(client, plan, run_id, [first, second])
            listed = (
                await client.plans.list_plan_runs(
                    pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan.plan_id)
                ).first_page()
            ).runs
            audience = await _audience(channel, plan)
            instances = await _instances(channel, plan.plan_id)
            counters = await _benefit_counters(channel)

        assert finished.state == pb.RUN_STATE_SUCCEEDED
        assert [r.run_id for r in listed] == [run_id]  # two schedulers, one run
        _granted_once(instances, plan.plan_id, run_id, audience)
        assert counters.succeeded == 2 * len(audience) and counters.duplicates == 0

        job_id, ended, _ = await _job_of(database, run_id)
        owners = [{str(e["owner"]) for e in _leases(s, job_id)} for s in (first, second)]
        assert all(len(o) == 1 for o in owners), owners  # one worker per process
        assert not owners[0] & owners[1]
        assert {state for _, state, _, _ in ended} == {"done"}
        per_process = [[s for s in ended if s[2] in mine] for mine in owners]
        assert sorted(s for mine in per_process for s in mine) == ended  # every shard, by one
        assert all(per_process), per_process  # each process ran at least one shard to its end
        assert sum(done for *_, done in ended) == len(audience)
        print(
            f"\n{len(audience)} members, {len(instances)} instances, 0 duplicated, 0 missing; "
            + "; ".join(
                f"process {n + 1}: shards {[s[0] for s in mine]}, {sum(s[3] for s in mine)} members"
                for n, mine in enumerate(per_process)
            )
        )
    finally:
        for running in reversed(started):
            await running.stop()


async def test_an_immediate_plan_fires_once(database: str, redis_url: str, prefix: str) -> None:
    """Under a real clock (the integration tests' clock stands still)."""
    stubs = await _stubs(population=400)
    started: list[process.ServerProcess] = [stubs]
    try:
        server = await _server(database, redis_url, prefix, stubs)
        started.append(server)
        async with AsyncCustopsClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            plan = await _publish(client, IMMEDIATELY)
            run_id = (await _run_started(client, plan)).run_id
            await _run_finished(client, plan, run_id, [server])
            for _ in range(10):  # ten scheduler polls and more: none may start another run
                await asyncio.sleep(0.3)
                listed = (
                    await client.plans.list_plan_runs(
                        pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan.plan_id)
                    ).first_page()
                ).runs
                assert [r.run_id for r in listed] == [run_id], f"{len(listed)} runs"
    finally:
        for running in reversed(started):
            await running.stop()
