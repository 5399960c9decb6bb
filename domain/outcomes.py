"""A member's outcome in a run: the short text runs store (`run_members`),
and the typed outcome merchants read (docs/outcomes.md).

Stored forms:
  act                      acted on
  act-silent:R             acted on, no message at all (R: why)
  act-no:C,C:R             acted on, not messaged on channels C (R: why)
  defer:T[:C,C]            acted on; messages wait until T (epoch seconds)
  skip:R                   not acted on, for R
  fail:R                   refused for good by the downstream, for R
  hold                     in the plan's control group
Forms stored before reasons were kept (`act-silent`, `act-no:C,C`) still read.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.plan import MessageChannel

ACT = "act"
ACT_SILENT = "act-silent"
ACT_EXCEPT = "act-no:"
DEFER = "defer:"
SKIP = "skip:"
FAIL = "fail:"
HELD_OUT = "hold"
_CHANNEL_CODES = list(MessageChannel)


class OutcomeKind(enum.StrEnum):
    GRANTED = "granted"  # acted on, for a plan that grants
    SENT = "sent"  # acted on, for a plan that only messages
    DEFERRED = "deferred"
    SKIPPED = "skipped"
    FAILED = "failed"
    HELD_OUT = "held_out"


@dataclass(frozen=True)
class MemberOutcome:
    """One member's outcome in one run, as merchants read it."""

    run_id: str
    plan_id: str
    member_id: str
    kind: OutcomeKind
    reason: str
    withheld: tuple[MessageChannel, ...]
    defer_until: datetime | None
    test: bool
    fire_time: datetime
    run_kind: str
    event_id: str = ""  # an event-triggered run: the event the member waited on


@dataclass(frozen=True)
class Reading:
    """What a stored outcome says, apart from the run it belongs to."""

    kind: OutcomeKind
    reason: str = ""
    withheld: tuple[MessageChannel, ...] = ()
    defer_until: datetime | None = None


def acts(stored: str) -> bool:
    """Whether the run acts on the member (grants, and messages where not withheld)."""
    return stored == ACT or stored.startswith((ACT_SILENT, ACT_EXCEPT, DEFER))


# A run's members share a handful of stored outcomes ("act" for most): each is
# read once (pure functions of immutable values), not once per member.
@functools.lru_cache(maxsize=1024)
def withheld(stored: str) -> frozenset[MessageChannel] | None:
    """The channels a member is not messaged on; None for all of them."""
    if stored.startswith(ACT_SILENT):
        return None
    if stored.startswith(ACT_EXCEPT):
        return _channels(stored.removeprefix(ACT_EXCEPT).partition(":")[0])
    if stored.startswith(DEFER):
        return _channels(stored.removeprefix(DEFER).partition(":")[2])
    return frozenset()


def silent(reason: str) -> str:
    """Acted on, but messaged on no channel, for `reason`."""
    return f"{ACT_SILENT}:{reason}"


def act_except(channels: set[MessageChannel], reason: str) -> str:
    """Acted on, but not messaged on `channels`, for `reason`."""
    return f"{ACT_EXCEPT}{_codes(channels)}:{reason}"


def deferred(until: datetime, stored: str) -> str:
    """An acted-on outcome whose messages wait until `until` (quiet hours,
    DEFER): the channels withheld, if any, stay withheld then."""
    channels = withheld(stored) or frozenset()
    tail = f":{_codes(set(channels))}" if channels else ""
    return f"{DEFER}{int(until.timestamp())}{tail}"


@functools.lru_cache(maxsize=1024)
def read(stored: str, grants: bool) -> Reading:
    """The typed outcome of a stored one, in a run of a plan that grants or not."""
    if stored.startswith(SKIP):
        return Reading(OutcomeKind.SKIPPED, stored.removeprefix(SKIP))
    if stored.startswith(FAIL):
        return Reading(OutcomeKind.FAILED, stored.removeprefix(FAIL))
    if stored == HELD_OUT:
        return Reading(OutcomeKind.HELD_OUT)
    if stored.startswith(DEFER):
        until, _, _ = stored.removeprefix(DEFER).partition(":")
        return Reading(
            OutcomeKind.DEFERRED,
            "QUIET_HOURS",
            _ordered(withheld(stored) or frozenset()),
            datetime.fromtimestamp(int(until), UTC),
        )
    acted = OutcomeKind.GRANTED if grants else OutcomeKind.SENT
    if stored.startswith(ACT_SILENT):
        return Reading(acted, stored.removeprefix(ACT_SILENT).removeprefix(":"))
    if stored.startswith(ACT_EXCEPT):
        codes, _, reason = stored.removeprefix(ACT_EXCEPT).partition(":")
        return Reading(acted, reason, _ordered(_channels(codes)))
    return Reading(acted)


def held_out(plan_id: str, member_id: str, percent: float) -> bool:
    """Whether a member is in the plan's control group: a stable hash of plan
    and member, the same in every run, process and replica."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{plan_id}/{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < round(percent * 100)


def _codes(channels: set[MessageChannel]) -> str:
    return ",".join(str(_CHANNEL_CODES.index(c)) for c in _ordered(frozenset(channels)))


def _channels(codes: str) -> frozenset[MessageChannel]:
    return frozenset(_CHANNEL_CODES[int(c)] for c in codes.split(",") if c)


def _ordered(channels: frozenset[MessageChannel]) -> tuple[MessageChannel, ...]:
    return tuple(sorted(channels, key=_CHANNEL_CODES.index))
