"""Event-triggered plans: events in, waits kept, due actions on time.

On PostgreSQL and Redis, the stand-ins in a process of their own, a
Platform in this process (its scheduler, sweep and engine workers on), the
throttle off (every bucket at 1,000,000/s) so that the figures are the
platform's own:

- intake: `--events` CARTED events for distinct members, in batches of 500
  (RecordMemberEvents), two batches in flight, for a plan that waits a day
  on each: events accepted per second (each starts one wait);
- waiting: `--waiting` more waits of that plan, due in a day, written
  straight into the table (the intake above is what the RPC costs; a
  million through it would only repeat it): the platform holds nothing per
  waiting member, so its RSS stays where it was;
- sustained: a second plan (`@on browsed after --delay s`, a coupon, every
  level) while the million wait: `--rate` BROWSED events a second, a batch
  every 0.1 s, for `--seconds`; each member's lateness is the grant time
  the benefit stand-in recorded minus the event's time plus the delay.

    .venv/bin/python scripts/bench/triggers.py [--events 20000]
        [--waiting 1000000] [--rate 500] [--seconds 20] [--delay 2]

CI: `--events 2000 --waiting 20000 --rate 100 --seconds 5` takes about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _services import add_service_options, cpu_seconds, throwaway_database
from runs import EVERYONE, SHOP, Sampler, rss_mb, settings_for, start_stand_ins, throttle_off

from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from domain import runs
from server.app import Platform

BATCH = 500
TARGET_LATENESS = 1.0  # seconds, p99
FLAT = 1.2  # RSS with the million waiting within 20% of before


def member(i: int) -> str:
    return f"m{i:08d}"


async def publish(client: AsyncCustopsClient, execution: str) -> pb.Plan:
    coupon = pb.Action(
        grant_benefit=pb.GrantBenefitAction(
            benefits=[
                pb.BenefitGrant(
                    template_id="points-100", kind=benefit_pb2.BENEFIT_KIND_POINTS, quantity=1
                )
            ]
        )
    )
    draft = (
        await client.plans.create_plan_from_template(
            pb.CreatePlanFromTemplateRequest(
                shop_id=SHOP,
                template_id="abandoned_cart",
                overrides=pb.Plan(
                    time=pb.PlanTime(execution=execution), audience=EVERYONE, actions=[coupon]
                ),
                override_mask=FieldMask(paths=["time.execution", "audience", "actions"]),
            )
        )
    ).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=SHOP, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    return published


def events(kind: int, members: range, when: datetime, tag: str) -> list[spb.MemberEvent]:
    out = []
    for i in members:
        e = spb.MemberEvent(event_id=f"{tag}-{i}", member_id=member(i), type=kind)  # type: ignore[arg-type]
        e.occur_time.FromDatetime(when)
        out.append(e)
    return out


async def send(client: AsyncCustopsClient, batch: list[spb.MemberEvent]) -> int:
    reply = await client.scenario.record_member_events(
        spb.RecordMemberEventsRequest(shop_id=SHOP, events=batch)
    )
    taken = sum(r.result == spb.MEMBER_EVENT_RESULT_ACCEPTED for r in reply.results)
    assert taken == len(batch), [r for r in reply.results if r.reason][:3]
    return taken


async def intake(client: AsyncCustopsClient, count: int) -> float:
    """Events accepted per second, batches of 500, two in flight."""
    now = datetime.now(UTC)
    batches = [
        events(spb.MEMBER_EVENT_TYPE_CARTED, range(i, min(i + BATCH, count)), now, "cart")
        for i in range(0, count, BATCH)
    ]
    queue = list(reversed(batches))

    async def caller() -> None:
        while queue:
            await send(client, queue.pop())

    started = time.perf_counter()
    await asyncio.gather(caller(), caller())
    return count / (time.perf_counter() - started)


async def fill_waits(url: str, plan_id: str, count: int, first: int) -> None:
    """`count` waits of the plan due in a day, straight into the table."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            """
            INSERT INTO trigger_waits (plan_id, member_id, event_id, shop_id, event_time,
                                       due_time, state)
            SELECT $1, 'w' || lpad(i::text, 8, '0'), 'filled-' || i, $2, now(),
                   now() + interval '1 day', 'waiting'
            FROM generate_series($3::int, $3::int + $4::int - 1) AS i
            """,
            plan_id,
            SHOP,
            first,
            count,
        )
        await conn.execute("ANALYZE trigger_waits")
    finally:
        await conn.close()


async def sustained(
    client: AsyncCustopsClient, rate: int, seconds: float, first: int
) -> dict[str, datetime]:
    """BROWSED events at `rate` a second, a batch every 0.1 s; each
    member's event time (now, as sent)."""
    told: dict[str, datetime] = {}
    per_batch = max(1, rate // 10)
    start = time.monotonic()
    sent = 0
    pending: set[asyncio.Task[int]] = set()
    for tick in range(int(seconds * 10)):  # bounded
        await asyncio.sleep(max(0.0, start + tick * 0.1 - time.monotonic()))
        now = datetime.now(UTC)
        batch = events(
            spb.MEMBER_EVENT_TYPE_BROWSED, range(first + sent, first + sent + per_batch), now, "b"
        )
        told.update({e.member_id: now for e in batch})
        sent += per_batch
        task = asyncio.create_task(send(client, batch))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return told


async def grant_times(channel: grpc.aio.Channel, plan_id: str) -> dict[str, datetime]:
    """Each member's grant time from the plan, as the benefit stand-in recorded it."""
    stub = benefit_pb2_grpc.BenefitServiceStub(channel)
    found: dict[str, datetime] = {}
    token = ""
    for _ in range(100_000):  # bounded
        page = await stub.ListBenefitInstances(
            benefit_pb2.ListBenefitInstancesRequest(
                shop_id=SHOP, source=runs.grant_source(plan_id), page_size=500, page_token=token
            ),
            timeout=60,
        )
        found.update({i.member_id: i.grant_time.ToDatetime(UTC) for i in page.instances})
        token = page.next_page_token
        if not token:
            break
    return found


async def what_became(url: str, client: AsyncCustopsClient, plan_id: str) -> str:
    """Where the members not granted are: the plan's waits and runs by state."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT state, count(*) FROM trigger_waits WHERE plan_id = $1 GROUP BY state", plan_id
        )
        shard_rows = await conn.fetch(
            "SELECT s.state, s.done, s.lease_until, j.state AS job, j.total, j.done AS jdone "
            "FROM shards s JOIN plan_runs r ON r.job_id = s.job_id "
            "JOIN jobs j ON j.job_id = s.job_id "
            "WHERE r.plan_id = $1 AND j.state <> 'succeeded'",
            plan_id,
        )
        failures = await conn.fetch(
            "SELECT f.state, f.reason, count(*) FROM item_failures f "
            "JOIN plan_runs r ON r.job_id = f.job_id WHERE r.plan_id = $1 GROUP BY 1, 2",
            plan_id,
        )
    finally:
        await conn.close()
    listed = await client.plans.list_plan_runs(
        pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan_id, page_size=500)
    ).first_page()
    states = Counter(pb.RunState.Name(r.state) for r in listed.runs)
    skipped: Counter[str] = Counter()
    for r in listed.runs:
        skipped.update(dict(r.progress.skipped))
    return (
        f"not all granted: waits {dict(rows)}, runs {dict(states)}, skipped {dict(skipped)}, "
        f"open shards {[tuple(r) for r in shard_rows]}, failures {[tuple(r) for r in failures]}"
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="intake: CARTED events")
    parser.add_argument("--waiting", type=int, default=1_000_000, help="more waits, by SQL")
    parser.add_argument("--rate", type=int, default=500, help="sustained: events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="sustained: how long")
    parser.add_argument("--delay", type=int, default=2, help="sustained: the trigger's delay, s")
    add_service_options(parser)
    args = parser.parse_args()
    args.database, args.concurrency, args.poll = "postgres", 4, 0.1
    sustained_members = int(args.rate * args.seconds)
    population = args.events + sustained_members
    stand_ins = await start_stand_ins(population, False)
    report: list[str] = []
    try:
        async with throwaway_database(args.postgres_admin, "custops_triggers") as url:
            platform = Platform(settings_for(args, url, population, stand_ins))
            await platform.start()
            try:
                async with (
                    AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=60) as client,
                    grpc.aio.insecure_channel(stand_ins.address) as channel,
                ):
                    await throttle_off(client)
                    waiting_plan = await publish(client, "@on carted after 1d")
                    gc.collect()
                    rss_start = rss_mb()
                    cpu = cpu_seconds()
                    accepted = await intake(client, args.events)
                    intake_cpu = (cpu_seconds() - cpu) / args.events * 1e6
                    report.append(
                        f"intake: {args.events:,} CARTED events in batches of {BATCH}, "
                        f"2 in flight: {accepted:,.0f} events/s accepted "
                        f"(platform {intake_cpu:.0f} µs CPU per event)"
                    )
                    await fill_waits(url, waiting_plan.plan_id, args.waiting, 0)
                    gc.collect()
                    rss_waiting = rss_mb()
                    plan = await publish(client, f"@on browsed after {args.delay}s")
                    sampler = Sampler()
                    told = await sustained(client, args.rate, args.seconds, args.events)
                    granted: dict[str, datetime] = {}
                    for _ in range(600):  # bounded: 60 s after the last event
                        granted = await grant_times(channel, plan.plan_id)
                        if len(granted) >= len(told):
                            break
                        await asyncio.sleep(0.1)
                    rss_peak = await sampler.stop()
                    if len(granted) < len(told):
                        report.append(await what_became(url, client, plan.plan_id))
            finally:
                await platform.stop(grace=1)
    finally:
        await stand_ins.stop()
    delay = timedelta(seconds=args.delay)
    late = [(granted[m] - (at + delay)).total_seconds() for m, at in told.items() if m in granted]
    missing = len(told) - len(late)
    p50, p99 = percentile(late, 50), percentile(late, 99)
    waiting_total = args.events + args.waiting
    report.append(
        f"waiting: {waiting_total:,} members wait (a day); platform RSS {rss_start:.0f} MB "
        f"before the intake, {rss_waiting:.0f} MB with them waiting, {rss_peak:.0f} MB at "
        f"most during the sustained phase"
    )
    report.append(
        f"sustained: {args.rate:,} BROWSED events/s for {args.seconds:.0f} s "
        f"({len(told):,} members, delay {args.delay} s) beside them: lateness of the "
        f"grant after the due time p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(late):.3f} s, "
        f"mean {statistics.fmean(late):.3f} s; {missing} never granted"
    )
    # What the waiting members cost the platform: none of them is in memory.
    flat = rss_waiting <= FLAT * rss_start
    on_time = p99 <= TARGET_LATENESS and missing == 0
    print("event-triggered plans (scripts/bench/triggers.py), PostgreSQL, Redis, throttle off")
    print("\n".join(report))
    print("targets:")
    print(f"  due actions p99 <= {TARGET_LATENESS:.0f} s, none lost: {'yes' if on_time else 'NO'}")
    print(f"  memory flat with {waiting_total:,} waiting (<= {FLAT}x): {'yes' if flat else 'NO'}")
    # A target missed on a noisy machine is a figure; a member never acted on is a bug.
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
