"""Members' outcomes and plans' effects, domain <-> proto."""

from __future__ import annotations

from collections import Counter

from custops.plan.v1 import plan_pb2 as pb
from domain.effect import Uplift
from domain.outcomes import MemberOutcome, OutcomeKind
from domain.runs import RunKind
from server.downstream.wire import CHANNELS, timestamp
from server.mapping.runs import RUN_KINDS
from server.usecases.outcomes import CountKey
from server.usecases.plan_effect import Group, PlanEffect

OUTCOME_KINDS: dict[int, OutcomeKind] = {
    pb.MEMBER_OUTCOME_KIND_GRANTED: OutcomeKind.GRANTED,
    pb.MEMBER_OUTCOME_KIND_SENT: OutcomeKind.SENT,
    pb.MEMBER_OUTCOME_KIND_DEFERRED: OutcomeKind.DEFERRED,
    pb.MEMBER_OUTCOME_KIND_SKIPPED: OutcomeKind.SKIPPED,
    pb.MEMBER_OUTCOME_KIND_FAILED: OutcomeKind.FAILED,
    pb.MEMBER_OUTCOME_KIND_HELD_OUT: OutcomeKind.HELD_OUT,
}
_KINDS_BACK = {kind: number for number, kind in OUTCOME_KINDS.items()}
_CHANNELS_BACK = {channel: number for number, channel in CHANNELS.items()}


def outcome_to_proto(o: MemberOutcome) -> pb.MemberOutcome:
    msg = pb.MemberOutcome(
        run_id=o.run_id,
        plan_id=o.plan_id,
        member_id=o.member_id,
        outcome=_KINDS_BACK[o.kind],  # type: ignore[arg-type]
        reason=o.reason,
        withheld_channels=[_CHANNELS_BACK[c] for c in o.withheld],
        test=o.test,
        fire_time=timestamp(o.fire_time),
        run_kind=RUN_KINDS[RunKind(o.run_kind)],
        event_id=o.event_id,
    )
    if o.defer_until is not None:
        msg.defer_until.CopyFrom(timestamp(o.defer_until))
    return msg


def counts_to_proto(counts: Counter[CountKey]) -> list[pb.OutcomeCount]:
    return [
        pb.OutcomeCount(
            day=key.day,
            outcome=_KINDS_BACK[key.kind],  # type: ignore[arg-type]
            reason=key.reason,
            members=n,
            test=key.test,
        )
        for key, n in sorted(
            counts.items(), key=lambda kv: (kv[0].day, kv[0].test, kv[0].kind, kv[0].reason)
        )
    ]


def effect_to_proto(found: PlanEffect) -> pb.PlanEffect:
    measurement = found.plan.spec.measurement
    msg = pb.PlanEffect(
        plan_id=found.plan.plan_id,
        holdout_percent=measurement.holdout_percent,
        treatment=_group(found.treatment),
        holdout=_group(found.holdout),
        sales=[
            pb.SalesUplift(currency_code=c, per_member_minor=_uplift(u))
            for c, u in found.sales_uplift
        ],
        daily=[
            pb.DailyConversion(day=day, treatment_converted_members=t, holdout_converted_members=h)
            for day, t, h in found.daily
        ],
    )
    msg.attribution_window.FromTimedelta(measurement.attribution_window)
    if found.conversion is not None:
        msg.conversion.CopyFrom(_uplift(found.conversion))
    return msg


def _group(group: Group) -> pb.EffectGroup:
    return pb.EffectGroup(
        members=group.members,
        converted_members=group.converted,
        conversion_rate=group.rate,
        orders=group.orders,
        sales=[
            pb.GroupSales(
                currency_code=s.currency,
                net_amount_minor=s.net_minor,
                amount_per_member_minor=s.per_member_minor,
            )
            for s in group.sales
        ],
    )


def _uplift(u: Uplift) -> pb.Uplift:
    return pb.Uplift(
        absolute=u.absolute,
        absolute_low=u.absolute_low,
        absolute_high=u.absolute_high,
        relative=u.relative,
        relative_low=u.relative_low,
        relative_high=u.relative_high,
    )
