"""The service as a process: the README's defaults, and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from tests.e2e import process
from tests.integration.fakes import FakeAudience, serve
from tests.reflection import ReflectionClient


async def test_embedded_defaults_serve_and_persist(tmp_path: Path) -> None:
    """What `scripts/run` starts: SQLite file, in-process Redis stand-in, stubs embedded."""
    server = await process.start(tmp_path, env={"PYTHONPATH": process.CHECKOUT})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with AsyncCustopsClient(f"127.0.0.1:{server.port}") as client:
            created = await client.plans.create_plan(
                pb.CreatePlanRequest(shop_id="s1", plan=pb.Plan(display_name="persisted"))
            )
        stubs = await asyncio.to_thread(
            lambda: ReflectionClient(f"127.0.0.1:{server.stubs_port}").list_services()
        )
        assert "custops.benefit.v1.BenefitService" in stubs
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    assert (tmp_path / "var" / "custops.db").exists()
    assert any("in-process stand-ins" in line for line in server.output)

    # The plan survives a restart: it was in the SQLite file, not in memory.
    again = await process.start(tmp_path, env={"PYTHONPATH": process.CHECKOUT})
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{again.port}") as client:
            got = await client.plans.get_plan(
                pb.GetPlanRequest(shop_id="s1", plan_id=created.plan.plan_id)
            )
        assert got.plan == created.plan
    finally:
        again.process.send_signal(signal.SIGTERM)
        assert await again.wait() == 0


async def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    fake = FakeAudience(count=7, delay=2.0)  # type: ignore[abstract]
    fake_server, fake_port = await serve(fake)
    target = f"127.0.0.1:{fake_port}"
    server = await process.start(
        tmp_path,
        "--stubs",
        "external",
        "--audience-target",
        target,
        "--benefit-target",
        target,
        "--notification-target",
        target,
        "--shutdown-delay",
        "0.5",
        "--shutdown-grace",
        "10",
        env={"PYTHONPATH": process.CHECKOUT},
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="custops.plan.v1.OperationPlanService")
            )
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING

            async with AsyncCustopsClient(f"127.0.0.1:{server.port}", timeout=30) as client:
                slow = asyncio.create_task(
                    client.plans.preview_plan(
                        pb.PreviewPlanRequest(
                            shop_id="s1",
                            plan=pb.Plan(
                                display_name="slow",
                                audience=audience_pb2.AudienceRule(
                                    follower=audience_pb2.FollowerCondition()
                                ),
                            ),
                            parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
                        )
                    )
                )
                await asyncio.wait_for(fake.called.wait(), 20)  # the call is in flight
                server.process.send_signal(signal.SIGTERM)
                status = await asyncio.wait_for(watch.read(), 10)
                assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
                watch.cancel()
                response = await asyncio.wait_for(slow, 20)
        assert response.audience_estimate.count == 7
        assert await server.wait() == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.wait()
        await fake_server.stop(None)
