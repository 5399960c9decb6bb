"""Outcomes of side-effecting calls by request id, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DuplicateRequest, FieldViolation, InvalidArgument
from domain.ports import Clock, RequestKey
from server.persistence.tables import requests


class SqlRequestLog:
    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self._conn = connection
        self._clock = clock

    async def find(self, shop_id: str, key: RequestKey) -> dict[str, Any] | None:
        result = await self._conn.execute(
            select(requests.c.fingerprint, requests.c.outcome).where(
                requests.c.shop_id == shop_id,
                requests.c.operation == key.operation,
                requests.c.request_id == key.request_id,
            )
        )
        row = result.first()
        if row is None:
            return None
        if row.fingerprint != key.fingerprint:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "request_id",
                        f"'{key.request_id}' was already used for a different "
                        f"{key.operation} request; use a new request id",
                    )
                ],
                reason="REQUEST_ID_REUSED",
            )
        outcome: dict[str, Any] = row.outcome
        return outcome

    async def reserve(self, shop_id: str, key: RequestKey) -> None:
        now: datetime = self._clock.now()
        try:
            await self._conn.execute(
                insert(requests).values(
                    shop_id=shop_id,
                    operation=key.operation,
                    request_id=key.request_id,
                    fingerprint=key.fingerprint,
                    outcome={"kind": "pending"},
                    create_time=now,
                )
            )
        except IntegrityError as exc:
            # A concurrent call with the same request id committed first.
            raise DuplicateRequest("another call with this request id finished first") from exc

    async def complete(self, shop_id: str, key: RequestKey, outcome: dict[str, Any]) -> None:
        await self._conn.execute(
            update(requests)
            .where(
                requests.c.shop_id == shop_id,
                requests.c.operation == key.operation,
                requests.c.request_id == key.request_id,
            )
            .values(outcome=outcome)
        )
