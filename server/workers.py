"""`--workers N`: the public port served by N processes, for machines with
more cores than one Python process can use.

The first process (the one started) serves, then starts N-1 more on the
same port: every process binds it with SO_REUSEPORT and the kernel spreads
new connections over them. The singletons stay in the first: the scheduler,
the task engine's workers, the retention purge and the embedded stand-ins;
the others answer calls only (no task engine, the first's stand-ins as their
downstreams, no migrations). They share the database and Redis: the callers'
rate limits are Redis buckets, and a shop's cached plans are checked against
its version in Redis (server/plan_versions.py). Each has its own metrics
endpoint, on the configured port plus its index.

A process that dies is started again after a pause; a stop (SIGTERM or
SIGINT to the first) stops them all, each draining its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from dataclasses import fields, replace
from typing import Any

from server.config import ENV_PREFIX, Settings

log = logging.getLogger("custops.workers")

# Set in the environment of the processes the first one starts: their index,
# and the first one's process id.
INDEX_VARIABLE = ENV_PREFIX + "WORKER_INDEX"
PARENT_VARIABLE = ENV_PREFIX + "WORKER_PARENT"
RESTART_PAUSE = 1.0
_PR_SET_PDEATHSIG = 1  # prctl(2)


def is_started_worker() -> bool:
    """Whether this process was started by another as one of its workers."""
    return bool(os.environ.get(INDEX_VARIABLE))


def follow_parent() -> None:
    """In a started worker: end (SIGTERM, so it drains) when the first process
    ends, however it ends (SIGKILL included), instead of serving on alone with
    no scheduler. Linux's parent-death signal; checked once more after asking
    for it, in case the parent was gone already."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != os.environ.get(PARENT_VARIABLE):
        os.kill(os.getpid(), signal.SIGTERM)


def worker_settings(settings: Settings, index: int, port: int, stubs_port: int) -> Settings:
    """What worker `index` (1..N-1) runs with: the first's settings, on its
    port, without the singletons."""
    host = settings.listen.rpartition(":")[0]
    changes: dict[str, Any] = {
        "listen": f"{host}:{port}",
        "engine_concurrency": 0,
        "auto_migrate": "false",
        "metrics_listen": _shifted(settings.metrics_listen, index),
    }
    if settings.stubs == "embedded":
        stand_ins = f"{settings.stubs_listen.rpartition(':')[0]}:{stubs_port}"
        changes |= {
            "stubs": "external",
            "audience_target": stand_ins,
            "benefit_target": stand_ins,
            "notification_target": stand_ins,
        }
    return replace(settings, **changes)


def _shifted(address: str, index: int) -> str:
    if not address:
        return ""
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + index if int(port) else 0}"


def environment(settings: Settings, index: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for f in fields(Settings):
        env[ENV_PREFIX + f.name.upper()] = str(getattr(settings, f.name))
    env[INDEX_VARIABLE] = str(index)
    env[PARENT_VARIABLE] = str(os.getpid())
    return env


class Workers:
    """The processes the first one starts, kept running until stopped."""

    def __init__(self, settings: Settings, port: int, stubs_port: int) -> None:
        self._envs = [
            environment(worker_settings(settings, i, port, stubs_port), i)
            for i in range(1, settings.workers)
        ]
        self._processes: list[asyncio.subprocess.Process | None] = [None] * len(self._envs)
        self._stopping = False
        self._keepers: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None]

    async def start(self) -> None:
        self._keepers = [asyncio.create_task(self._keep(i)) for i in range(len(self._envs))]

    async def _keep(self, slot: int) -> None:
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server.cli", "serve", env=self._envs[slot]
            )
            self._processes[slot] = process
            code = await process.wait()
            if self._stopping:
                return
            log.warning(
                "a worker process ended; starting it again",
                extra={"worker": slot + 1, "exit_code": code},
            )
            await asyncio.sleep(RESTART_PAUSE)

    async def stop(self, timeout: float) -> None:
        """SIGTERM to each (they drain like the first), SIGKILL after `timeout`."""
        self._stopping = True
        running = [p for p in self._processes if p is not None and p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for keeper in self._keepers:
            keeper.cancel()
