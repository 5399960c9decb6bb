"""Applying and checking the Alembic migrations from code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from server.persistence.database import create_engine, normalize_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade_blocking(url: str, revision: str = "head") -> None:
    """Bring the schema to a revision, the latest by default (runs its own event loop)."""
    command.upgrade(_config(url), revision)


async def upgrade(url: str) -> None:
    # Alembic's env.py runs its own loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade_blocking, url)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def read(sync_conn: Connection) -> str | None:
                return MigrationContext.configure(sync_conn).get_current_revision()

            return await conn.run_sync(read)
    finally:
        await engine.dispose()
