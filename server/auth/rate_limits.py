"""Per-caller rate limits on the public port, so that one misbehaving front
office cannot starve the others: a token bucket per caller, kept where the
downstream throttles are (in Redis when configured, so a caller's rate holds
across every replica together).

Every authenticated call takes one token, refused ones included: a caller
hammering with calls it may not make is slowed like any other. Over its
rate, a call is RESOURCE_EXHAUSTED with a RetryInfo saying when to retry.
"""

from __future__ import annotations

import logging
import time

from domain.access import Caller
from domain.errors import ResourceExhausted
from server.auth.callers import Callers, every_caller
from server.throttle.buckets import NEVER, Buckets, BucketSettings, BucketUnavailable

log = logging.getLogger("custops.access")
RATE_EXCEEDED = "CALLER_RATE_EXCEEDED"
WARN_EVERY = 60.0  # seconds between warnings that the limits are off


def bucket_name(caller: Caller) -> str:
    return f"caller:{caller.name}"


def caller_buckets(callers: Callers | None) -> dict[str, BucketSettings]:
    """Each caller's bucket settings, for the buckets' defaults."""
    if callers is None:
        return {}
    return {
        bucket_name(c): BucketSettings(c.rate_per_second, c.burst) for c in every_caller(callers)
    }


class CallerLimits:
    def __init__(self, buckets: Buckets) -> None:
        self._buckets = buckets
        self._warned = -WARN_EVERY  # monotonic time of the last outage warning

    async def admit(self, caller: Caller) -> None:
        """ResourceExhausted when the caller is over its rate."""
        try:
            decision = await self._buckets.take(bucket_name(caller), 1)
        except BucketUnavailable as exc:
            # Fail open: without Redis the platform still serves (its calls
            # to the downstream systems stay throttled, and fail closed).
            if time.monotonic() - self._warned >= WARN_EVERY:  # not once per call
                self._warned = time.monotonic()
                log.warning("caller rate limits not applied while: %s", exc)
            return
        if decision.granted:
            return
        wait = 1.0 if decision.wait_us == NEVER else decision.wait_us / 1e6
        raise ResourceExhausted(
            f"caller {caller.name!r} is over its rate of {caller.rate_per_second:g} calls/s "
            f"(burst {caller.burst}); retry in {wait:.3f} s",
            reason=RATE_EXCEEDED,
            retry_after=wait,
        )
