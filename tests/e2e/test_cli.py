"""The `custops` command itself: help, bad configuration, migrate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e import process


def custops(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOPS_")}
    environment["PYTHONPATH"] = process.CHECKOUT
    environment["CUSTOPS_METRICS_LISTEN"] = "127.0.0.1:0"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_the_settings(tmp_path: Path) -> None:
    result = custops("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--database-url" in result.stdout and "CUSTOPS_DATABASE_URL" in result.stdout


def test_bad_configuration_says_what_to_fix(tmp_path: Path) -> None:
    result = custops("serve", "--listen", "nowhere", cwd=tmp_path, env={"CUSTOPS_TRACING": "loud"})
    assert result.returncode == 2
    assert "CUSTOPS_LISTEN='nowhere' must be host:port" in result.stderr
    assert "CUSTOPS_TRACING='loud': use one of off, console, otlp" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    result = custops("migrate", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "m.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
    assert {"plans", "requests", "alembic_version"} <= tables


def test_occupied_port_is_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = custops(
            "serve", "--listen", f"127.0.0.1:{port}", "--stubs-listen", "127.0.0.1:0", cwd=tmp_path
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


async def test_standalone_stand_ins_one_system_with_faults(tmp_path: Path) -> None:
    """`custops stand-ins --only audience` serves that stand-in alone, with the faults asked for."""
    import asyncio

    from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
    from tests.reflection import ReflectionClient

    stubs = await process.start_stubs(
        tmp_path,
        "--only",
        "audience",
        "--stubs-population",
        "1000",
        "--error-rate",
        "0.25",
        env={"PYTHONPATH": process.CHECKOUT},
    )
    port = stubs.stubs_port
    try:
        services = await asyncio.to_thread(
            lambda: ReflectionClient(f"127.0.0.1:{port}").list_services()
        )
        assert "custops.audience.v1.AudienceService" in services
        assert "custops.benefit.v1.BenefitService" not in services
        import grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            settings = await stubadmin_pb2_grpc.StubAdminServiceStub(channel).GetStubSettings(
                stubadmin_pb2.GetStubSettingsRequest(system=stubadmin_pb2.STUB_SYSTEM_AUDIENCE)
            )
        assert settings.settings.faults.error_rate == 0.25
    finally:
        stubs.process.send_signal(signal.SIGTERM)
        assert await stubs.wait() == 0
