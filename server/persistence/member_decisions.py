"""What a run decides per member, once: act, act without some messages, or
skip, under the plan's frequency limit and budget and the shop's contact
rules -- and what a member gives back once it failed for good."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, and_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import outcomes, shop_policy
from domain.outcomes import ACT, HELD_OUT
from domain.plan import MessageChannel
from domain.runs import Run, Skip
from server.persistence.shop_policies import SqlShopPolicies
from server.persistence.tables import (
    contact_claims,
    frequency_claims,
    plan_budgets,
    run_counters,
    run_members,
)
from server.persistence.upserts import add_counts, insert_new, insert_new_columns


@dataclass(frozen=True)
class Limits:
    """What `decide` applies to the members a run meets for the first time."""

    window: str  # the frequency window of this run
    max_times: int  # 0: no frequency limit
    units: int  # budget units one member costs
    budget: int  # 0: no budget
    silent: bool = False  # messages dropped (quiet hours, DROP policy)
    # The channels the plan messages on, the channels each member opted out
    # of (the audience system's consent), and the zone the shop's contact
    # windows are counted in.
    channels: tuple[MessageChannel, ...] = ()
    capped: bool = True  # the shop's contact limits apply (not to a test run)
    # The plan's control group (not in a test run): held-out members are
    # given nothing and use none of the limits.
    holdout_percent: float = 0.0
    # Quiet hours with the DEFER policy: messages wait until then.
    defer_until: datetime | None = None
    opted_out: Mapping[str, frozenset[MessageChannel]] = field(default_factory=dict)
    zone: str = "UTC"


# A member's outcome once it failed for good and gave back its slot and units.
RELEASED = outcomes.FAIL


class MemberDecisions:
    """Part of RunStore: the members' outcomes in a run."""

    _engine: AsyncEngine

    async def skip(self, run: Run, members: list[str], reason: str) -> None:
        """Members the run skips before deciding anything (a listed member the
        audience system does not know): on record once each, and counted."""
        async with self._engine.begin() as conn:
            new = await insert_new(
                conn,
                run_members,
                [
                    {"run_id": run.run_id, "member_id": m, "outcome": f"skip:{reason}", "units": 0}
                    for m in members
                ],
                "member_id",
            )
            if new:
                counts = {f"skipped.{reason}": len(new)}
                await add_counts(conn, run_counters, {"run_id": run.run_id}, counts)

    async def decide(self, run: Run, members: list[str], limits: Limits) -> dict[str, str]:
        """Each member's outcome in this run ("act", "act-silent" or
        "skip:REASON"), decided the first time the run meets the member — or
        again, when the member failed for good and was released (`record`).

        A member takes the next frequency slot of its window, then its
        budget units. One skipped (budget, quiet hours) gives the slot back
        in this transaction: raise the budget and the member can still get
        it. Two runs racing for one member's last slot: one wins."""
        async with self._engine.begin() as conn:
            n = len(members)
            new = await insert_new_columns(
                conn,
                run_members,
                {
                    "run_id": (run.run_id,) * n,
                    "member_id": members,
                    "outcome": (ACT,) * n,
                    "units": (0,) * n,
                },
                "member_id",
            )
            fresh = [m for m in members if m in new]
            earlier: dict[str, str] = {}
            if len(fresh) < len(members):
                rows = await conn.execute(
                    select(run_members.c.member_id, run_members.c.outcome).where(
                        run_members.c.run_id == run.run_id,
                        run_members.c.member_id.in_([m for m in members if m not in new]),
                    )
                )
                earlier = {r[0]: r[1] for r in rows}
            again = [m for m, outcome in earlier.items() if outcome.startswith(RELEASED)]
            decided = dict.fromkeys(fresh + again, ACT)
            if limits.holdout_percent > 0:
                for m in decided:
                    if outcomes.held_out(run.plan_id, m, limits.holdout_percent):
                        decided[m] = HELD_OUT
            deciding = [m for m, o in decided.items() if o == ACT]
            skipped: dict[str, str] = {}
            if limits.max_times > 0 and deciding:
                skipped |= await _frequency(conn, run, deciding, limits)
            withheld_for: dict[str, str] = {}  # why a member is not messaged somewhere
            if limits.channels and not limits.silent:
                withheld_for = await _contact(conn, run, deciding, skipped, decided, limits)
            eligible = [m for m in deciding if m not in skipped]
            units: dict[str, int] = {}  # budget units reserved, by member
            if limits.budget > 0 and limits.units > 0 and eligible:
                granted = await _reserve(conn, run, len(eligible), limits)
                for m in eligible[granted:]:
                    skipped[m] = Skip.BUDGET_EXHAUSTED.value
                units = dict.fromkeys(eligible[:granted], limits.units)
            if limits.silent or limits.defer_until is not None:
                for m in deciding:
                    if m in skipped:
                        continue
                    if limits.silent:  # quiet hours drop messages: grants only, if any
                        if limits.units > 0:
                            decided[m] = outcomes.silent(Skip.QUIET_HOURS.value)
                        else:
                            skipped[m] = Skip.QUIET_HOURS.value
                    elif (
                        limits.defer_until is not None and outcomes.withheld(decided[m]) is not None
                    ):
                        decided[m] = outcomes.deferred(limits.defer_until, decided[m])
            for m, reason in skipped.items():
                decided[m] = f"{outcomes.SKIP}{reason}"
            await _unclaim(conn, run, list(skipped))
            changed = [
                {"r": run.run_id, "m": m, "o": o, "u": units.get(m, 0)}
                for m, o in decided.items()
                if o != ACT or units.get(m) or m in again
            ]
            if changed:
                await conn.execute(
                    update(run_members)
                    .where(
                        run_members.c.run_id == bindparam("r"),
                        run_members.c.member_id == bindparam("m"),
                    )
                    .values(outcome=bindparam("o"), units=bindparam("u")),
                    changed,
                )
            # A member acted on without (some of) its messages counts as
            # skipped for why: consent, the contact limit, or quiet hours.
            reasons = [
                outcome.removeprefix(outcomes.SKIP)
                if outcome.startswith(outcomes.SKIP)
                else withheld_for.get(m, Skip.QUIET_HOURS.value)
                for m, outcome in decided.items()
                if outcome != ACT and outcome != HELD_OUT and not outcome.startswith(outcomes.DEFER)
            ]
            counts = {"targeted": len(fresh)}
            counts |= {f"skipped.{r}": n for r, n in Counter(reasons).items()}
            held = sum(1 for o in decided.values() if o == HELD_OUT)
            if held:
                counts["held_out"] = held
            await add_counts(conn, run_counters, {"run_id": run.run_id}, counts)
            return earlier | decided


async def _frequency(
    conn: AsyncConnection, run: Run, members: list[str], limits: Limits
) -> dict[str, str]:
    """Claim the next slot of each member's window; members at the limit,
    or beaten to their last slot by a concurrent run, are skipped."""
    window = {"plan_id": run.plan_id, "window": limits.window}
    full = await _claim_slots(conn, frequency_claims, window, members, limits.max_times, run)
    return dict.fromkeys(full, Skip.FREQUENCY_LIMIT.value)


async def _contact(
    conn: AsyncConnection,
    run: Run,
    deciding: list[str],
    skipped: dict[str, str],
    decided: dict[str, str],
    limits: Limits,
) -> dict[str, str]:
    """The shop's contact rules for members about to be acted on: no
    message on a channel a member opted out of, and none past the
    shop's limit there — slots claimed across plans as frequency slots
    are. Sets their outcomes (messages withheld, or skipped when nothing
    is left to do) and says why, per member withheld from."""
    candidates = [m for m in deciding if m not in skipped]
    everything = set(limits.channels)
    withheld: dict[str, set[MessageChannel]] = {}
    why: dict[str, str] = {}
    for m in candidates:
        out = limits.opted_out.get(m, frozenset()) & everything
        if out:
            withheld[m], why[m] = set(out), Skip.OPTED_OUT.value
    policy = await SqlShopPolicies(conn).get(run.shop_id)
    for channel in limits.channels if limits.capped else ():
        limit = policy.limit(channel)
        if limit is None:
            continue
        wanting = [m for m in candidates if channel not in withheld.get(m, ())]
        key = shop_policy.window_key(limit.window, run.fire_time, limits.zone)
        window = {"shop_id": run.shop_id, "channel": channel.value, "window": key}
        full = await _claim_slots(conn, contact_claims, window, wanting, limit.max_messages, run)
        for m in full:
            withheld.setdefault(m, set()).add(channel)
            why.setdefault(m, Skip.CONTACT_CAP.value)
            if limit.caps_grants:
                skipped[m] = Skip.CONTACT_CAP.value
    for m, channels in withheld.items():
        if m in skipped:
            continue
        if channels < everything:
            decided[m] = outcomes.act_except(channels, why[m])
        elif limits.units > 0:
            decided[m] = outcomes.silent(why[m])  # grants only
        else:
            skipped[m] = why[m]  # nothing left to do for them
    return why


async def give_back_contacts(conn: AsyncConnection, run: Run, members: list[str]) -> None:
    """Give back the contact slots this run claimed for these members."""
    if members:
        await conn.execute(
            delete(contact_claims).where(
                contact_claims.c.run_id == run.run_id,
                contact_claims.c.member_id.in_(members),
            )
        )


async def _unclaim(conn: AsyncConnection, run: Run, members: list[str]) -> None:
    """Give back the frequency and contact slots this run claimed for these members."""
    if members:
        await conn.execute(
            delete(frequency_claims).where(
                frequency_claims.c.plan_id == run.plan_id,
                frequency_claims.c.run_id == run.run_id,
                frequency_claims.c.member_id.in_(members),
            )
        )
        await give_back_contacts(conn, run, members)


async def release(conn: AsyncConnection, run: Run, failed: dict[str, str]) -> None:
    """Members the downstream refused for good (OUT_OF_STOCK, say) with
    nothing granted: their frequency slot and budget units go back, and
    a retry of the member (RetryFailedItems) decides it again."""
    if not failed:
        return
    members = list(failed)
    where = and_(run_members.c.run_id == run.run_id, run_members.c.member_id.in_(members))
    held = int(await conn.scalar(select(func.sum(run_members.c.units)).where(where)) or 0)
    await conn.execute(
        update(run_members)
        .where(run_members.c.run_id == bindparam("r"), run_members.c.member_id == bindparam("m"))
        .values(outcome=bindparam("o"), units=0),
        [{"r": run.run_id, "m": m, "o": f"{RELEASED}{r}"[:32]} for m, r in failed.items()],
    )
    await _unclaim(conn, run, members)
    if held:
        await conn.execute(
            update(plan_budgets)
            .where(plan_budgets.c.shop_id == run.shop_id, plan_budgets.c.plan_id == run.plan_id)
            .values(used=plan_budgets.c.used - held)
        )


async def _reserve(conn: AsyncConnection, run: Run, wanted: int, limits: Limits) -> int:
    """How many of `wanted` members the plan's budget still covers; their
    units are taken from it in this transaction."""
    keys = {"shop_id": run.shop_id, "plan_id": run.plan_id}
    await insert_new(conn, plan_budgets, [{**keys, "used": 0}], "plan_id")
    where = and_(plan_budgets.c.shop_id == run.shop_id, plan_budgets.c.plan_id == run.plan_id)
    # Lock the row first (a no-op write), then read: no lost update.
    await conn.execute(update(plan_budgets).where(where).values(used=plan_budgets.c.used))
    used = int(await conn.scalar(select(plan_budgets.c.used).where(where)) or 0)
    fits = max(0, min(wanted, (limits.budget - used) // limits.units))
    if fits:
        await conn.execute(
            update(plan_budgets).where(where).values(used=plan_budgets.c.used + fits * limits.units)
        )
    return fits


async def _claim_slots(
    conn: AsyncConnection,
    claims: Table,
    window: dict[str, str],
    members: list[str],
    most: int,
    run: Run,
) -> set[str]:
    """Claim each member's next slot in a window of `claims` (frequency or
    contact slots): the n-th is slot n under a unique key, so of runs racing
    for a member's last slot one wins. The members at `most` already, or
    beaten to their slot, are returned."""
    if not members:
        return set()
    rows = await conn.execute(
        select(claims.c.member_id, func.count())
        .where(*(claims.c[k] == v for k, v in window.items()), claims.c.member_id.in_(members))
        .group_by(claims.c.member_id)
    )
    used: dict[str, int] = {r[0]: r[1] for r in rows}
    full = {m for m in members if used.get(m, 0) >= most}
    wanted = [m for m in members if m not in full]
    won = await insert_new(
        conn,
        claims,
        [
            {**window, "member_id": m, "slot": used.get(m, 0) + 1, "run_id": run.run_id}
            for m in wanted
        ],
        "member_id",
    )
    return full | {m for m in wanted if m not in won}
