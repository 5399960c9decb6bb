"""Items per second through the task engine with a no-op executor.

Runs one job of N items (4 shards, batches of 1000) through a worker on
SQLite and on PostgreSQL, and beside them the same load/execute loop with
no engine (no leases, no commits): the ratio is the share of the raw loop
the engine keeps.

    .venv/bin/python scripts/bench/tasks.py [--items 100000]
        [--postgres-admin postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.task_store import TaskStore
from server.tasks.kinds import Item, ItemResult, Outcome, Page
from server.tasks.worker import Worker

SHARDS = 4


class NoOp:
    name = "noop"
    bucket: str | None = None
    batch_size = 1000

    def split(self, payload: dict[str, Any]) -> list[str]:
        n = payload["n"]
        return [f"{n * i // SHARDS}:{n * (i + 1) // SHARDS}" for i in range(SHARDS)]

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        start, end = map(int, cursor.split(":"))
        stop = min(end, start + limit)
        return Page(
            [Item(f"i{i}") for i in range(start, stop)], f"{stop}:{end}" if stop < end else None
        )

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        return [ItemResult(i.key, Outcome.DONE) for i in items]


async def through_engine(url: str, n: int) -> float:
    await migrate.upgrade(url)
    engine = create_engine(url)
    store = TaskStore(engine)
    kind = NoOp()
    now = datetime.now(UTC)
    payload = {"n": n}
    await store.create_job("noop", uuid.uuid4().hex, payload, kind.split(payload), now, now)
    started = time.perf_counter()
    await Worker(store, {"noop": kind}, clock=lambda: datetime.now(UTC)).drain()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return n / elapsed


async def raw_loop(n: int) -> float:
    kind = NoOp()
    payload = {"n": n}
    started = time.perf_counter()
    for cursor in kind.split(payload):
        next_cursor: str | None = cursor
        while next_cursor is not None:
            page = await kind.load(payload, next_cursor, kind.batch_size)
            await kind.execute(payload, page.items)
            next_cursor = page.next_cursor
    return n / (time.perf_counter() - started)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--postgres-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server where a throwaway database is made for the run (and dropped)",
    )
    args = parser.parse_args()
    baseline = await raw_loop(args.items)
    with tempfile.TemporaryDirectory() as folder:
        rates = {
            "sqlite": await through_engine(f"sqlite+aiosqlite:///{folder}/bench.db", args.items)
        }
    import asyncpg

    name = f"custops_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(args.postgres_admin, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgresql: not measured ({exc.__class__.__name__}: {exc})")
    else:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.postgres_admin.rsplit("/", 1)[0].replace(
                "postgresql://", "postgresql+asyncpg://"
            )
            rates["postgresql"] = await through_engine(f"{base}/{name}", args.items)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"{'store':12} {'items/s':>12} {'raw loop/s':>12} {'ratio':>7}")
    for store, rate in rates.items():
        print(f"{store:12} {rate:12,.0f} {baseline:12,.0f} {rate / baseline:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
