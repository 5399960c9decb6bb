"""How calls that may be retried are retried: one loop's arithmetic."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from custops.client._errors import CustopsError


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a call its contract allows to repeat when it failed UNAVAILABLE,
    or when the server said when to retry (google.rpc.RetryInfo): after that
    delay, otherwise after an exponential backoff with full jitter; always
    within the call's deadline."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    retryable_codes: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)


class Attempts:
    """The attempts of one call: the deadline they share and when to give up.
    `policy` None: the call may not be repeated."""

    def __init__(self, policy: RetryPolicy | None, timeout: float) -> None:
        self._policy = policy or NO_RETRY
        self._deadline = time.monotonic() + timeout
        self._made = 0

    def timeout(self) -> float:
        """Seconds the next attempt may take (what is left of the call's deadline)."""
        self._made += 1
        return max(self._deadline - time.monotonic(), 0.001)

    def pause_before_retry(self, error: CustopsError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        policy = self._policy
        told = error.retry_delay is not None
        if self._made >= policy.max_attempts:
            return None
        if error.code not in policy.retryable_codes and not told:
            return None
        pause = error.retry_delay if error.retry_delay is not None else policy.backoff(self._made)
        if time.monotonic() + pause >= self._deadline:
            return None
        return pause
