"""server.batching.Coalescer: single requests answered from shared batches."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from server.batching import Coalescer

WHO = contextvars.ContextVar("who", default="nobody")


class Doubler:
    """A batch call that doubles numbers; one batch at a time can be held
    open by the test, and a negative number fails alone."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.seen_context: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail_all: Exception | None = None

    async def __call__(self, key: str, items: list[int]) -> list[int | Exception]:
        self.batches.append((key, list(items)))
        self.seen_context.append(WHO.get())
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_all is not None:
            raise self.fail_all
        return [ValueError(f"{n} is negative") if n < 0 else 2 * n for n in items]


async def test_a_request_alone_is_a_batch_of_its_own_and_waits_for_nothing() -> None:
    call = Doubler()
    batcher = Coalescer(call)
    assert await batcher.load("a", 1) == 2
    assert await batcher.load("a", 2) == 4
    assert call.batches == [("a", [1]), ("a", [2])]


async def test_requests_that_arrive_while_a_batch_runs_go_out_together() -> None:
    call = Doubler()
    call.gate = asyncio.Event()
    batcher = Coalescer(call)
    first = asyncio.create_task(batcher.load("a", 1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.load("a", n)) for n in range(2, 7)]
    other_key = asyncio.create_task(batcher.load("b", 100))
    await asyncio.sleep(0)
    call.gate.set()
    assert await first == 2
    assert [await t for t in later] == [4, 6, 8, 10, 12]
    assert await other_key == 200
    # The first went alone; the five that waited went as one batch; another
    # key is a group of its own.
    assert sorted(call.batches) == [("a", [1]), ("a", [2, 3, 4, 5, 6]), ("b", [100])]
    assert (batcher.batches, batcher.items) == (3, 7)


async def test_a_batch_holds_at_most_max_size() -> None:
    call = Doubler()
    call.gate = asyncio.Event()
    batcher = Coalescer(call, max_size=2)
    tasks = [asyncio.create_task(batcher.load("a", n)) for n in range(5)]
    await asyncio.sleep(0)
    call.gate.set()
    assert [await t for t in tasks] == [0, 2, 4, 6, 8]
    assert [items for _, items in call.batches] == [[0], [1, 2], [3, 4]]


async def test_an_item_error_reaches_its_caller_only_and_a_batch_error_reaches_all() -> None:
    call = Doubler()
    call.gate = asyncio.Event()
    batcher = Coalescer(call)
    blocker = asyncio.create_task(batcher.load("a", 0))
    await asyncio.sleep(0)
    good, bad = (
        asyncio.create_task(batcher.load("a", 3)),
        asyncio.create_task(batcher.load("a", -1)),
    )
    await asyncio.sleep(0)
    call.gate.set()
    assert await blocker == 0
    assert await good == 6
    with pytest.raises(ValueError, match="-1 is negative"):
        await bad
    call.fail_all = ConnectionError("downstream gone")
    results = await asyncio.gather(
        batcher.load("a", 1), batcher.load("a", 2), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    # The group is not stuck after a failed batch.
    call.fail_all = None
    assert await batcher.load("a", 5) == 10


async def test_a_caller_that_gave_up_is_left_out_and_the_others_are_answered() -> None:
    call = Doubler()
    call.gate = asyncio.Event()
    batcher = Coalescer(call)
    blocker = asyncio.create_task(batcher.load("a", 0))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(batcher.load("a", 7))
    stayer = asyncio.create_task(batcher.load("a", 8))
    await asyncio.sleep(0)
    quitter.cancel()
    call.gate.set()
    assert await blocker == 0
    assert await stayer == 16
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert [items for _, items in call.batches] == [[0], [8]]


async def test_a_batch_runs_in_a_context_of_its_own_not_its_first_callers() -> None:
    call = Doubler()
    batcher = Coalescer(call)

    async def as_caller(name: str, n: int) -> int:
        WHO.set(name)
        return await batcher.load("a", n)

    assert await asyncio.create_task(as_caller("first caller", 1)) == 2
    assert call.seen_context == ["nobody"]


async def test_a_wrong_number_of_answers_fails_the_batch_loudly() -> None:
    async def short(key: str, items: list[int]) -> list[int | Exception]:
        return list[int | Exception](items[:-1])

    batcher: Coalescer[str, int, int] = Coalescer(short)
    with pytest.raises(RuntimeError, match="a batch of 1 got 0 answers"):
        await batcher.load("a", 1)
