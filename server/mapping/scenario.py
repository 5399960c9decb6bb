"""Scenario answers on the wire."""

from __future__ import annotations

from custops.scenario.v1 import scenario_pb2 as pb
from server.mapping.plan import timestamp
from server.scenario.records import MemberRecord

RECORD_KINDS = {
    "benefit_granted": pb.RECORD_KIND_BENEFIT_GRANTED,
    "message_sent": pb.RECORD_KIND_MESSAGE_SENT,
    "benefit_used": pb.RECORD_KIND_BENEFIT_USED,
    "benefit_replenished": pb.RECORD_KIND_BENEFIT_REPLENISHED,
    "benefit_recovered": pb.RECORD_KIND_BENEFIT_RECOVERED,
}
_SUMMARIES = {
    "benefit_granted": "Benefit granted",
    "message_sent": "Message sent",
    "benefit_used": "Benefit used",
    "benefit_replenished": "Benefit given back",
    "benefit_recovered": "Benefit taken back",
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
