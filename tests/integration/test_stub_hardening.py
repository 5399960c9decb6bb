"""The stand-ins against hostile or odd input, and every fault mode of each."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from custops.audience.v1 import audience_pb2 as apb
from custops.benefit.v1 import benefit_pb2 as bpb
from custops.notify.v1 import notify_pb2 as npb
from custops.stubadmin.v1 import stubadmin_pb2 as admin
from tests.integration.stubs_fixture import StubClients


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


async def test_bad_audience_input_is_invalid_argument(stubs: StubClients) -> None:
    far = Timestamp(seconds=10**12)
    cases = [
        apb.AudienceRule(browsed_not_bought=apb.BrowsedNotBoughtCondition(within_days=2**31 - 1)),
        apb.AudienceRule(browsed_not_bought=apb.BrowsedNotBoughtCondition(within_days=0)),
        apb.AudienceRule(
            birthday=apb.BirthdayCondition(scope=apb.BIRTHDAY_SCOPE_DAY, days_ahead=-(2**31))
        ),
        apb.AudienceRule(all_of=apb.RuleList()),
        apb.AudienceRule(tags=apb.TagCondition(tags=["food"], match=99)),  # type: ignore[arg-type]
    ]
    for rule in cases:
        assert (
            await code_of(
                stubs.audience.EstimateAudience(
                    apb.EstimateAudienceRequest(shop_id="s1", rule=rule)
                )
            )
            is grpc.StatusCode.INVALID_ARGUMENT
        ), rule
    follower = apb.AudienceRule(follower=apb.FollowerCondition())
    assert (
        await code_of(
            stubs.audience.EstimateAudience(
                apb.EstimateAudienceRequest(
                    shop_id="s1", rule=follower, evaluation=apb.Evaluation(as_of=far)
                )
            )
        )
        is grpc.StatusCode.INVALID_ARGUMENT
    )
    page = await stubs.audience.ListAudienceMembers(
        apb.ListAudienceMembersRequest(shop_id="s1", rule=follower, page_size=10)
    )
    cursor = json.loads(base64.urlsafe_b64decode(page.next_page_token))
    for field, value in (("i", 1e400), ("t", float("nan")), ("t", 1e20), ("i", "x")):
        forged = base64.urlsafe_b64encode(json.dumps({**cursor, field: value}).encode()).decode()
        assert (
            await code_of(
                stubs.audience.ListAudienceMembers(
                    apb.ListAudienceMembersRequest(shop_id="s1", rule=follower, page_token=forged)
                )
            )
            is grpc.StatusCode.INVALID_ARGUMENT
        ), (field, value)


async def _template(stubs: StubClients, **fields: Any) -> grpc.StatusCode:
    return await code_of(
        stubs.benefit.CreateBenefitTemplate(
            bpb.CreateBenefitTemplateRequest(shop_id="s1", template=bpb.BenefitTemplate(**fields))
        )
    )


async def test_templates_that_could_break_a_grant_are_refused(stubs: StubClients) -> None:
    refused = grpc.StatusCode.FAILED_PRECONDITION
    assert (
        await _template(
            stubs, template_id="long", kind=bpb.BENEFIT_KIND_GIFT, validity_days=2**31 - 1
        )
        is refused
    )
    assert (
        await _template(
            stubs,
            template_id="far",
            kind=bpb.BENEFIT_KIND_GIFT,
            periodicity=bpb.Periodicity(count=2, interval_days=10**9),
        )
        is refused
    )
    assert await _template(stubs, template_id="odd", kind=99) is refused
    assert (
        await _template(
            stubs,
            template_id="neg",
            kind=bpb.BENEFIT_KIND_PACKAGE,
            components=[bpb.PackageComponent(template_id="gift-mug", quantity=-3)],
        )
        is refused
    )
    # No package inside a package, also by turning a component into one.
    assert (
        await _template(stubs, template_id="inner", kind=bpb.BENEFIT_KIND_GIFT, inventory=5)
        is grpc.StatusCode.OK
    )
    assert (
        await _template(
            stubs,
            template_id="outer",
            kind=bpb.BENEFIT_KIND_PACKAGE,
            components=[bpb.PackageComponent(template_id="inner", quantity=1)],
            inventory=5,
        )
        is grpc.StatusCode.OK
    )
    assert (
        await code_of(
            stubs.benefit.UpdateBenefitTemplate(
                bpb.UpdateBenefitTemplateRequest(
                    shop_id="s1",
                    template=bpb.BenefitTemplate(
                        template_id="inner",
                        kind=bpb.BENEFIT_KIND_PACKAGE,
                        components=[bpb.PackageComponent(template_id="gift-mug", quantity=1)],
                    ),
                    update_mask=FieldMask(paths=["kind", "components"]),
                )
            )
        )
        is refused
    )
    # A rejected update changes nothing, stock included; stock never goes below zero.
    for paths, stock in ((["inventory", "nope"], 99), (["inventory"], -7)):
        assert (
            await code_of(
                stubs.benefit.UpdateBenefitTemplate(
                    bpb.UpdateBenefitTemplateRequest(
                        shop_id="s1",
                        template=bpb.BenefitTemplate(template_id="inner", inventory=stock),
                        update_mask=FieldMask(paths=paths),
                    )
                )
            )
            is refused
        )
    inventory = await stubs.benefit.BatchGetInventory(
        bpb.BatchGetInventoryRequest(shop_id="s1", template_ids=["inner"])
    )
    assert inventory.inventories[0].available == 5


async def test_future_deliveries_cannot_be_used_yet(stubs: StubClients) -> None:
    reply = await stubs.benefit.BatchGrantBenefits(
        bpb.BatchGrantBenefitsRequest(
            shop_id="s1",
            items=[
                bpb.GrantItem(
                    idempotency_key="m3",
                    member_id="m00000001",
                    template_id="coupon-monthly-x3",
                    quantity=1,
                )
            ],
        )
    )
    first, _, third = reply.results[0].instances
    use = stubs.benefit.MarkBenefitUsed
    assert (
        await code_of(
            use(
                bpb.MarkBenefitUsedRequest(
                    shop_id="s1", instance_id=third.instance_id, order_id="o", idempotency_key="u3"
                )
            )
        )
        is grpc.StatusCode.FAILED_PRECONDITION
    )
    # Keys are compared by their parts, not by a joined string.
    used = bpb.MarkBenefitUsedRequest(
        shop_id="s1", instance_id=first.instance_id, order_id="x|y", idempotency_key="same"
    )
    assert await code_of(use(used)) is grpc.StatusCode.OK
    tricky = bpb.MarkBenefitUsedRequest(
        shop_id="s1", instance_id=f"{first.instance_id}|x", order_id="y", idempotency_key="same"
    )
    assert await code_of(use(tricky)) is grpc.StatusCode.FAILED_PRECONDITION


async def test_instance_pages_skip_nothing_when_states_change(stubs: StubClients) -> None:
    items = [
        bpb.GrantItem(
            idempotency_key=f"p{i}", member_id="m00000003", template_id="gift-mug", quantity=1
        )
        for i in range(5)
    ]
    await stubs.benefit.BatchGrantBenefits(bpb.BatchGrantBenefitsRequest(shop_id="s1", items=items))
    request = bpb.ListBenefitInstancesRequest(
        shop_id="s1", member_id="m00000003", state=bpb.BENEFIT_STATE_UNUSED, page_size=2
    )
    first = await stubs.benefit.ListBenefitInstances(request)
    await stubs.benefit.MarkBenefitUsed(
        bpb.MarkBenefitUsedRequest(
            shop_id="s1",
            instance_id=first.instances[0].instance_id,
            order_id="o",
            idempotency_key="k",
        )
    )
    seen = [i.instance_id for i in first.instances]
    token = first.next_page_token
    while token:
        request.page_token = token
        page = await stubs.benefit.ListBenefitInstances(request)
        seen += [i.instance_id for i in page.instances]
        token = page.next_page_token
    assert len(seen) == 5 and len(set(seen)) == 5
    request.page_token = "garbage\n"
    assert (
        await code_of(stubs.benefit.ListBenefitInstances(request))
        is grpc.StatusCode.INVALID_ARGUMENT
    )


async def _set(
    stubs: StubClients, system: int, paths: list[str], settings: admin.StubSettings
) -> None:
    settings.system = system  # type: ignore[assignment]
    await stubs.admin.UpdateStubSettings(
        admin.UpdateStubSettingsRequest(settings=settings, update_mask=FieldMask(paths=paths))
    )


def _calls(stubs: StubClients) -> dict[int, Any]:
    return {
        admin.STUB_SYSTEM_AUDIENCE: lambda timeout=None: stubs.audience.EstimateAudience(
            apb.EstimateAudienceRequest(
                shop_id="s1", rule=apb.AudienceRule(follower=apb.FollowerCondition())
            ),
            timeout=timeout,
        ),
        admin.STUB_SYSTEM_BENEFIT: lambda timeout=None: stubs.benefit.BatchGrantBenefits(
            bpb.BatchGrantBenefitsRequest(
                shop_id="s1",
                items=[
                    bpb.GrantItem(
                        idempotency_key="f",
                        member_id="m00000004",
                        template_id="points-100",
                        quantity=1,
                    )
                ],
            ),
            timeout=timeout,
        ),
        admin.STUB_SYSTEM_NOTIFICATION: lambda timeout=None: stubs.notify.BatchSendMessages(
            npb.BatchSendMessagesRequest(
                shop_id="s1",
                messages=[
                    npb.Message(
                        idempotency_key="f",
                        member_id="m00000004",
                        channel=npb.MESSAGE_CHANNEL_IN_APP,
                        template_id="t",
                    )
                ],
            ),
            timeout=timeout,
        ),
    }


@pytest.mark.parametrize(
    "system",
    [admin.STUB_SYSTEM_AUDIENCE, admin.STUB_SYSTEM_BENEFIT, admin.STUB_SYSTEM_NOTIFICATION],
)
async def test_every_fault_mode_of_every_stand_in(stubs: StubClients, system: int) -> None:
    call = _calls(stubs)[system]
    faults = ["faults.error_rate", "faults.lost_response_rate", "faults.timeout_rate"]
    for name, expected in (
        ("error_rate", grpc.StatusCode.UNAVAILABLE),
        ("lost_response_rate", grpc.StatusCode.UNAVAILABLE),
        ("timeout_rate", grpc.StatusCode.DEADLINE_EXCEEDED),
    ):
        chosen: dict[str, Any] = {name: 1.0}
        await _set(stubs, system, faults, admin.StubSettings(faults=admin.Faults(**chosen)))
        assert await code_of(call(timeout=1.0)) is expected, name
    await _set(
        stubs,
        system,
        [*faults, "faults.latency_min", "faults.latency_max"],
        admin.StubSettings(
            faults=admin.Faults(
                latency_min=Duration(nanos=150_000_000), latency_max=Duration(nanos=200_000_000)
            )
        ),
    )
    started = asyncio.get_running_loop().time()
    assert await code_of(call()) is grpc.StatusCode.OK
    assert asyncio.get_running_loop().time() - started >= 0.15
    request = admin.GetStubCountersRequest(system=system)  # type: ignore[arg-type]
    counters = (await stubs.admin.GetStubCounters(request)).counters
    assert (counters.injected_errors, counters.lost_responses, counters.timeouts) == (1, 1, 1)


async def test_changing_faults_does_not_refill_the_bucket(stubs: StubClients) -> None:
    system = admin.STUB_SYSTEM_NOTIFICATION
    await _set(
        stubs,
        system,
        ["capacity.items_per_second"],
        admin.StubSettings(capacity=admin.Capacity(items_per_second=1)),
    )
    bulk = npb.BatchSendMessagesRequest(
        shop_id="s1",
        messages=[
            npb.Message(
                idempotency_key=f"b{i}",
                member_id="m00000005",
                channel=npb.MESSAGE_CHANNEL_IN_APP,
                template_id="t",
            )
            for i in range(5000)
        ],
    )
    assert await code_of(stubs.notify.BatchSendMessages(bulk)) is grpc.StatusCode.OK
    await _set(
        stubs,
        system,
        ["faults.error_rate"],
        admin.StubSettings(faults=admin.Faults(error_rate=0.0)),
    )
    assert await code_of(stubs.notify.BatchSendMessages(bulk)) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        await code_of(
            stubs.admin.UpdateStubSettings(
                admin.UpdateStubSettingsRequest(
                    settings=admin.StubSettings(
                        system=system, capacity=admin.Capacity(items_per_second=float("nan"))
                    ),
                    update_mask=FieldMask(paths=["capacity.items_per_second"]),
                )
            )
        )
        is grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_instance_pages_of_a_whole_shop_hold_its_members_only(stubs: StubClients) -> None:
    """The stand-in pages by key from an index (issue 25: it sorted the whole
    book on every page): a shop's listing is every instance of its members,
    each once, and nothing of another shop."""
    granted: dict[str, set[str]] = {"s7": set(), "s8": set()}
    for shop, member in (("s7", "m00000001"), ("s8", "m00000001"), ("s7", "m00000002")):
        reply = await stubs.benefit.BatchGrantBenefits(
            bpb.BatchGrantBenefitsRequest(
                shop_id=shop,
                items=[
                    bpb.GrantItem(
                        idempotency_key=f"{member}-{i}",
                        member_id=member,
                        template_id="gift-mug",
                        quantity=1,
                    )
                    for i in range(4)
                ],
            )
        )
        granted[shop] |= {i.instance_id for r in reply.results for i in r.instances}
    seen: list[str] = []
    request = bpb.ListBenefitInstancesRequest(shop_id="s7", page_size=3)
    for _ in range(10):  # bounded: 8 instances in pages of 3
        page = await stubs.benefit.ListBenefitInstances(request)
        seen += [i.instance_id for i in page.instances]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert sorted(seen) == seen and set(seen) == granted["s7"] and len(seen) == 8
