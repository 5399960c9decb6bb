"""The shoppers' calls under load: member view and checkout beside Health/Check.

A shop with 100,000 members (the stand-ins' population, in a process of
their own) and 50 published, active plans on PostgreSQL and Redis:
mixed front offices (micro-mall, retail, retail chain), mixed audiences
(levels, birthday month or week, tags, followers, browsing and carts, and
combinations of them, so that MatchMemberRules has real work), each with a
GrantBenefits action, some of effect kinds (points-x2, discount-85,
free-shipping). One broad plan (every member above V0, about 60%), executed
immediately at publishing (`--broad-execution once`: once, seconds later),
runs to its end first, so that members hold plan benefits and have records;
the other plans fire once a year, half a year from now: they apply now
(their effective time and term are open) but do not run during the
benchmark (their runs are counted after it: none).

The platform serves in this process (as in scripts/bench/runs.py); the load
comes from other processes on loopback (scripts/bench/_load.py: grpc.aio,
`--procs` processes), each phase for a fixed time after a warm-up:

1. Health/Check, closed loop: the ceiling, measured on the same server in
   the same run;
2. GetMemberView, closed loop: random members of the population, random
   front office;
3. GetCheckoutBenefits, closed loop: random members, stores, order amounts;
4. open loop at `--rate` requests/s for Health/Check (the generator's and
   loopback's own floor), GetMemberView and GetCheckoutBenefits; latency
   from the scheduled send time, so that queueing shows.

Only OK answers count; errors are counted by status code, and a run with
any says so and exits 1. Members are drawn uniformly, or in page sessions
(`--members-pattern sessions`: each shopper makes about `--session-length`
consecutive requests for the same member).

Targets (2-core machine): p99 under 20 ms at 1,000 requests/s, and at least
half the health check's throughput.

    .venv/bin/python scripts/bench/scenario.py [--ci] [--members 100000] [--plans 50]
        [--members-pattern uniform|sessions] [--procs 2] [--concurrency 32]
        [--duration 5] [--rounds 3] [--warmup 1] [--rate 1000] [--open-duration 6]
        [--max-requests 500000] [--timeout 5] [--profile FILE]

CI: `--ci` (20,000 members, 10 plans, 2 s phases) takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _services import (
    ROOT,
    StandInProcess,
    add_service_options,
    cpu_seconds,
    database_pids,
    drain_output,
    forget_buckets,
    start_stand_in_process,
)

from custops.audience.v1 import audience_pb2 as apb
from custops.benefit.v1 import benefit_pb2 as bpb
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.app import Platform
from server.batching import Coalescer
from server.config import Settings
from server.workers import Workers

LOAD = Path(__file__).resolve().with_name("_load.py")
ZONE = "Asia/Shanghai"
UNTHROTTLED = 1_000_000  # the largest rate and burst UpdateThrottleSetting takes
DOWNSTREAMS = (pb.DOWNSTREAM_AUDIENCE, pb.DOWNSTREAM_BENEFIT, pb.DOWNSTREAM_NOTIFICATION)
LEAD = 3.0  # seconds from publishing the broad plan to its fire time
# With --workers: the first process's metrics port; worker i serves on it + i.
METRICS_PORT = 19464
IMMEDIATELY = "* * * * * * * 1"
TARGET_P99 = 20.0  # ms at --rate
TARGET_SHARE = 0.5  # of Health/Check's closed-loop throughput
SAMPLE = 200  # members asked once before the load, to show the work per call
RESULT_LIMIT = 256 * 2**20  # bytes of a load process's result line (its latencies)
CALLS = {
    "health": "Health/Check",
    "view": "GetMemberView",
    "checkout": "GetCheckoutBenefits",
}


# PostgreSQL, Redis, the platform.


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """A throwaway database (its URL and name), dropped afterwards."""
    import asyncpg

    name = f"custops_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}", name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def settle(admin_url: str, name: str) -> None:
    """VACUUM ANALYZE the throwaway database after the broad run's writes, so
    that autovacuum does not start in the middle of a measured phase and
    the planner knows the tables' sizes."""
    import asyncpg

    conn = await asyncpg.connect(admin_url.rsplit("/", 1)[0] + f"/{name}", timeout=5)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def settings_for(args: argparse.Namespace, url: str, stand_ins: StandInProcess) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": url,
        "auto_migrate": "true",
        "log_level": "WARNING",
        "shutdown_grace": 2.0,
        "redis_url": args.redis,
        "redis_prefix": f"bench{uuid.uuid4().hex[:10]}",
        "stubs": "external",
        "stubs_population": args.members,
        "audience_target": stand_ins.address,
        "benefit_target": stand_ins.address,
        "notification_target": stand_ins.address,
    }
    if args.engine_concurrency is not None:
        values["engine_concurrency"] = args.engine_concurrency
    if args.workers > 1:
        values["workers"] = args.workers
        values["metrics_listen"] = f"127.0.0.1:{METRICS_PORT}"
    return Settings.load(env={}, **values)


async def start_workers(platform: Platform) -> Workers:
    """The platform's other processes, as `custops serve --workers N` starts
    them, once each serves (its metrics endpoint answers)."""
    others = Workers(platform.settings, platform.port, platform.stubs_port)
    await others.start()
    for index in range(1, platform.settings.workers):
        url = f"http://127.0.0.1:{METRICS_PORT + index}/metrics"
        for _ in range(300):  # bounded: a worker starts within seconds
            try:
                await asyncio.to_thread(urllib.request.urlopen, url, timeout=1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"worker {index} never served")
    return others


async def throttle_off(client: AsyncCustopsClient) -> None:
    """The broad plan's run is setup, not what is measured: no bucket holds it back."""
    for downstream in DOWNSTREAMS:
        await client.plans.update_throttle_setting(
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(
                    downstream=downstream, rate_per_second=UNTHROTTLED, burst=UNTHROTTLED
                )
            )
        )


# The shop's plans.


def levels(*names: str) -> apb.AudienceRule:
    return apb.AudienceRule(levels=apb.LevelCondition(levels=list(names)))


def birthday(scope: int, days_ahead: int = 0) -> apb.AudienceRule:
    return apb.AudienceRule(
        birthday=apb.BirthdayCondition(scope=scope, days_ahead=days_ahead)  # type: ignore[arg-type]
    )


def tags(match: int, *names: str) -> apb.AudienceRule:
    return apb.AudienceRule(tags=apb.TagCondition(tags=list(names), match=match))  # type: ignore[arg-type]


def all_of(*rules: apb.AudienceRule) -> apb.AudienceRule:
    return apb.AudienceRule(all_of=apb.RuleList(rules=list(rules)))


def any_of(*rules: apb.AudienceRule) -> apb.AudienceRule:
    return apb.AudienceRule(any_of=apb.RuleList(rules=list(rules)))


def negate(rule: apb.AudienceRule) -> apb.AudienceRule:
    return apb.AudienceRule(negate=rule)


FOLLOWER = apb.AudienceRule(follower=apb.FollowerCondition())
ABOVE_V0 = negate(levels("V0"))  # the broad plan's audience: about 60% of the members
# (what the rule says, the rule): cycled over the plans; 13 is prime to the 3
# front offices and the 7 grant sets, so the combinations all occur.
AUDIENCES: tuple[tuple[str, apb.AudienceRule], ...] = (
    ("V1-V2", levels("V1", "V2")),
    ("V3-V5", levels("V3", "V4", "V5")),
    ("birthday month", birthday(apb.BIRTHDAY_SCOPE_MONTH)),
    ("beauty or baby", tags(apb.TAG_MATCH_ANY, "beauty", "baby")),
    (
        "V2+ and sports",
        all_of(levels("V2", "V3", "V4", "V5"), tags(apb.TAG_MATCH_ALL, "sports")),
    ),
    ("birthday week or follower", any_of(birthday(apb.BIRTHDAY_SCOPE_WEEK), FOLLOWER)),
    ("not V0-V1", negate(levels("V0", "V1"))),
    ("birthday month in 3 days, not V0", all_of(birthday(apb.BIRTHDAY_SCOPE_MONTH, 3), ABOVE_V0)),
    (
        "browsed, not bought, 30 d",
        apb.AudienceRule(browsed_not_bought=apb.BrowsedNotBoughtCondition(within_days=30)),
    ),
    (
        "carted, not paid, 7 d",
        apb.AudienceRule(carted_not_paid=apb.CartedNotPaidCondition(within_days=7)),
    ),
    (
        "follower and (digital+home or V4-V5)",
        all_of(FOLLOWER, any_of(tags(apb.TAG_MATCH_ALL, "digital", "home"), levels("V4", "V5"))),
    ),
    ("V0", levels("V0")),
    ("food, fashion or books", tags(apb.TAG_MATCH_ANY, "food", "fashion", "books")),
)
FRONT_OFFICES = (pb.FRONT_OFFICE_MICRO_MALL, pb.FRONT_OFFICE_RETAIL, pb.FRONT_OFFICE_RETAIL_CHAIN)
PRODUCTS = (
    pb.BUSINESS_PRODUCT_MEMBER_DAY,
    pb.BUSINESS_PRODUCT_HOLIDAY,
    pb.BUSINESS_PRODUCT_BIRTHDAY,
    pb.BUSINESS_PRODUCT_PRECISE_AUDIENCE,
    pb.BUSINESS_PRODUCT_INTEREST_AUDIENCE,
    pb.BUSINESS_PRODUCT_INTERACTIVE_FAN,
)
# Grant sets, cycled: three of seven are (or hold) effect kinds.
GRANTS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("points-x2", bpb.BENEFIT_KIND_POINTS_MULTIPLIER),),
    (("coupon-10-off-100", bpb.BENEFIT_KIND_COUPON),),
    (("discount-85", bpb.BENEFIT_KIND_DISCOUNT),),
    (("points-100", bpb.BENEFIT_KIND_POINTS),),
    (("free-shipping", bpb.BENEFIT_KIND_FREE_SHIPPING), ("gift-mug", bpb.BENEFIT_KIND_GIFT)),
    (("growth-50", bpb.BENEFIT_KIND_GROWTH_VALUE),),
    (("gold-trial-7d", bpb.BENEFIT_KIND_EXPERIENCE_CARD),),
)
BROAD_GRANTS = (
    ("coupon-10-off-100", bpb.BENEFIT_KIND_COUPON),
    ("points-100", bpb.BENEFIT_KIND_POINTS),
)


def term_now(now: datetime) -> str:
    """An operation term open now: this year to three years on, whole days."""
    year = now.astimezone(ZoneInfo(ZONE)).year
    return f"0-0 0-0 0-0 1-31 1-12 * {year}-{year + 3} 2"


def once_at(at: datetime) -> str:
    """Fires once, at this whole second (a cron instant with its year): the
    broad plan's execution with `--broad-execution once`. runs.py avoids
    "immediately" (an immediate plan may fire again at scheduler ticks);
    here the broad plan's runs are counted after the measurement."""
    t = at.astimezone(ZoneInfo(ZONE))
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} ? {t.year} 30"


def yearly_far_from(now: datetime) -> str:
    """Once a year, about half a year from now: never during the benchmark."""
    t = (now + timedelta(days=182)).astimezone(ZoneInfo(ZONE))
    return f"0 0 4 {min(t.day, 28)} {t.month} ? * 30"


def plan(
    name: str,
    product: int,
    office: int,
    audience: apb.AudienceRule,
    term: str,
    execution: str,
    grants: tuple[tuple[str, int], ...],
) -> pb.Plan:
    return pb.Plan(
        display_name=name,
        business_product=product,  # type: ignore[arg-type]
        front_office=office,  # type: ignore[arg-type]
        time_zone=ZONE,
        audience=audience,
        time=pb.PlanTime(
            effective="* * * * * * * 1",
            term=term,
            execution=execution,
            missed_fire_policy=pb.MISSED_FIRE_POLICY_SKIP,
        ),
        actions=[
            pb.Action(
                grant_benefit=pb.GrantBenefitAction(
                    benefits=[
                        pb.BenefitGrant(template_id=t, kind=k, quantity=1)  # type: ignore[arg-type]
                        for t, k in grants
                    ]
                )
            )
        ],
    )


def other_plans(count: int, now: datetime) -> list[pb.Plan]:
    term, execution = term_now(now), yearly_far_from(now)
    out = []
    for i in range(count):
        office = FRONT_OFFICES[i % len(FRONT_OFFICES)]
        said, rule = AUDIENCES[i % len(AUDIENCES)]
        grants = GRANTS[i % len(GRANTS)]
        name = f"p{i + 2:02d} {said}: {', '.join(t for t, _ in grants)}"
        product = PRODUCTS[i % len(PRODUCTS)]
        out.append(plan(name[:100], product, office, rule, term, execution, grants))
    return out


async def publish(client: AsyncCustopsClient, shop: str, draft: pb.Plan) -> pb.Plan:
    made = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=shop, plan=draft))).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=shop, plan_id=made.plan_id, etag=made.etag)
        )
    ).plan
    return published


async def runs_of(client: AsyncCustopsClient, shop: str, plan_id: str) -> list[pb.PlanRun]:
    found = await client.plans.list_plan_runs(
        pb.ListPlanRunsRequest(shop_id=shop, plan_id=plan_id)
    ).first_page()
    return list(found.runs)


async def finished(client: AsyncCustopsClient, shop: str, plan_id: str, limit: float) -> pb.PlanRun:
    """The plan's (newest) run once it has ended; bounded by `limit` seconds."""
    ended = (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES)
    found: list[pb.PlanRun] = []
    try:
        async with asyncio.timeout(limit):
            while not (found and found[0].state in ended):
                await asyncio.sleep(0.5)
                found = await runs_of(client, shop, plan_id)
                if found and found[0].state in (pb.RUN_STATE_CANCELLED, pb.RUN_STATE_FAILED):
                    raise RuntimeError(f"the broad plan's run ended: {found[0]}")
    except TimeoutError:
        seen = found[0] if found else "no run at all"
        raise RuntimeError(f"the broad plan's run did not end in {limit:g} s: {seen}") from None
    return found[0]


@dataclass
class Shop:
    shop: str
    broad: pb.Plan
    others: list[pb.Plan]
    broad_run: pb.PlanRun
    setup_seconds: float


async def prepare(args: argparse.Namespace, client: AsyncCustopsClient, shop: str) -> Shop:
    started = time.perf_counter()
    await throttle_off(client)
    now = datetime.now(UTC)
    fire = datetime.now(UTC) + timedelta(seconds=LEAD)
    fire = fire.replace(microsecond=0) + timedelta(seconds=1)
    execution = IMMEDIATELY if args.broad_execution == "immediate" else once_at(fire)
    broad = await publish(
        client,
        shop,
        plan(
            "p01 everyone above V0: coupon and points",
            pb.BUSINESS_PRODUCT_MEMBER_DAY,
            pb.FRONT_OFFICE_MICRO_MALL,
            ABOVE_V0,
            term_now(now),
            execution,
            BROAD_GRANTS,
        ),
    )
    if execution != IMMEDIATELY and broad.next_fire_time.ToDatetime(UTC) != fire:
        raise RuntimeError(f"publishing the broad plan took longer than the {LEAD:g} s lead")
    run = await finished(client, shop, broad.plan_id, limit=args.setup_limit)
    others = [await publish(client, shop, p) for p in other_plans(args.plans - 1, now)]
    return Shop(shop, broad, others, run, time.perf_counter() - started)


async def sample(client: AsyncCustopsClient, shop: str, members: int) -> str:
    """What one call does, on average over SAMPLE random members (one call each)."""
    rnd = random.Random(7)
    view = Counter[str]()
    checkout = Counter[str]()
    for _ in range(SAMPLE):
        member = f"m{rnd.randrange(members):08d}"
        office = rnd.choice(FRONT_OFFICES)
        v = await client.scenario.get_member_view(
            spb.GetMemberViewRequest(shop_id=shop, member_id=member, front_office=office)
        )
        view["plans"] += len(v.plans)
        view["effects"] += sum(len(p.effects) for p in v.plans)
        view["benefits"] += len(v.unused_benefits)
        view["records"] += len(v.recent_records)
        view["holders"] += bool(v.unused_benefits)
        c = await client.scenario.get_checkout_benefits(
            spb.GetCheckoutBenefitsRequest(
                shop_id=shop, member_id=member, store_id="store-1", order_amount=12_000
            )
        )
        checkout["plans"] += len(c.plans)
        checkout["effects"] += len(c.effects)
        checkout["usable"] += len(c.usable_benefits)
    n = SAMPLE
    return (
        f"work per call (mean over {n} random members): view {view['plans'] / n:.1f} plans "
        f"applying, {view['effects'] / n:.1f} effects, {view['benefits'] / n:.1f} unused "
        f"benefits, {view['records'] / n:.1f} records ({view['holders'] / n:.0%} hold some); "
        f"checkout {checkout['plans'] / n:.1f} plans, {checkout['effects'] / n:.1f} effects, "
        f"{checkout['usable'] / n:.1f} usable benefits"
    )


# The load.


@dataclass
class Row:
    call: str
    mode: str
    rate: float = 0.0  # open loop: requests/s scheduled
    rps: float = 0.0  # OK answers per second in the window
    p50: float = float("nan")
    p99: float = float("nan")
    errors: Counter[str] = field(default_factory=Counter)
    details: dict[str, str] = field(default_factory=dict)  # the first error of each code
    dropped: int = 0
    capped: bool = False
    lag_p99: float = 0.0  # open loop: ms the generator sent behind schedule (p99)
    backends: tuple[int, int, int] = (0, 0, 0)  # PostgreSQL's: at the start, at the end, new
    cores: dict[str, float] = field(default_factory=dict)
    per_batch: float = 0.0  # pages per coalesced batch (warm-up included)


def median_round(rounds: list[Row]) -> Row:
    """The round with the median throughput, with the errors of all rounds."""
    middle = sorted(rounds, key=lambda r: r.rps)[len(rounds) // 2]
    errors: Counter[str] = Counter()
    details: dict[str, str] = {}
    for r in rounds:
        errors.update(r.errors)
        details = {**r.details, **details}
    return replace(
        middle,
        errors=errors,
        details=details,
        dropped=sum(r.dropped for r in rounds),
        capped=any(r.capped for r in rounds),
    )


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Load:
    args: argparse.Namespace
    address: str
    shop: str
    stubs_pid: int
    database: str
    # The platform's other processes (--workers), counted as the platform's CPU.
    workers: list[int] = field(default_factory=list)
    children: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def phase(self, call: str, mode: str) -> Row:
        args = self.args
        open_loop = mode == "open"
        duration = args.open_duration if open_loop else args.duration
        per_process = max(1, args.max_requests // args.procs)
        configs = [
            {
                "address": self.address,
                "call": call,
                "mode": mode,
                "shop": self.shop,
                "members": args.members,
                "pattern": args.members_pattern,
                "session_length": args.session_length,
                "concurrency": args.concurrency,
                "rate": args.rate / args.procs,
                "warmup": args.warmup,
                "duration": duration,
                "timeout": args.timeout,
                "max_requests": per_process,
                "seed": f"{call}-{mode}-{k}",
                "channels": args.channels,
            }
            for k in range(args.procs)
        ]
        children: list[asyncio.subprocess.Process] = []
        logs: list[list[str]] = []
        drains: list[asyncio.Task[None]] = []
        try:
            for cfg in configs:
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(LOAD),
                    json.dumps(cfg),
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=RESULT_LIMIT,
                )
                children.append(child)
                self.children.append(child)
                logs.append([])
                assert child.stderr is not None
                drains.append(asyncio.create_task(drain_output(child.stderr, logs[-1])))
            async with asyncio.timeout(60):
                for child, log in zip(children, logs, strict=True):
                    assert child.stdout is not None
                    line = (await child.stdout.readline()).decode().strip()
                    if line != "ready":
                        raise RuntimeError(f"a load process did not start: {line!r} {log}")
            start = time.time() + 0.2 + args.warmup
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"{start!r}\n".encode())
                await child.stdin.drain()
            await asyncio.sleep(max(0.0, start - time.time()))
            pg_before = await database_pids(args.postgres_admin, self.database)
            watched: dict[str, list[int | str]] = {
                "srv": ["self", *self.workers],
                "stubs": [self.stubs_pid],
                "gen": [c.pid for c in children],
            }
            before = {k: sum(cpu_seconds(p) for p in v) for k, v in watched.items()}
            pg_cpu = {pid: cpu_seconds(pid) for pid in pg_before}
            measured_from = time.perf_counter()
            await asyncio.sleep(max(0.0, start + duration - time.time()))
            used = {k: sum(cpu_seconds(p) for p in v) for k, v in watched.items()}
            seconds = time.perf_counter() - measured_from
            cores = {k: (used[k] - before[k]) / seconds for k in watched}
            # Backends that ended in the window are lost; new ones count from their start.
            pg_after = await database_pids(args.postgres_admin, self.database)
            pg_used = sum(cpu_seconds(pid) - pg_cpu.get(pid, 0.0) for pid in pg_after)
            cores["pg"] = pg_used / seconds
            backends = (len(pg_before), len(pg_after), len(set(pg_after) - set(pg_before)))
            results = []
            async with asyncio.timeout(args.timeout + 30):
                for child, log in zip(children, logs, strict=True):
                    assert child.stdout is not None
                    line = (await child.stdout.readline()).decode().strip()
                    if not line.startswith("result "):
                        await child.wait()
                        raise RuntimeError(
                            f"a load process failed (exit {child.returncode}):\n" + "\n".join(log)
                        )
                    results.append(json.loads(line.removeprefix("result ")))
                    await child.wait()
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
            for drain in drains:
                drain.cancel()
        latencies = sorted(x for r in results for x in r["latencies"])
        errors: Counter[str] = Counter()
        details: dict[str, str] = {}
        for r in results:
            errors.update(r["errors"])
            details |= r["details"]
        return Row(
            call=call,
            mode=mode,
            rate=args.rate if open_loop else 0.0,
            rps=sum(r["ok"] / r["window"] for r in results),
            p50=percentile(latencies, 50),
            p99=percentile(latencies, 99),
            errors=errors,
            details=details,
            dropped=sum(r["dropped"] for r in results),
            capped=any(r["capped"] for r in results),
            lag_p99=max(r["lag_p99"] for r in results),
            cores=cores,
            backends=backends,
        )

    async def stop(self) -> None:
        for child in self.children:
            if child.returncode is None:
                child.kill()
                await child.wait()


# The report.


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(args: argparse.Namespace, rows: list[Row]) -> bool:
    """Print the table and the verdicts; whether any call failed."""
    health = next((r.rps for r in rows if r.call == "health" and r.mode == "closed"), 0.0)
    print(
        f"{'call':<20} {'mode':<13} {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7} "
        f"{'x health':>8}  {'srv':>4} {'stubs':>5} {'pg':>4} {'gen':>4} {'batch':>5}"
    )
    for r in rows:
        mode = (
            f"open {r.rate:,.0f}/s"
            if r.mode == "open"
            else f"closed {args.concurrency * args.procs}"
        )
        ratio = f"{r.rps / health:.2f}" if r.mode == "closed" and health else "-"
        failed = sum(r.errors.values()) + r.dropped
        cpu = r.cores
        print(
            f"{CALLS[r.call]:<20} {mode:<13} {r.rps:7,.0f} {r.p50:7.2f} {r.p99:7.2f} {failed:7,} "
            f"{ratio:>8}  {cpu['srv']:4.2f} {cpu['stubs']:5.2f} {cpu['pg']:4.2f} {cpu['gen']:4.2f}"
            f" {r.per_batch or float('nan'):5.1f}" + (" (request cap hit)" if r.capped else "")
        )
    print(
        "  rps: OK answers/s; closed: callers in flight over all load processes; open: latency\n"
        "  from the scheduled send; x health: rps / Health/Check's closed-loop rps; srv, stubs,\n"
        "  pg, gen: CPU cores used by the platform, the stand-ins, PostgreSQL's backends and the\n"
        "  load processes during the window; batch: pages per coalesced batch (one audience\n"
        "  call and one pair of reads each)"
    )
    lag = max((r.lag_p99 for r in rows if r.mode == "open"), default=0.0)
    print(f"  open-loop generator lag behind its schedule, p99: {lag:.2f} ms")
    churn = [
        f"{CALLS[r.call]} {r.mode} {b[0]}->{b[1]} ({b[2]} new)"
        for r in rows
        if (b := r.backends)[2]
    ]
    if churn:
        print(f"  PostgreSQL backends opened during a window: {'; '.join(churn)}")
    failures = [(r, code, n) for r in rows for code, n in sorted(r.errors.items())]
    failures += [(r, "DROPPED (too many in flight)", r.dropped) for r in rows if r.dropped]
    print("targets:")
    for call in ("view", "checkout"):
        o = next((r for r in rows if r.call == call and r.mode == "open"), None)
        if o is not None:
            bad = sum(o.errors.values()) + o.dropped
            ok = o.p99 < TARGET_P99 and not bad and o.rps >= 0.98 * o.rate
            print(
                f"  {CALLS[call]}: p99 < {TARGET_P99:g} ms at {o.rate:,.0f}/s: {verdict(ok)} "
                f"(p99 {o.p99:.2f} ms, {o.rps:,.0f} OK/s, {bad} failed)"
            )
        c = next((r for r in rows if r.call == call and r.mode == "closed"), None)
        if c is not None and health:
            share = c.rps / health
            print(
                f"  {CALLS[call]}: >= {TARGET_SHARE:g} x Health/Check throughput: "
                f"{verdict(share >= TARGET_SHARE)} ({c.rps:,.0f} vs {health:,.0f}/s = {share:.2f})"
            )
    if failures:
        print("!" * 78)
        print("!! ERRORS: this run had failed requests; the figures above are not valid")
        for r, code, n in failures:
            print(f"!!   {CALLS[r.call]} {r.mode}: {code} x {n:,}: {r.details.get(code, '')}")
        print("!" * 78)
    return bool(failures)


def describe_setup(args: argparse.Namespace, ready: Shop) -> str:
    run, p = ready.broad_run, ready.broad_run.progress
    took = (run.end_time.ToDatetime() - run.start_time.ToDatetime()).total_seconds()
    offices = Counter(
        pb.FrontOffice.Name(x.front_office).removeprefix("FRONT_OFFICE_").lower()
        for x in [ready.broad, *ready.others]
    )
    mix = ", ".join(f"{n} {office}" for office, n in sorted(offices.items()))
    return (
        f"shop {ready.shop}: {len(ready.others) + 1} active plans ({mix}); broad plan run "
        f"{pb.RunState.Name(run.state)}: {p.targeted:,} of {args.members:,} members, "
        f"{p.granted:,} benefits granted in {took:.1f} s; setup {ready.setup_seconds:.1f} s"
    )


async def measure(
    args: argparse.Namespace,
    client: AsyncCustopsClient,
    load: Load,
    pages: Coalescer[Any, Any, Any],
    checks: list[str],
) -> list[Row]:
    """Set the shop up, then every phase; `checks` gets what went wrong around them."""
    ready = await prepare(args, client, load.shop)
    print(describe_setup(args, ready), flush=True)
    if ready.broad_run.state != pb.RUN_STATE_SUCCEEDED:
        checks.append(f"the broad plan's run ended {pb.RunState.Name(ready.broad_run.state)}")
    await settle(args.postgres_admin, load.database)
    print(await sample(client, load.shop, args.members), flush=True)
    # CPU time of the event loop's thread (the platform's), not wall time.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None

    async def phase(call: str, mode: str) -> Row:
        profiling = profiler if mode == "closed" and call != "health" else None
        if profiling is not None:
            profiling.enable()
        before = pages.batches, pages.items
        row = await load.phase(call, mode)
        batches, items = pages.batches - before[0], pages.items - before[1]
        row.per_batch = items / batches if batches else 0.0
        if profiling is not None:
            profiling.disable()
        print(f"  measured {CALLS[call]} {mode}", file=sys.stderr, flush=True)
        return row

    # The closed loops in rounds, the calls taking turns, so that a noisy
    # stretch of the shared machine hits every call rather than one.
    closed: dict[str, list[Row]] = {call: [] for call in CALLS}
    for _ in range(args.rounds):
        for call in CALLS:
            closed[call].append(await phase(call, "closed"))
    if args.rounds > 1:
        print(
            "closed-loop rps by round (the median round is reported): "
            + "; ".join(
                f"{CALLS[c]} " + " / ".join(f"{r.rps:,.0f}" for r in closed[c]) for c in CALLS
            )
        )
    rows = [median_round(closed[call]) for call in CALLS]
    rows += [await phase(call, "open") for call in CALLS]
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"profile of the closed loops of the two calls: {args.profile}")
    # Nothing ran during the measurement but the broad plan, once, before it.
    ran = [len(await runs_of(client, load.shop, x.plan_id)) for x in ready.others]
    again = len(await runs_of(client, load.shop, ready.broad.plan_id))
    if again != 1 or any(ran):
        checks.append(f"plans ran during the benchmark: broad {again}, others {sum(ran)} runs")
    return rows


@dataclass
class LoopErrors:
    """What the event loop (the platform's) reported as unhandled, counted
    and summarized at the end rather than printed once each."""

    seen: Counter[str] = field(default_factory=Counter)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        what = f"{context.get('message', '')}: {exc!r}" if exc else str(context.get("message"))
        if not self.seen[what]:
            loop.default_exception_handler(context)
        self.seen[what] += 1


async def main() -> int:
    wall = time.perf_counter()
    args = parse()
    unhandled = LoopErrors()
    asyncio.get_running_loop().set_exception_handler(unhandled)
    sessions = f" (sessions of ~{args.session_length} requests)"
    print(
        f"scenario benchmark: {args.members:,} members, {args.plans} plans, members pattern "
        f"{args.members_pattern}{sessions if args.members_pattern == 'sessions' else ''}, "
        f"{args.workers} platform process(es), "
        f"{args.procs} load processes x {args.concurrency} in flight (closed), "
        f"{args.rate:,.0f}/s (open); warm-up {args.warmup:g} s, "
        f"closed {args.rounds} x {args.duration:g} s, open {args.open_duration:g} s; "
        f"{os.cpu_count()} CPUs{' [CI]' if args.ci else ''}",
        flush=True,
    )
    shop = f"bench-{uuid.uuid4().hex[:8]}"
    checks: list[str] = []
    rows: list[Row] = []
    stand_ins = await start_stand_in_process(args.members)
    try:
        async with fresh_database(args.postgres_admin) as (url, database):
            platform = Platform(settings_for(args, url, stand_ins))
            load: Load | None = None
            others: Workers | None = None
            try:
                await platform.start()
                address = f"127.0.0.1:{platform.port}"
                load = Load(args, address, shop, stand_ins.process.pid, database)
                if args.workers > 1:
                    others = await start_workers(platform)
                    load.workers = others.pids
                async with AsyncCustopsClient(address, timeout=60) as client:
                    assert platform.scenario is not None
                    rows = await measure(args, client, load, platform.scenario.pages, checks)
            finally:
                if load is not None:
                    await load.stop()
                if others is not None:
                    await others.stop(10)
                await platform.stop(grace=1)
                if args.redis:
                    await forget_buckets(args.redis, platform.settings.redis_prefix)
    finally:
        await stand_ins.stop()
    errors = report(args, rows)
    for check in checks:
        print(f"!! CHECK FAILED: {check}")
    for what, n in unhandled.seen.most_common():
        print(f"!! the platform's event loop reported {n:,} x {what}")
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end: {load_avg}; wall time {time.perf_counter() - wall:.0f} s")
    return 1 if errors or checks else 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="small and quick: about 40 s")
    parser.add_argument("--members", type=int, help="population (default 100,000; CI 20,000)")
    parser.add_argument("--plans", type=int, help="published plans (default 50; CI 10)")
    parser.add_argument(
        "--members-pattern",
        choices=("uniform", "sessions"),
        default="uniform",
        help="each request a random member, or sessions of consecutive requests for one",
    )
    parser.add_argument("--session-length", type=int, default=10)
    parser.add_argument("--procs", type=int, default=2, help="load-generating processes")
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop: per process")
    parser.add_argument("--duration", type=float, help="closed loop, s (default 5; CI 2)")
    parser.add_argument(
        "--rounds", type=int, help="closed loops, each call in turn (default 3; CI 1)"
    )
    parser.add_argument("--warmup", type=float, help="before each phase, s (default 1; CI 0.5)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: requests/s")
    parser.add_argument("--open-duration", type=float, help="open loop, s (default 6; CI 2)")
    parser.add_argument(
        "--max-requests", type=int, default=500_000, help="per phase, over all load processes"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="per call deadline, s")
    parser.add_argument("--setup-limit", type=float, default=600.0, help="for the broad run, s")
    add_service_options(parser)
    parser.add_argument("--engine-concurrency", type=int)
    parser.add_argument(
        "--workers", type=int, default=1, help="processes serving the port (custops --workers)"
    )
    parser.add_argument(
        "--channels", type=int, help="connections per load process (default 1; 4 per worker)"
    )
    parser.add_argument(
        "--profile", help="write a cProfile of the platform during the closed loops to this file"
    )
    parser.add_argument(
        "--broad-execution",
        choices=("immediate", "once"),
        default="immediate",
        help=f"the broad plan fires at publishing, or once {LEAD:g} s after it",
    )
    args = parser.parse_args()
    if args.channels is None:
        args.channels = 1 if args.workers == 1 else 4 * args.workers
    small = {
        "members": 20_000,
        "plans": 10,
        "duration": 2.0,
        "rounds": 1,
        "warmup": 0.5,
        "open_duration": 2.0,
    }
    full = {
        "members": 100_000,
        "plans": 50,
        "duration": 5.0,
        "rounds": 3,
        "warmup": 1.0,
        "open_duration": 6.0,
    }
    for name, value in (small if args.ci else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.members < 100 or args.plans < 1 or args.procs < 1 or args.rate <= 0 or args.rounds < 1:
        parser.error("--members >= 100, --plans >= 1, --procs >= 1, --rate > 0, --rounds >= 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
