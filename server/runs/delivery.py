"""The job kind that runs a plan for one fire time: page the audience, decide
per member (frequency, budget, quiet hours), grant and send in batches
through the downstream ports (throttled by their adapters), record what
happened."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from domain import outcomes, runs, shop_policy
from domain.audience import Rule, listed_members
from domain.downstream_ports import (
    AudiencePages,
    AudienceQuery,
    BenefitGranter,
    Grant,
    Message,
    MessageSender,
)
from domain.plan import EFFECT_KINDS, GrantBenefits, MessageChannel, Plan, SendMessage
from domain.plan_calendar import PlanCalendar
from domain.plan_codec import plan_from_dict, plan_to_dict
from domain.records import RecordKind
from domain.runs import Run
from server.downstream.errors import CallFailed
from server.persistence.member_decisions import Limits
from server.persistence.operation_records import Record
from server.persistence.run_store import RunStore
from server.tasks.kinds import Item, ItemResult, Outcome, Page
from server.tasks.worker import fault_point

NAME = "plan_delivery"
SHARDS = 4
# Grants go out in calls of at most this many items, each through the bucket:
# a batch of members with several benefits each is several calls.
GRANT_CHUNK = 500


# The cursor of the one page of a precise audience's members the audience
# system does not know: each is skipped (UNKNOWN_MEMBER), on record.
UNKNOWN = "unknown"
# The cursor of a test run's one page: its named test members.
TEST_SHARD = "test"
# The cursor of an event run's one page: the members whose waits came due,
# each with the event that started the wait (server/usecases/trigger_sweep.py).
EVENT_SHARD = "events"
SKIPPED, FAILED = outcomes.OutcomeKind.SKIPPED.value, outcomes.OutcomeKind.FAILED.value
BENEFIT_GRANTED = RecordKind.BENEFIT_GRANTED


def shard_cursors(shards: int, listed: bool = False) -> list[str]:
    """A cursor is "shard/shards/page token" of the audience system's paging;
    a plan that lists its members has one more shard, of those unknown."""
    return [f"{i}/{shards}/" for i in range(shards)] + ([UNKNOWN] if listed else [])


def payload_of(run: Run, plan: Plan) -> dict[str, Any]:
    """What a delivery job carries: the run, and the plan as it was when the
    run started."""
    rule = runs.run_audience(plan)
    return {
        "run_id": run.run_id,
        "shop_id": run.shop_id,
        "plan_id": run.plan_id,
        "trigger": run.trigger.value,
        "fire_time": run.fire_time.isoformat(),
        "plan": plan_to_dict(plan),
        "shards": SHARDS,
        "listed": rule is not None and listed_members(rule) is not None,
    }


def run_of(payload: dict[str, Any]) -> Run:
    return Run(
        run_id=payload["run_id"],
        shop_id=payload["shop_id"],
        plan_id=payload["plan_id"],
        kind=runs.RunKind.DELIVERY,
        trigger=runs.RunTrigger(payload["trigger"]),
        fire_time=datetime.fromisoformat(payload["fire_time"]),
        create_time=datetime.fromisoformat(payload["fire_time"]),
    )


class Delivery:
    name = NAME
    bucket: str | None = None  # its ports throttle each downstream call
    # Members per batch, each batch one transaction of decisions and one of
    # records: 1,000 rather than 500 halves what a run spends per batch on
    # the database round trips (100,000 members: 0.41 -> 0.47 of the
    # stand-in's ceiling, platform 44 -> 38 µs per member).
    batch_size = 1000

    def __init__(
        self,
        store: RunStore,
        audience: AudiencePages,
        benefits: BenefitGranter,
        messages: MessageSender,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.audience = audience
        self.benefits = benefits
        self.messages = messages
        self.now = now
        self._plans: dict[str, Plan] = {}

    def split(self, payload: dict[str, Any]) -> list[str]:
        if payload.get("test_members"):
            return [TEST_SHARD]
        if payload.get("event_members"):
            return [f"{EVENT_SHARD}/0"]
        return shard_cursors(int(payload.get("shards", SHARDS)), bool(payload.get("listed")))

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        plan = self._plan(payload)
        rule = runs.run_audience(plan)
        if cursor == UNKNOWN:
            return await self._unknown(payload["shop_id"], rule)
        if cursor == TEST_SHARD:
            return Page([Item(m) for m in payload["test_members"]], None)
        if cursor.startswith(f"{EVENT_SHARD}/"):
            return await self._due(payload, plan, rule, int(cursor.split("/", 1)[1]), limit)
        index, shards, token = cursor.split("/", 2)
        # A page may come back shorter than asked (the audience system's
        # burst caps a call's size): a batch is read in as many as it takes.
        query = AudienceQuery(
            shop_id=payload["shop_id"],
            rule=rule,
            as_of=datetime.fromisoformat(payload["fire_time"]),
            time_zone=plan.spec.time_zone,
            shard_index=int(index),
            shard_count=int(shards),
            page_size=limit,
        )
        members: list[Item] = []
        following: str | None = token
        while following is not None and len(members) < limit:
            asked = replace(query, page_size=limit - len(members), page_token=following)
            page = await self.audience.page(asked)
            members += [Item(m) for m in page.member_ids]
            following = page.next_token or None
        return Page(members, f"{index}/{shards}/{following}" if following else None)

    async def _due(
        self, payload: dict[str, Any], plan: Plan, rule: Rule | None, start: int, limit: int
    ) -> Page:
        """The members whose waits came due, each with its event, from
        `start` on; those the plan's audience does not take now are skipped
        (NOT_IN_AUDIENCE): the audience is asked when the wait is over, not
        when the event came."""
        listed = payload["event_members"]
        end = min(start + limit, len(listed))
        waited = {m: {"event_id": e} for m, e in listed[start:end]}
        if rule is not None:
            taken = await self.audience.matching(
                payload["shop_id"], list(waited), rule, self.now(), plan.spec.time_zone
            )
            for member, data in waited.items():
                if member not in taken:
                    data["skip"] = runs.Skip.NOT_IN_AUDIENCE.value
        following = f"{EVENT_SHARD}/{end}" if end < len(listed) else None
        return Page([Item(m, data) for m, data in waited.items()], following)

    async def _unknown(self, shop_id: str, rule: Rule | None) -> Page:
        """The listed members the audience system does not know, as one page."""
        listed = list(listed_members(rule) or ()) if rule is not None else []
        if not listed:
            return Page([], None)
        unknown = await self.audience.unknown(shop_id, listed)
        skip = {"skip": runs.Skip.UNKNOWN_MEMBER.value}
        return Page([Item(m, dict(skip)) for m in dict.fromkeys(unknown)], None)

    async def _opted_out(
        self, run: Run, items: list[Item], channels: tuple[MessageChannel, ...]
    ) -> dict[str, frozenset[MessageChannel]]:
        """The channels each member opted out of, as the audience system says,
        for a plan that messages (members met before are not asked again)."""
        members = [i.key for i in items if not i.data.get("messages_only")]
        if not channels or not members:
            return {}
        return await self.audience.opted_out(run.shop_id, members)

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        skipped = [i for i in items if i.data.get("skip")]
        if skipped:
            for reason in {str(i.data["skip"]) for i in skipped}:
                keys = [i.key for i in skipped if i.data["skip"] == reason]
                await self.store.skip(run_of(payload), keys, reason)
            done = [
                ItemResult(i.key, Outcome.DONE, tally=(SKIPPED, str(i.data["skip"])))
                for i in skipped
            ]
            rest = [i for i in items if not i.data.get("skip")]
            return done + (await self.execute(payload, rest) if rest else [])
        plan, run = self._plan(payload), run_of(payload)
        now = self.now()
        limits_ = plan.spec.limits
        quiet_end = (
            runs.in_quiet_hours(limits_.quiet_hours, plan.spec.time_zone, now)
            if runs.sends_messages(plan)
            else None
        )
        drop = quiet_end is not None and runs.drops_in_quiet_hours(limits_.quiet_hours)
        channels = shop_policy.channels(plan)
        test = bool(payload.get("test_members"))  # neither frequency, budget nor caps
        defer = quiet_end is not None and not drop
        decided = await self.store.decide(
            run,
            [i.key for i in items],
            Limits(
                window=runs.frequency_window(plan, run.fire_time),
                max_times=0 if test else limits_.frequency.max_times,
                units=runs.units_per_member(plan),
                budget=0 if test else limits_.total_budget,
                silent=drop,
                capped=not test,
                holdout_percent=0.0 if test else plan.spec.measurement.holdout_percent,
                defer_until=quiet_end if defer else None,
                channels=channels,
                opted_out=await self._opted_out(run, items, channels) if not drop else {},
                zone=plan.spec.time_zone,
            ),
        )
        problems: dict[str, tuple[str, bool]] = {}  # member -> (reason, retryable)
        records: list[Record] = []
        # A batch's members share a handful of outcomes ("act" for most): each
        # is read once here, not once per member.
        acting = {o: outcomes.acts(o) for o in set(decided.values())}
        granting = [
            i.key for i in items if acting[decided[i.key]] and not i.data.get("messages_only")
        ]
        await self._grant(plan, run, granting, records, problems)
        # Who gets messages, and on which channels not (consent, contact limits).
        withheld_on = {o: outcomes.withheld(o) for o, acts in acting.items() if acts}
        messaging = {
            i.key: withheld
            for i in items
            if (withheld := withheld_on.get(decided[i.key])) is not None
        }
        await self._send(plan, run, {} if defer else messaging, records, problems)
        # Refused for good with nothing done for them: their slot and budget
        # units go back (a timeout is no refusal: the grant may have landed).
        acted = {r.member_id for r in records}
        released = {
            m: reason
            for m, (reason, retryable) in problems.items()
            if not retryable and m not in acted
        }
        # Refused for good, whatever was granted: the member was not messaged,
        # so the shop's contact slots it took count for nothing.
        uncontacted = [m for m, (_, retryable) in problems.items() if not retryable]
        await self.store.record(run, records, now, released=released, uncontacted=uncontacted)
        out = []
        grants = runs.grants(plan)
        tallies = {o: _tally(outcomes.read(o, grants)) for o in acting}
        for item in items:
            problem = problems.get(item.key)
            if problem is not None:
                reason, retryable = problem
                if retryable:
                    out.append(ItemResult(item.key, Outcome.RETRY, reason))
                else:
                    out.append(ItemResult(item.key, Outcome.FAILED, reason, tally=(FAILED, reason)))
            elif defer and item.key in messaging:
                out.append(
                    ItemResult(
                        item.key,
                        Outcome.DEFER,
                        runs.Skip.QUIET_HOURS.value,
                        not_before=quiet_end,
                        data={"messages_only": True},
                    )
                )
            else:
                out.append(ItemResult(item.key, Outcome.DONE, tally=tallies[decided[item.key]]))
        return out

    async def _grant(
        self,
        plan: Plan,
        run: Run,
        members: list[str],
        records: list[Record],
        problems: dict[str, tuple[str, bool]],
    ) -> None:
        # Effects (double points, a discount) hold for the run's effect window:
        # the benefit platform is told, so the instances are valid then only.
        window = PlanCalendar.of(plan, run.fire_time).effect_window_of(run.fire_time)
        valid_from = window.start if window is not None else None
        valid_until = window.end if window is not None and window.end else None
        source = runs.grant_source(plan.plan_id)
        # What each of the plan's benefits sends, worked out once per batch.
        sent = [
            (a, b, benefit.template_id, benefit.quantity)
            + ((valid_from, valid_until) if benefit.kind in EFFECT_KINDS else (None, None))
            for a, action in enumerate(plan.spec.actions)
            if isinstance(action, GrantBenefits)
            for b, benefit in enumerate(action.benefits)
        ]
        key = partial(runs.grant_key, plan.plan_id, run.run_id)
        # By position, in Grant's field order: one per member and benefit.
        grants = [
            Grant(key(m, a, b), m, template, quantity, source, start, end)
            for m in members
            for a, b, template, quantity, start, end in sent
        ]
        chunks = [grants[i : i + GRANT_CHUNK] for i in range(0, len(grants), GRANT_CHUNK)]
        for number, chunk in enumerate(chunks):
            if number:  # crash tests: some of the batch granted, none of it recorded
                fault_point("mid_batch")
            await self._grant_chunk(run, chunk, records, problems)
        # Crash tests: every grant acknowledged, none recorded.
        fault_point("after_grant")

    async def _grant_chunk(
        self,
        run: Run,
        grants: list[Grant],
        records: list[Record],
        problems: dict[str, tuple[str, bool]],
    ) -> None:
        try:
            answers = await self.benefits.grant(run.shop_id, grants)
        except CallFailed as failed:
            for g in grants:
                problems.setdefault(g.member_id, (failed.reason, failed.retryable))
            return
        # One result per item, in order (the contract): a short answer fails
        # the batch, to be tried again whole, rather than pass members silently.
        for g, granted in zip(grants, answers, strict=True):
            if (refusal := granted.refusal) is not None:
                problems.setdefault(g.member_id, (refusal.reason, refusal.retryable))
                continue
            for instance in granted.instances:
                # The record id starts with the grant's key: no detail needed.
                # By position, in Record's field order.
                records.append(
                    Record(
                        f"{g.key}#{instance.instance_id}",
                        g.member_id,
                        BENEFIT_GRANTED,
                        instance.instance_id,
                        instance.template_id,
                        None,
                        instance,
                    )
                )

    async def _send(
        self,
        plan: Plan,
        run: Run,
        members: dict[str, frozenset[MessageChannel]],
        records: list[Record],
        problems: dict[str, tuple[str, bool]],
    ) -> None:
        """Each member's messages, but on the channels withheld from it."""
        messages = [
            Message(
                key=runs.message_key(plan.plan_id, run.run_id, m, a),
                member_id=m,
                channel=action.channel,
                template_id=action.template_id,
                params=action.params,
                source=runs.grant_source(plan.plan_id),
            )
            for m, withheld in members.items()
            if m not in problems
            for a, action in enumerate(plan.spec.actions)
            if isinstance(action, SendMessage) and action.channel not in withheld
        ]
        if not messages:
            return
        try:
            answers = await self.messages.send(run.shop_id, messages)
        except CallFailed as failed:
            for msg in messages:
                problems.setdefault(msg.member_id, (failed.reason, failed.retryable))
            return
        for msg, sent in zip(messages, answers, strict=True):
            if (refusal := sent.refusal) is not None:
                problems.setdefault(msg.member_id, (refusal.reason, refusal.retryable))
                continue
            records.append(
                Record(
                    msg.key,
                    msg.member_id,
                    RecordKind.MESSAGE_SENT,
                    detail={"message_id": sent.message_id, "template_id": msg.template_id},
                )
            )

    def _plan(self, payload: dict[str, Any]) -> Plan:
        """The plan as it was when the run started (kept in the payload)."""
        run_id = payload["run_id"]
        plan = self._plans.get(run_id)
        if plan is None:
            plan = plan_from_dict(payload["plan"])
            if len(self._plans) > 100:
                self._plans.clear()
            self._plans[run_id] = plan
        return plan


def _tally(reading: outcomes.Reading) -> tuple[str, str]:
    """What an outcome counts as in the job's outcome counters."""
    return reading.kind.value, reading.reason
