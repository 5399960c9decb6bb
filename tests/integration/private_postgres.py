"""A PostgreSQL server of a test's own: its own data directory and loopback
port, stopped and started at will (outage tests never touch the shared one).
It runs as the `postgres` user, as PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.private_redis import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed (scripts/test installs it)")
    return found[-1]


def _as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=60)


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="custops-pg-"))
        self.data = self.home / "data"
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        made = _as_postgres(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        assert made.returncode == 0, made.stderr

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = _as_postgres(
            _bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.home / "log"),
            "-w", "start",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr + started.stdout

    def stop(self) -> None:
        _as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
