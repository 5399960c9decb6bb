"""Scale-out: three `custops serve` replicas on one PostgreSQL database and a
three-master Redis Cluster share a run; one is SIGKILLed mid-run, the others
finish it. The benefit stand-in (a process of its own) is the witness."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from tests.e2e import process
from tests.e2e.test_run_processes import (
    _audience,
    _benefit_counters,
    _granted_once,
    _instances,
    _job_of,
    _leases,
    _publish,
    _run_finished,
    _run_started,
    _server,
    _stubs,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
REPLICAS = 3


async def _victim(
    database: str, run_id: str, replicas: list[process.ServerProcess]
) -> tuple[int, int]:
    """Once grants are under way, the replica (index) holding a shard that is
    running with items already done, and that shard's index."""
    for _ in range(600):  # bounded: shards are leased within a poll or two
        job_id, shards, _ = await _job_of(database, run_id)
        owners = [{str(e["owner"]) for e in _leases(r, job_id)} for r in replicas]
        for index, state, owner, done in shards:
            if state != "running" or done == 0:
                continue
            for n, mine in enumerate(owners):
                if owner in mine:
                    return n, index
        await asyncio.sleep(0.1)
    raise AssertionError("no replica was ever seen part-way through a shard")


async def test_three_replicas_finish_a_run_when_one_is_killed(
    database: str, redis_cluster_url: str
) -> None:
    stubs = await _stubs(population=20_000)
    started: list[process.ServerProcess] = [stubs]
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    try:
        replicas = []
        for _ in range(REPLICAS):  # one after the other: the first migrates
            replica = await _server(
                database, redis_cluster_url, prefix, stubs, CUSTOPS_ENGINE_CONCURRENCY="1"
            )
            started.append(replica)
            replicas.append(replica)
        for replica in replicas:
            assert any('"redis_mode": "cluster"' in line for line in replica.output)
        async with (
            AsyncCustopsClient(f"127.0.0.1:{replicas[0].port}", timeout=30) as first,
            grpc.aio.insecure_channel(f"127.0.0.1:{stubs.stubs_port}") as channel,
        ):
            # One benefit rate for all three, kept in the cluster: the run
            # lasts long enough for a replica to die in the middle of it.
            await first.plans.update_throttle_setting(
                pb.UpdateThrottleSettingRequest(
                    setting=pb.ThrottleSetting(
                        downstream=pb.DOWNSTREAM_BENEFIT, rate_per_second=3000, burst=1000
                    ),
                    request_id=uuid.uuid4().hex,
                )
            )
            plan = await _publish(first)
            run_id = (await _run_started(first, plan)).run_id
            doomed, shard = await _victim(database, run_id, replicas)
            replicas[doomed].process.kill()
            await replicas[doomed].wait()
            survivors = [r for n, r in enumerate(replicas) if n != doomed]
            async with AsyncCustopsClient(f"127.0.0.1:{survivors[0].port}", timeout=30) as client:
                finished = await _run_finished(client, plan, run_id, survivors)
                listed = (
                    await client.plans.list_plan_runs(
                        pb.ListPlanRunsRequest(shop_id=plan.shop_id, plan_id=plan.plan_id)
                    ).first_page()
                ).runs
            audience = await _audience(channel, plan)
            instances = await _instances(channel, plan.plan_id)
            counters = await _benefit_counters(channel)

        assert finished.state == pb.RUN_STATE_SUCCEEDED
        assert [r.run_id for r in listed] == [run_id]  # three schedulers, one run
        _granted_once(instances, plan.plan_id, run_id, audience)
        # Every grant made once: a batch the dead replica had sent is
        # recognised by its keys when a survivor sends it again.
        assert counters.succeeded == 2 * len(audience) == len(instances)
        assert counters.failed == 0

        job_id, ended, _ = await _job_of(database, run_id)
        assert {state for _, state, _, _ in ended} == {"done"}
        assert sum(done for *_, done in ended) == len(audience)
        dead = {str(e["owner"]) for e in _leases(replicas[doomed], job_id)}
        assert ended[shard][2] not in dead  # a survivor took the dead replica's shard over
        print(
            f"\n{len(audience)} members on {REPLICAS} replicas, replica {doomed + 1} killed "
            f"in shard {shard}; {len(instances)} instances, 0 duplicated, 0 missing; "
            f"{counters.duplicates} replayed grants recognised as duplicates"
        )
    finally:
        for running in reversed(started):
            await running.stop()
