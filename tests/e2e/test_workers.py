"""`custops serve --workers 2` (issue 25): two processes serve one public
port (SO_REUSEPORT); calls on new connections reach both; a plan's run is
carried out by the first only, each member granted once; a plan paused through
one connection is gone from the next page on any other; SIGTERM to the first
stops both. Which process answered is read from each one's own metrics
endpoint (the configured port, and the next one for the second process)."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from tests.e2e import process
from tests.e2e.test_run_processes import (
    IMMEDIATELY,
    SHOP,
    _audience,
    _granted_once,
    _instances,
    _publish,
    _run_finished,
    _run_started,
)
from tests.integration.test_metrics import samples, scrape, total

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
CALLS = 60  # member pages, each on a connection of its own


def _two_free_ports() -> int:
    """A port P with P and P + 1 free just now (the two metrics endpoints)."""
    for _ in range(50):  # bounded: some pair is free on loopback
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise AssertionError("no two neighbouring ports free on loopback")


def _served(port: int, method: str) -> float:
    found = samples(scrape(port))
    return total(found, "rpc_server_call_duration_seconds_count", rpc_method=method)


def _granted(port: int) -> float:
    return total(samples(scrape(port)), "custops_run_members_total", outcome="granted")


async def test_two_workers_share_the_port_and_the_singletons_run_once(
    database: str, redis_url: str, prefix: str
) -> None:
    metrics = _two_free_ports()
    server = await process.start(
        process.ROOT,
        "--workers",
        "2",
        "--database-url",
        database,
        "--auto-migrate",
        "true",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--stubs-population",
        "2000",
        env={
            "PYTHONPATH": process.CHECKOUT,
            "CUSTOPS_METRICS_LISTEN": f"127.0.0.1:{metrics}",
            "CUSTOPS_ENGINE_POLL": "0.2",
            "CUSTOPS_SHUTDOWN_GRACE": "2",
        },
    )
    server.follow()
    try:
        target = f"127.0.0.1:{server.port}"
        for _ in range(200):  # bounded: the second process serves within seconds
            try:
                scrape(metrics + 1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        async with AsyncCustopsClient(target, timeout=30) as client:
            plan = await _publish(client, IMMEDIATELY)
            run = await _run_started(client, plan)
            await _run_finished(client, plan, run.run_id, [server])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.stubs_port}") as stand_ins:
            audience = await _audience(stand_ins, plan)
            _granted_once(
                await _instances(stand_ins, plan.plan_id), plan.plan_id, run.run_id, audience
            )
        # The run was the first process's alone: the second has no task engine.
        assert _granted(metrics) == len(audience) and _granted(metrics + 1) == 0

        member = sorted(audience)[0]
        view = spb.GetMemberViewRequest(
            shop_id=SHOP, member_id=member, front_office=pb.FRONT_OFFICE_MICRO_MALL
        )
        for _ in range(CALLS):  # each on a new connection, which the kernel places
            async with AsyncCustopsClient(target, timeout=30) as caller:
                shown = await caller.scenario.get_member_view(view)
                assert [p.plan_id for p in shown.plans] == [plan.plan_id]
        method = "custops.scenario.v1.ScenarioAggregationService/GetMemberView"
        first, second = _served(metrics, method), _served(metrics + 1, method)
        assert first + second == CALLS and first > 0 and second > 0, (first, second)
        print(f"member pages: {first:.0f} served by the first process, {second:.0f} by the other")

        # A change through one connection is on the next page of every process.
        async with AsyncCustopsClient(target, timeout=30) as client:
            await client.plans.pause_plan(pb.PausePlanRequest(shop_id=SHOP, plan_id=plan.plan_id))
        for _ in range(CALLS // 3):
            async with AsyncCustopsClient(target, timeout=30) as caller:
                assert list((await caller.scenario.get_member_view(view)).plans) == []

        server.process.terminate()
        assert await server.wait(60) == 0
        for port in (metrics, metrics + 1):  # both stopped: nothing answers there
            with pytest.raises(OSError):
                scrape(port)
    finally:
        await server.stop()
