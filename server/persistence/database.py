"""Engine creation for the two supported databases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from domain.errors import Unavailable

T = TypeVar("T")

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def normalize_url(url: str) -> str:
    """Accept the plain scheme names and pick the async driver for them."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: a connection beyond the pool would be closed on return,
    # and under load that means one new PostgreSQL backend per request;
    # a burst waits for a pooled connection instead.
    return create_async_engine(
        url, pool_size=25, max_overflow=0, pool_timeout=10, pool_pre_ping=True
    )


def create_read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine for the shopper's-side reads: autocommit (no BEGIN and
    ROLLBACK round trips) and, on PostgreSQL, a pool of its own without a
    ping per checkout (two more round trips); `read` retries a read that met
    a connection the server had dropped."""
    if is_sqlite(str(engine.url)):
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return create_async_engine(
        engine.url, pool_size=10, max_overflow=0, pool_timeout=10, isolation_level="AUTOCOMMIT"
    )


async def read(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work` on a pooled connection of `engine`, once more on a fresh one
    when the first turned out dead (the database restarted: the pool then
    drops all its connections); a database that cannot be reached is
    Unavailable."""
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if attempt == 1 and exc.connection_invalidated:
                continue
            if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
                raise Unavailable(
                    f"the database failed during the read ({exc.__class__.__name__}); retry"
                ) from exc
            raise
        except OSError as exc:
            raise Unavailable(f"the database cannot be reached: {exc.__class__.__name__}") from exc
    raise AssertionError("unreachable")


def pool_usage(engine: AsyncEngine) -> Callable[[], tuple[int, int, int | None]]:
    """(connections in use, idle, calls waiting) of the engine's pool. The
    asyncio pool has no public count of its waiters: they are read from its
    queue's getters, where there is such a queue (None otherwise: SQLite's
    pool keeps no queue, and a newer SQLAlchemy may move it)."""
    pool = engine.sync_engine.pool

    def usage() -> tuple[int, int, int | None]:
        used = int(getattr(pool, "checkedout", lambda: 0)())
        idle = int(getattr(pool, "checkedin", lambda: 0)())
        queue = getattr(getattr(pool, "_pool", None), "_queue", None)
        getters = getattr(queue, "_getters", None)
        return used, idle, None if getters is None else len(getters)

    return usage


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; busy_timeout makes a
    # second writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
