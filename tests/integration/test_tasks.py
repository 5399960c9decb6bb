"""The task engine with a job kind that has nothing to do with plans."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis

from server.app import Platform
from server.persistence import migrate
from server.persistence.database import create_engine
from server.persistence.tables import item_failures, jobs, shards
from server.persistence.task_progress import Progress
from server.persistence.task_store import TaskStore
from server.tasks.kinds import PUSHED_BACK, Item, ItemResult, Outcome, Page
from server.tasks.runner import TaskRunner
from server.tasks.worker import CROWD_CHECK, MAX_ATTEMPTS, Worker
from server.throttle.buckets import BucketSettings, Decision, LocalBuckets, Starved
from server.throttle.redis_buckets import RedisBuckets
from tests.integration.conftest import settings
from tests.integration.private_redis import free_port, start_redis, stop_redis, until_up
from tests.integration.task_worker import Ranges

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
async def store(database_url: str) -> AsyncIterator[TaskStore]:
    await migrate.upgrade(database_url)
    engine = create_engine(database_url)
    # PostgreSQL is one database per session: each test starts with no jobs.
    async with engine.begin() as conn:
        for table in (item_failures, shards, jobs):
            await conn.execute(table.delete())
    yield TaskStore(engine)
    await engine.dispose()


async def test_a_hundred_thousand_items_each_exactly_once(
    store: TaskStore, database_url: str
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


class Logged(Numbers):
    """Numbers that say when each page is read and each batch runs."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page:
        self.events.append("load")
        return await super().load(payload, cursor, limit)

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.events.append("execute")
        await asyncio.sleep(0.01)  # a downstream call: the loop runs other tasks
        done = await super().execute(payload, items)
        self.events.append("executed")
        return done


async def test_the_next_page_is_read_while_a_batch_runs(store: TaskStore) -> None:
    """A shard of three batches: the second page is read before the first
    batch is done, and each item is still done once."""
    kind = Logged()
    kind.batch_size = 100
    payload = {"n": 300, "shards": 1}
    await store.create_job("numbers", "ahead", payload, kind.split(payload), NOW, NOW)
    assert await Worker(store, {"numbers": kind}, clock=lambda: NOW).drain() == 1
    assert kind.events[:3] == ["load", "execute", "load"]
    assert kind.events.count("load") == 3 and kind.events.count("executed") == 3
    assert len(kind.effects) == 300 and set(kind.effects.values()) == {1}


class ByShop(Numbers):
    """Numbers run for the shop its payload names, remembering which shop's
    items were done in which order; `starve` batches of a shop raise
    Starved (its share has no tokens) before doing anything."""

    def __init__(self, starve: dict[str, int] | None = None, pause: float = 0.0) -> None:
        super().__init__()
        self.starve = Counter(starve or {})
        self.pause = pause
        self.order: list[str] = []
        self.batches: list[str] = []  # the shop of each batch, in order

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        shop = payload["shop_id"]
        if self.starve[shop] > 0:
            self.starve[shop] -= 1
            raise Starved(300_000)
        await asyncio.sleep(self.pause)
        self.order += [shop] * len(items)
        self.batches.append(shop)
        done = await super().execute(payload, [Item(f"{shop}{i.key}", i.data) for i in items])
        return [ItemResult(i.key, r.outcome) for i, r in zip(items, done, strict=True)]


async def test_a_shard_whose_shop_has_no_tokens_gives_up_its_worker(store: TaskStore) -> None:
    """Shop X's run came first, but its share has no tokens: its shard is
    handed back uncommitted and the one worker runs shop Y meanwhile; X's
    items are then done, each once."""
    kind = ByShop(starve={"X": 1})
    kind.batch_size = 100
    x = {"n": 300, "shards": 1, "shop_id": "X"}
    y = {"n": 200, "shards": 1, "shop_id": "Y"}
    await store.create_job("numbers", "x", x, kind.split(x), NOW - timedelta(seconds=1), NOW)
    await store.create_job("numbers", "y", y, kind.split(y), NOW, NOW)
    worker = Worker(store, {"numbers": kind}, clock=lambda: NOW)
    assert await worker.drain() == 3  # X (set aside), Y, X again
    assert kind.order == ["Y"] * 200 + ["X"] * 300
    assert len(kind.effects) == 500 and set(kind.effects.values()) == {1}


async def test_workers_take_turns_between_shops(store: TaskStore) -> None:
    """Shop A's big run holds both workers; shop B's small run, started
    later, gets one of them at a worker's next look around and keeps it, so
    B ends long before A. Counted in batches, which take at least `pause`
    each, so a slow machine does not change the verdict."""
    kind = ByShop(pause=0.05)
    kind.batch_size = 50
    workers = 2
    a = {"n": 20_000, "shards": 4, "shop_id": "A"}
    b = {"n": 1_000, "shards": 4, "shop_id": "B"}
    await store.create_job("numbers", "a", a, kind.split(a), NOW - timedelta(seconds=1), NOW)
    runner = TaskRunner(Worker(store, {"numbers": kind}, clock=lambda: NOW), workers, poll=0.05)
    runner.start()
    try:
        for _ in range(100):  # bounded: until A runs on both workers
            if len(kind.order) >= 200:
                break
            await asyncio.sleep(0.05)
        b_created = len(kind.batches)
        await store.create_job("numbers", "b", b, kind.split(b), NOW, NOW)
        for _ in range(600):  # bounded: 30 s
            if kind.order.count("B") == 1_000:
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.stop(grace=2)
    assert kind.order.count("B") == 1_000
    assert set(kind.effects.values()) == {1}
    b_first = kind.batches.index("B")
    b_last = len(kind.batches) - 1 - kind.batches[::-1].index("B")
    # B waits at most until a worker looks around (every CROWD_CHECK seconds,
    # jittered by a quarter), meanwhile a batch of A on each worker at most
    # every `pause`. Both workers handing A back at once and taking A again
    # (it was due first) left B waiting for seconds.
    waited = kind.batches[b_created:b_first].count("A")
    assert waited <= workers * (CROWD_CHECK * 1.25 / kind.pause + 2), kind.batches
    # Then B keeps a worker: A has the other, and about as many batches as B.
    during = kind.batches[b_first:b_last]
    assert during.count("A") <= 2 * during.count("B") + 2 * workers, kind.batches
    assert kind.order.count("A") < 20_000 / 2  # A was far from done when B ended


async def test_a_job_is_made_once_per_kind_and_key(store: TaskStore) -> None:
    payload = {"n": 10, "shards": 1}
    first = await store.create_job("numbers", "same", payload, ["0:10"], NOW, NOW)
    again = await store.create_job("numbers", "same", payload, ["0:10"], NOW, NOW)
    assert first == again


async def test_a_worker_takes_only_the_kinds_it_can_run(store: TaskStore) -> None:
    kind = Numbers()
    payload = {"n": 10, "shards": 1}
    job = await store.create_job("numbers", "kinds", payload, kind.split(payload), NOW, NOW)
    stranger = Numbers()
    assert await Worker(store, {"letters": stranger}, clock=lambda: NOW).drain() == 0
    assert await Worker(store, {}, clock=lambda: NOW).drain() == 0
    assert await Worker(store, {"numbers": kind}, clock=lambda: NOW).drain() == 1
    assert (await store.job(job))["state"] == "succeeded" and not stranger.effects


async def test_failures_are_per_item(store: TaskStore) -> None:
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


async def test_a_lost_lease_stops_a_worker_at_the_next_batch(store: TaskStore) -> None:
    kind = Numbers()
    payload = {"n": 5000, "shards": 1}
    job = await store.create_job("numbers", "lease", payload, kind.split(payload), NOW, NOW)
    slow = Worker(store, {"numbers": kind}, clock=lambda: NOW, lease=timedelta(seconds=30))
    lease = await store.claim(slow.owner, NOW, slow.lease, ["numbers"])
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


async def test_retries_are_swept_when_due_until_done_or_dead(store: TaskStore) -> None:
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


async def test_items_past_the_attempt_limit_are_dead_lettered(store: TaskStore) -> None:
    kind = Numbers(fail_every=1)  # every item keeps failing
    payload = {"n": 3, "shards": 1}
    job = await store.create_job("numbers", "dead", payload, kind.split(payload), NOW, NOW)
    clock = {"now": NOW}
    worker = Worker(store, {"numbers": kind}, clock=lambda: clock["now"])
    await worker.drain()
    for hour in range(1, 2 * MAX_ATTEMPTS):
        clock["now"] = NOW + timedelta(hours=hour)
        await worker.retry_due()
    failures = await store.failures(job)
    assert {(f.state, f.attempts) for f in failures} == {("dead", MAX_ATTEMPTS)}
    assert (await store.job(job))["state"] == "completed_with_failures"


class Pausing(Numbers):
    """Asks for a pause (as an operator would) while its second batch runs."""

    def __init__(self, store: TaskStore) -> None:
        super().__init__()
        self.store = store
        self.job_id = ""
        self.batches = 0

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.batches += 1
        if self.batches == 2:
            await self.store.pause(self.job_id, NOW)
        return await super().execute(payload, items)


async def test_pause_resume_cancel_and_retry_dead(store: TaskStore) -> None:
    kind = Pausing(store)
    payload = {"n": 5000, "shards": 1}
    kind.job_id = await store.create_job(
        "numbers", "control", payload, kind.split(payload), NOW, NOW
    )
    worker = Worker(store, {"numbers": kind}, clock=lambda: NOW)
    await worker.drain()
    # The batch running when the pause came was recorded; no new one started.
    assert kind.batches == 2 and (await store.progress(kind.job_id, NOW)).done == 2000
    assert await worker.drain() == 0  # a paused job is not picked up
    assert await store.resume(kind.job_id, NOW)
    await worker.drain()
    progress = await store.progress(kind.job_id, NOW)
    assert (progress.done, progress.shards_done, progress.shards) == (5000, 1, 1)
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
    for hour in range(1, 2 * MAX_ATTEMPTS):
        clock["now"] = NOW + timedelta(hours=hour)
        await worker.retry_due()
    assert (await store.job(job))["state"] == "completed_with_failures"
    failing.fail_every = 0
    assert await store.retry_dead(job, clock["now"]) == 2
    await worker.retry_due()
    assert (await store.job(job))["state"] == "succeeded"
    assert (await store.progress(job, NOW)).failed == 0


async def test_a_delayed_job_waits_for_its_time(store: TaskStore) -> None:
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


class Ticking(Numbers):
    """A downstream that takes one (clock) second per batch of 1,000 items,
    and looks at the job's progress while its fifth batch runs."""

    def __init__(self, store: TaskStore, clock: dict[str, datetime]) -> None:
        super().__init__()
        self.store, self.clock = store, clock
        self.job_id = ""
        self.seen: list[Progress] = []

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.clock["now"] += timedelta(seconds=1)
        if items[0].data["i"] == 4000:
            self.seen.append(await self.store.progress(self.job_id, self.clock["now"]))
        return await super().execute(payload, items)


async def test_progress_tells_the_rate_and_the_time_left(store: TaskStore) -> None:
    clock = {"now": NOW}
    kind = Ticking(store, clock)
    payload = {"n": 10_000, "shards": 1}
    kind.job_id = await store.create_job(
        "numbers", "eta", payload, kind.split(payload), NOW, NOW, total=10_000
    )
    before = await store.progress(kind.job_id, NOW)
    assert (before.state, before.processed, before.eta) == ("pending", 0, None)
    await Worker(store, {"numbers": kind}, clock=lambda: clock["now"]).drain()
    (middle,) = kind.seen  # four batches recorded, at 1,000 items a second
    assert (middle.state, middle.processed) == ("running", 4000)
    # Seen a second after the last record: a little under the true 1,000/s.
    assert 700 <= middle.rate <= 1300
    assert middle.eta is not None and 4.5 <= middle.eta.total_seconds() <= 9  # 6,000 left
    end = await store.progress(kind.job_id, clock["now"])
    assert (end.state, end.processed, end.eta) == ("succeeded", 10_000, timedelta(0))
    # A minute of nothing: the current rate has gone, the averages have not.
    assert (await store.progress(kind.job_id, clock["now"] + timedelta(minutes=1))).rate < 1


class Slow(Numbers):
    """A downstream slower than the worker's lease: every batch takes `delay` s."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.batches = 0

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.batches += 1
        await asyncio.sleep(self.delay)
        return await super().execute(payload, items)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_a_slow_batch_keeps_its_lease_by_heartbeat(store: TaskStore) -> None:
    # Each batch outlasts the lease three times over. A lease under a second
    # expired on a busy machine: a heartbeat every lease/3 came too late.
    kind = Slow(delay=2.4)
    kind.batch_size = 1000
    payload = {"n": 2000, "shards": 1}
    job = await store.create_job("numbers", "heartbeat", payload, kind.split(payload), NOW, NOW)
    worker = Worker(store, {"numbers": kind}, clock=_now, lease=timedelta(seconds=0.8))
    running = asyncio.create_task(worker.drain())
    for _ in range(100):  # bounded: until the first batch is under way
        if kind.batches:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.6)  # twice the lease, mid-batch
    assert await store.claim("intruder", _now(), timedelta(seconds=30), ["numbers"]) is None
    await asyncio.wait_for(running, 30)
    assert set(kind.effects.values()) == {1} and len(kind.effects) == 2000
    assert (await store.job(job))["state"] == "succeeded"


async def test_a_stopping_runner_hands_its_shard_back_at_once(store: TaskStore) -> None:
    kind = Slow(delay=0.05)
    payload = {"n": 20_000, "shards": 1}
    kind.batch_size = 100
    job = await store.create_job("numbers", "handback", payload, kind.split(payload), NOW, NOW)
    runner = TaskRunner(Worker(store, {"numbers": kind}, clock=_now), concurrency=1, poll=0.05)
    runner.start()
    for _ in range(200):
        if kind.batches >= 3:
            break
        await asyncio.sleep(0.02)
    await runner.stop(grace=10)
    stopped_at = kind.batches
    assert 3 <= stopped_at < 200 and (await store.job(job))["state"] == "running"
    # No lease to wait out: another worker continues from the committed cursor.
    kind.delay = 0
    assert await Worker(store, {"numbers": kind}, clock=_now).drain() == 1
    assert set(kind.effects.values()) == {1} and len(kind.effects) == 20_000


class PushedBack(Numbers):
    """A downstream that answers RESOURCE_EXHAUSTED to its first `n` batches."""

    bucket: str | None = "b"

    def __init__(self, pushed: int) -> None:
        super().__init__()
        self.pushed = pushed

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        if self.pushed:
            self.pushed -= 1
            return [ItemResult(i.key, Outcome.RETRY, PUSHED_BACK) for i in items]
        return await super().execute(payload, items)


async def test_push_back_lowers_the_rate_and_success_raises_it(store: TaskStore) -> None:
    kind = PushedBack(pushed=3)
    kind.batch_size = 100
    payload = {"n": 800, "shards": 1}
    await store.create_job("numbers", "adapt", payload, kind.split(payload), NOW, NOW)
    factors = []

    class Watching(LocalBuckets):
        async def take(
            self, name: str, tokens: int, now_us: int | None = None, shop: str | None = None
        ) -> Decision:
            factors.append((await self.settings(name))[1])
            return await super().take(name, tokens, now_us, shop)

    buckets = Watching({"b": BucketSettings(rate=1e9, capacity=10**6)}, clock_us=lambda: 0)
    await Worker(store, {"numbers": kind}, clock=lambda: NOW, buckets=buckets).drain()
    # Halved by each of three push-backs, then a step back up per good batch.
    assert factors == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.175, 0.225, 0.275, 0.325])


class Recording(Numbers):
    """Remembers when each item was executed."""

    bucket: str | None = "b"

    def __init__(self) -> None:
        super().__init__()
        self.executed = 0

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        self.executed += len(items)  # at once: before the first await
        await asyncio.sleep(0.01)
        return await super().execute(payload, items)


@pytest.mark.redis
async def test_a_redis_outage_holds_the_job_and_loses_nothing(store: TaskStore) -> None:
    port = free_port()
    server = start_redis(port)
    client = redis.from_url(
        f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        await until_up(client)
        buckets = RedisBuckets(client, "outage", {"b": BucketSettings(rate=5000.0, capacity=100)})
        kind = Recording()
        kind.batch_size = 100
        payload = {"n": 20_000, "shards": 1}
        job = await store.create_job("numbers", "outage", payload, kind.split(payload), NOW, NOW)
        worker = Worker(store, {"numbers": kind}, clock=_now, buckets=buckets)
        running = asyncio.create_task(worker.drain())
        for _ in range(500):
            if kind.executed >= 1000:
                break
            await asyncio.sleep(0.01)
        stop_redis(server)
        down = kind.executed
        assert 1000 <= down < 20_000
        await asyncio.sleep(2)  # down: the bucket cannot say yes, so nothing runs
        assert kind.executed == down and not running.done()
        server = start_redis(port)
        await asyncio.wait_for(running, 120)
        assert len(kind.effects) == 20_000 and set(kind.effects.values()) == {1}
        state = await store.job(job)
        assert (state["state"], state["done"], state["failed"]) == ("succeeded", 20_000, 0)
    finally:
        stop_redis(server)
        await client.aclose()


async def test_the_server_runs_jobs_of_registered_kinds(database_url: str) -> None:
    kind = Numbers()
    running = Platform(settings(database_url, engine_poll=0.05), job_kinds={"numbers": kind})
    await running.start()
    try:
        assert running.jobs is not None
        now = _now()
        payload = {"n": 3000, "shards": 3}
        job = await running.jobs.create_job(
            "numbers", f"served-{uuid.uuid4().hex}", payload, kind.split(payload), now, now, 3000
        )
        for _ in range(400):  # bounded: the server's own workers pick it up
            if (await running.jobs.job(job))["state"] == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert (await running.jobs.progress(job, _now())).processed == 3000
        assert len(kind.effects) == 3000 and set(kind.effects.values()) == {1}
    finally:
        await running.stop(grace=1)
