"""A run is one trace (issue 23): the span of the call that started it, the
run's span, each of its batches, their downstream calls and the stand-ins'
spans for them share one trace id, batches under the run's span; the log
line of the call carries that trace id. Before, background runs started root
spans of their own and log lines carried no trace id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.app import Platform
from server.logs import JsonFormatter
from server.runs.delivery import NAME as DELIVERY
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import NOW, publish_to_everyone

MEMBERS = 300
BATCH = 50


async def _finished(client: AsyncCustopsClient, shop: str, plan: str, run: str) -> None:
    for _ in range(600):  # bounded: the engine runs it
        got = await client.plans.get_plan_run(
            pb.GetPlanRunRequest(shop_id=shop, plan_id=plan, run_id=run)
        )
        if got.run.state == pb.RUN_STATE_SUCCEEDED:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run} did not finish")


async def test_a_run_is_one_trace_from_the_call_to_the_stand_ins(tmp_path: object) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("custops")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/t.db",
            stubs_population=MEMBERS,
            engine_poll=0.05,
            log_level="INFO",
        ),
        clock=SteppingClock(NOW),
        tracer_provider=provider,
    )
    await platform.start()
    platform.job_kinds[DELIVERY].batch_size = BATCH
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            draft = await publish_to_everyone(client, "s1")
            first = (
                await client.plans.list_plan_runs(
                    pb.ListPlanRunsRequest(shop_id="s1", plan_id=draft.plan_id)
                ).first_page()
            ).runs
            for _ in range(200):  # the scheduler's run first, out of the way
                if first:
                    break
                await asyncio.sleep(0.05)
                first = (
                    await client.plans.list_plan_runs(
                        pb.ListPlanRunsRequest(shop_id="s1", plan_id=draft.plan_id)
                    ).first_page()
                ).runs
            await _finished(client, "s1", draft.plan_id, first[0].run_id)
            request_id = uuid.uuid4().hex
            run = (
                await client.plans.trigger_plan_run(
                    pb.TriggerPlanRunRequest(
                        shop_id="s1", plan_id=draft.plan_id, request_id=request_id
                    ),
                    metadata=(("x-request-id", request_id),),
                )
            ).run
            await _finished(client, "s1", draft.plan_id, run.run_id)
    finally:
        await platform.stop(grace=1)
        access.removeHandler(handler)
        access.setLevel(level)
        provider.shutdown()

    spans = exporter.get_finished_spans()
    (run_span,) = [s for s in spans if (s.attributes or {}).get("custops.run_id") == run.run_id]
    trace_id = run_span.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}

    # The call that started it is the run span's parent.
    assert run_span.parent is not None
    trigger = by_id[run_span.parent.span_id]
    assert trigger.kind is SpanKind.SERVER and trigger.name.endswith("TriggerPlanRun")
    # Every batch of the run is a child of the run's span: MEMBERS/BATCH
    # batches, spread over its shards (and a last empty page each).
    batches = [s for s in in_trace if s.name == f"{DELIVERY} batch"]
    assert len(batches) >= MEMBERS // BATCH
    assert all(
        b.parent is not None and b.parent.span_id == run_span.context.span_id for b in batches
    )
    # Each grant call is a client span under a batch, and the benefit
    # stand-in's span for it is that client span's child.
    batch_ids = {b.context.span_id for b in batches}
    grants = [
        s for s in in_trace if s.kind is SpanKind.CLIENT and s.name.endswith("BatchGrantBenefits")
    ]
    assert grants and all(g.parent is not None and g.parent.span_id in batch_ids for g in grants)
    served = [
        s for s in in_trace if s.kind is SpanKind.SERVER and s.name.endswith("BatchGrantBenefits")
    ]
    assert {s.parent.span_id for s in served if s.parent} == {g.context.span_id for g in grants}
    # No span of this run's batches is in another trace.
    assert not [
        s
        for s in spans
        if s.name == f"{DELIVERY} batch"
        and s.context.trace_id != trace_id
        and s.parent is not None
        and s.parent.span_id == run_span.context.span_id
    ]

    # The call's log line carries the run's trace id.
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    mine = [e for e in logged if e.get("request_id") == request_id and e.get("message") == "rpc"]
    assert mine and {e.get("trace_id") for e in mine} == {format(trace_id, "032x")}


async def test_a_batched_member_view_links_every_callers_span(tmp_path: object) -> None:
    """Member views asked together are answered by shared batches: each
    batch's span links the span of every call it answered."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    platform = Platform(
        settings(f"sqlite+aiosqlite:///{tmp_path}/t.db", stubs_population=MEMBERS),
        tracer_provider=provider,
    )
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=30) as client:
            await asyncio.gather(
                *(
                    client.scenario.get_member_view(
                        spb.GetMemberViewRequest(
                            shop_id="s1",
                            member_id=f"m{i:08d}",
                            front_office=pb.FRONT_OFFICE_MICRO_MALL,
                        )
                    )
                    for i in range(40)
                )
            )
    finally:
        await platform.stop(grace=1)
        provider.shutdown()
    spans = exporter.get_finished_spans()
    calls = {
        s.context.span_id
        for s in spans
        if s.kind is SpanKind.SERVER and s.name.endswith("ScenarioAggregationService/GetMemberView")
    }
    batches = [s for s in spans if s.name == "member view batch"]
    linked = [link.context.span_id for b in batches for link in b.links]
    assert len(calls) == 40 and sorted(linked) == sorted(calls)
    assert len(batches) < 40  # some were answered together
