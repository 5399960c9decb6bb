"""Members' outcomes at size, on PostgreSQL: exporting them, and a plan's effect.

- seed (SQL, not measured): one plan with a 20% control group, a run of
  `--small` members and a run of `--members` members (outcomes written with
  generate_series: what a run writes is scripts/bench/runs.py's business),
  and `--orders` orders of 30% of the members over 14 days after the runs;
- export: `custops serve` in a process of its own streams each run's
  outcomes (ExportMemberOutcomes) to this process, which counts them: rows
  per second, and the server's peak RSS after the small run's export and
  after the large one's — flat means the large export raised the peak by
  no more than the small one did (the server holds one chunk, not the run);
- effect: GetPlanEffect over both runs and every order, median of
  `--rounds`; with --explain, the EXPLAIN (ANALYZE, BUFFERS) of each of its
  statements (docs/outcomes.md keeps them).

    .venv/bin/python scripts/bench/outcomes.py [--members 1000000] [--orders 1000000]
        [--small 100000] [--rounds 3] [--explain]

CI: `--members 100000 --orders 100000 --small 10000 --rounds 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from _services import ROOT, add_service_options, drain_output, throwaway_database
from runs import plan_for
from sqlalchemy import event, insert, text

from custops.audience.v1 import audience_pb2
from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from domain import lifecycle
from domain.plan import Measurement, Plan, PlanState
from server.mapping.plan import spec_from_proto
from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.effect_reads import EffectReads, for_analysis
from server.persistence.plan_repository import plan_row
from server.persistence.tables import plan_runs, plans

SHOP, PLAN = "bench-shop", "bench-plan"
T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
_READY = re.compile(r"custops serving on [^:]+:(\d+)")


async def seed(url: str, args: argparse.Namespace) -> dict[str, str]:
    """The plan, its two runs' outcomes and the orders; the runs' ids by size."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    runs = {"small": "r" + "1" * 20, "large": "r" + "2" * 20}
    try:
        everyone = audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V0"]))
        spec = spec_from_proto(plan_for(everyone, "measured", now + timedelta(days=1)))
        spec = type(spec)(**{**spec.__dict__, "measurement": Measurement(20.0)})
        draft = Plan(SHOP, PLAN, spec, PlanState.DRAFT, 1, "bench", now, "bench", now)
        async with engine.begin() as conn:
            await conn.execute(insert(plans), [plan_row(lifecycle.publish(draft, "bench", now))])
            for size, run_id in runs.items():
                await conn.execute(
                    insert(plan_runs),
                    [
                        {
                            "run_id": run_id,
                            "shop_id": SHOP,
                            "plan_id": PLAN,
                            "kind": "delivery",
                            "run_trigger": "manual",
                            "fire_time": T0 if size == "small" else T0 + timedelta(hours=1),
                            "job_id": f"job-{size}",
                            "create_time": now,
                        }
                    ],
                )
                count = args.small if size == "small" else args.members
                # Every fifth member held out; a few skipped; the rest granted.
                await conn.execute(
                    text(
                        "INSERT INTO run_members (run_id, member_id, outcome, units) "
                        "SELECT :run, 'm' || lpad(i::text, 8, '0'), "
                        "CASE WHEN i % 5 = 0 THEN 'hold' "
                        "WHEN i % 17 = 0 THEN 'skip:FREQUENCY_LIMIT' ELSE 'act' END, 0 "
                        "FROM generate_series(0, :n - 1) AS i"
                    ),
                    {"run": run_id, "n": count},
                )
            buyers = max(1, int(args.members * 0.3))
            await conn.execute(
                text(
                    "INSERT INTO orders (shop_id, order_id, member_id, store_id, currency, "
                    "amount_minor, refunded_minor, paid_time) "
                    "SELECT :shop, 'o' || i, 'm' || lpad((i % :buyers)::text, 8, '0'), 's1', "
                    "'CNY', 1000 + (i * 7919) % 50000, CASE WHEN i % 50 = 0 THEN 500 ELSE 0 END, "
                    "CAST(:t0 AS timestamptz) + make_interval(secs => (i * 104729) % (14 * 86400)) "
                    "FROM generate_series(1::bigint, :n) AS i"
                ),
                {"shop": SHOP, "buyers": buyers, "n": args.orders, "t0": T0},
            )
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()
    return runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve(url: str) -> tuple[asyncio.subprocess.Process, int, asyncio.Task[None]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    env |= {
        "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "clients"))),
        "CUSTOPS_DATABASE_URL": url,
        "CUSTOPS_LISTEN": f"127.0.0.1:{port}",
        "CUSTOPS_METRICS_LISTEN": "127.0.0.1:0",
        "CUSTOPS_STUBS_LISTEN": "127.0.0.1:0",
        "CUSTOPS_STUBS_POPULATION": "1000",
        "CUSTOPS_ENGINE_CONCURRENCY": "0",
        "CUSTOPS_LOG_FORMAT": "text",
        "CUSTOPS_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while raw := await process.stdout.readline():
            lines.append(raw.decode(errors="replace"))
            if _READY.search(lines[-1]):
                break
        else:
            raise RuntimeError("custops serve did not start:\n" + "".join(lines[-20:]))
    return process, port, asyncio.create_task(drain_output(process.stdout, None))


async def export(client: AsyncCustopsClient, run_id: str) -> tuple[int, float]:
    started = time.perf_counter()
    rows = 0
    async for chunk in client.plans.export_member_outcomes(
        pb.ExportMemberOutcomesRequest(shop_id=SHOP, run_id=run_id)
    ):
        rows += len(chunk.outcomes)
    return rows, time.perf_counter() - started


async def explain(url: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement GetPlanEffect runs."""
    engine = create_engine(url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().startswith("WITH"):
            seen.append((statement, parameters))

    try:
        reads = EffectReads(engine)
        await reads.sums(SHOP, PLAN, timedelta(days=7), timedelta(hours=8), "Asia/Shanghai")
        async with engine.begin() as conn:
            await for_analysis(conn)  # as GetPlanEffect runs it
            for statement, parameters in list(seen):
                result = await conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
                )
                print("\n" + statement)
                print("\n".join(row[0] for row in result))
    finally:
        await engine.dispose()


async def measure(args: argparse.Namespace, url: str) -> int:
    await migrate.upgrade(url)
    started = time.perf_counter()
    runs = await seed(url, args)
    print(
        f"seeded {args.small + args.members:,} outcomes in two runs and {args.orders:,} orders "
        f"in {time.perf_counter() - started:.1f} s"
    )
    process, port, drain = await serve(url)
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{port}", timeout=600) as client:
            await client.plans.get_plan(pb.GetPlanRequest(shop_id=SHOP, plan_id=PLAN))
            idle = peak_rss_mb(process.pid)
            small_rows, small_s = await export(client, runs["small"])
            after_small = peak_rss_mb(process.pid)
            large_rows, large_s = await export(client, runs["large"])
            after_large = peak_rss_mb(process.pid)
            assert (small_rows, large_rows) == (args.small, args.members)
            print(
                f"export: {small_rows:,} outcomes in {small_s:.2f} s "
                f"({small_rows / small_s:,.0f} rows/s); {large_rows:,} in {large_s:.2f} s "
                f"({large_rows / large_s:,.0f} rows/s)"
            )
            print(
                f"server peak RSS: {idle:.0f} MB before, {after_small:.0f} MB after the "
                f"{small_rows:,}-row export, {after_large:.0f} MB after the {large_rows:,}-row one "
                f"(+{after_large - after_small:.0f} MB for {large_rows / small_rows:.0f}x the rows)"
            )
            timings = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                reply = await client.plans.get_plan_effect(
                    pb.GetPlanEffectRequest(shop_id=SHOP, plan_id=PLAN)
                )
                timings.append(time.perf_counter() - started)
            e = reply.effect
            print(
                f"effect over {args.small + args.members:,} outcomes and {args.orders:,} orders: "
                f"median {statistics.median(timings):.2f} s of {args.rounds} "
                f"(treatment {e.treatment.members:,} members, {e.treatment.converted_members:,} "
                f"converted; holdout {e.holdout.members:,}, {e.holdout.converted_members:,})"
            )
    finally:
        drain.cancel()
        process.terminate()
        await process.wait()
    if args.explain:
        await explain(url)
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    add_service_options(parser)
    args = parser.parse_args()
    async with throwaway_database(args.postgres_admin, "custops_outcomes") as url:
        return await measure(args, url)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
