"""A precise audience (a list of member ids) with ids the audience system
does not know (issue 19, item 4): the preview says how many and which, and
each run skips each of them with a reason, on record — before, they were
dropped without a word."""

from __future__ import annotations

import asyncio

from custops.audience.v1 import audience_pb2
from custops.plan.v1 import plan_pb2 as pb
from tests.integration.test_run_rules import Ops, manual
from tests.integration.test_runs import _granted, immediate_plan

__all__ = ["manual"]  # the fixture, imported for pytest

KNOWN = [f"m{i:08d}" for i in (3, 1, 4, 15, 9)]
UNKNOWN = [f"ghost-{i}" for i in range(12)]


def _listed() -> pb.Plan:
    plan = immediate_plan()
    plan.business_product = pb.BUSINESS_PRODUCT_PRECISE_AUDIENCE
    plan.audience.CopyFrom(
        audience_pb2.AudienceRule(
            members=audience_pb2.MemberList(member_ids=[*KNOWN[:2], *UNKNOWN, *KNOWN[2:]])
        )
    )
    return plan


async def test_preview_names_the_listed_members_nobody_knows(manual: Ops) -> None:
    preview = await manual.client.plans.preview_plan(
        pb.PreviewPlanRequest(shop_id=manual.shop, plan=_listed())
    )
    assert preview.audience_estimate.count == len(KNOWN)
    assert preview.unknown_members.count == len(UNKNOWN)
    assert list(preview.unknown_members.first_member_ids) == UNKNOWN[:10]  # in the list's order
    (warning,) = [w for w in preview.warnings if w.reason == "UNKNOWN_MEMBERS"]
    assert warning.field == "plan.audience.members"
    assert "12 listed members are unknown" in warning.message and "ghost-0" in warning.message


async def test_a_run_skips_each_unknown_member_with_its_reason(manual: Ops) -> None:
    plan = await manual.publish(_listed())
    assert manual.platform.runs is not None
    await manual.platform.runs.tick()
    await manual.worker().drain()
    (run,) = await manual.runs(plan)
    assert run.state == pb.RUN_STATE_SUCCEEDED
    assert run.progress.granted == len(KNOWN)
    assert dict(run.progress.skipped) == {"UNKNOWN_MEMBER": len(UNKNOWN)}
    assert run.progress.done == len(KNOWN) + len(UNKNOWN)
    for _ in range(100):  # bounded: the total is counted beside the run
        if (await manual.run(plan, run.run_id)).progress.total:
            break
        await asyncio.sleep(0.05)
    assert (await manual.run(plan, run.run_id)).progress.total == len(KNOWN) + len(UNKNOWN)
    assert set(_granted(manual.platform, plan.plan_id)) == set(KNOWN)
    # On record per member, once: a replayed shard adds nothing.
    assert manual.platform.runs is not None
    store = manual.platform.runs._store  # white box: the run's per-member outcomes
    found = await store.get(manual.shop, plan.plan_id, run.run_id)
    assert found is not None
    await store.skip(found, UNKNOWN[:3], "UNKNOWN_MEMBER")
    again = await manual.run(plan, run.run_id)
    assert dict(again.progress.skipped) == {"UNKNOWN_MEMBER": len(UNKNOWN)}
