"""The six business products as templates, and a seventh from a folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient, CustopsError
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform, StartupError
from tests.integration.conftest import settings
from tests.integration.stubs_fixture import SteppingClock
from tests.integration.test_runs import _finished

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
SIX = [
    "birthday",
    "holiday",
    "interactive_fan",
    "interest_audience",
    "member_day",
    "precise_audience",
]
BUILT_IN = sorted([*SIX, "payday", "abandoned_cart"])
# Fired by members' events, not the calendar: no fire time ahead to show.
EVENT_DRIVEN = {"abandoned_cart"}


@pytest.fixture
async def tc(database_url: str) -> AsyncIterator[AsyncCustopsClient]:
    platform = Platform(settings(database_url), clock=SteppingClock(NOW))
    await platform.start()
    async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
        yield client
    await platform.stop(grace=1)


async def test_the_built_in_products_are_listed(tc: AsyncCustopsClient) -> None:
    """The seed's six, and payday (a template file and one time calculator)."""
    listed = await tc.plans.list_plan_templates(
        pb.ListPlanTemplatesRequest(shop_id="s1")
    ).first_page()
    assert [t.template_id for t in listed.templates] == BUILT_IN
    assert [t.product_id for t in listed.templates] == BUILT_IN
    # The deprecated enum names the seed's six, and nothing else.
    assert {
        t.template_id: pb.BusinessProduct.Name(t.business_product) for t in listed.templates
    } == {n: f"BUSINESS_PRODUCT_{n.upper()}" for n in SIX} | {
        "payday": "BUSINESS_PRODUCT_UNSPECIFIED",
        "abandoned_cart": "BUSINESS_PRODUCT_UNSPECIFIED",
    }
    retail = await tc.plans.list_plan_templates(
        pb.ListPlanTemplatesRequest(shop_id="s1", front_office=pb.FRONT_OFFICE_RETAIL)
    ).first_page()
    assert "interactive_fan" not in [t.template_id for t in retail.templates]
    first = await tc.plans.list_plan_templates(
        pb.ListPlanTemplatesRequest(shop_id="s1", page_size=4)
    ).first_page()
    rest = await tc.plans.list_plan_templates(
        pb.ListPlanTemplatesRequest(shop_id="s1", page_size=4, page_token=first.next_page_token)
    ).first_page()
    assert [t.template_id for t in [*first.templates, *rest.templates]] == BUILT_IN


@pytest.mark.parametrize("template_id", BUILT_IN)
async def test_each_template_makes_a_publishable_plan_from_its_defaults(
    tc: AsyncCustopsClient, template_id: str
) -> None:
    plan = (
        await tc.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(shop_id="s1", template_id=template_id)
        )
    ).plan
    assert plan.template_id == template_id and plan.state == pb.PLAN_STATE_DRAFT
    published = (
        await tc.plans.publish_plan(
            pb.PublishPlanRequest(shop_id="s1", plan_id=plan.plan_id, etag=plan.etag)
        )
    ).plan
    assert published.state in (pb.PLAN_STATE_ACTIVE, pb.PLAN_STATE_SCHEDULED)
    assert published.HasField("next_fire_time") is (template_id not in EVENT_DRIVEN)


WEEKLY = "0 0 10 * * 1 * 32"
REFUSED: dict[str, tuple[str, pb.Plan]] = {
    "birthday": ("time.execution", pb.Plan(time=pb.PlanTime(execution=WEEKLY))),
    "holiday": ("time.execution", pb.Plan(time=pb.PlanTime(execution=WEEKLY))),
    "member_day": ("time.execution", pb.Plan(time=pb.PlanTime(execution="0 0 9 * * * * 31"))),
    "precise_audience": (
        "audience",
        pb.Plan(audience=audience_pb2.AudienceRule(follower=audience_pb2.FollowerCondition())),
    ),
    "interest_audience": (
        "audience",
        pb.Plan(
            audience=audience_pb2.AudienceRule(
                birthday=audience_pb2.BirthdayCondition(scope=audience_pb2.BIRTHDAY_SCOPE_DAY)
            )
        ),
    ),
    "interactive_fan": (
        "audience",
        pb.Plan(
            audience=audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V5"]))
        ),
    ),
    # Payday allows its own calculator only: a plain monthly time is refused.
    "payday": ("time.execution", pb.Plan(time=pb.PlanTime(execution="0 0 9 10 * * * 33"))),
    # Abandoned cart reacts to events: a calendar time is refused.
    "abandoned_cart": ("time.execution", pb.Plan(time=pb.PlanTime(execution=WEEKLY))),
}


@pytest.mark.parametrize("template_id", BUILT_IN)
async def test_each_template_refuses_a_variation_it_does_not_allow(
    tc: AsyncCustopsClient, template_id: str
) -> None:
    path, overrides = REFUSED[template_id]
    with pytest.raises(CustopsError) as err:
        await tc.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id="s1",
                template_id=template_id,
                overrides=overrides,
                override_mask=FieldMask(paths=[path]),
            )
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.field_violations] == [f"plan.{path}"]
    assert template_id in err.value.field_violations[0].description


async def test_locked_fields_and_updates_keep_to_the_template(tc: AsyncCustopsClient) -> None:
    with pytest.raises(CustopsError) as err:
        await tc.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id="s1",
                template_id="birthday",
                overrides=pb.Plan(business_product=pb.BUSINESS_PRODUCT_HOLIDAY),
                override_mask=FieldMask(paths=["business_product"]),
            )
        )
    assert [v.field for v in err.value.field_violations] == ["override_mask.paths[0]"]
    plan = (
        await tc.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id="s1",
                template_id="birthday",
                overrides=pb.Plan(
                    display_name="3 days early", time=pb.PlanTime(execution="0 0 10 3 * * * 41")
                ),
                override_mask=FieldMask(paths=["display_name", "time.execution"]),
            )
        )
    ).plan
    assert plan.display_name == "3 days early" and plan.time.execution == "0 0 10 3 * * * 41"
    with pytest.raises(CustopsError) as err:
        await tc.plans.update_plan(
            pb.UpdatePlanRequest(
                shop_id="s1",
                plan=pb.Plan(plan_id=plan.plan_id, time=pb.PlanTime(execution=WEEKLY)),
                update_mask=FieldMask(paths=["time.execution"]),
            )
        )
    assert [v.field for v in err.value.field_violations] == ["plan.time.execution"]
    with pytest.raises(CustopsError) as err:
        await tc.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(shop_id="s1", template_id="no-such-product")
        )
    assert err.value.code is grpc.StatusCode.NOT_FOUND


SEVENTH = """
id = "shop_anniversary"
display_name = "Shop anniversary"
description = "A gift for every member during the shop's anniversary week."
front_offices = ["retail", "retail_chain"]
editable = ["display_name", "time.term", "actions"]

[allowed]
effective = ["immediately"]
term = ["fixed_period"]
execution = ["immediately"]
audience = ["levels"]
actions = ["grant_benefit"]

[preset]
display_name = "Happy anniversary"
business_product = "shop_anniversary"
front_office = "retail"
audience = { levels = ["V0", "V1", "V2", "V3", "V4", "V5"] }

[preset.time]
effective = "* * * * * * * 1"
term = "0-0 0-0 0-0 1-7 3-3 * 2027-2027 2"
execution = "* * * * * * * 1"

[[preset.actions]]
grant_benefit = [{ template_id = "gift-mug", kind = "gift", quantity = 1 }]
"""


async def test_a_seventh_product_is_a_file_not_code(tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "shop_anniversary.toml").write_text(SEVENTH, encoding="utf-8")
    platform = Platform(
        settings(database_url, product_templates=str(folder), stubs_population=3000),
        clock=SteppingClock(NOW),
    )
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            listed = await client.plans.list_plan_templates(
                pb.ListPlanTemplatesRequest(shop_id="s1")
            ).first_page()
            assert "shop_anniversary" in [t.template_id for t in listed.templates]
            plan = (
                await client.plans.create_plan_from_template(
                    pb.CreatePlanFromTemplateRequest(shop_id="s1", template_id="shop_anniversary")
                )
            ).plan
            assert plan.front_office == pb.FRONT_OFFICE_RETAIL
            # A product of its own: an id no enum knows, listed with what it allows.
            (seventh,) = [t for t in listed.templates if t.template_id == "shop_anniversary"]
            assert seventh.product_id == "shop_anniversary"
            assert seventh.business_product == pb.BUSINESS_PRODUCT_UNSPECIFIED
            assert list(seventh.allowed.execution) == ["immediately"]
            assert plan.product_id == "shop_anniversary"
            published = await client.plans.publish_plan(
                pb.PublishPlanRequest(shop_id="s1", plan_id=plan.plan_id)
            )
            assert published.plan.state == pb.PLAN_STATE_SCHEDULED  # the term starts in 2027
            # "Immediately" fires once, when the term opens: 2027-03-01 00:00 in Shanghai.
            opens = published.plan.next_fire_time.ToDatetime(UTC)
            assert opens == datetime(2027, 2, 28, 16, 0, tzinfo=UTC)
            # It runs: every member gets the mug when the term opens.
            clock = platform.clock
            assert isinstance(clock, SteppingClock)
            clock.current = opens + timedelta(seconds=5)
            run = await _finished(client, published.plan)
            assert run.state == pb.RUN_STATE_SUCCEEDED and run.progress.granted > 0
            listed_plans = await client.plans.list_plans(
                pb.ListPlansRequest(shop_id="s1", product_id="shop_anniversary")
            ).first_page()
            assert [p.plan_id for p in listed_plans.plans] == [plan.plan_id]
            # A client built from the contract before product ids still reads it.
            got = await client.plans.get_plan(pb.GetPlanRequest(shop_id="s1", plan_id=plan.plan_id))
            old: Any = _old_message("custops.plan.v1.GetPlanResponse").FromString(
                got.SerializeToString()
            )
            assert old.plan.display_name == "Happy anniversary"
            assert old.plan.plan_id == plan.plan_id
            assert old.plan.business_product == 0  # no value of the old enum names it
            assert old.plan.state == pb.PLAN_STATE_ACTIVE
    finally:
        await platform.stop(grace=1)


async def test_a_broken_template_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        SEVENTH.replace('"levels"]', '"horoscope"]'), encoding="utf-8"
    )
    platform = Platform(
        settings(f"sqlite+aiosqlite:///{tmp_path}/t.db", product_templates=str(tmp_path))
    )
    with pytest.raises(StartupError, match=r"bad\.toml: unknown component audience: horoscope"):
        await platform.start()


def _old_message(name: str) -> type[Message]:
    """A message class of the plan contract as it was before product ids
    (tests/data holds its descriptors, as `protoc --include_imports` wrote them)."""
    pool = descriptor_pool.DescriptorPool()
    data = (ROOT / "tests" / "data" / "plan-contract-before-product-ids.binpb").read_bytes()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
