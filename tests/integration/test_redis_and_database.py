"""Start-up against the real Redis and PostgreSQL, and what happens when they
are missing or behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from custops.client import AsyncCustopsClient
from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb
from server.app import Platform, StartupError
from server.persistence import migrate
from tests.integration.conftest import settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.redis
async def test_serves_with_real_redis(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/r.db", redis_url=redis_url, redis_prefix=redis_prefix
        )
    )
    await platform.start()
    try:
        assert platform._redis is not None
        assert await platform._redis.ping()
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            await client.plans.list_plans(pb.ListPlansRequest(shop_id="s1")).first_page()
    finally:
        await platform.stop(grace=1)
    assert platform._redis is None  # closed on stop


async def test_unreachable_redis_refuses_to_start(tmp_path: Path) -> None:
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/r.db", redis_url=f"redis://127.0.0.1:{free_port()}/0"
        )
    )
    with pytest.raises(StartupError, match=r"Redis at redis://127\.0\.0\.1:\d+/0 cannot"):
        await platform.start()


@pytest.mark.postgres
async def test_postgres_needs_migrate_unless_told(postgres_url: str) -> None:
    # A database of its own: the session database is already migrated.
    import asyncpg

    from tests.conftest import POSTGRES_ADMIN_DSN

    name = postgres_url.rsplit("/", 1)[1] + "_fresh"
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    try:
        with pytest.raises(StartupError, match="run `custops migrate`"):
            await Platform(settings(url, auto_migrate="auto")).start()
        await migrate.upgrade(url)
        assert await migrate.current_revision(url) == migrate.head_revision()
        platform = Platform(settings(url, auto_migrate="auto"))
        await platform.start()
        await platform.stop(grace=1)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_unreachable_database_refuses_to_start() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StartupError, match="cannot be used"):
        await Platform(settings(url)).start()


@pytest.mark.postgres
async def test_survives_postgres_dropping_its_connections(postgres_url: str) -> None:
    """PostgreSQL restarts or an admin kills backends: the next call reconnects."""
    import asyncpg

    from tests.conftest import POSTGRES_ADMIN_DSN

    platform = Platform(settings(postgres_url))
    await platform.start()
    try:
        async with AsyncCustopsClient(f"127.0.0.1:{platform.port}") as client:
            created = await client.plans.create_plan(
                pb.CreatePlanRequest(shop_id="s-drop", plan=pb.Plan(display_name="before"))
            )
            # The shopper's side reads through a pool of its own, which does
            # not ping before each page: it must notice a dead connection too.
            page = spb.GetMemberViewRequest(
                shop_id="s-drop", member_id="m00000001", front_office=pb.FRONT_OFFICE_MICRO_MALL
            )
            await client.scenario.get_member_view(page)
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    postgres_url.rsplit("/", 1)[1],
                )
            finally:
                await admin.close()
            assert killed >= 1
            got = await client.plans.get_plan(
                pb.GetPlanRequest(shop_id="s-drop", plan_id=created.plan.plan_id)
            )
            assert got.plan.display_name == "before"
            view = await client.scenario.get_member_view(page)
            assert (list(view.plans), list(view.unused_benefits)) == ([], [])
    finally:
        await platform.stop(grace=1)


async def test_migration_0002_fills_front_office_from_stored_plans(tmp_path: Path) -> None:
    """A database at 0001 with a plan in it upgrades without losing the plan's front office."""
    import asyncio
    import json
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    await asyncio.to_thread(migrate.upgrade_blocking, url, "0001")
    spec = {"front_office": "retail", "display_name": "old plan"}
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "insert into plans (shop_id, plan_id, display_name, business_product, state, revision,"
            " spec, template_id, create_by, create_time, update_by, update_time)"
            " values ('s', 'p', 'old plan', 'unspecified', 'draft', 1, ?, '', 'u',"
            " '2026-01-01 00:00:00', 'u', '2026-01-01 00:00:00')",
            (json.dumps(spec),),
        )
    await migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        (office,) = db.execute("select front_office from plans").fetchone()
    assert office == "retail"
