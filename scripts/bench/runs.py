"""Members per second through whole plan runs, beside the benefit stand-in's ceiling.

For each audience size N (the stand-ins' population; the plan's audience is
every level, so each of the N members is granted once):

- ceiling: the benefit stand-in alone, no platform: N BatchGrantBenefits
  items of the platform's shape, in calls of the platform's size (500),
  as many calls in flight as the platform has engine workers, from this
  process over gRPC loopback to a fresh stand-in;
- end to end: a Platform in this process with the throttle off (there is
  no "off": rate 0 stops a bucket, so every downstream bucket is set to the
  largest rate the API takes, 1,000,000/s, burst 1,000,000) runs a plan
  scheduled to fire once, two seconds after it is published; timed from
  its fire time to the run's end. The benefit stand-in's own counters
  witness each member granted once;
- memory: this process's RSS (the platform's) sampled every 0.1 s during
  the run, and the stand-in process's peak: it keeps every instance it
  granted, so it grows with N by design;
- fire lateness: the run's start (its job's first lease) and its first
  grant, minus its fire time; also over a few small runs (10 listed
  members each) scheduled one after another.

The stand-ins run in a process of their own (`--stubs process`, as the
real downstream systems would), or inside the platform (`--stubs embedded`,
the default of `custops serve`: one event loop and one core for both, and
the stand-in's instances in the platform's RSS).

    .venv/bin/python scripts/bench/runs.py [--members 100000,1000000]
        [--database postgres|sqlite] [--stubs process|embedded]
        [--redis redis://127.0.0.1:6379/0] [--profile FILE]

CI: `--members 20000` takes about 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _services import (
    StandInProcess,
    add_service_options,
    cpu_seconds,
    database_pids,
    forget_buckets,
    start_stand_in_process,
)

from custops.audience.v1 import audience_pb2
from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from domain import runs
from server.app import Platform
from server.config import Settings
from server.runs.delivery import GRANT_CHUNK, SHARDS
from server.stand_ins.app import StubOptions, Stubs
from server.stand_ins.population import LEVELS

SHOP = "bench"
ZONE = "Asia/Shanghai"
TEMPLATE = "points-100"  # unlimited stock: a million grants never run out
UNTHROTTLED = 1_000_000  # the largest rate and burst UpdateThrottleSetting takes
DOWNSTREAMS = (pb.DOWNSTREAM_AUDIENCE, pb.DOWNSTREAM_BENEFIT, pb.DOWNSTREAM_NOTIFICATION)
EVERYONE = audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=list(LEVELS)))
LEAD = 2.0  # seconds from publishing to the fire time
TARGET_RATE = 10_000  # members/s at 1,000,000 members
TARGET_SHARE = 0.5  # of the stub ceiling
TARGET_LATENESS = 1.0  # seconds
FLAT = 1.2  # the largest size's peak RSS within 20% of the smallest size's
_PAGE = os.sysconf("SC_PAGE_SIZE")


# Memory (Linux /proc).


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 2**20


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's high-water mark of resident memory (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """The highest RSS of this process, sampled every `every` seconds."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.peak = rss_mb()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            await asyncio.sleep(self.every)

    async def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return max(self.peak, rss_mb())


# The stand-ins: in a process of their own, or in this one.


@dataclass
class StandIns:
    address: str
    process: StandInProcess | None = None
    embedded: Stubs | None = None

    @property
    def pid(self) -> int | None:
        """The stand-in process's, to count its CPU time (None when in this process)."""
        return self.process.process.pid if self.process is not None else None

    async def stop(self) -> float:
        """Stop them; the stand-in process's peak RSS in MB (0 when in this process)."""
        peak = 0.0
        if self.process is not None:
            peak = peak_rss_mb(self.process.process.pid)
            await self.process.stop()
        if self.embedded is not None:
            await self.embedded.stop(None)
            self.embedded = None
        return peak


async def start_stand_ins(population: int, in_process: bool) -> StandIns:
    """In this process (`--stubs embedded`, as `custops serve` runs them) or
    in one of their own (`--stubs process`)."""
    if not in_process:
        process = await start_stand_in_process(population)
        return StandIns(process.address, process=process)
    stubs = Stubs(StubOptions(seed=1, population=population))
    port = await stubs.start("127.0.0.1:0")
    return StandIns(f"127.0.0.1:{port}", embedded=stubs)


async def benefit_counters(channel: grpc.aio.Channel) -> stubadmin_pb2.StubCounters:
    admin = stubadmin_pb2_grpc.StubAdminServiceStub(channel)
    reply = await admin.GetStubCounters(
        stubadmin_pb2.GetStubCountersRequest(system=stubadmin_pb2.STUB_SYSTEM_BENEFIT)
    )
    counters: stubadmin_pb2.StubCounters = reply.counters
    return counters


# The ceiling.


async def ceiling(address: str, members: int, in_flight: int) -> float:
    """Grants per second the benefit stand-in takes alone: `members` grants of
    the platform's shape, GRANT_CHUNK per call, `in_flight` calls at once."""
    plan_id, run_id = "ceiling", "r" + uuid.uuid4().hex[:20]
    source = runs.grant_source(plan_id)
    chunks = iter(range(0, members, GRANT_CHUNK))
    granted = 0

    async def sender(benefit: benefit_pb2_grpc.BenefitServiceStub) -> None:
        nonlocal granted
        for start in chunks:
            ids = (f"m{i:08d}" for i in range(start, min(start + GRANT_CHUNK, members)))
            items = [
                benefit_pb2.GrantItem(
                    idempotency_key=runs.grant_key(plan_id, run_id, m, 0, 0),
                    member_id=m,
                    template_id=TEMPLATE,
                    quantity=1,
                    source=source,
                )
                for m in ids
            ]
            reply = await benefit.BatchGrantBenefits(
                benefit_pb2.BatchGrantBenefitsRequest(shop_id=SHOP, items=items), timeout=60
            )
            granted += sum(r.status == benefit_pb2.ITEM_STATUS_SUCCEEDED for r in reply.results)

    async with grpc.aio.insecure_channel(address) as channel:
        benefit = benefit_pb2_grpc.BenefitServiceStub(channel)
        started = time.perf_counter()
        await asyncio.gather(*(sender(benefit) for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    assert granted == members, (granted, members)
    return members / elapsed


# The platform and its runs.


def once_at(at: datetime) -> str:
    """A term expression that fires once, at this whole second (cron instant
    with its year). Not "immediately" (`* * * * * * * 1`): with a clock that
    moves, an immediate plan fires again at every scheduler tick."""
    t = at.astimezone(ZoneInfo(ZONE))
    return f"{t.second} {t.minute} {t.hour} {t.day} {t.month} ? {t.year} 30"


def plan_for(audience: audience_pb2.AudienceRule, name: str, fire: datetime) -> pb.Plan:
    """One points grant to each member of `audience` at `fire`; no limits,
    no messages (those have benchmarks and tests of their own)."""
    return pb.Plan(
        display_name=name,
        business_product=pb.BUSINESS_PRODUCT_BIRTHDAY,
        front_office=pb.FRONT_OFFICE_MICRO_MALL,
        time_zone=ZONE,
        audience=audience,
        time=pb.PlanTime(
            effective="* * * * * * * 1",
            execution=once_at(fire),
            missed_fire_policy=pb.MISSED_FIRE_POLICY_SKIP,
        ),
        actions=[
            pb.Action(
                grant_benefit=pb.GrantBenefitAction(
                    benefits=[
                        pb.BenefitGrant(
                            template_id=TEMPLATE, kind=benefit_pb2.BENEFIT_KIND_POINTS, quantity=1
                        )
                    ]
                )
            )
        ],
    )


def next_second(lead: float) -> datetime:
    """The first whole second at least `lead` seconds from now."""
    at = datetime.now(UTC) + timedelta(seconds=lead)
    return at.replace(microsecond=0) + timedelta(seconds=1)


async def publish(client: AsyncCustopsClient, plan: pb.Plan) -> pb.Plan:
    draft = (await client.plans.create_plan(pb.CreatePlanRequest(shop_id=SHOP, plan=plan))).plan
    published: pb.Plan = (
        await client.plans.publish_plan(
            pb.PublishPlanRequest(shop_id=SHOP, plan_id=draft.plan_id, etag=draft.etag)
        )
    ).plan
    return published


async def finished(client: AsyncCustopsClient, plan_id: str, every: float) -> pb.PlanRun:
    """The plan's run once it has ended."""
    run_id = ""
    while True:
        await asyncio.sleep(every)
        if not run_id:
            found = await client.plans.list_plan_runs(
                pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan_id)
            ).first_page()
            if not found.runs:
                continue
            run_id = found.runs[-1].run_id
        run: pb.PlanRun = (
            await client.plans.get_plan_run(
                pb.GetPlanRunRequest(shop_id=SHOP, plan_id=plan_id, run_id=run_id)
            )
        ).run
        if run.state in (pb.RUN_STATE_SUCCEEDED, pb.RUN_STATE_COMPLETED_WITH_FAILURES):
            return run
        if run.state == pb.RUN_STATE_CANCELLED:
            raise AssertionError(f"run {run_id} was cancelled")


async def only_run(client: AsyncCustopsClient, plan_id: str) -> None:
    found = await client.plans.list_plan_runs(
        pb.ListPlanRunsRequest(shop_id=SHOP, plan_id=plan_id)
    ).first_page()
    assert len(found.runs) == 1, [r.run_id for r in found.runs]


async def first_grant(channel: grpc.aio.Channel, plan_id: str, members: list[str]) -> datetime:
    """The earliest grant time among these members' instances from the plan."""
    benefit = benefit_pb2_grpc.BenefitServiceStub(channel)
    times: list[datetime] = []
    for member in members:
        reply = await benefit.ListBenefitInstances(
            benefit_pb2.ListBenefitInstancesRequest(
                shop_id=SHOP, member_id=member, source=runs.grant_source(plan_id)
            ),
            timeout=60,
        )
        times += [i.grant_time.ToDatetime(UTC) for i in reply.instances]
    return min(times)


def shard_firsts(members: int) -> list[str]:
    """The first member of each shard the platform pages (every member matches)."""
    return sorted({f"m{members * i // SHARDS:08d}" for i in range(SHARDS)})


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


async def throttle_off(client: AsyncCustopsClient) -> None:
    for downstream in DOWNSTREAMS:
        await client.plans.update_throttle_setting(
            pb.UpdateThrottleSettingRequest(
                setting=pb.ThrottleSetting(
                    downstream=downstream, rate_per_second=UNTHROTTLED, burst=UNTHROTTLED
                )
            )
        )
    await check_unthrottled(client)


async def check_unthrottled(client: AsyncCustopsClient) -> None:
    """Every bucket at the ceiling, its adaptive factor never lowered."""
    reply = await client.plans.get_throttle_settings(pb.GetThrottleSettingsRequest())
    assert len(reply.settings) == len(DOWNSTREAMS), reply
    for s in reply.settings:
        assert s.effective_rate_per_second >= UNTHROTTLED and s.burst >= UNTHROTTLED, s


@dataclass
class Figures:
    members: int
    ceiling: float = 0.0  # grants/s, the stand-in alone
    ceiling_cpu: float = 0.0  # CPU seconds of the stand-in process for the ceiling
    rate: float = 0.0  # members/s, fire time to the run's end
    in_run: float = 0.0  # members/s, the run's start to its end
    rss_before: float = 0.0  # MB, this process, before the run
    rss_peak: float = 0.0  # MB, this process, during the run
    stubs_peak: float = 0.0  # MB, the stand-in process's high-water mark
    cpu: float = 0.0  # CPU seconds of this process (the platform) during the run
    stubs_cpu: float = 0.0  # CPU seconds of the stand-in process during the run
    db_cpu: float | None = None  # CPU seconds of PostgreSQL's backends for the run
    start_late: float = 0.0  # s, the run's start minus its fire time
    grant_late: float = 0.0  # s, its first grant minus its fire time
    small_late: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0  # fire time to the run's end


def settings_for(
    args: argparse.Namespace, url: str, n: int, stand_ins: StandIns | None
) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "stubs_listen": "127.0.0.1:0",
        "stubs_population": n,
        "database_url": url,
        "auto_migrate": "true",
        "log_level": "WARNING",
        "shutdown_grace": 2.0,
        "redis_url": args.redis,
        "redis_prefix": f"bench{uuid.uuid4().hex[:10]}",
        "engine_concurrency": args.concurrency,
        "engine_poll": args.poll,
    }
    if stand_ins is not None:
        values |= {
            "stubs": "external",
            "audience_target": stand_ins.address,
            "benefit_target": stand_ins.address,
            "notification_target": stand_ins.address,
        }
    return Settings.load(env={}, **values)


async def end_to_end(
    args: argparse.Namespace, figures: Figures, url: str, profiler: cProfile.Profile | None
) -> None:
    n = figures.members
    stand_ins = None if args.stubs == "embedded" else await start_stand_ins(n, False)
    platform = Platform(settings_for(args, url, n, stand_ins))
    try:
        await platform.start()
        address = stand_ins.address if stand_ins else f"127.0.0.1:{platform.stubs_port}"
        async with (
            AsyncCustopsClient(f"127.0.0.1:{platform.port}", timeout=60) as client,
            grpc.aio.insecure_channel(address) as channel,
        ):
            await throttle_off(client)
            gc.collect()
            figures.rss_before = rss_mb()
            sampler = Sampler()
            pid = stand_ins.pid if stand_ins else None
            cpu = cpu_seconds(), cpu_seconds(pid) if pid else 0.0
            db_before = await database_cpu(args, url)
            if profiler is not None:
                profiler.enable()
            fire = next_second(LEAD)
            plan = await publish(client, plan_for(EVERYONE, f"everyone ({n:,})", fire))
            assert datetime.now(UTC) < fire, "publishing took longer than the lead"
            run = await finished(client, plan.plan_id, every=0.5)
            if profiler is not None:
                profiler.disable()
            figures.rss_peak = await sampler.stop()
            figures.cpu = cpu_seconds() - cpu[0]
            figures.stubs_cpu = cpu_seconds(pid) - cpu[1] if pid else 0.0
            figures.db_cpu = await database_cpu(args, url, db_before)
            assert run.fire_time.ToDatetime(UTC) == fire, (run.fire_time, fire)
            start, end = run.start_time.ToDatetime(UTC), run.end_time.ToDatetime(UTC)
            figures.seconds = seconds(fire, end)
            figures.rate, figures.in_run = n / seconds(fire, end), n / seconds(start, end)
            figures.start_late = seconds(fire, start)
            figures.grant_late = seconds(
                fire, await first_grant(channel, plan.plan_id, shard_firsts(n))
            )
            # Once each, by the stand-in's own count; never held back by a bucket.
            p = run.progress
            assert run.state == pb.RUN_STATE_SUCCEEDED, run
            assert (p.total, p.done, p.targeted, p.granted) == (n, n, n, n), p
            await only_run(client, plan.plan_id)
            counters = await benefit_counters(channel)
            assert (counters.succeeded, counters.duplicates, counters.failed) == (n, 0, 0), counters
            assert counters.rejected_for_capacity == 0, counters
            await check_unthrottled(client)
            # Lateness alone: small listed audiences, scheduled one after another
            # at a random phase of the scheduler's tick.
            shuffle = random.Random(n)
            for k in range(args.lateness_runs):
                listed = sorted({f"m{shuffle.randrange(n):08d}" for _ in range(10)})
                rule = audience_pb2.AudienceRule(members=audience_pb2.MemberList(member_ids=listed))
                await asyncio.sleep(shuffle.uniform(0, 1))
                fire = next_second(0.5)
                small = await publish(client, plan_for(rule, f"lateness {k}", fire))
                done = await finished(client, small.plan_id, every=0.05)
                late_start = seconds(fire, done.start_time.ToDatetime(UTC))
                late_grant = seconds(fire, await first_grant(channel, small.plan_id, listed))
                figures.small_late.append((late_start, late_grant))
    finally:
        await platform.stop(grace=1)
        if stand_ins is not None:
            figures.stubs_peak = await stand_ins.stop()
        if args.redis:
            await forget_buckets(args.redis, platform.settings.redis_prefix)


async def database_cpu(
    args: argparse.Namespace, url: str, before: dict[int, float] | None = None
) -> Any:
    """PostgreSQL: CPU seconds of the backends serving this database, by pid;
    given `before`, the CPU seconds they used since (None for SQLite)."""
    if args.database != "postgres":
        return None
    pids = await database_pids(args.postgres_admin, url.rsplit("/", 1)[1])
    # A backend gone since it was listed reads 0: left out, as it used nothing here.
    now = {pid: used for pid in pids if (used := cpu_seconds(pid))}
    if before is None:
        return now
    return sum(used - before.get(pid, 0.0) for pid, used in now.items())


@contextlib.asynccontextmanager
async def fresh_database(args: argparse.Namespace, folder: str) -> AsyncIterator[str]:
    """A throwaway database's URL, dropped afterwards."""
    if args.database == "sqlite":
        yield f"sqlite+aiosqlite:///{folder}/custops-{uuid.uuid4().hex[:8]}.db"
        return
    import asyncpg

    name = f"custops_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.postgres_admin, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = args.postgres_admin.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+asyncpg://"
        )
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure(
    args: argparse.Namespace, n: int, folder: str, profiler: cProfile.Profile | None
) -> Figures:
    figures = Figures(n)
    stand_ins = await start_stand_ins(n, args.stubs == "embedded")
    pid = stand_ins.pid
    try:
        used = cpu_seconds(pid) if pid else 0.0
        figures.ceiling = await ceiling(stand_ins.address, n, args.concurrency)
        figures.ceiling_cpu = cpu_seconds(pid) - used if pid else 0.0
    finally:
        await stand_ins.stop()
    del stand_ins
    gc.collect()
    async with fresh_database(args, folder) as url:
        await end_to_end(args, figures, url, profiler)
    return figures


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(args: argparse.Namespace, measured: list[Figures]) -> None:
    where = "a process of their own" if args.stubs == "process" else "the platform's process"
    print(
        f"{args.database}, {'Redis' if args.redis else 'in-process'} buckets, stand-ins in "
        f"{where}, {args.concurrency} engine workers, poll {args.poll:g} s, throttle off "
        f"({UNTHROTTLED:,}/s), grant calls of {GRANT_CHUNK}"
    )
    print(
        f"{'members':>10} {'members/s':>10} {'in run/s':>9} {'ceiling/s':>10} {'ratio':>6} "
        f"{'RSS MB':>7} {'peak MB':>8} {'stubs MB':>9} {'start s':>8} {'grant s':>8} "
        f"{'run s':>7} {'cpu us':>7} {'stubs us':>8} {'db us':>6} {'ceil us':>7}"
    )
    for f in measured:
        stubs_mb = f"{f.stubs_peak:9,.0f}" if f.stubs_peak else f"{'-':>9}"
        print(
            f"{f.members:10,} {f.rate:10,.0f} {f.in_run:9,.0f} {f.ceiling:10,.0f} "
            f"{f.rate / f.ceiling:6.2f} {f.rss_before:7,.0f} {f.rss_peak:8,.0f} {stubs_mb} "
            f"{f.start_late:8.2f} {f.grant_late:8.2f} {f.seconds:7.1f} "
            f"{f.cpu / f.members * 1e6:7,.0f} "
            f"{f'{f.stubs_cpu / f.members * 1e6:,.0f}' if f.stubs_peak else '-':>8} "
            f"{'-' if f.db_cpu is None else f'{f.db_cpu / f.members * 1e6:,.0f}':>6} "
            f"{f'{f.ceiling_cpu / f.members * 1e6:,.0f}' if f.ceiling_cpu else '-':>7}"
        )
    print(
        "  members/s: fire time to the run's end (in run/s: from the run's start); ceiling/s:\n"
        "  the benefit stand-in alone; ratio: members/s / ceiling/s; RSS, peak: this process\n"
        "  (the platform) before and during the run; stubs: the stand-in process's peak;\n"
        "  start, grant: the run's start and its first grant after the fire time; cpu us,\n"
        "  stubs us, db us: CPU microseconds per member during the run of this process, of the\n"
        "  stand-in process and of PostgreSQL's backends for the run's database; ceil us: of\n"
        "  the stand-in process per grant while the ceiling was measured (no audience paging)"
    )
    small = [late for f in measured for late in f.small_late]
    if small:
        starts, grants = sorted(s for s, _ in small), sorted(g for _, g in small)
        print(
            f"fire lateness over {len(small)} small runs: start median "
            f"{starts[len(starts) // 2]:.2f} s, max {starts[-1]:.2f} s; first grant median "
            f"{grants[len(grants) // 2]:.2f} s, max {grants[-1]:.2f} s"
        )
    largest, smallest = measured[-1], measured[0]
    print("targets:")
    if largest.members >= 1_000_000:
        ok = verdict(largest.rate >= TARGET_RATE)
        print(f"  >= {TARGET_RATE:,} members/s at {largest.members:,}: {ok}")
    else:
        print(f"  >= {TARGET_RATE:,} members/s at 1,000,000: not measured")
    for f in measured:
        share = f.rate / f.ceiling
        ok = verdict(share >= TARGET_SHARE)
        print(f"  end to end >= {TARGET_SHARE:g} x ceiling at {f.members:,}: {ok} ({share:.2f})")
    if len(measured) > 1:
        ok = verdict(largest.rss_peak <= smallest.rss_peak * FLAT)
        print(
            f"  flat memory (peak at {largest.members:,} within {FLAT - 1:.0%} of the peak at "
            f"{smallest.members:,}): {ok} ({largest.rss_peak:,.0f} vs {smallest.rss_peak:,.0f} MB)"
        )
    worst = max([f.grant_late for f in measured] + [g for _, g in small])
    ok = verdict(worst < TARGET_LATENESS)
    print(f"  fire lateness < {TARGET_LATENESS:g} s: {ok} (latest first grant {worst:.2f} s)")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's peak RSS over the whole benchmark (getrusage): {maxrss:,.0f} MB")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end: {load} on {os.cpu_count()} CPUs (figures are noisy above it)")


def sizes(text: str) -> list[int]:
    try:
        values = sorted({int(v.strip().replace("_", "")) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < 100:
        raise argparse.ArgumentTypeError("comma-separated audience sizes, each at least 100")
    return values


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=sizes, default=sizes("100000,1000000"))
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    add_service_options(parser)  # a throwaway database for each size
    parser.add_argument("--stubs", choices=("process", "embedded"), default="process")
    defaults = Settings()
    parser.add_argument("--concurrency", type=int, default=defaults.engine_concurrency)
    parser.add_argument("--poll", type=float, default=defaults.engine_poll)
    parser.add_argument("--lateness-runs", type=int, default=3, help="small runs per size")
    parser.add_argument(
        "--profile", help="write a cProfile (CPU time) of the end-to-end runs to this file"
    )
    args = parser.parse_args()
    # CPU time of the event loop's thread, not wall time: on a shared machine
    # wall time charges other processes' slices to whatever was running.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    measured = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.members:
            measured.append(await measure(args, n, folder, profiler))
    report(args, measured)
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"profile: {args.profile} (python -m pstats {args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
