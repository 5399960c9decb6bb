"""The scheduler at scale: many published plans, their fire times spread over a few minutes.

- seed: `--plans` plans over `--shops` shops, each published as PublishPlan
  publishes it (domain.lifecycle) and written in bulk (creating 100,000
  plans through the API is not what is measured here). Each plan grants
  one member of a listed audience a point, once, at a whole second spread
  evenly over `--spread` seconds from T0 (so `plans / spread` fire in each
  second);
- idle: a replica (a Platform in this process: its scheduler, its worker
  loops and its retry sweeper, the stand-ins in a process of their own)
  while nothing is due, for `--idle` seconds: CPU of this process and of
  PostgreSQL's backends serving the database, as a share of one core;
- firing: from T0 until every plan has its run: fire lateness (the run's
  creation minus its fire time) p50 / p99 / max, and CPU per due plan of
  this process and of the database. With `--workers 0` (the default) the
  replica's worker loops are off during the firing phase, so the figures
  are the scheduler's own: the runs' execution is what scripts/bench/runs.py
  measures, and 100,000 runs in a few minutes is work for many replicas'
  workers, not for one 2-core machine.

    .venv/bin/python scripts/bench/scheduler.py [--plans 100000] [--shops 1000]
        [--spread 180] [--idle 20] [--workers 0]

CI: `--plans 3000 --shops 30 --spread 15 --idle 3` takes under a minute.
Figures and what they mean: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _services import (
    add_service_options,
    cpu_seconds,
    database_pids,
    forget_buckets,
    start_stand_in_process,
    throwaway_database,
)
from runs import plan_for
from sqlalchemy import func, insert, select

from custops.audience.v1 import audience_pb2
from custops.plan.v1 import plan_pb2 as pb
from domain import lifecycle
from domain.plan import Plan, PlanState
from server.app import Platform
from server.config import Settings
from server.mapping.plan import spec_from_proto
from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.plan_repository import plan_row
from server.persistence.tables import plan_runs, plans

TARGET_P99 = 1.0  # seconds of fire lateness at 100,000 plans
INSERT_CHUNK = 2000


def plan_message(member: str, fire: datetime) -> pb.Plan:
    members = audience_pb2.AudienceRule(members=audience_pb2.MemberList(member_ids=[member]))
    return plan_for(members, f"one point at {fire:%H:%M:%S}", fire)


def fire_times(args: argparse.Namespace, t0: datetime) -> list[datetime]:
    """Whole seconds, evenly: plan i fires at T0 + floor(i * spread / plans)."""
    return [t0 + timedelta(seconds=i * args.spread // args.plans) for i in range(args.plans)]


async def seed(url: str, args: argparse.Namespace, t0: datetime) -> float:
    """The plans, published now and written in chunks; seconds it took."""
    started = time.perf_counter()
    engine = create_engine(url)
    now = datetime.now(UTC)
    try:
        rows = []
        for i, fire in enumerate(fire_times(args, t0)):
            shop = f"shop-{i % args.shops:04d}"
            spec = spec_from_proto(plan_message(f"m{i % 1000:08d}", fire))
            draft = Plan(shop, f"p{i:07d}", spec, PlanState.DRAFT, 1, "bench", now, "bench", now)
            published = lifecycle.publish(draft, "bench", now)
            assert published.next_check_time == fire, (published.next_check_time, fire)
            rows.append(plan_row(published))
            if len(rows) == INSERT_CHUNK:
                async with engine.begin() as conn:
                    await conn.execute(insert(plans), rows)
                rows = []
        if rows:
            async with engine.begin() as conn:
                await conn.execute(insert(plans), rows)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def share(cpu: float, seconds: float) -> str:
    return f"{cpu / seconds:.1%} of a core"


async def database_cpu(args: argparse.Namespace, name: str) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in await database_pids(args.postgres_admin, name)}


def used_since(before: dict[int, float], now: dict[int, float]) -> float:
    """CPU seconds the backends used between the two readings (a backend
    that came meanwhile counts from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())


async def until(when: datetime) -> None:
    await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


async def runs_made(url: str) -> list[tuple[datetime, datetime]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(plan_runs.c.fire_time, plan_runs.c.create_time))
            return [(r[0], r[1]) for r in rows]
    finally:
        await engine.dispose()


async def count_runs(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(plan_runs)) or 0)
    finally:
        await engine.dispose()


def settings_for(args: argparse.Namespace, url: str, address: str, workers: int) -> Settings:
    return Settings.load(
        env={},
        listen="127.0.0.1:0",
        database_url=url,
        auto_migrate="false",
        log_level="WARNING",
        shutdown_grace=2.0,
        redis_url=args.redis,
        redis_prefix=f"bench{uuid.uuid4().hex[:10]}",
        engine_concurrency=workers,
        stubs="external",
        audience_target=address,
        benefit_target=address,
        notification_target=address,
    )


async def scheduler_only(platform: Platform, stop: asyncio.Event) -> None:
    """What a replica's runner does for the scheduler, without worker loops."""
    assert platform.runs is not None
    while not stop.is_set():
        try:
            await platform.runs.tick()
        except Exception as exc:  # as the runner: log and go on
            print(f"scheduler tick failed: {exc!r}", file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), platform.settings.scheduler_poll)


async def measure(args: argparse.Namespace, url: str, name: str) -> int:
    stand_ins = await start_stand_in_process(1000)
    lead = args.plans / 400 + args.idle + 15  # seeding, start-up and the idle window
    t0 = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    try:
        await migrate.upgrade(url)
        seeded = await seed(url, args, t0)
        print(f"seeded {args.plans:,} plans over {args.shops:,} shops in {seeded:.1f} s")
        # Idle: a whole replica (worker loops on), nothing due.
        idle_platform = Platform(settings_for(args, url, stand_ins.address, 4))
        await idle_platform.start()
        try:
            await asyncio.sleep(2)  # start-up work settles
            if datetime.now(UTC) + timedelta(seconds=args.idle + 1) > t0:
                raise SystemExit("seeding ran past its lead: nothing was measured; retry")
            mine, db = cpu_seconds(), await database_cpu(args, name)
            started = time.perf_counter()
            await asyncio.sleep(args.idle)
            idle_seconds = time.perf_counter() - started
            idle_cpu = cpu_seconds() - mine
            idle_db = used_since(db, await database_cpu(args, name))
        finally:
            await idle_platform.stop(grace=1)
        # Firing: the scheduler (and the worker loops if asked for).
        platform = Platform(settings_for(args, url, stand_ins.address, args.workers))
        await platform.start()
        stop = asyncio.Event()
        ticking = None if args.workers else asyncio.create_task(scheduler_only(platform, stop))
        profiler = cProfile.Profile(time.thread_time) if args.profile else None
        try:
            await until(t0 - timedelta(seconds=1))
            mine, db = cpu_seconds(), await database_cpu(args, name)
            if profiler is not None:
                profiler.enable()
            await until(t0 + timedelta(seconds=args.spread))
            for _ in range(int(args.spread) * 10 + 600):  # bounded: the backlog drains
                if await count_runs(url) >= args.plans:
                    break
                await asyncio.sleep(0.5)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            fire_cpu = cpu_seconds() - mine
            fire_db = used_since(db, await database_cpu(args, name))
        finally:
            stop.set()
            if ticking is not None:
                await ticking
            await platform.stop(grace=1)
            if args.redis:
                await forget_buckets(args.redis, platform.settings.redis_prefix)
                await forget_buckets(args.redis, idle_platform.settings.redis_prefix)
    finally:
        await stand_ins.stop()

    made = await runs_made(url)
    late = sorted((created - fire).total_seconds() for fire, created in made)
    if len(made) != args.plans:
        print(f"FAIL: {len(made):,} runs for {args.plans:,} plans")
        return 1
    p50, p99 = statistics.median(late), late[int(0.99 * (len(late) - 1))]
    print(
        f"idle ({idle_seconds:.0f} s, nothing due): platform {share(idle_cpu, idle_seconds)}, "
        f"database {share(idle_db, idle_seconds)}"
    )
    print(
        f"firing ({args.plans / args.spread:.0f} plans due per second over {args.spread:.0f} s): "
        f"lateness p50 {p50:.3f} s, p99 {p99:.3f} s, max {late[-1]:.3f} s"
    )
    print(
        f"per due plan: platform {fire_cpu / args.plans * 1000:.2f} ms CPU, "
        f"database {fire_db / args.plans * 1000:.2f} ms CPU"
    )
    verdict = "meets" if p99 <= TARGET_P99 else "MISSES"
    print(f"p99 lateness {p99:.3f} s {verdict} the {TARGET_P99:.0f} s target at this size")
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100_000)
    parser.add_argument("--shops", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=180.0, help="seconds the fires span")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument("--workers", type=int, default=0, help="worker loops while firing")
    add_service_options(parser)
    parser.add_argument("--profile", help="write a cProfile (CPU time) of the firing phase here")
    args = parser.parse_args()
    async with throwaway_database(args.postgres_admin, "custops_sched") as url:
        return await measure(args, url, url.rsplit("/", 1)[1])


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
