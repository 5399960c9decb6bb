"""The platform with its embedded stand-ins: a preview asks the audience stand-in."""

from __future__ import annotations

from pathlib import Path

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform
from tests.integration.conftest import settings


async def test_preview_estimates_through_the_embedded_audience_stand_in(tmp_path: Path) -> None:
    platform = Platform(settings(f"sqlite+aiosqlite:///{tmp_path}/e.db", stubs_population=2000))
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:

            def preview(levels: list[str]) -> pb.PreviewPlanRequest:
                return pb.PreviewPlanRequest(
                    shop_id="s1",
                    plan=pb.Plan(
                        display_name="gold",
                        audience=audience_pb2.AudienceRule(
                            levels=audience_pb2.LevelCondition(levels=levels)
                        ),
                    ),
                    parts=[pb.PREVIEW_PART_AUDIENCE_ESTIMATE],
                )

            gold = (await client.plans.PreviewPlan(preview(["V4", "V5"]))).audience_estimate
            everyone = (
                await client.plans.PreviewPlan(preview(["V0", "V1", "V2", "V3", "V4", "V5"]))
            ).audience_estimate
    finally:
        await platform.stop(grace=1)
    assert gold.exact and everyone.exact
    assert everyone.count == 2000
    assert 0 < gold.count < everyone.count
