"""One server span per RPC; downstream calls are child spans of the same
trace, and the trace context and deadline travel with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings
from tests.integration.fakes import FakeAudience, serve


async def test_server_and_downstream_spans_share_the_trace(tmp_path: Path) -> None:
    exporter, provider = _recording()
    platform, fake, fake_server = await _platform_with_fake(
        tmp_path,
        provider,
        FakeAudience(count=1234),  # type: ignore[abstract]
        downstream_timeout=30.0,
    )
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            created = await client.plans.create_plan(
                pb.CreatePlanRequest(
                    shop_id="s1",
                    plan=pb.Plan(
                        display_name="gold members",
                        audience=audience_pb2.AudienceRule(
                            levels=audience_pb2.LevelCondition(levels=["GOLD"])
                        ),
                    ),
                )
            )
            await client.plans.get_plan(
                pb.GetPlanRequest(shop_id="s1", plan_id=created.plan.plan_id)
            )
            preview = await client.plans.preview_plan(
                pb.PreviewPlanRequest(
                    shop_id="s1",
                    plan_id=created.plan.plan_id,
                    parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
                ),
                timeout=3,
            )
    finally:
        await platform.stop(grace=1)
        await fake_server.stop(None)

    assert preview.audience_estimate.count == 1234
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    # Named by opentelemetry-instrumentation-grpc: the method's path.
    assert [s.name for s in servers] == [
        "/custops.plan.v1.OperationPlanService/CreatePlan",
        "/custops.plan.v1.OperationPlanService/GetPlan",
        "/custops.plan.v1.OperationPlanService/PreviewPlan",
    ]
    assert [s.name for s in clients] == ["/custops.audience.v1.AudienceService/EstimateAudience"]
    preview_span, downstream = servers[2], clients[0]
    assert downstream.context.trace_id == preview_span.context.trace_id
    assert downstream.parent is not None
    assert downstream.parent.span_id == preview_span.context.span_id
    assert len({s.context.trace_id for s in servers}) == 3  # one trace per incoming call

    # The audience system received the same trace and the caller's request id...
    traceparent = fake.metadata[0]["traceparent"]
    assert f"{downstream.context.trace_id:032x}" in traceparent
    assert fake.metadata[0]["x-request-id"]
    # ...and the caller's 3-second deadline, not the 30-second default
    # (gRPC rounds the wire timeout up, hence the margin).
    remaining = fake.remaining[0]
    assert remaining is not None and remaining <= 3.5


CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


async def _preview_with_caller_trace(platform: Platform) -> None:
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
        await client.plans.preview_plan(
            pb.PreviewPlanRequest(
                shop_id="s1",
                plan=pb.Plan(
                    display_name="followers",
                    audience=audience_pb2.AudienceRule(follower=audience_pb2.FollowerCondition()),
                ),
                parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
            ),
            metadata=(("traceparent", CALLER_TRACEPARENT),),
        )


def _recording() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


async def _platform_with_fake(
    tmp_path: Path,
    provider: TracerProvider | None,
    fake: FakeAudience | None = None,
    **overrides: Any,
) -> tuple[Platform, FakeAudience, grpc.aio.Server]:
    """A platform whose downstream systems are one scripted audience system."""
    fake = fake or FakeAudience()  # type: ignore[abstract]
    fake_server, fake_port = await serve(fake)
    target = f"127.0.0.1:{fake_port}"
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/t.db",
            stubs="external",
            audience_target=target,
            benefit_target=target,
            notification_target=target,
            **overrides,
        ),
        tracer_provider=provider,
    )
    await platform.start()
    return platform, fake, fake_server


async def test_the_callers_trace_is_continued(tmp_path: Path) -> None:
    exporter, provider = _recording()
    platform, fake, fake_server = await _platform_with_fake(tmp_path, provider)
    try:
        await _preview_with_caller_trace(platform)
    finally:
        await platform.stop(grace=1)
        await fake_server.stop(None)
    server_span = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert f"{server_span.context.trace_id:032x}" == CALLER_TRACE
    assert CALLER_TRACE in fake.metadata[0]["traceparent"]


async def test_with_tracing_off_the_callers_trace_still_reaches_downstream(
    tmp_path: Path,
) -> None:
    platform, fake, fake_server = await _platform_with_fake(tmp_path, None)
    try:
        await _preview_with_caller_trace(platform)
    finally:
        await platform.stop(grace=1)
        await fake_server.stop(None)
    assert fake.metadata[0]["traceparent"] == CALLER_TRACEPARENT


async def test_failed_calls_mark_their_span(tmp_path: Path) -> None:
    exporter, provider = _recording()
    platform, _, fake_server = await _platform_with_fake(tmp_path, provider)
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            with pytest.raises(CustopsError):
                await client.plans.get_plan(pb.GetPlanRequest(shop_id="s1", plan_id="missing"))
    finally:
        await platform.stop(grace=1)
        await fake_server.stop(None)
    (span,) = exporter.get_finished_spans()
    # A caller's mistake is no server error (the RPC conventions leave a
    # server span's status unset for NOT_FOUND); the code is on the span.
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
