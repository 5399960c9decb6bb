"""A real platform on a random port, over SQLite and over PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

from custops.client import AsyncCustopsClient, RetryPolicy
from server.app import PUBLIC_SERVICES, Platform
from server.config import Settings


def public_methods() -> list[MethodDescriptor]:
    """Every RPC of the platform's public services, from their descriptors."""
    pool = descriptor_pool.Default()
    return [m for name in PUBLIC_SERVICES for m in pool.FindServiceByName(name).methods]


def settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "stubs_listen": "127.0.0.1:0",
        "database_url": database_url,
        "auto_migrate": "true",
        "log_level": "WARNING",
        "shutdown_grace": 2.0,
        # Tests start servers side by side: each scrape endpoint on a port of its own.
        "metrics_listen": "127.0.0.1:0",
    }
    values.update(overrides)
    return Settings.load(env={}, **values)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/custops.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def platform(database_url: str) -> AsyncIterator[Platform]:
    running = Platform(settings(database_url))
    await running.start()
    yield running
    await running.stop(grace=1)


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[AsyncCustopsClient]:
    async with AsyncCustopsClient(
        f"127.0.0.1:{platform.port}", timeout=10, retry=RetryPolicy(max_attempts=1)
    ) as c:
        yield c


# The stand-ins on a random port (tests/integration/stubs_fixture.py).
from tests.integration.stubs_fixture import clock, stubs  # noqa: E402

__all__ = ["clock", "stubs"]
