"""`custops serve` and `custops stubs` as real processes, for tests of what
only a process shows."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from server.config import ENV_PREFIX, Settings
from server.persistence.database import is_sqlite, normalize_url

_READY = re.compile(r"custops serving on [^:]+:(\d+)(?:; stand-ins on port (\d+))?")
# PYTHONPATH of a `custops` process: this checkout's server and SDK, whichever
# copy of them is installed.
ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = os.pathsep.join((str(ROOT), str(ROOT / "clients")))
_STUBS_READY = re.compile(r"custops stand-ins \(.*\) serving on port (\d+)")

# Public port of each `custops serve` started -> the database it writes, so
# that tests/e2e/conftest.py can find the audit log of any server a test calls.
DATABASES: dict[int, str] = {}


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, stubs_port: int) -> None:
        self.process = process
        self.port = port
        self.stubs_port = stubs_port
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    def follow(self) -> None:
        """Keep reading the output into `output` while the process runs: a
        long-running process that logs every call would otherwise fill the
        pipe and block on its next log line."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            try:
                raw = await self.process.stdout.readline()
            except ValueError:  # a line over the stream's limit: dropped
                continue
            if not raw:
                return
            self.output.append(raw.decode(errors="replace").rstrip())

    async def wait(self, timeout: float = 30) -> int:
        if self._reader is not None:
            async with asyncio.timeout(timeout):
                await self._reader
                code = await self.process.wait()
            return code
        stdout, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        self.output += stdout.decode(errors="replace").splitlines()
        return self.process.returncode if self.process.returncode is not None else -1

    async def stop(self) -> None:
        """SIGKILL unless it has ended, and reap it (for a test's finally)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.wait()


async def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `custops serve` with random ports and wait until it says it serves."""
    process, match, lines = await _launch(
        cwd,
        ("serve", "--listen", "127.0.0.1:0", "--stubs-listen", "127.0.0.1:0", *args),
        _READY,
        env,
    )
    server = ServerProcess(process, int(match.group(1)), int(match.group(2) or 0))
    server.output = lines
    DATABASES[server.port] = database_url(cwd, args, env)
    return server


def database_url(cwd: Path, args: Sequence[str], env: Mapping[str, str] | None) -> str:
    """The database `custops serve` in `cwd` uses with these flags and
    variables, as the server resolves it (a flag beats the variable, which
    beats the default); a relative SQLite path made absolute from `cwd`."""
    url = (env or {}).get(ENV_PREFIX + "DATABASE_URL", Settings.database_url)
    for flag, value in itertools.pairwise((*args, "")):
        if flag == "--database-url":
            url = value
        elif flag.startswith("--database-url="):
            url = flag.partition("=")[2]
    parsed = make_url(normalize_url(url))
    if is_sqlite(url) and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(cwd).resolve() / parsed.database))
    return parsed.render_as_string(hide_password=False)


async def start_stubs(cwd: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `custops stubs` on a random port and wait until it serves."""
    process, match, lines = await _launch(
        cwd, ("stand-ins", "--stubs-listen", "127.0.0.1:0", *args), _STUBS_READY, env
    )
    server = ServerProcess(process, 0, int(match.group(1)))
    server.output = lines
    return server


async def _launch(
    cwd: Path, args: tuple[str, ...], ready: re.Pattern[str], env: dict[str, str] | None
) -> tuple[asyncio.subprocess.Process, re.Match[str], list[str]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    # Servers of one test run side by side: each scrape endpoint on a port of its own.
    environment["CUSTOPS_METRICS_LISTEN"] = "127.0.0.1:0"
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        cwd=cwd,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    code = await process.wait()
                    raise AssertionError(
                        f"custops exited {code} before serving:\n" + "\n".join(lines)
                    )
                line = raw.decode(errors="replace").rstrip()
                lines.append(line)
                match = ready.search(line)
                if match:
                    return process, match, lines
    except BaseException:  # it never said it serves (or the test was cancelled): no orphan
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        raise
