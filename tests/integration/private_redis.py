"""A redis-server of a test's own, on a random loopback port, to stop and
start at will (outage tests never touch the shared server)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import pytest
import redis.asyncio as redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_redis(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(10)


async def until_up(client: redis.Redis) -> None:
    for _ in range(200):
        try:
            await client.ping()
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError("private redis-server did not start")
