"""The task engine with a job kind that has nothing to do with plans."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.engine.kinds import Item, ItemResult, Outcome
from server.engine.store import EngineStore
from server.engine.worker import Worker
from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.tables import item_failures, jobs, shards
from tests.integration.engine_worker import Ranges

NOW = datetime(2026, 11, 24, tzinfo=UTC)


class Numbers(Ranges):
    """Items 0..n-1 in `shards` ranges; the executor counts each item's effects
    and is idempotent by item key, as real downstreams are."""

    name: str = "numbers"
    bucket: str | None = None
    batch_size: int = 1000

    def __init__(self, fail_every: int = 0, permanent_every: int = 0) -> None:
        self.effects: Counter[str] = Counter()
        self.fail_every = fail_every
        self.permanent_every = permanent_every

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        out = []
        for item in items:
            i = item.data["i"]
            if self.permanent_every and i % self.permanent_every == 0:
                out.append(ItemResult(item.key, Outcome.FAILED, "INVALID_ITEM"))
            elif self.fail_every and i % self.fail_every == 0:
                out.append(ItemResult(item.key, Outcome.RETRY, "UNAVAILABLE"))
            else:
                self.effects[item.key] += 1
                out.append(ItemResult(item.key, Outcome.DONE))
        return out


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EngineStore]:
    await migrate.upgrade(database_url)
    engine = create_engine(database_url)
    # PostgreSQL is one database per session: each test starts with no jobs.
    async with engine.begin() as conn:
        for table in (item_failures, shards, jobs):
            await conn.execute(table.delete())
    yield EngineStore(engine)
    await engine.dispose()


async def test_a_hundred_thousand_items_each_exactly_once(
    store: EngineStore, database_url: str
) -> None:
    kind = Numbers()
    payload = {"n": 100_000, "shards": 4}
    job = await store.create_job(
        "numbers", f"all-{database_url[-8:]}", payload, kind.split(payload), NOW, NOW
    )
    worker = Worker(store, {"numbers": kind}, clock=lambda: NOW)
    assert await worker.drain() == 4
    assert len(kind.effects) == 100_000 and set(kind.effects.values()) == {1}
    state = await store.job(job)
    assert (state["state"], state["done"], state["failed"]) == ("succeeded", 100_000, 0)


async def test_a_job_is_made_once_per_kind_and_key(store: EngineStore) -> None:
    payload = {"n": 10, "shards": 1}
    first = await store.create_job("numbers", "same", payload, ["0:10"], NOW, NOW)
    again = await store.create_job("numbers", "same", payload, ["0:10"], NOW, NOW)
    assert first == again


async def test_failures_are_per_item(store: EngineStore) -> None:
    kind = Numbers(fail_every=7, permanent_every=100)
    payload = {"n": 1000, "shards": 2}
    job = await store.create_job("numbers", "failing", payload, kind.split(payload), NOW, NOW)
    await Worker(store, {"numbers": kind}, clock=lambda: NOW).drain()
    failures = {f.item_key: f for f in await store.failures(job)}
    permanent = {f"n{i}" for i in range(0, 1000, 100)}
    retrying = {f"n{i}" for i in range(0, 1000, 7)} - permanent
    assert {k for k, f in failures.items() if f.state == "failed"} == permanent
    assert {k for k, f in failures.items() if f.state == "retrying"} == retrying
    assert all(
        f.next_retry_time and f.next_retry_time > NOW
        for f in failures.values()
        if f.state == "retrying"
    )
    # One bad item never blocks its batch: everything else was done once.
    assert len(kind.effects) == 1000 - len(permanent) - len(retrying)
    state = await store.job(job)
    assert state["state"] == "running"  # retries are still due


async def test_a_lost_lease_stops_a_worker_at_the_next_batch(store: EngineStore) -> None:
    kind = Numbers()
    payload = {"n": 5000, "shards": 1}
    job = await store.create_job("numbers", "lease", payload, kind.split(payload), NOW, NOW)
    slow = Worker(store, {"numbers": kind}, clock=lambda: NOW, lease=timedelta(seconds=30))
    lease = await store.claim(slow.owner, NOW, slow.lease)
    assert lease is not None
    # The first worker goes quiet; after its lease runs out another takes over.
    later = NOW + timedelta(minutes=1)
    other = Worker(store, {"numbers": kind}, clock=lambda: later)
    assert await other.run_once()
    # The first worker's late commit is refused: it was fenced out.
    assert not await store.commit(lease, "100:5000", 100, [], NOW, timedelta(seconds=30))
    state = await store.job(job)
    assert (state["state"], state["done"]) == ("succeeded", 5000)
    assert set(kind.effects.values()) == {1}


async def test_retries_are_swept_when_due_until_done_or_dead(store: EngineStore) -> None:
    kind = Numbers(fail_every=7, permanent_every=100)
    payload = {"n": 1000, "shards": 2}
    job = await store.create_job("numbers", "sweep", payload, kind.split(payload), NOW, NOW)
    clock = {"now": NOW}
    worker = Worker(store, {"numbers": kind}, clock=lambda: clock["now"])
    await worker.drain()
    assert await worker.retry_due() == 0  # nothing is due yet
    kind.fail_every = 0  # the downstream is healthy again
    clock["now"] = NOW + timedelta(hours=1)
    retried = await worker.retry_due()
    assert retried == len({i for i in range(0, 1000, 7)} - set(range(0, 1000, 100)))
    state = await store.job(job)
    assert (state["state"], state["done"], state["failed"]) == ("completed_with_failures", 990, 10)
    assert set(kind.effects.values()) == {1} and len(kind.effects) == 990


async def test_items_past_the_attempt_limit_are_dead_lettered(store: EngineStore) -> None:
    kind = Numbers(fail_every=1)  # every item keeps failing
    payload = {"n": 3, "shards": 1}
    job = await store.create_job("numbers", "dead", payload, kind.split(payload), NOW, NOW)
    clock = {"now": NOW}
    worker = Worker(store, {"numbers": kind}, clock=lambda: clock["now"])
    await worker.drain()
    for hour in range(1, 10):
        clock["now"] = NOW + timedelta(hours=hour)
        await worker.retry_due()
    failures = await store.failures(job)
    assert {(f.state, f.attempts) for f in failures} == {("dead", 5)}
    assert (await store.job(job))["state"] == "completed_with_failures"


class Pausing(Numbers):
    """Asks for a pause (as an operator would) while its second batch runs."""

    def __init__(self, store: EngineStore) -> None:
        super().__init__()
        self.store = store
        self.job_id = ""
        self.batches = 0

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.batches += 1
        if self.batches == 2:
            await self.store.pause(self.job_id, NOW)
        return await super().execute(payload, items)


async def test_pause_resume_cancel_and_retry_dead(store: EngineStore) -> None:
    kind = Pausing(store)
    payload = {"n": 5000, "shards": 1}
    kind.job_id = await store.create_job(
        "numbers", "control", payload, kind.split(payload), NOW, NOW
    )
    worker = Worker(store, {"numbers": kind}, clock=lambda: NOW)
    await worker.drain()
    # The batch running when the pause came was recorded; no new one started.
    assert kind.batches == 2 and (await store.progress(kind.job_id))["done"] == 2000
    assert await worker.drain() == 0  # a paused job is not picked up
    assert await store.resume(kind.job_id, NOW)
    await worker.drain()
    progress = await store.progress(kind.job_id)
    assert (progress["done"], progress["shards_done"], progress["shards"]) == (5000, 1, 1)
    assert (await store.job(kind.job_id))["state"] == "succeeded"
    assert set(kind.effects.values()) == {1}

    other = Numbers()
    job = await store.create_job("numbers", "cancelled", payload, other.split(payload), NOW, NOW)
    assert await store.cancel(job, NOW)
    assert not await store.resume(job, NOW)  # cancelled is final
    await Worker(store, {"numbers": other}, clock=lambda: NOW).drain()
    assert not other.effects

    failing = Numbers(fail_every=1)
    job = await store.create_job("numbers", "revive", {"n": 2, "shards": 1}, ["0:2"], NOW, NOW)
    clock = {"now": NOW}
    worker = Worker(store, {"numbers": failing}, clock=lambda: clock["now"])
    await worker.drain()
    for hour in range(1, 8):
        clock["now"] = NOW + timedelta(hours=hour)
        await worker.retry_due()
    assert (await store.job(job))["state"] == "completed_with_failures"
    failing.fail_every = 0
    assert await store.retry_dead(job, clock["now"]) == 2
    await worker.retry_due()
    assert (await store.job(job))["state"] == "succeeded"
    assert (await store.progress(job))["failed"] == 0


async def test_a_delayed_job_waits_for_its_time(store: EngineStore) -> None:
    kind = Numbers()
    payload = {"n": 10, "shards": 1}
    later = NOW + timedelta(hours=2)
    job = await store.create_job("numbers", "delayed", payload, kind.split(payload), later, NOW)
    clock = {"now": NOW}
    worker = Worker(store, {"numbers": kind}, clock=lambda: clock["now"])
    assert await worker.drain() == 0 and not kind.effects  # not due yet
    clock["now"] = later
    assert await worker.drain() == 1
    assert (await store.job(job))["state"] == "succeeded" and len(kind.effects) == 10
