"""What scripts/bench/runs.py and scenario.py both need of the services around
the platform: the stand-ins in a process of their own, CPU time by pid,
PostgreSQL's backends of a database and the buckets' keys in Redis.

Imported by those scripts as a sibling module (a script's folder comes first
on sys.path), not run on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_STUBS_READY = re.compile(r"serving on port (\d+)")
_KEEP_LINES = 40  # of a child's output, for an error message


def add_service_options(parser: argparse.ArgumentParser) -> None:
    """Where a benchmark makes its throwaway database and keeps its buckets."""
    parser.add_argument(
        "--postgres-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server where a throwaway database is made (and dropped)",
    )
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="the buckets' Redis (keys under a throwaway prefix, deleted after); '' = in-process",
    )


@contextlib.asynccontextmanager
async def throwaway_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A PostgreSQL database made for one benchmark and dropped after it,
    whatever happens: its SQLAlchemy URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url, timeout=5)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cpu_seconds(pid: int | str = "self") -> float:
    """User and system CPU time of a process (all its threads), to tell the
    cores each process used; 0 when it is gone, so that a process ending in
    the window does not end the benchmark."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain_output(stream: asyncio.StreamReader, keep: list[str] | None) -> None:
    """Read what a child says, so that a full pipe never blocks it; keep its
    last lines (when given a list) to show if it fails."""
    while raw := await stream.readline():
        if keep is not None:
            keep.append(raw.decode(errors="replace").rstrip())
            del keep[:-_KEEP_LINES]


# The stand-ins, in a process of their own (as the real downstream systems would be).


@dataclass
class StandInProcess:
    address: str
    process: asyncio.subprocess.Process
    drain: asyncio.Task[None]

    async def stop(self) -> None:
        """Terminate them, and kill them if they do not end: a stuck child
        must not hold the benchmark (or its report) back."""
        self.drain.cancel()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_stand_in_process(population: int) -> StandInProcess:
    """`custops stubs` in a process of its own, once it serves: the platform's
    figures then do not include the stand-ins' work."""
    process = await _spawn_stand_ins(population)
    lines: list[str] = []
    try:
        port = await _ready_port(process, lines)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if port is None:
        await process.wait()
        raise RuntimeError("the stand-ins did not start:\n" + "\n".join(lines))
    assert process.stdout is not None
    drain = asyncio.create_task(drain_output(process.stdout, None))
    return StandInProcess(f"127.0.0.1:{port}", process, drain)


async def _spawn_stand_ins(population: int) -> asyncio.subprocess.Process:
    """The child, its output piped; without CUSTOPS_ variables, so that the
    caller's settings do not leak into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "stubs",
        "--stubs-listen",
        "127.0.0.1:0",
        "--stubs-population",
        str(population),
        "--log-level",
        "WARNING",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _ready_port(process: asyncio.subprocess.Process, lines: list[str]) -> str | None:
    """The port the child says it serves on (None if its output ends first);
    what it said goes to `lines`, for the error if it does not start."""
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while raw := await process.stdout.readline():
            lines.append(raw.decode(errors="replace").rstrip())
            found = _STUBS_READY.search(lines[-1])
            if found:
                return found.group(1)
    return None


# PostgreSQL and Redis.


async def database_pids(admin_url: str, name: str) -> list[int]:
    """The PostgreSQL backends serving this database now: their CPU time is
    the database's share of the work."""
    import asyncpg

    admin = await asyncpg.connect(admin_url, timeout=5)
    try:
        rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await admin.close()
    return [int(r["pid"]) for r in rows]


async def forget_buckets(url: str, prefix: str) -> None:
    """Delete the buckets' keys under this throwaway prefix, so that the
    benchmarks leave the shared Redis as they found it."""
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
