"""A worker: leases shards and runs them load -> execute -> record, batch by batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from opentelemetry.trace import NoOpTracer, Tracer

from server import run_traces
from server.metrics import NO_METRICS, Metrics
from server.persistence.task_batches import Failure
from server.persistence.task_leases import Lease
from server.persistence.task_store import TaskStore
from server.readiness import Complaints
from server.tasks.kinds import PUSHED_BACK, Item, ItemResult, JobKind, Outcome, Page
from server.throttle.buckets import NEVER, Buckets, Starved, acquire, adapt

log = logging.getLogger("custops.engine")

FAULT_ENV = "CUSTOPS_FAULT_POINT"
# Transient failures (UNAVAILABLE, timeouts, push-back) are tried this often,
# with back-offs summing to ~8 minutes at most, before an item is dead-lettered:
# a downstream failing 25% of calls leaves about 1 batch in a million dead.
MAX_ATTEMPTS = 10
BASE_BACKOFF = timedelta(seconds=1)
MAX_BACKOFF = timedelta(minutes=10)
LOAD_RETRY = timedelta(seconds=2)
# How often a worker looks whether another tenant waits for a worker, and
# the longest a starved tenant's shards are passed over.
CROWD_CHECK = 1.0
MAX_SET_ASIDE = 5.0


def fault_point(name: str) -> None:
    """Die here, at once and uncleanly, when CUSTOPS_FAULT_POINT names this point:
    crash tests hit the exact moment instead of hoping a random kill does."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _set_aside_for(starved: Starved) -> float:
    """Seconds until the starved share has tokens, at most MAX_SET_ASIDE."""
    return MAX_SET_ASIDE if starved.wait_us == NEVER else min(MAX_SET_ASIDE, starved.wait_us / 1e6)


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Exponential with full jitter: at most 1 s, 2 s, 4 s, ... capped at 10 min."""
    ceiling = min(MAX_BACKOFF, BASE_BACKOFF * (2 ** max(attempts - 1, 0)))
    return timedelta(seconds=rng.uniform(0, ceiling.total_seconds()))


class Worker:
    def __init__(
        self,
        store: TaskStore,
        kinds: dict[str, JobKind],
        clock: Callable[[], datetime],
        buckets: Buckets | None = None,
        lease: timedelta = timedelta(seconds=30),
        owner: str | None = None,
        metrics: Metrics = NO_METRICS,
        complaints: Complaints | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.tracer = tracer or NoOpTracer()
        self.metrics = metrics
        self.complaints = complaints or Complaints()
        self.kinds = kinds
        self.clock = clock
        self.buckets = buckets
        self.lease = lease
        self.owner = owner or uuid.uuid4().hex[:12]
        self._rng = random.Random()
        self._stopping = False
        # Tenants whose shares had no tokens, until when (monotonic seconds):
        # their shards are left for later, and the workers do other work.
        self._starved: dict[str, float] = {}

    def stop(self) -> None:
        """Finish the batch in hand, hand the shard back, take no new one."""
        self._stopping = True

    async def run_once(self) -> bool:
        """Take one shard and run it to its end (or until its lease is lost).
        False when there was nothing to do."""
        if self._stopping:
            return False
        lease = await self._claim()
        if lease is None and self._starved:
            # Only starved tenants' work is left: look again once the first
            # of them has tokens, rather than at the next poll.
            await asyncio.sleep(max(0.0, min(min(self._starved.values()) - time.monotonic(), 1.0)))
            lease = await self._claim()
        if lease is None:
            return False
        while lease is not None:  # a shard handed back for another's turn: the next one
            lease = await self._run(lease)
        return True

    async def _claim(self, passing: str | None = None) -> Lease | None:
        """A shard to run; with `passing`, one of another tenant's first
        (this worker just handed that tenant's shard back for their turn)."""
        now = time.monotonic()
        self._starved = {t: until for t, until in self._starved.items() if until > now}
        if passing is not None:
            turn = await self.store.claim(
                self.owner,
                self.clock(),
                self.lease,
                self.kinds,
                passed_over=[*self._starved, passing],
            )
            if turn is not None or passing in self._starved:
                return turn
        return await self.store.claim(
            self.owner, self.clock(), self.lease, self.kinds, passed_over=list(self._starved)
        )

    async def _set_aside(self, lease: Lease, starved: Starved) -> None:
        """The tenant's share has no tokens for a while: hand its shard back
        (its batch did not commit and is done again, idempotently, later) and
        pass its shards over until then, so this worker serves another tenant."""
        self._starved[lease.tenant] = time.monotonic() + _set_aside_for(starved)
        await self.store.release(lease)
        log.info(
            "shard set aside: its shop's share has no tokens",
            extra={"job_id": lease.job_id, "shard": lease.shard_index, "shop": lease.tenant},
        )

    async def drain(self, max_shards: int = 1_000_000) -> int:
        """Run shards until none is left; how many were run."""
        ran = 0
        while ran < max_shards and await self.run_once():
            ran += 1
        return ran

    async def retry_due(self, limit: int = 1000) -> int:
        """The periodic sweeper: run the retrying items whose time has come
        (they survive a restart in the database); how many were tried."""
        now = self.clock()
        if not self.kinds:
            return 0
        claimed = await self.store.claim_retries(now, self.lease, limit, self.kinds)
        by_job: dict[str, list[tuple[str, dict[str, object], Failure]]] = {}
        for job_id, kind_name, job_payload, failure in claimed:
            by_job.setdefault(job_id, []).append((kind_name, job_payload, failure))
        for job_id, entries in by_job.items():
            kind = self.kinds[entries[0][0]]
            payload = entries[0][1]
            items = [Item(f.item_key, dict(f.item)) for _, _, f in entries]
            attempts = {f.item_key: f.attempts for _, _, f in entries}
            tallies: Counter[tuple[str, str]] = Counter()
            try:
                with run_traces.batch(self.tracer, payload, kind.name, retries=len(items)):
                    done, failures, tallies = await self._execute(kind, payload, items, attempts)
            except Starved as starved:  # not an attempt: again once there are tokens
                later = self.clock() + timedelta(seconds=_set_aside_for(starved))
                done, failures = (
                    0,
                    [
                        Failure(f.item_key, f.item, "retrying", f.attempts, f.reason, later)
                        for _, _, f in entries
                    ],
                )
            done_keys = [i.key for i in items if i.key not in {f.item_key for f in failures}]
            assert len(done_keys) == done
            await self.store.settle_retries(job_id, done_keys, failures, self.clock())
            self._recorded(kind, failures, tallies, payload)
        return len(claimed)

    async def _run(self, lease: Lease) -> Lease | None:
        """Run the shard; the next one when it was handed back for another
        tenant's turn."""
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            return await self._run_batches(lease)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, lease: Lease) -> None:
        """Keep the lease while a batch waits for tokens or a slow downstream;
        batches that end in time extend it anyway when they commit."""
        every = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.store.heartbeat(lease, self.clock(), self.lease):
                    return  # lost: the next commit is refused and the worker stops
            except Exception:  # the database is away; the commit will tell
                self.complaints.failed("lease heartbeat", "lease heartbeat failed")

    async def _run_batches(self, lease: Lease) -> Lease | None:
        kind = self.kinds[lease.kind]
        cursor = lease.cursor
        look_around = self._next_look_around()
        # The next batch's items, read while this one runs: a batch's
        # downstream calls and writes no longer wait for its page first.
        ahead: asyncio.Task[Page] | None = None
        try:
            while True:
                with run_traces.batch(
                    self.tracer, lease.payload, kind.name, shard=lease.shard_index
                ):
                    moved_on, ahead = await self._batch(kind, lease, cursor, ahead)
                if moved_on is None:
                    return None
                if self._stopping:
                    await self.store.release(lease)
                    return None
                if time.monotonic() >= look_around:
                    look_around = self._next_look_around()
                    if await self.store.crowded(lease, self.clock(), self.kinds):
                        # Another shop waits: its turn. Taking this shop's
                        # shard again (first by due time when both hold
                        # equally few) would give it none.
                        await self.store.release(lease)
                        return None if self._stopping else await self._claim(lease.tenant)
                cursor = moved_on
                lease = Lease(
                    lease.job_id,
                    lease.kind,
                    lease.payload,
                    lease.shard_index,
                    cursor,
                    lease.fencing,
                    lease.tenant,
                )
        finally:
            _drop(ahead)  # read for a batch this worker will not run

    def _next_look_around(self) -> float:
        """When to look again whether another tenant waits. Jittered, so the
        workers of a process that started together do not all hand their
        shards back at once and all take the waiting tenant's."""
        return time.monotonic() + CROWD_CHECK * self._rng.uniform(0.75, 1.25)

    async def _batch(
        self, kind: JobKind, lease: Lease, cursor: str, ahead: asyncio.Task[Page] | None
    ) -> tuple[str | None, asyncio.Task[Page] | None]:
        """Load (or take the page read ahead), execute and record one batch:
        the next cursor, or None when the shard is done, set aside, lost, or
        its source is away; and the next page's read, started meanwhile."""
        try:
            page = await (ahead or kind.load(lease.payload, cursor, kind.batch_size))
        except Starved as starved:
            await self._set_aside(lease, starved)
            return None, None
        except Exception:
            # The source is away: keep the lease a little while (nobody
            # else would do better at once), then anyone may try again.
            self.complaints.failed(
                "load", "loading shard %s of job %s failed", lease.shard_index, lease.job_id
            )
            await self.store.heartbeat(lease, self.clock(), LOAD_RETRY)
            return None, None
        following = None
        if page.next_cursor is not None and not self._stopping:
            following = asyncio.create_task(
                kind.load(lease.payload, page.next_cursor, kind.batch_size)
            )
        handed_on = False  # `following` goes to the next batch only when this one is recorded
        try:
            failures: list[Failure] = []
            tallies: Counter[tuple[str, str]] = Counter()
            done = 0
            if page.items:
                try:
                    done, failures, tallies = await self._execute(kind, lease.payload, page.items)
                except Starved as starved:
                    await self._set_aside(lease, starved)
                    return None, None
                fault_point("after_execute")
            if not await self.store.commit(
                lease, page.next_cursor, done, failures, self.clock(), self.lease
            ):
                return None, None  # fenced out: another worker has the shard
            handed_on = True
        finally:
            if not handed_on:
                _drop(following)
        self._recorded(kind, failures, tallies, lease.payload)
        return page.next_cursor, following

    def _recorded(
        self,
        kind: JobKind,
        failures: list[Failure],
        tallies: Counter[tuple[str, str]],
        payload: dict[str, object],
    ) -> None:
        """A batch's results are in the database: count them, once (a batch
        done again after a crash was never recorded the first time)."""
        self.metrics.batch(kind.name)
        self.metrics.dead_lettered(kind.name, sum(f.state == "dead" for f in failures))
        shop = str(payload.get("shop_id", ""))
        for (outcome, reason), count in tallies.items():
            self.metrics.members(outcome, reason, count, shop)

    async def _execute(
        self,
        kind: JobKind,
        payload: dict[str, object],
        items: list[Item],
        attempts: dict[str, int] | None = None,
    ) -> tuple[int, list[Failure], Counter[tuple[str, str]]]:
        """Throttle, execute and judge one batch: (items done, failures, and
        what the results count as in the job's outcomes)."""
        tried = attempts or {}
        if self.buckets is not None and kind.bucket:
            await acquire(self.buckets, kind.bucket, len(items), metrics=self.metrics)
        try:
            results = {r.key: r for r in await kind.execute(payload, items)}
        except Starved:
            raise  # not a failure: the shop's share has no tokens now
        except Exception as exc:  # the whole batch: every item retries on its own later
            # Said (once a minute, unless a dependency is known down): a
            # downstream outage and a bug look alike from here.
            self.complaints.failed("batch", "a batch of %d items failed; each retries", len(items))
            reason = f"{exc.__class__.__name__}: {exc}"
            failed = [self._retry(item, tried.get(item.key, 0) + 1, reason) for item in items]
            return 0, failed, Counter()
        await self._adapt(kind, results.values())
        done, failures = 0, []
        tallies = Counter(r.tally for r in results.values() if r.tally is not None)
        for item in items:
            result = results.get(item.key)
            if result is not None and result.outcome is Outcome.DONE:
                done += 1
            elif result is not None and result.outcome is Outcome.DEFER:
                failures.append(
                    Failure(
                        item.key,
                        result.data if result.data is not None else item.data,
                        "retrying",
                        tried.get(item.key, 0),
                        result.reason,
                        result.not_before or self.clock(),
                    )
                )
            elif result is not None and result.outcome is Outcome.FAILED:
                failures.append(
                    Failure(
                        item.key,
                        item.data,
                        "failed",
                        tried.get(item.key, 0) + 1,
                        result.reason,
                        None,
                    )
                )
            else:
                reason = result.reason if result is not None else "NO_RESULT"
                failures.append(self._retry(item, tried.get(item.key, 0) + 1, reason))
        return done, failures, tallies

    async def _adapt(self, kind: JobKind, results: Iterable[ItemResult]) -> None:
        """A downstream that pushed back lowers its bucket's rate; a batch that
        went through raises it a step back toward the configured ceiling."""
        if self.buckets is None or not kind.bucket:
            return
        pushed_back = PUSHED_BACK in {r.reason for r in results}
        await adapt(self.buckets, kind.bucket, pushed_back, self.metrics)

    def _retry(self, item: Item, attempts: int, reason: str) -> Failure:
        if attempts >= MAX_ATTEMPTS:
            return Failure(item.key, item.data, "dead", attempts, reason, None)
        when = self.clock() + backoff(attempts, self._rng)
        return Failure(item.key, item.data, "retrying", attempts, reason, when)


def _drop(read: asyncio.Task[Page] | None) -> None:
    """A page read ahead that no batch will use: cancelled, and its outcome
    (an error included) taken when it ends, so nothing reports it unheard."""
    if read is not None:
        read.cancel()
        read.add_done_callback(lambda task: task.cancelled() or task.exception())
