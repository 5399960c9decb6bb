"""custops.scenario.v1.ScenarioAggregationService: the shoppers' side.

Thin: it checks the request, names every bad field, and maps the use
cases' answers to the wire.
"""

from __future__ import annotations

import re
from typing import TypeAlias

import grpc

from custops.plan.v1 import plan_pb2
from custops.scenario.v1 import scenario_pb2 as pb
from custops.scenario.v1 import scenario_pb2_grpc
from domain.applying import ApplyingPlan
from domain.errors import FieldViolation, require
from domain.plan import FrontOffice
from server.downstream.wire import timestamp
from server.kept import KeptById
from server.mapping.scenario import (
    BENEFIT_STATUSES,
    RECORD_KINDS,
    applying_plan_to_proto,
    benefit_to_proto,
    record_to_proto,
)
from server.servicers.member_data import MemberDataCalls
from server.servicers.requests import (
    MEMBER_ID,
    decode_page_token,
    effective_page_size,
    id_violations,
    page_size_violations,
    plan_id_violations,
    request_id_violations,
    request_key,
    shop_id_violations,
    time_id_reader,
    time_id_token,
)
from server.usecases.member_data import MemberDataUseCases
from server.usecases.scenario import ScenarioUseCases

Context: TypeAlias = grpc.aio.ServicerContext
_KIND_NAMES = {wire: name for name, wire in RECORD_KINDS.items()}
_STATUS_NAMES = {wire: name for name, wire in BENEFIT_STATUSES.items()}
_FRONT_OFFICES = {
    plan_pb2.FRONT_OFFICE_MICRO_MALL: FrontOffice.MICRO_MALL,
    plan_pb2.FRONT_OFFICE_RETAIL: FrontOffice.RETAIL,
    plan_pb2.FRONT_OFFICE_RETAIL_CHAIN: FrontOffice.RETAIL_CHAIN,
}
# Kept from the caller's deadline to answer it in time.
_MARGIN = 0.05


class ScenarioAggregationService(
    MemberDataCalls, scenario_pb2_grpc.ScenarioAggregationServiceServicer
):
    def __init__(self, scenario: ScenarioUseCases, member_data: MemberDataUseCases) -> None:
        self._scenario = scenario
        self._member_data = member_data
        # A plan's answer is one object for every page while it holds (the
        # use cases keep it): its message is built once.
        self._plan_message: KeptById[ApplyingPlan, pb.ApplicablePlan] = KeptById(
            applying_plan_to_proto
        )

    async def GetMemberView(
        self, request: pb.GetMemberViewRequest, context: Context
    ) -> pb.GetMemberViewResponse:
        violations = _member_violations(request)
        office = _FRONT_OFFICES.get(request.front_office)
        if office is None:
            violations.append(
                FieldViolation(
                    "front_office", "required: MICRO_MALL, RETAIL or RETAIL_CHAIN (the page asking)"
                )
            )
        violations += _limit_violations("record_limit", request.record_limit)
        violations += _limit_violations("benefit_limit", request.benefit_limit)
        require(violations)
        assert office is not None
        view = await self._scenario.view(
            request.shop_id,
            request.member_id,
            office,
            min(request.record_limit or 10, 50),
            min(request.benefit_limit or 20, 100),
        )
        return pb.GetMemberViewResponse(
            plans=[self._plan_message(p) for p in view.plans],
            upcoming_plans=[self._plan_message(p) for p in view.upcoming],
            unused_benefits=[benefit_to_proto(b, view.as_of) for b in view.unused],
            recent_records=[record_to_proto(r) for r in view.records],
            as_of_time=timestamp(view.as_of),
        )

    async def GetCheckoutBenefits(
        self, request: pb.GetCheckoutBenefitsRequest, context: Context
    ) -> pb.GetCheckoutBenefitsResponse:
        violations = _member_violations(request) + id_violations("store_id", request.store_id)
        if request.order_amount < 0:
            violations.append(FieldViolation("order_amount", "must be >= 0 (minor currency units)"))
        require(violations)
        checkout = await self._scenario.checkout(
            request.shop_id, request.member_id, request.order_amount
        )
        plans = [self._plan_message(p) for p in checkout.plans]
        return pb.GetCheckoutBenefitsResponse(
            effects=[e for p in plans for e in p.effects],
            plans=plans,
            usable_benefits=[benefit_to_proto(b, checkout.as_of) for b in checkout.usable],
            as_of_time=timestamp(checkout.as_of),
        )

    async def ListMemberBenefits(
        self, request: pb.ListMemberBenefitsRequest, context: Context
    ) -> pb.ListMemberBenefitsResponse:
        violations = _member_violations(request) + page_size_violations(request.page_size)
        if request.status and request.status not in _STATUS_NAMES:
            violations.append(
                FieldViolation("status", f"a MemberBenefitStatus, got {request.status}")
            )
        if request.plan_id:
            violations += plan_id_violations(request.plan_id)
        require(violations)
        status = _STATUS_NAMES.get(request.status, "")
        scope = f"benefits|{request.shop_id}|{request.member_id}|{status}|{request.plan_id}"
        before = decode_page_token(request.page_token, scope, _benefit_cursor)
        size = effective_page_size(request.page_size)
        found, now = await self._scenario.benefits(
            request.shop_id, request.member_id, status, request.plan_id, before, size + 1
        )
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = time_id_token(last.grant_time, last.instance_id, scope)
        return pb.ListMemberBenefitsResponse(
            benefits=[benefit_to_proto(b, now) for b in found[:size]], next_page_token=token
        )

    async def ListMemberRecords(
        self, request: pb.ListMemberRecordsRequest, context: Context
    ) -> pb.ListMemberRecordsResponse:
        violations = _member_violations(request) + page_size_violations(request.page_size)
        kinds = []
        for i, kind in enumerate(request.kinds):
            if kind not in _KIND_NAMES:
                violations.append(
                    FieldViolation(
                        f"kinds[{i}]", f"a RecordKind other than UNSPECIFIED, got {kind}"
                    )
                )
            else:
                kinds.append(_KIND_NAMES[kind])
        require(violations)
        kinds = sorted(set(kinds))
        scope = f"records|{request.shop_id}|{request.member_id}|{','.join(kinds)}"
        before = decode_page_token(request.page_token, scope, _record_cursor)
        size = effective_page_size(request.page_size)
        found = await self._scenario.records(
            request.shop_id, request.member_id, kinds, before, size + 1
        )
        token = ""
        if len(found) > size:
            last = found[size - 1]
            token = time_id_token(last.occur_time, last.record_id, scope)
        return pb.ListMemberRecordsResponse(
            records=[record_to_proto(r) for r in found[:size]], next_page_token=token
        )

    async def ReportBenefitUsed(
        self, request: pb.ReportBenefitUsedRequest, context: Context
    ) -> pb.ReportBenefitUsedResponse:
        violations = _change_violations(request)
        if request.store_id:
            violations += id_violations("store_id", request.store_id)
        require(violations)
        held, record = await self._scenario.use(
            request.shop_id,
            request.member_id,
            request.benefit_instance_id,
            request.order_id,
            request.store_id,
            request.request_id,
            _time_left(context),
            request_key("ReportBenefitUsed", request),
        )
        return pb.ReportBenefitUsedResponse(
            benefit=benefit_to_proto(held, record.occur_time), record=record_to_proto(record)
        )

    async def ReplenishBenefit(
        self, request: pb.ReplenishBenefitRequest, context: Context
    ) -> pb.ReplenishBenefitResponse:
        violations = _change_violations(request)
        if len(request.reason) > 200:
            violations.append(FieldViolation("reason", "at most 200 characters"))
        require(violations)
        held, record = await self._scenario.replenish(
            request.shop_id,
            request.member_id,
            request.benefit_instance_id,
            request.order_id,
            request.reason,
            request.request_id,
            _time_left(context),
            request_key("ReplenishBenefit", request),
        )
        return pb.ReplenishBenefitResponse(
            benefit=benefit_to_proto(held, record.occur_time), record=record_to_proto(record)
        )


def _member_violations(
    request: pb.GetMemberViewRequest
    | pb.GetCheckoutBenefitsRequest
    | pb.ListMemberBenefitsRequest
    | pb.ListMemberRecordsRequest
    | pb.ReportBenefitUsedRequest
    | pb.ReplenishBenefitRequest,
) -> list[FieldViolation]:
    return shop_id_violations(request.shop_id) + id_violations("member_id", request.member_id)


def _change_violations(
    request: pb.ReportBenefitUsedRequest | pb.ReplenishBenefitRequest,
) -> list[FieldViolation]:
    return (
        _member_violations(request)
        + id_violations("benefit_instance_id", request.benefit_instance_id)
        + id_violations("order_id", request.order_id)
        + request_id_violations(request.request_id)
    )


def _limit_violations(field: str, value: int) -> list[FieldViolation]:
    if value < 0:
        return [FieldViolation(field, f"must be >= 0 (0 = the default), got {value}")]
    return []


def _time_left(context: Context) -> float | None:
    """Seconds a downstream call may take: the caller's deadline less a margin
    to answer in; None, when the caller set none, for the downstream default."""
    remaining: float | None = context.time_remaining()
    return None if remaining is None else remaining - _MARGIN


# Record ids are idempotency keys (at most 300 characters, the column's width).
_record_cursor = time_id_reader(re.compile(r"^.{1,300}\Z", re.DOTALL))
_benefit_cursor = time_id_reader(MEMBER_ID)
