"""One downstream call of a run's batch, through the downstream's bucket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from server.throttle.buckets import Buckets, acquire, adapt

# What a downstream may answer that a later try can fix.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
T = TypeVar("T")


class CallFailed(Exception):
    """The whole call failed: `reason` is the status code's name."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


async def throttled(
    buckets: Buckets,
    bucket: str,
    tokens: int,
    call: Callable[[], Awaitable[T]],
    pushed_back: Callable[[T], bool] = lambda _: False,
) -> T:
    """`call` once `tokens` are taken from `bucket`. A push-back (for the
    whole call, or per item as `pushed_back` tells from the answer) lowers
    the bucket's rate; any other answer raises it back a step."""
    await acquire(buckets, bucket, tokens)
    try:
        response = await call()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        await adapt(buckets, bucket, pushed_back=code is grpc.StatusCode.RESOURCE_EXHAUSTED)
        raise CallFailed(code.name, code in RETRYABLE) from exc
    await adapt(buckets, bucket, pushed_back=pushed_back(response))
    return response
