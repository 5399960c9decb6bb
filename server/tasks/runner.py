"""The engine inside a server process: worker loops and the retry sweeper,
started with the server and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from server.readiness import Complaints
from server.tasks.worker import Worker

log = logging.getLogger("custops.engine")


Periodic = tuple[str, Callable[[], Awaitable[object]], float]  # name, what, every (s)


class TaskRunner:
    """`concurrency` loops that each run one shard at a time, the sweeper
    that retries due items, and other periodic duties (the plan scheduler).
    Every replica runs one; the database decides who gets which shard, so
    adding replicas adds throughput."""

    def __init__(
        self,
        worker: Worker,
        concurrency: int = 2,
        poll: float = 1.0,
        sweep_every: float = 5.0,
        periodic: list[Periodic] | None = None,
        complaints: Complaints | None = None,
    ) -> None:
        self.worker = worker
        self.concurrency = concurrency
        self.poll = poll
        self.periodic: list[Periodic] = [("retry sweep", worker.retry_due, sweep_every)]
        self.periodic += periodic or []
        self._complaints = complaints or Complaints()
        self._stopping = asyncio.Event()
        self._work = asyncio.Event()  # replaced on every wake: waiters hold the old one
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """New work in this process (a job just created here): idle worker
        loops look at once instead of at their next poll."""
        self._work.set()
        self._work = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.concurrency)]
        self._tasks += [asyncio.create_task(self._every(*p)) for p in self.periodic]

    async def stop(self, grace: float) -> None:
        """Stop at the next batch boundary (the shard is handed back at once);
        after `grace` seconds, cancel: the lease then simply runs out."""
        self._stopping.set()
        self.worker.stop()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ran = await self.worker.run_once()
            except Exception:  # the database went away; try again after a pause
                self._complaints.failed("engine worker", "engine worker failed; retrying")
                ran = False
            if not ran:
                await self._idle()

    async def _idle(self) -> None:
        """Until the poll interval passes, new work is announced, or we stop."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, self._work)]
        try:
            await asyncio.wait(waits, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _every(self, name: str, duty: Callable[[], Awaitable[object]], every: float) -> None:
        while not self._stopping.is_set():
            try:
                await duty()
            except Exception:
                self._complaints.failed(name, "%s failed; trying again in %s s", name, every)
            await self._pause(every)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
