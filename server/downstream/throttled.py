"""The run-side ports through their systems' token buckets.

Each call first takes as many tokens from its system's bucket as it carries
items (or asks members, for an audience page). A push-back lowers the
bucket's rate: the whole call refused for capacity, or, from the benefit
platform, any item of a batch; any other answer raises the rate a step back
toward the ceiling (server.throttle.buckets). A call that fails otherwise
than by CallFailed leaves the rate as it was.

No call carries more items than the bucket's burst: a larger one would
come through the bucket in parts and reach the downstream at once, above
the burst it was set for. A port asked for more sends it in parts, one
after another.

Every call is for one shop and takes from that shop's share of the bucket.
When the share will not have the tokens within `PATIENCE`, the call raises
Starved before anything was sent: the engine then sets the shard aside
rather than hold a worker slot other shops could use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TypeVar

from domain.audience import Rule
from domain.downstream_ports import (
    AudiencePage,
    AudiencePages,
    AudienceQuery,
    BenefitGranter,
    Grant,
    Granted,
    Message,
    MessageSender,
    Recover,
    Refusal,
    Sent,
)
from domain.plan import MessageChannel
from server.downstream.errors import PUSHED_BACK, CallFailed
from server.metrics import NO_METRICS, Metrics
from server.throttle.buckets import Buckets, acquire, adapt

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item of a call
A = TypeVar("A")  # the answer to one item

PATIENCE = 0.5  # seconds a call waits for its shop's tokens before giving up


class Bucket:
    """One system's bucket around its calls."""

    def __init__(self, buckets: Buckets, name: str, metrics: Metrics = NO_METRICS) -> None:
        self._buckets, self._name, self._metrics = buckets, name, metrics

    async def __call__(
        self,
        shop_id: str,
        tokens: int,
        call: Callable[[], Awaitable[T]],
        pushed_back: Callable[[T], bool] = lambda _: False,
    ) -> T:
        """`call` once `tokens` are taken from the shop's share; `pushed_back`
        tells from its answer whether items of it were refused for capacity."""
        await acquire(
            self._buckets,
            self._name,
            tokens,
            shop=shop_id,
            patience=PATIENCE,
            metrics=self._metrics,
        )
        try:
            answer = await call()
        except CallFailed as failed:
            await adapt(self._buckets, self._name, failed.pushed_back, self._metrics)
            raise
        await adapt(self._buckets, self._name, pushed_back(answer), self._metrics)
        return answer

    async def in_parts(
        self,
        shop_id: str,
        items: Sequence[I],
        call: Callable[[Sequence[I]], Awaitable[list[A]]],
        pushed_back: Callable[[list[A]], bool] = lambda _: False,
        failed: Callable[[CallFailed], A] | None = None,
    ) -> list[A]:
        """`call` on `items` in parts no larger than the burst, answers joined
        in order. A part after the first that fails as a whole answers its
        items and the ones after it with `failed`, so the parts done keep their
        answers; the first (or any, without `failed`) raises."""
        largest = await self.largest_call()
        answers: list[A] = []
        for start in range(0, len(items), largest):
            part = items[start : start + largest]
            try:
                answer: list[A] = await self(shop_id, len(part), partial(call, part), pushed_back)
            except CallFailed as failure:
                if failed is None or not answers:
                    raise
                return answers + [failed(failure)] * (len(items) - start)
            answers += answer
        return answers

    async def largest_call(self) -> int:
        """The most items one call may carry: the bucket's burst, which the
        downstream's own burst is set for (a larger call would come through
        in parts and arrive at once)."""
        settings, _ = await self._buckets.settings(self._name)
        return max(1, settings.capacity)


class ThrottledAudience:
    def __init__(
        self, audience: AudiencePages, buckets: Buckets, metrics: Metrics = NO_METRICS
    ) -> None:
        self._audience, self._bucket = audience, Bucket(buckets, "audience", metrics)

    async def page(self, query: AudienceQuery) -> AudiencePage:
        """A page no larger than the bucket's burst: shorter than asked, with
        its next token, when the burst is smaller."""
        largest = await self._bucket.largest_call()
        if query.page_size > largest:
            query = replace(query, page_size=largest)
        return await self._bucket(
            query.shop_id, query.page_size, lambda: self._audience.page(query)
        )

    async def unknown(self, shop_id: str, member_ids: Sequence[str]) -> list[str]:
        return await self._bucket.in_parts(
            shop_id, member_ids, partial(self._audience.unknown, shop_id)
        )

    async def opted_out(
        self, shop_id: str, member_ids: Sequence[str]
    ) -> dict[str, frozenset[MessageChannel]]:
        async def call(part: Sequence[str]) -> list[tuple[str, frozenset[MessageChannel]]]:
            return list((await self._audience.opted_out(shop_id, part)).items())

        return dict(await self._bucket.in_parts(shop_id, member_ids, call))

    async def matching(
        self, shop_id: str, member_ids: Sequence[str], rule: Rule, as_of: datetime, time_zone: str
    ) -> set[str]:
        async def call(part: Sequence[str]) -> list[str]:
            return list(await self._audience.matching(shop_id, part, rule, as_of, time_zone))

        return set(await self._bucket.in_parts(shop_id, member_ids, call))


class ThrottledBenefits:
    def __init__(
        self, benefits: BenefitGranter, buckets: Buckets, metrics: Metrics = NO_METRICS
    ) -> None:
        self._benefits, self._bucket = benefits, Bucket(buckets, "benefit", metrics)

    async def grant(self, shop_id: str, grants: Sequence[Grant]) -> list[Granted]:
        return await self._bucket.in_parts(
            shop_id,
            grants,
            partial(self._benefits.grant, shop_id),
            lambda answer: _pushed_back([g.refusal for g in answer]),
            lambda failure: Granted(_refusal(failure)),
        )

    async def recover(self, shop_id: str, items: Sequence[Recover]) -> list[Refusal | None]:
        return await self._bucket.in_parts(
            shop_id, items, partial(self._benefits.recover, shop_id), _pushed_back, _refusal
        )


class ThrottledMessages:
    def __init__(
        self, messages: MessageSender, buckets: Buckets, metrics: Metrics = NO_METRICS
    ) -> None:
        self._messages, self._bucket = messages, Bucket(buckets, "notification", metrics)

    async def send(self, shop_id: str, messages: Sequence[Message]) -> list[Sent]:
        return await self._bucket.in_parts(
            shop_id,
            messages,
            partial(self._messages.send, shop_id),
            failed=lambda failure: Sent(_refusal(failure)),
        )


def _pushed_back(refusals: Iterable[Refusal | None]) -> bool:
    return PUSHED_BACK in {r.reason for r in refusals if r is not None}


def _refusal(failure: CallFailed) -> Refusal:
    """An item of a part that failed as a whole, refused as the call was."""
    return Refusal(failure.reason, failure.retryable)
