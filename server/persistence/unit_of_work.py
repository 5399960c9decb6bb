"""One database transaction over the repositories."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import Unavailable
from domain.ports import Clock
from server.persistence.launches import SqlRunLaunches
from server.persistence.plan_repository import SqlPlanRepository
from server.persistence.request_log import SqlRequestLog
from server.persistence.shop_policies import SqlShopPolicies
from server.persistence.trigger_waits import SqlTriggerWaits


class SqlUnitOfWork:
    """`async with uow:` opens a transaction; leaving without commit() rolls back."""

    plans: SqlPlanRepository
    requests: SqlRequestLog
    shop_policies: SqlShopPolicies
    launches: SqlRunLaunches
    waits: SqlTriggerWaits

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        plans_changed: Callable[[set[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        # Told the shops whose plans a committed transaction wrote (caches).
        self._plans_changed = plans_changed
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        try:
            self._conn = await self._engine.connect()
            await self._conn.begin()
        except (OSError, DBAPIError) as exc:
            if self._conn is not None:
                await self._conn.close()
            raise Unavailable(f"the database cannot be reached: {exc.__class__.__name__}") from exc
        self.plans = SqlPlanRepository(self._conn)
        self.requests = SqlRequestLog(self._conn, self._clock)
        self.shop_policies = SqlShopPolicies(self._conn)
        self.launches = SqlRunLaunches(self._conn)
        self.waits = SqlTriggerWaits(self._conn)
        return self

    async def __aexit__(self, kind: object, error: object, tb: object) -> None:
        assert self._conn is not None
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        except DBAPIError:
            pass  # the connection is gone; the error below says so
        finally:
            await self._conn.close()
            self._conn = None
        if isinstance(error, OperationalError | InterfaceError):
            # Lost connection, server shutting down, SQLite busy: the caller
            # may retry; it is not the request's fault.
            raise Unavailable(
                f"the database failed during the call ({error.__class__.__name__}); retry"
            ) from error

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
        if self._plans_changed is not None and self.plans.changed_shops:
            await self._plans_changed(self.plans.changed_shops)
