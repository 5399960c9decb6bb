"""Throughput ceilings of the stand-ins, with capacity unlimited.

How many members per second the audience stand-in pages out, and how many
grants per second the benefit stand-in accepts, through gRPC on loopback —
the ceiling the platform's end-to-end throughput is compared with. Each is
printed beside a baseline measured in the same run: the same work done in
process without gRPC, and their ratio (the share gRPC and paging leave).

    .venv/bin/python scripts/bench/stubs.py [--population 200000] [--grants 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from domain import audience as a
from server.clock import SystemClock
from server.stand_ins.app import StubOptions, Stubs
from server.stand_ins.audience_rules import Moment, evaluate
from server.stand_ins.benefit_book import BenefitBook

EPOCH = datetime(2026, 11, 24, tzinfo=UTC)
RULE = audience_pb2.AudienceRule(
    negate=audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V0"]))
)
BATCH = 500


async def page_out(audience: audience_pb2_grpc.AudienceServiceStub) -> int:
    count, token = 0, ""
    while True:
        reply = await audience.ListAudienceMembers(
            audience_pb2.ListAudienceMembersRequest(
                shop_id="bench",
                rule=RULE,
                page_size=5000,
                page_token=token,
                evaluation=audience_pb2.Evaluation(time_zone="Asia/Shanghai"),
            )
        )
        count += len(reply.member_ids)
        token = reply.next_page_token
        if not token:
            return count


async def grant_all(benefit: benefit_pb2_grpc.BenefitServiceStub, total: int) -> int:
    granted = 0
    for start in range(0, total, BATCH):
        items = [
            benefit_pb2.GrantItem(
                idempotency_key=f"bench/{i}",
                member_id=f"m{i:08d}",
                template_id="points-100",
                quantity=1,
            )
            for i in range(start, min(start + BATCH, total))
        ]
        reply = await benefit.BatchGrantBenefits(
            benefit_pb2.BatchGrantBenefitsRequest(shop_id="bench", items=items)
        )
        granted += sum(r.status == benefit_pb2.ITEM_STATUS_SUCCEEDED for r in reply.results)
    return granted


def in_process_members(stubs: Stubs) -> tuple[int, float]:
    population = stubs.population
    rule = a.Not(a.Levels(("V0",)))
    moment = Moment(datetime.now(UTC), datetime.now(UTC).date())
    base = population.base("bench")
    started = time.perf_counter()
    hits = sum(
        evaluate(rule, population.member("bench", i, base), moment) for i in range(population.size)
    )
    return hits, time.perf_counter() - started


def in_process_grants(total: int) -> float:
    book = BenefitBook(SystemClock())
    started = time.perf_counter()
    for i in range(total):
        book.grant(
            "bench",
            benefit_pb2.GrantItem(
                idempotency_key=f"bench/{i}",
                member_id=f"m{i:08d}",
                template_id="points-100",
                quantity=1,
            ),
        )
    return time.perf_counter() - started


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=200_000)
    parser.add_argument("--grants", type=int, default=20_000)
    args = parser.parse_args()
    stubs = Stubs(StubOptions(seed=1, population=args.population, epoch=EPOCH))
    port = await stubs.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            started = time.perf_counter()
            paged = await page_out(audience_pb2_grpc.AudienceServiceStub(channel))
            paging = time.perf_counter() - started
            started = time.perf_counter()
            granted = await grant_all(benefit_pb2_grpc.BenefitServiceStub(channel), args.grants)
            granting = time.perf_counter() - started
    finally:
        await stubs.stop(None)
    hits, baseline_paging = in_process_members(stubs)
    baseline_granting = in_process_grants(args.grants)
    assert hits == paged, (hits, paged)
    assert granted == args.grants, granted
    print(f"{'stand-in':10} {'measure':34} {'gRPC':>12} {'in process':>12} {'ratio':>6}")
    scanned_grpc, scanned_local = args.population / paging, args.population / baseline_paging
    print(
        f"{'audience':10} {'members scanned per second':34} {scanned_grpc:12,.0f} "
        f"{scanned_local:12,.0f} {scanned_grpc / scanned_local:6.2f}"
    )
    print(
        f"{'audience':10} {'matching members paged per second':34} {paged / paging:12,.0f} "
        f"{hits / baseline_paging:12,.0f} {baseline_paging / paging:6.2f}"
    )
    grants_grpc, grants_local = args.grants / granting, args.grants / baseline_granting
    print(
        f"{'benefit':10} {'grants accepted per second':34} {grants_grpc:12,.0f} "
        f"{grants_local:12,.0f} {grants_grpc / grants_local:6.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
