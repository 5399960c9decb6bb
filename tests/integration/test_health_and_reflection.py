"""Health per service, and reflection that lets grpcurl list, describe and call."""

from __future__ import annotations

import asyncio
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.commands import ROOT, run_python
from tests.reflection import ReflectionClient

PUBLIC = {
    "custops.plan.v1.OperationPlanService",
    "custops.scenario.v1.ScenarioAggregationService",
    "custops.audit.v1.AuditService",
}
DOWNSTREAM = {
    "custops.audience.v1.AudienceService",
    "custops.benefit.v1.BenefitService",
    "custops.notify.v1.NotificationService",
    "custops.stubadmin.v1.StubAdminService",
}
INFRA = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def test_health_serving_per_service(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *PUBLIC):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        try:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("an unknown service must not report SERVING")


async def test_public_port_lists_only_the_platform(platform: Platform) -> None:
    def look() -> tuple[list[str], list[str]]:
        public = ReflectionClient(f"127.0.0.1:{platform.port}")
        stubs = ReflectionClient(f"127.0.0.1:{platform.stubs_port}")
        try:
            return public.list_services(), stubs.list_services()
        finally:
            public.close()
            stubs.close()

    public, stubs = await asyncio.to_thread(look)
    assert set(public) == PUBLIC | INFRA
    assert set(stubs) == DOWNSTREAM | INFRA
    assert platform.port != platform.stubs_port


async def test_describe_and_call_with_json(platform: Platform) -> None:
    def session() -> tuple[str, str, dict[str, object], dict[str, object]]:
        client = ReflectionClient(f"127.0.0.1:{platform.port}")
        try:
            service = client.describe("custops.plan.v1.OperationPlanService")
            method = client.describe("custops.plan.v1.OperationPlanService.CreatePlan")
            created = client.call(
                "custops.plan.v1.OperationPlanService/CreatePlan",
                json.dumps(
                    {
                        "shopId": "grpcurl-shop",
                        "plan": {
                            "displayName": "Member day",
                            "businessProduct": "BUSINESS_PRODUCT_MEMBER_DAY",
                            "audience": {"levels": {"levels": ["GOLD"]}},
                        },
                    }
                ),
            )
            plan_id = created["plan"]["planId"]
            got = client.call(
                "custops.plan.v1.OperationPlanService/GetPlan",
                json.dumps({"shopId": "grpcurl-shop", "planId": plan_id}),
            )
            return service, method, created, got
        finally:
            client.close()

    service, method, created, got = await asyncio.to_thread(session)
    assert "rpc CreatePlan ( .custops.plan.v1.CreatePlanRequest )" in service
    assert "rpc ListPlanRuns" in service
    assert method.startswith("rpc CreatePlan")
    assert got == created
    assert got["plan"]["businessProduct"] == "BUSINESS_PRODUCT_MEMBER_DAY"  # type: ignore[index]
    assert got["plan"]["audience"] == {"levels": {"levels": ["GOLD"]}}  # type: ignore[index]


async def test_request_id_is_returned_in_trailing_metadata(platform: Platform) -> None:
    from custops.plan.v1 import plan_pb2, plan_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.port}") as channel:
        stub = plan_pb2_grpc.OperationPlanServiceStub(channel)
        call = stub.ListPlans(
            plan_pb2.ListPlansRequest(shop_id="s1"), metadata=(("x-request-id", "abc-123"),)
        )
        await call
        trailing = dict(await call.trailing_metadata())
        assert trailing["x-request-id"] == "abc-123"
        call = stub.ListPlans(plan_pb2.ListPlansRequest(shop_id="s1"))
        await call
        assert len(dict(await call.trailing_metadata())["x-request-id"]) == 32


def _symbol_status(port: int, symbol: str) -> int:
    """The status reflection answers `file_containing_symbol` with (0: found)."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    if reply.HasField("error_response"):
        return int(reply.error_response.error_code)
    return 0


async def test_the_public_port_describes_nothing_it_does_not_serve(platform: Platform) -> None:
    """Issue 22, item 6: before, describing a stand-in's service on the public
    port answered with its whole file. (Reflection finds services, messages
    and enums by name; grpcurl describes a method from its service's file.)"""
    hidden = [
        "custops.stubadmin.v1.StubAdminService",
        "custops.audience.v1.AudienceService",
        "custops.benefit.v1.BenefitService",
        "custops.audience.v1.ListAudienceMembersRequest",  # a stand-in's message only
    ]
    shown = [
        "custops.plan.v1.OperationPlanService",
        "custops.scenario.v1.RecordMemberEventsRequest",
        "custops.audience.v1.AudienceRule",  # a public message's field type
        "custops.benefit.v1.BenefitKind",
    ]

    def look(port: int, symbols: list[str]) -> list[int]:
        return [_symbol_status(port, s) for s in symbols]

    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    assert await asyncio.to_thread(look, platform.port, hidden) == [not_found] * len(hidden)
    assert await asyncio.to_thread(look, platform.port, shown) == [0] * len(shown)
    # The stand-ins' own port describes their services.
    assert await asyncio.to_thread(look, platform.stubs_port, hidden) == [0] * len(hidden)


async def _reflect(platform: Platform, *args: str) -> tuple[int, str, str]:
    """scripts/reflect.py ARGS against the platform, in a process of its own."""
    return await run_python(
        str(ROOT / "scripts" / "reflect.py"), f"127.0.0.1:{platform.port}", *args
    )


async def test_reflect_reports_a_callers_mistakes_in_one_line(platform: Platform) -> None:
    """Like the custops commands: the status, the reason, the fields and a
    hint, never a traceback; a field-mask hint names the JSON spelling."""
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
        made = await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id="shop-1", plan=pb.Plan(display_name="draft"))
        )
    update = "custops.plan.v1.OperationPlanService/UpdatePlan"
    body = {"shopId": "shop-1", "plan": {"planId": made.plan.plan_id, "displayName": "x"}}
    said = {
        "no mask": await _reflect(platform, "call", update, json.dumps(body)),
        "bad path": await _reflect(
            platform, "call", update, json.dumps({**body, "updateMask": "limits.nope"})
        ),
        "unknown method": await _reflect(platform, "call", "custops.plan.v1.Nope/GetPlan", "{}"),
        "not JSON": await _reflect(platform, "call", update, "{shopId: 1"),
    }
    for case, (code, out, err) in said.items():
        assert code == 1 and out == "" and "Traceback" not in err, (case, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("ERROR: "), (case, err)
    no_mask = said["no mask"][2]
    assert "INVALID_ARGUMENT" in no_mask and '"updateMask": "displayName"' in no_mask, no_mask
    bad_path = said["bad path"][2]
    assert "'limits.nope' cannot be updated" in bad_path, bad_path
    assert "limits.totalBudget" in bad_path and "limits.total_budget" not in bad_path, bad_path
    assert "is not served there" in said["unknown method"][2]
    assert "lowerCamelCase" in said["not JSON"][2]
