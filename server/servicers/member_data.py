"""The member-data calls of ScenarioAggregationService (thin: proto <->
domain): members' events in, and a member erased."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from custops.scenario.v1 import scenario_pb2 as pb
from domain.errors import FieldViolation, require
from domain.member_events import (
    MAX_EVENTS,
    EventResult,
    EventType,
    MemberEvent,
    PaidOrder,
    Refund,
)
from server.servicers.requests import id_violations, request_key, shop_id_violations
from server.usecases.member_data import MemberDataUseCases

_TYPES = {
    pb.MEMBER_EVENT_TYPE_ORDER_PAID: EventType.ORDER_PAID,
    pb.MEMBER_EVENT_TYPE_ORDER_REFUNDED: EventType.ORDER_REFUNDED,
    pb.MEMBER_EVENT_TYPE_CARTED: EventType.CARTED,
    pb.MEMBER_EVENT_TYPE_BROWSED: EventType.BROWSED,
    pb.MEMBER_EVENT_TYPE_FOLLOWED: EventType.FOLLOWED,
    pb.MEMBER_EVENT_TYPE_REGISTERED: EventType.REGISTERED,
    pb.MEMBER_EVENT_TYPE_LEVEL_CHANGED: EventType.LEVEL_CHANGED,
}
_RESULTS = {
    EventResult.ACCEPTED: pb.MEMBER_EVENT_RESULT_ACCEPTED,
    EventResult.DUPLICATE: pb.MEMBER_EVENT_RESULT_DUPLICATE,
    EventResult.REFUSED: pb.MEMBER_EVENT_RESULT_REFUSED,
}


class MemberDataCalls:
    _member_data: MemberDataUseCases

    async def RecordMemberEvents(
        self, request: pb.RecordMemberEventsRequest, context: Any
    ) -> pb.RecordMemberEventsResponse:
        violations = shop_id_violations(request.shop_id)
        if not 1 <= len(request.events) <= MAX_EVENTS:
            violations.append(FieldViolation("events", f"1-{MAX_EVENTS} events"))
        require(violations)
        results = await self._member_data.record(
            request.shop_id, [_event(e) for e in request.events]
        )
        return pb.RecordMemberEventsResponse(
            results=[
                pb.MemberEventOutcome(
                    event_id=r.event_id,
                    result=_RESULTS[r.result],
                    reason=r.reason,
                    message=r.message,
                )
                for r in results
            ]
        )

    async def EraseMember(
        self, request: pb.EraseMemberRequest, context: Any
    ) -> pb.EraseMemberResponse:
        require(shop_id_violations(request.shop_id) + id_violations("member_id", request.member_id))
        erased = await self._member_data.erase(
            request.shop_id, request.member_id, request_key("EraseMember", request)
        )
        return pb.EraseMemberResponse(erased=erased)


def _event(e: pb.MemberEvent) -> MemberEvent:
    occur = None
    if e.HasField("occur_time") and 0 <= e.occur_time.nanos < 10**9:
        try:
            occur = e.occur_time.ToDatetime(UTC)
        except (ValueError, OverflowError):
            occur = None
    return MemberEvent(
        event_id=e.event_id,
        member_id=e.member_id,
        type=_TYPES.get(e.type),
        occur_time=occur,
        order=PaidOrder(
            e.order.order_id, e.order.store_id, e.order.amount_minor, e.order.currency_code
        )
        if e.HasField("order")
        else None,
        refund=Refund(e.refund.order_id, e.refund.amount_minor) if e.HasField("refund") else None,
        item_id=e.item_id,
        level=e.level,
    )
