"""What a job kind provides to the engine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class Item:
    """One unit of work; `key` is stable, so executors can be idempotent by it."""

    key: str
    data: dict[str, Any] = field(default_factory=dict)


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = (
        "retry"  # may succeed later (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED)
    )
    FAILED = "failed"  # never will; recorded with its reason at once
    # Not now, by the kind's own rule (e.g. quiet hours): tried again at
    # `not_before`, with `data` replacing the item's, not counted as an attempt.
    DEFER = "defer"


# The reason a RETRY result gives when the downstream pushed back: the engine
# lowers the kind's bucket rate for it (any other reason is kept as told).
PUSHED_BACK = "RESOURCE_EXHAUSTED"


class ItemResult(NamedTuple):
    key: str
    outcome: Outcome
    # For RETRY, the downstream's status code name (UNAVAILABLE, PUSHED_BACK...);
    # for FAILED, why the item can never be done.
    reason: str = ""
    not_before: datetime | None = None  # DEFER only
    data: dict[str, Any] | None = None  # DEFER only: what is left to do
    # What the item counts as in its job's outcomes, (outcome, reason), once
    # its batch is recorded (custops.run.members); None: nothing (yet).
    tally: tuple[str, str] | None = None


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None  # None: the shard has no more items


class JobKind(Protocol):
    name: str
    # The token bucket each batch takes one token per item from; None = none.
    bucket: str | None
    batch_size: int

    def split(self, payload: dict[str, Any]) -> list[str]:
        """The first cursor of each shard."""
        ...

    async def load(self, payload: dict[str, Any], cursor: str, limit: int) -> Page: ...

    async def execute(self, payload: dict[str, Any], items: list[Item]) -> list[ItemResult]:
        """One result per item; an exception fails the batch for a retry as a whole."""
        ...
