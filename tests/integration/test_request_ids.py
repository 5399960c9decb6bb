"""Request ids on the run calls (issue 22, item 7): a replay meets what the
first call made, and a different request under the same id is refused with
REQUEST_ID_REUSED — before, TriggerPlanRun with an id used for another plan
started a second run, and RecoverPlanRun with an id used for another run
took that run's benefits back."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Any

import grpc
import pytest

from custops.client import CustopsError
from custops.plan.v1 import plan_pb2 as pb
from tests.integration.test_plan_time import _tick
from tests.integration.test_run_rules import TOP, Ops, at, levels, manual
from tests.integration.test_runs import immediate_plan

__all__ = ["manual"]  # the fixture, imported for pytest

NINE = at(date(2026, 11, 25), 9)


async def _published(ops: Ops) -> pb.Plan:
    plan = immediate_plan()
    plan.audience.CopyFrom(levels(*TOP))
    return await ops.publish(plan)


async def _reused(call: Awaitable[Any]) -> None:
    with pytest.raises(CustopsError) as err:
        await call
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "REQUEST_ID_REUSED", err.value
    assert [v.field for v in err.value.field_violations] == ["request_id"]


async def test_a_trigger_replays_and_an_id_used_for_another_plan_is_refused(manual: Ops) -> None:
    manual.set_clock(NINE)
    first, second = await _published(manual), await _published(manual)
    run = await manual.trigger(first, "trigger-1")
    assert (await manual.trigger(first, "trigger-1")).run_id == run.run_id
    await _reused(manual.trigger(second, "trigger-1"))
    assert [r.run_id for r in await manual.runs(first)].count(run.run_id) == 1
    assert [r for r in await manual.runs(second) if r.trigger == pb.RUN_TRIGGER_MANUAL] == []


async def test_a_recovery_replays_and_an_id_used_otherwise_is_refused(manual: Ops) -> None:
    manual.set_clock(NINE)
    first, second = await _published(manual), await _published(manual)
    await _tick(manual, NINE)
    (run_a,) = await manual.runs(first)
    (run_b,) = await manual.runs(second)

    async def recover(plan: pb.Plan, run: pb.PlanRun, reason: str) -> pb.PlanRun:
        reply: pb.RecoverPlanRunResponse = await manual.client.plans.recover_plan_run(
            pb.RecoverPlanRunRequest(
                shop_id=manual.shop,
                plan_id=plan.plan_id,
                run_id=run.run_id,
                request_id="recover-1",
                reason=reason,
            )
        )
        return reply.run

    recovery = await recover(first, run_a, "wrong audience")
    again = await recover(first, run_a, "wrong audience")
    assert again.run_id == recovery.run_id and again.kind == pb.RUN_KIND_RECOVERY
    # The same run with another reason, and another run: refused, nothing started.
    await _reused(recover(first, run_a, "another reason"))
    await _reused(recover(second, run_b, "wrong audience"))
    await manual.worker().drain()
    assert [r.kind for r in await manual.runs(second)] == [pb.RUN_KIND_DELIVERY]


async def test_a_cancel_replays_and_an_id_used_for_another_run_is_refused(manual: Ops) -> None:
    manual.set_clock(NINE)
    first, second = await _published(manual), await _published(manual)
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()  # the runs are made, not yet run

    async def cancel(plan: pb.Plan, run: pb.PlanRun) -> pb.PlanRun:
        reply: pb.CancelPlanRunResponse = await manual.client.plans.cancel_plan_run(
            pb.CancelPlanRunRequest(
                shop_id=manual.shop, plan_id=plan.plan_id, run_id=run.run_id, request_id="stop-1"
            )
        )
        return reply.run

    (run_a,) = await manual.runs(first)
    (run_b,) = await manual.runs(second)
    assert (await cancel(first, run_a)).state == pb.RUN_STATE_CANCELLED
    assert (await cancel(first, run_a)).run_id == run_a.run_id
    await _reused(cancel(second, run_b))
    assert (await manual.run(second, run_b.run_id)).state == pb.RUN_STATE_PENDING
