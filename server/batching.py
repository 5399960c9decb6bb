"""Single requests coalesced into batches (natural batching).

A request joins its group's queue. While fewer than `in_flight` batches of
the group run, the queue goes out at once as one batch of at most
`max_size`. Under light load every request is a batch of its own and waits
for nothing; under heavy load the requests that arrive while batches run go
out together, so the fixed cost of a downstream call or a query is paid once
per batch instead of once per request, and the batch size follows the load.

A batch serves many callers, so it runs in a context of its own, not in the
context of the caller that happened to start it (whose deadline or request
id would otherwise govern everyone's batch, and every batch after it). With
tracing on, the batch is a span of its own linked to every caller's span.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, NoOpTracer, SpanContext, Tracer

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

# Answers one batch: per item, in order, its result or the error for it alone.
BatchCall = Callable[[K, list[T]], Awaitable[Sequence["R | Exception"]]]


@dataclass
class _Group(Generic[T, R]):
    queue: list[tuple[T, asyncio.Future[R], SpanContext]] = field(default_factory=list)
    running: int = 0


class Coalescer(Generic[K, T, R]):
    def __init__(
        self,
        call: BatchCall[K, T, R],
        max_size: int = 64,
        in_flight: int = 1,
    ) -> None:
        if max_size < 1 or in_flight < 1:
            raise ValueError("max_size and in_flight must be at least 1")
        self._call = call
        self._max_size = max_size
        self._in_flight = in_flight
        self._groups: dict[K, _Group[T, R]] = {}
        # Set by the server when tracing is on: each batch a span, linked to
        # the spans of the calls it answers.
        self.tracer: Tracer = NoOpTracer()
        self.span_name = "batch"
        self._tasks: set[asyncio.Task[None]] = set()
        # Batches sent and the items in them: the mean batch size shows how
        # much the load is coalesced.
        self.batches = 0
        self.items = 0

    async def load(self, key: K, item: T) -> R:
        """The item's answer, from whichever batch of its group takes it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        group = self._groups.setdefault(key, _Group())
        group.queue.append((item, future, trace.get_current_span().get_span_context()))
        self._maybe_start(key, group)
        return await future

    def _maybe_start(self, key: K, group: _Group[T, R]) -> None:
        if group.running < self._in_flight:
            self._start(key, group)

    def _start(self, key: K, group: _Group[T, R]) -> None:
        # A caller that gave up (cancelled, deadline) is left out.
        waiting = [(item, f, caller) for item, f, caller in group.queue if not f.done()]
        taken, group.queue = waiting[: self._max_size], waiting[self._max_size :]
        if not taken:
            if not group.running and self._groups.get(key) is group:
                del self._groups[key]
            return
        group.running += 1
        self.batches += 1
        self.items += len(taken)
        task = asyncio.create_task(self._run(key, group, taken), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        key: K,
        group: _Group[T, R],
        taken: list[tuple[T, asyncio.Future[R], SpanContext]],
    ) -> None:
        links = [Link(caller) for _, _, caller in taken if caller.is_valid]
        try:
            with self.tracer.start_as_current_span(
                self.span_name, links=links, attributes={"custops.batch.size": len(taken)}
            ):
                answers = await self._call(key, [item for item, _, _ in taken])
            if len(answers) != len(taken):
                raise RuntimeError(f"a batch of {len(taken)} got {len(answers)} answers")
        except Exception as exc:  # the whole batch failed: each caller gets the error
            answers = [exc] * len(taken)
        except asyncio.CancelledError:  # the server is stopping
            for _, future, _ in taken:
                future.cancel()
            raise
        finally:
            group.running -= 1
            self._maybe_start(key, group)
        for (_, future, _), answer in zip(taken, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
