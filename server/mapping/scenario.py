"""Scenario answers on the wire: records, plan benefits, applicable plans."""

from __future__ import annotations

from datetime import datetime

from custops.scenario.v1 import scenario_pb2 as pb
from domain.applying import ApplyingPlan
from domain.downstream_ports import TemplateValue
from domain.held_benefits import BenefitState, HeldBenefit
from domain.records import MemberRecord, RecordKind
from server.downstream.wire import BENEFIT_KINDS, timestamp
from server.mapping.plan import benefit_kind_to_proto, business_product_to_proto

RECORD_KINDS = {
    RecordKind.BENEFIT_GRANTED: pb.RECORD_KIND_BENEFIT_GRANTED,
    RecordKind.MESSAGE_SENT: pb.RECORD_KIND_MESSAGE_SENT,
    RecordKind.BENEFIT_USED: pb.RECORD_KIND_BENEFIT_USED,
    RecordKind.BENEFIT_REPLENISHED: pb.RECORD_KIND_BENEFIT_REPLENISHED,
    RecordKind.BENEFIT_RECOVERED: pb.RECORD_KIND_BENEFIT_RECOVERED,
}
BENEFIT_STATUSES = {
    BenefitState.UNUSED: pb.MEMBER_BENEFIT_STATUS_UNUSED,
    BenefitState.USED: pb.MEMBER_BENEFIT_STATUS_USED,
    BenefitState.EXPIRED: pb.MEMBER_BENEFIT_STATUS_EXPIRED,
    BenefitState.RECOVERED: pb.MEMBER_BENEFIT_STATUS_RECOVERED,
}
_KIND_OF_VALUE = {kind.value: wire for wire, kind in BENEFIT_KINDS.items()}
_SUMMARIES = {
    RecordKind.BENEFIT_GRANTED: "Benefit granted",
    RecordKind.MESSAGE_SENT: "Message sent",
    RecordKind.BENEFIT_USED: "Benefit used",
    RecordKind.BENEFIT_REPLENISHED: "Benefit given back",
    RecordKind.BENEFIT_RECOVERED: "Benefit taken back",
}


def record_to_proto(record: MemberRecord) -> pb.MemberRecord:
    what = record.template_id or str(record.detail.get("template_id", ""))
    summary = _SUMMARIES.get(record.kind, record.kind)
    return pb.MemberRecord(
        record_id=record.record_id,
        member_id=record.member_id,
        plan_id=record.plan_id,
        run_id=record.run_id,
        kind=RECORD_KINDS.get(record.kind, pb.RECORD_KIND_UNSPECIFIED),
        benefit_instance_id=record.instance_id,
        message_id=str(record.detail.get("message_id", "")),
        order_id=str(record.detail.get("order_id", "")),
        create_time=timestamp(record.occur_time),
        summary=f"{summary}: {what}" if what else summary,
    )


def benefit_to_proto(held: HeldBenefit, now: datetime) -> pb.MemberBenefit:
    out = pb.MemberBenefit(
        benefit_instance_id=held.instance_id,
        plan_id=held.plan_id,
        run_id=held.run_id,
        template_id=held.template_id,
        kind=_KIND_OF_VALUE.get(held.kind, 0),  # type: ignore[arg-type]
        display_name=held.display_name,
        quantity=held.quantity,
        status=BENEFIT_STATUSES[held.status(now)],
        grant_time=timestamp(held.grant_time),
        order_id=held.order_id,
    )
    for name in ("valid_from", "valid_until", "use_time"):
        value = getattr(held, name)
        if value is not None:
            getattr(out, name).CopyFrom(timestamp(value))
    return out


def applying_plan_to_proto(applying: ApplyingPlan) -> pb.ApplicablePlan:
    plan = applying.plan
    out = pb.ApplicablePlan(
        plan_id=plan.plan_id,
        display_name=plan.spec.display_name,
        product_id=plan.spec.product_id,
        business_product=business_product_to_proto(plan.spec.product_id),  # type: ignore[arg-type]
        headline=applying.headline,
        effects=[effect_to_proto(e) for e in applying.effects],
    )
    if applying.window_start is not None:
        out.window_start_time.CopyFrom(timestamp(applying.window_start))
    if applying.window_end is not None:
        out.window_end_time.CopyFrom(timestamp(applying.window_end))
    return out


def effect_to_proto(value: TemplateValue) -> pb.PlanEffect:
    return pb.PlanEffect(
        kind=benefit_kind_to_proto(value.kind),  # type: ignore[arg-type]
        basis_points=value.basis_points,
        amount=value.amount,
        description=value.description or value.display_name,
    )
