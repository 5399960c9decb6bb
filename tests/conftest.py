"""Session-wide fixtures: the real PostgreSQL and Redis servers.

scripts/test installs and starts both before pytest runs. If one is still
unreachable here, the run fails under CI=true and the tests that need it are
skipped (with the reason) on a developer's machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
CI = os.environ.get("CI") == "true"
POSTGRES_ADMIN_DSN = os.environ.get(
    "CUSTOPS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CUSTOPS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


def unavailable(what: str, exc: BaseException) -> None:
    message = (
        f"{what} is not reachable ({exc.__class__.__name__}: {exc}); "
        "scripts/test installs and starts it"
    )
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def postgres_admin(sql: str, dsn: str = POSTGRES_ADMIN_DSN) -> None:
    """One statement outside a transaction (CREATE / DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def delete_keys(redis_url: str, prefix: str) -> None:
    """Every Redis key under `prefix`."""
    import redis.asyncio as redis

    client = redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database, created for this session and dropped after it."""
    import asyncpg

    name = f"custops_test_{uuid.uuid4().hex[:12]}"
    try:
        run_sync(lambda: postgres_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable("PostgreSQL", exc)
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    run_sync(lambda: postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import redis.asyncio as redis

    async def ping() -> Any:
        client = redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            return await client.ping()
        finally:
            await client.aclose()

    try:
        run_sync(ping)
    except Exception as exc:  # any failure to reach it is the same answer
        unavailable("Redis", exc)
    yield REDIS_URL


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-master Redis Cluster of this session's own (tests/redis_cluster.py)."""
    from tests.redis_cluster import ClusterFailed, RedisCluster

    try:
        cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    except (ClusterFailed, OSError, subprocess.SubprocessError) as exc:
        unavailable("A Redis Cluster", exc)
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this session's own; its keys are deleted after it."""
    prefix = f"custops-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    run_sync(lambda: delete_keys(redis_url, prefix))


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A database of this test's own beside the session's throwaway one, so
    no job of another test is ever leased by its servers."""
    base, _, session = postgres_url.rpartition("/")
    name = f"{session}_{uuid.uuid4().hex[:8]}"
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    await postgres_admin(f'CREATE DATABASE "{name}"', dsn)
    yield f"{base}/{name}"
    await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dsn)


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own (throttle settings and buckets)."""
    own = f"custops-runs-{uuid.uuid4().hex[:12]}"
    yield own
    await delete_keys(redis_url, own)
