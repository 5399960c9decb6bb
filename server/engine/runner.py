"""The engine inside a server process: worker loops and the retry sweeper,
started with the server and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.engine.worker import Worker

log = logging.getLogger("custops.engine")


class EngineRunner:
    """`concurrency` loops that each run one shard at a time, and a sweeper
    that retries due items. Every replica runs one; the database decides who
    gets which shard, so adding replicas adds throughput."""

    def __init__(
        self, worker: Worker, concurrency: int = 2, poll: float = 1.0, sweep_every: float = 5.0
    ) -> None:
        self.worker = worker
        self.concurrency = concurrency
        self.poll = poll
        self.sweep_every = sweep_every
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._sweep()))

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
                log.warning("engine worker failed; retrying", exc_info=True)
                ran = False
            if not ran:
                await self._pause(self.poll)

    async def _sweep(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.worker.retry_due()
            except Exception:
                log.warning("retry sweep failed; retrying", exc_info=True)
            await self._pause(self.sweep_every)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
