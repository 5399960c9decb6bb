"""The audit log: who changed what through which call, when, and how it ended.

A change is recorded by the code that makes it, on the connection of the
transaction that makes it (`record_change`), so the entry and the change
commit or vanish together. Who, which call and which request come from the
call being served (server.call_context); work the platform does by itself
(scheduled runs, the engine's batches) is not a call and is not recorded,
except ending a plan whose time is over, which is recorded as caller
"platform" (call_context.platform_work).
A state-changing call that fails is recorded by the call interceptor, in a
transaction of its own (`AuditLog.record`). Nothing updates or deletes an
entry: the API has no such call and the database refuses it (migration 0008).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.access import is_shop_id
from server import call_context
from server.persistence.database import read
from server.persistence.tables import audit_entries

OK = "OK"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: datetime
    shop_id: str
    caller: str
    rpc: str
    resource: str
    request_id: str
    outcome: str  # "OK", or the failed call's status code name
    before: dict[str, Any] | None
    after: dict[str, Any] | None


async def record_change(
    conn: AsyncConnection,
    shop_id: str,
    resource: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """The change the call being served makes to `resource`, in the
    transaction of `conn`; for an update, only the fields that differ."""
    if not call_context.method.get():
        return
    old, new = _jsonable(before), _jsonable(after)
    if old is not None and new is not None:
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        old = {key: value for key, value in old.items() if key in changed}
        new = {key: value for key, value in new.items() if key in changed}
    await conn.execute(insert(audit_entries).values(_entry(shop_id, resource, OK, old, new)))


@dataclass(frozen=True)
class Audited:
    """What a store's change is recorded under, for stores that do not know it."""

    shop_id: str
    resource: str


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self,
        shop_id: str,
        resource: str,
        outcome: str = OK,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """In a transaction of its own: a failed state-changing call, or a
        change made outside the database (throttles). A shop id no shop can
        have (a trailing space, '*', '../x') goes to the platform's own
        entries, for operators of every shop to see."""
        if not is_shop_id(shop_id):
            shop_id = ""
        async with self._engine.begin() as conn:
            if outcome == OK:
                await record_change(conn, shop_id, resource, before, after)
            else:
                await conn.execute(
                    insert(audit_entries).values(_entry(shop_id, resource, outcome, None, None))
                )

    async def page(
        self,
        shop_id: str,
        resource: str,
        start: datetime | None,
        end: datetime | None,
        before_seq: int | None,
        limit: int,
    ) -> list[AuditEntry]:
        """Newest first: the shop's entries (a resource's, and those of the
        resources under it, when named) with start <= time < end."""
        a = audit_entries.c
        query = select(audit_entries).where(a.shop_id == shop_id)
        if resource:
            query = query.where(
                or_(a.resource == resource, a.resource.startswith(resource + "/", autoescape=True))
            )
        if start is not None:
            query = query.where(a.time >= start)
        if end is not None:
            query = query.where(a.time < end)
        if before_seq is not None:
            query = query.where(a.seq < before_seq)
        query = query.order_by(a.seq.desc()).limit(limit)

        async def entries(conn: AsyncConnection) -> list[AuditEntry]:
            return [AuditEntry(**row) for row in (await conn.execute(query)).mappings()]

        return await read(self._engine, entries)


def _entry(
    shop_id: str,
    resource: str,
    outcome: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC),  # when it happened, whatever the platform's clock says
        # A refused request's resource is whatever it sent: cut to the
        # column, so that the attempt is on record rather than lost.
        "shop_id": shop_id,
        "caller": _fit(call_context.actor.get(), 200),
        "rpc": _fit(call_context.method.get().lstrip("/"), 200),
        "resource": _fit(resource, 300),
        "request_id": call_context.request_id.get(),
        "outcome": outcome,
        "before": before,
        "after": after,
    }


def _fit(text: str, size: int) -> str:
    text = text.replace("\x00", "\\0")
    return text if len(text) <= size else text[: size - 1] + "…"


def _jsonable(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    loaded: dict[str, Any] = json.loads(json.dumps(dict(values), default=_plain))
    return loaded


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    return str(value)
