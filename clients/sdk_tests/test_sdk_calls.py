"""The SDK's calls against a scripted server: retries as the contract
declares them, RetryInfo honoured, errors by family, pagers, old names."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from custops.client import (
    AsyncCustopsClient,
    ClientError,
    CustopsClient,
    CustopsError,
    InvalidArgumentError,
    RetryPolicy,
    ServerError,
    UnavailableError,
    reasons,
)
from custops.plan.v1 import plan_pb2 as pb
from sdk_tests.scripted import PAGE, PLANS, Scripted, refusal

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)
Served = tuple[Scripted, str]


async def test_a_read_failing_unavailable_twice_then_answering_succeeds(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 2
    async with AsyncCustopsClient(target, retry=FAST) as client:
        reply = await client.plans.get_plan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert reply.plan.plan_id == "p"
    assert len(servicer.calls["GetPlan"]) == 3


async def test_the_delay_in_retry_info_is_waited(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 1
    servicer.failure = refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED, reasons.CALLER_RATE_EXCEEDED, retry_after=0.4
    )
    async with AsyncCustopsClient(target, retry=FAST) as client:
        reply = await client.plans.get_plan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert reply.plan.plan_id == "p"
    # FAST would have retried within 0.01 s: the server's 0.4 s was waited.
    times = servicer.times["GetPlan"]
    assert len(times) == 2 and times[1] - times[0] >= 0.4


async def test_a_code_the_server_gave_no_retry_info_for_is_not_retried(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 1
    servicer.failure = refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, reasons.RESOURCE_EXHAUSTED)
    async with AsyncCustopsClient(target, retry=FAST) as client:
        with pytest.raises(CustopsError):
            await client.plans.get_plan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert len(servicer.calls["GetPlan"]) == 1


async def test_a_write_is_retried_under_the_request_id_the_sdk_filled_in(
    scripted: Served,
) -> None:
    servicer, target = scripted
    servicer.failures = 2
    request = pb.CreatePlanRequest(shop_id="s", plan=pb.Plan(display_name="x"))
    async with AsyncCustopsClient(target, retry=FAST) as client:
        await client.plans.create_plan(request)
    ids = [r.request_id for r in servicer.calls["CreatePlan"]]  # type: ignore[attr-defined]
    assert len(ids) == 3 and set(ids) == {request.request_id} and request.request_id


async def test_a_write_without_request_id_and_filling_turned_off_is_not_retried(
    scripted: Served,
) -> None:
    servicer, target = scripted
    servicer.failures = 2
    request = pb.CreatePlanRequest(shop_id="s", plan=pb.Plan(display_name="x"))
    async with AsyncCustopsClient(target, retry=FAST) as client:
        with pytest.raises(UnavailableError):
            await client.plans.create_plan(request, fill_request_id=False)
    assert len(servicer.calls["CreatePlan"]) == 1 and request.request_id == ""
    # The same, turned off for the whole client.
    async with AsyncCustopsClient(target, retry=FAST, fill_request_ids=False) as client:
        with pytest.raises(UnavailableError):
            await client.plans.create_plan(request)
    assert len(servicer.calls["CreatePlan"]) == 2


async def test_retries_stop_at_the_attempt_limit(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 100
    async with AsyncCustopsClient(target, retry=FAST) as client:
        with pytest.raises(UnavailableError) as raised:
            await client.plans.get_plan(pb.GetPlanRequest(shop_id="s", plan_id="p"))
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert isinstance(raised.value, ServerError)
    assert len(servicer.calls["GetPlan"]) == 4


async def test_errors_come_by_family_with_reason_and_field_violations(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 1
    servicer.failure = refusal(
        grpc.StatusCode.INVALID_ARGUMENT,
        reasons.INVALID_ARGUMENT,
        violations=(("plan.display_name", "required"),),
    )

    def call() -> CustopsError:
        with CustopsClient(target, retry=FAST) as client:
            try:
                client.plans.get_plan(pb.GetPlanRequest(shop_id="s"))
            except CustopsError as exc:
                return exc
        raise AssertionError("GetPlan should fail")

    error = await asyncio.to_thread(call)
    assert isinstance(error, InvalidArgumentError) and isinstance(error, ClientError)
    assert error.reason == reasons.INVALID_ARGUMENT and error.request_id == "rid-1"
    assert [(v.field, v.description) for v in error.field_violations] == [
        ("plan.display_name", "required")
    ]
    assert str(error) == (
        "INVALID_ARGUMENT: invalid_argument here [reason=INVALID_ARGUMENT, request_id=rid-1]\n"
        "  - plan.display_name: required"
    )


def test_the_reason_constants_are_the_contracts_list() -> None:
    from custops.errors.v1 import error_reason_pb2

    names = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert names == reasons.ALL
    assert reasons.REQUEST_ID_REUSED == "REQUEST_ID_REUSED"


async def test_the_pager_walks_every_plan_once_sync_and_async(scripted: Served) -> None:
    servicer, target = scripted
    servicer.failures = 1  # the first page fails once: each page has the call's retries
    request = pb.ListPlansRequest(shop_id="s", page_size=PAGE)
    async with AsyncCustopsClient(target, retry=FAST) as client:
        seen = [plan.plan_id async for plan in client.plans.list_plans(request)]
        pages = [len(page.plans) async for page in client.plans.list_plans(request).pages]
    assert seen == [f"plan-{i:04d}" for i in range(PLANS)]
    assert sum(pages) == PLANS and len(pages) == -(-PLANS // PAGE)
    assert request.page_token == ""  # the caller's request is not changed

    def sync_walk() -> list[str]:
        with CustopsClient(target, retry=FAST) as client:
            return [plan.plan_id for plan in client.plans.list_plans(request)]

    assert await asyncio.to_thread(sync_walk) == seen


async def test_first_page_is_one_call(scripted: Served) -> None:
    servicer, target = scripted
    async with AsyncCustopsClient(target, retry=FAST) as client:
        page = await client.plans.list_plans(pb.ListPlansRequest(page_size=10)).first_page()
    assert len(page.plans) == 10 and page.next_page_token == "10"
    assert len(servicer.calls["ListPlans"]) == 1


async def test_the_first_sdks_camel_case_names_still_work_and_warn(scripted: Served) -> None:
    _, target = scripted
    async with AsyncCustopsClient(target, retry=FAST) as client:
        with pytest.warns(DeprecationWarning, match=r"GetPlan\(\) is deprecated.*get_plan\(\)"):
            reply = await client.plans.GetPlan(pb.GetPlanRequest(plan_id="p"))
        with pytest.warns(DeprecationWarning):
            page = await client.plans.ListPlans(pb.ListPlansRequest(page_size=5))
    assert reply.plan.plan_id == "p" and len(page.plans) == 5
