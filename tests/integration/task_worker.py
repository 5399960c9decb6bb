"""A worker process for the engine's crash and sharing tests.

    python -m tests.integration.task_worker DATABASE_URL EFFECTS_FILE [CLOCK_OFFSET_S]

Its job kind ("effects") executes an item by recording it in a SQLite file
shared by every process: idempotent by item key, as a real downstream is,
and counting each item's attempts and first-time effects.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from server.persistence.database import create_engine
from server.persistence.task_store import TaskStore
from server.tasks.kinds import Item, ItemResult, Outcome, Page
from server.tasks.worker import Worker


class Ranges:
    """Items n0..n{n-1} (payload "n"), split into `payload["shards"]` ranges;
    a cursor is "start:end". The test job kinds differ only in execute."""

    def split(self, payload: dict[str, Any]) -> list[str]:
        n, shards = payload["n"], payload["shards"]
        return [f"{n * i // shards}:{n * (i + 1) // shards}" for i in range(shards)]

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        start, end = map(int, cursor.split(":"))
        stop = min(end, start + limit)
        return Page(
            [Item(f"n{i}", {"i": i}) for i in range(start, stop)],
            f"{stop}:{end}" if stop < end else None,
        )


class Effects(Ranges):
    name = "effects"
    bucket: str | None = None
    batch_size = 100

    def __init__(self, path: str) -> None:
        self.path = path

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        with sqlite3.connect(self.path, timeout=30) as db:
            for item in items:
                db.execute(
                    "insert into effects(key, first_worker, attempts) values (?, ?, 1) "
                    "on conflict(key) do update set attempts = attempts + 1",
                    (item.key, payload.get("worker", "")),
                )
        # A downstream takes time; the sharing test needs batches that do.
        await asyncio.sleep(payload.get("delay", 0.0))
        return [ItemResult(i.key, Outcome.DONE) for i in items]


def prepare(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "create table if not exists effects"
            "(key text primary key, first_worker text, attempts int)"
        )


async def main(url: str, effects: str, offset: float) -> None:
    engine = create_engine(url)
    store = TaskStore(engine)
    worker = Worker(
        store,
        {"effects": Effects(effects)},
        clock=lambda: datetime.now(UTC) + timedelta(seconds=offset),
        lease=timedelta(seconds=30),
    )
    ran = await worker.drain()
    print(f"shards={ran}", flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0))
