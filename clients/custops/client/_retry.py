"""Which calls may be retried, and how."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

# Reads and pure computations: safe to repeat.
_IDEMPOTENT_PREFIXES = ("Get", "List", "BatchGet", "Preview", "Explain", "Estimate", "Match")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry UNAVAILABLE calls that are safe to repeat, with exponential
    backoff and full jitter, within the call's deadline."""

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


def is_idempotent(method: str, request: object) -> bool:
    """A read, or a side-effecting call carrying a request id (the server
    returns the first outcome to a retry with the same id)."""
    if method.startswith(_IDEMPOTENT_PREFIXES):
        return True
    return bool(getattr(request, "request_id", ""))


class Attempts:
    """The attempts of one call: the deadline they share and when to give up."""

    def __init__(self, policy: RetryPolicy, method: str, request: object, timeout: float) -> None:
        self._policy = policy
        self._deadline = time.monotonic() + timeout
        self._limit = policy.max_attempts if is_idempotent(method, request) else 1
        self._made = 0

    def timeout(self) -> float:
        """Seconds the next attempt may take (what is left of the call's deadline)."""
        self._made += 1
        return max(self._deadline - time.monotonic(), 0.001)

    def pause_before_retry(self, code: grpc.StatusCode) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if code not in self._policy.retryable_codes or self._made >= self._limit:
            return None
        pause = self._policy.backoff(self._made)
        if time.monotonic() + pause >= self._deadline:
            return None
        return pause
