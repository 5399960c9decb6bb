"""Readiness: each service's health follows what it needs.

A periodic check (every `CUSTOPS_HEALTH_INTERVAL` seconds, never per
request) asks the database and, when one is configured, Redis. While one is
unreachable the services that need it report NOT_SERVING on the standard
health service, and SERVING again once it answers; the server as a whole
("") is SERVING only while everything is. That is readiness: a load balancer
stops sending calls a replica cannot serve. Liveness is the process
answering at all (any health call answered, whatever the status).

A dependency going down is one log line, coming back another, with how long
it was away; the duties that fail meanwhile (the scheduler, the workers)
stay quiet while `down()` says why (server.tasks.runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from grpc_health.v1 import health, health_pb2

log = logging.getLogger("custops.readiness")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHECK_TIMEOUT = 2.0  # seconds a dependency has to answer one check


@dataclass
class Dependency:
    name: str  # "database", "redis"
    check: Callable[[], Awaitable[object]]  # raises when unreachable
    down_since: float | None = None


@dataclass
class Readiness:
    """The dependencies, which services need which, and the health servicer
    that reports it."""

    health: health.aio.HealthServicer
    needs: dict[str, tuple[str, ...]]  # service -> dependency names
    dependencies: list[Dependency]
    interval: float
    # Run after a round whose dependencies all answered, at most every
    # `sample_every` seconds: the samplers count rows every replica reads,
    # which is no work to repeat at each check.
    after: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    sample_every: float = 15.0
    # Told each dependency's state after every check (custops.dependency.up).
    report: Callable[[str, bool], None] = lambda name, up: None
    # The failures of background duties, said or not after the next check.
    complaints: Complaints | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _poked: asyncio.Event = field(default_factory=asyncio.Event)
    _sampled: float = float("-inf")

    def __post_init__(self) -> None:
        if self.complaints is not None:
            self.complaints.poke = self._poked.set

    def down(self) -> list[str]:
        """The dependencies unreachable at the last check."""
        return [d.name for d in self.dependencies if d.down_since is not None]

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> None:
        changed = False
        for dependency in self.dependencies:
            changed |= await self._check(dependency)
            self.report(dependency.name, dependency.down_since is None)
        if changed:
            await self._report()
        if self.complaints is not None:
            self.complaints.settle(bool(self.down()))
        if not self.down() and time.monotonic() - self._sampled >= self.sample_every:
            self._sampled = time.monotonic()
            for sample in self.after:
                try:
                    await sample()
                except Exception:  # a sample is worth less than the next check
                    log.debug("sampling failed", exc_info=True)

    async def _watch(self) -> None:
        while not self._stopping:
            await self.check_once()
            # Until the next round, or sooner when a duty failed: is it a
            # dependency (then the check says so, once) or a fault of its own?
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval)
            self._poked.clear()

    async def _check(self, dependency: Dependency) -> bool:
        """Whether the dependency changed state; one log line when it does."""
        try:
            await asyncio.wait_for(dependency.check(), CHECK_TIMEOUT)
        except Exception as exc:
            if dependency.down_since is None:
                dependency.down_since = time.monotonic()
                log.warning(
                    "%s unreachable: not serving what needs it",
                    dependency.name,
                    extra={"dependency": dependency.name, "error": _brief(exc)},
                )
                return True
            return False
        if dependency.down_since is not None:
            away = time.monotonic() - dependency.down_since
            dependency.down_since = None
            log.warning(
                "%s reachable again after %.1f s: serving",
                dependency.name,
                away,
                extra={"dependency": dependency.name, "down_seconds": round(away, 1)},
            )
            return True
        return False

    async def _report(self) -> None:
        down = set(self.down())
        for service, needs in self.needs.items():
            await self.health.set(service, NOT_SERVING if down & set(needs) else SERVING)
        await self.health.set("", NOT_SERVING if down else SERVING)


# A failing duty's traceback is written at most this often (seconds).
COMPLAINT_EVERY = 60.0


class Complaints:
    """Failing background duties, said quietly. A failure is held until the
    readiness check that it triggers has run: if a dependency is down, that
    check's one line says it all and the failure is dropped; otherwise the
    failure is the duty's own and its traceback is written, at most once a
    minute per duty however often it fails."""

    def __init__(self) -> None:
        # Set by Readiness to ask for a check at once; with no check to wait
        # for, a failure is said at once.
        self.poke: Callable[[], None] = lambda: self.settle(False)
        self._held: dict[str, tuple[str, tuple[object, ...], BaseException | None]] = {}
        self._last: dict[str, float] = {}

    def failed(self, duty: str, message: str, *args: object) -> None:
        """Call from an `except` block: the exception is the one at hand."""
        if time.monotonic() - self._last.get(duty, -COMPLAINT_EVERY) < COMPLAINT_EVERY:
            return
        self._held.setdefault(duty, (message, args, sys.exc_info()[1]))
        self.poke()

    def settle(self, dependency_down: bool) -> None:
        held, self._held = self._held, {}
        if dependency_down:
            return
        for duty, (message, args, exc) in held.items():
            self._last[duty] = time.monotonic()
            logging.getLogger("custops.engine").warning(message, *args, exc_info=exc)


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}"[:300]
