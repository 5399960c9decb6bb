"""How far a job is: its Progress, and the rate it moves at."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# The current rate is a count of processed items that decays with this time
# constant: it answers "items per second over the last few seconds", the same
# on every replica because it lives in the job's row.
RATE_SECONDS = 5.0


@dataclass(frozen=True)
class Progress:
    state: str
    total: int  # 0: the job kind did not say
    done: int
    failed: int  # permanently failed or dead-lettered
    dead: int  # of which dead-lettered
    retrying: int
    shards_done: int
    shards: int
    rate: float  # items processed per second, recently
    eta: timedelta | None  # None while it cannot be told (no total, no rate, paused)
    started: datetime | None = None  # when it started (or was last resumed)
    updated: datetime | None = None  # its last change: the end, once it ended
    # Items failed for good or dead-lettered, by the reason they gave.
    failed_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.done + self.failed


def decayed(rate: float, stamp: datetime | None, now: datetime) -> float:
    if stamp is None:
        return 0.0
    elapsed = max((now - stamp).total_seconds(), 0.0)
    return rate * math.exp(-elapsed / RATE_SECONDS)


def rate_from(now: datetime) -> dict[str, Any]:
    """The rate columns of a job that starts (or starts again) now."""
    return {"rate": 0.0, "rate_time": now, "rate_since": now}


def current_rate(
    rate: float, stamp: datetime | None, since: datetime | None, now: datetime
) -> float:
    """Items per second now. The decayed count starts at zero when the job
    starts, so early on it is divided by the share of the window seen so far
    (as bias-corrected moving averages do); under a second is a second."""
    if since is None:
        return 0.0
    seen = max((now - since).total_seconds(), 1.0)
    return decayed(rate, stamp, now) / (1 - math.exp(-seen / RATE_SECONDS))
