"""A scripted OperationPlanService on loopback: the SDK's tests need no
platform, no database, nothing but the SDK and grpcio."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from custops.plan.v1 import plan_pb2 as pb
from custops.plan.v1 import plan_pb2_grpc

PLANS = 1_000
PAGE = 37  # not a divisor of PLANS: the last page is short


def refusal(
    code: grpc.StatusCode,
    reason: str,
    *,
    violations: tuple[tuple[str, str], ...] = (),
    retry_after: float | None = None,
) -> grpc.Status:
    """A status as the platform sends it: ErrorInfo, BadRequest, RetryInfo."""
    status = status_pb2.Status(code=code.value[0], message=f"{code.name.lower()} here")
    details: list[object] = [
        error_details_pb2.ErrorInfo(
            reason=reason, domain="custops", metadata={"request_id": "rid-1"}
        )
    ]
    if violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=retry_after))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)  # type: ignore[arg-type]
        status.details.append(packed)
    return rpc_status.to_status(status)


class Scripted(plan_pb2_grpc.OperationPlanServiceServicer):
    """Each method fails its first `failures` calls with `failure`, then
    answers; every request is kept in `calls` by method."""

    def __init__(self) -> None:
        self.failures = 0
        self.failure = refusal(grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
        self.calls: dict[str, list[object]] = {}
        self.times: dict[str, list[float]] = {}  # when each call came in
        self.plans = [pb.Plan(plan_id=f"plan-{i:04d}") for i in range(PLANS)]

    async def _script(
        self, method: str, request: object, context: grpc.aio.ServicerContext
    ) -> None:
        seen = self.calls.setdefault(method, [])
        seen.append(request)
        self.times.setdefault(method, []).append(time.monotonic())
        if len(seen) <= self.failures:
            failure = self.failure
            await context.abort(failure.code, failure.details, failure.trailing_metadata)

    async def GetPlan(
        self, request: pb.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPlanResponse:
        await self._script("GetPlan", request, context)
        return pb.GetPlanResponse(plan=pb.Plan(plan_id=request.plan_id))

    async def CreatePlan(
        self, request: pb.CreatePlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePlanResponse:
        await self._script("CreatePlan", request, context)
        return pb.CreatePlanResponse(plan=pb.Plan(plan_id="made"))

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPlansResponse:
        await self._script("ListPlans", request, context)
        start = int(request.page_token or 0)
        end = min(start + (request.page_size or PAGE), len(self.plans))
        token = str(end) if end < len(self.plans) else ""
        return pb.ListPlansResponse(plans=self.plans[start:end], next_page_token=token)


@asynccontextmanager
async def scripted_server() -> AsyncIterator[tuple[Scripted, str]]:
    servicer = Scripted()  # type: ignore[abstract]  # only three RPCs are scripted
    server = grpc.aio.server()
    plan_pb2_grpc.add_OperationPlanServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
