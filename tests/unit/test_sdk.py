"""The SDK against a scripted server: readable errors and safe retries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_status import rpc_status

from custops.client import AsyncCustopsClient, CustopsClient, CustopsError, RetryPolicy
from custops.plan.v1 import plan_pb2 as pb
from custops.plan.v1 import plan_pb2_grpc
from server.errors import rich_status

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


class Flaky(plan_pb2_grpc.OperationPlanServiceServicer):
    """Fails the first `failures` calls of each method with UNAVAILABLE."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, list[str]] = {}

    async def _maybe_fail(
        self, method: str, request_id: str, context: grpc.aio.ServicerContext
    ) -> None:
        seen = self.calls.setdefault(method, [])
        seen.append(request_id)
        if len(seen) <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def GetPlan(
        self, request: pb.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPlanResponse:
        await self._maybe_fail("GetPlan", "", context)
        return pb.GetPlanResponse(plan=pb.Plan(plan_id=request.plan_id))

    async def CreatePlan(
        self, request: pb.CreatePlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePlanResponse:
        await self._maybe_fail("CreatePlan", request.request_id, context)
        return pb.CreatePlanResponse(plan=pb.Plan(plan_id="made"))

    async def DeletePlan(
        self, request: pb.DeletePlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePlanResponse:
        status = rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "plan_id: required",
            "INVALID_ARGUMENT",
            violations=(("plan_id", "required"),),
            metadata={"request_id": "rid-1"},
        )
        converted = rpc_status.to_status(status)
        await context.abort(converted.code, converted.details, converted.trailing_metadata)
        raise AssertionError


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[Flaky, int]]:
    servicer = Flaky(failures=2)  # type: ignore[abstract]  # only three RPCs are scripted
    server = grpc.aio.server()
    plan_pb2_grpc.add_OperationPlanServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(None)


async def test_reads_are_retried(flaky_server: tuple[Flaky, int]) -> None:
    servicer, port = flaky_server
    async with AsyncCustopsClient(f"127.0.0.1:{port}", retry=FAST) as client:
        reply = await client.plans.GetPlan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert reply.plan.plan_id == "p"
    assert len(servicer.calls["GetPlan"]) == 3


async def test_writes_are_retried_with_one_request_id(flaky_server: tuple[Flaky, int]) -> None:
    servicer, port = flaky_server
    request = pb.CreatePlanRequest(shop_id="s", plan=pb.Plan(display_name="x"))
    async with AsyncCustopsClient(f"127.0.0.1:{port}", retry=FAST) as client:
        await client.plans.CreatePlan(request)
    ids = servicer.calls["CreatePlan"]
    assert len(ids) == 3 and len(set(ids)) == 1 and ids[0] == request.request_id


async def test_gives_up_after_the_attempt_limit(flaky_server: tuple[Flaky, int]) -> None:
    servicer, port = flaky_server
    servicer.failures = 100
    async with AsyncCustopsClient(f"127.0.0.1:{port}", retry=FAST) as client:
        with pytest.raises(CustopsError) as err:
            await client.plans.GetPlan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert len(servicer.calls["GetPlan"]) == 4


async def test_errors_are_readable(flaky_server: tuple[Flaky, int]) -> None:
    _, port = flaky_server

    def call() -> CustopsError:
        with CustopsClient(f"127.0.0.1:{port}", retry=FAST) as client:
            try:
                client.plans.DeletePlan(pb.DeletePlanRequest(shop_id="s"))
            except CustopsError as exc:
                return exc
        raise AssertionError("DeletePlan should fail")

    import asyncio

    error = await asyncio.to_thread(call)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert error.request_id == "rid-1"
    assert [(v.field, v.description) for v in error.field_violations] == [("plan_id", "required")]
    assert str(error) == (
        "INVALID_ARGUMENT: plan_id: required [reason=INVALID_ARGUMENT, request_id=rid-1]\n"
        "  - plan_id: required"
    )
