"""Shops' policies in the database, within one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import Aborted
from domain.plan import MessageChannel
from domain.shop_policy import ContactLimit, ContactWindow, ShopPolicy
from server.persistence.audit_log import record_change
from server.persistence.tables import shop_policies


class SqlShopPolicies:
    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def get(self, shop_id: str) -> ShopPolicy:
        """The shop's policy; a shop that set none has none (revision 0)."""
        row = (
            (
                await self._conn.execute(
                    select(shop_policies).where(shop_policies.c.shop_id == shop_id)
                )
            )
            .mappings()
            .first()
        )
        return ShopPolicy(shop_id) if row is None else policy_from_row(row)

    async def save(self, policy: ShopPolicy, before: ShopPolicy) -> None:
        """`before` as it was read, now `policy`, unless it changed meanwhile."""
        row = policy_to_row(policy)
        resource = "shop_policy"
        if before.revision == 0:
            await self._conn.execute(insert(shop_policies).values(**row))
            await record_change(self._conn, policy.shop_id, resource, None, row)
            return
        result = await self._conn.execute(
            update(shop_policies)
            .where(
                shop_policies.c.shop_id == policy.shop_id,
                shop_policies.c.revision == before.revision,
            )
            .values(**row)
        )
        if result.rowcount != 1:
            raise Aborted(
                f"the policy of shop {policy.shop_id} was changed concurrently; retry",
                reason="ETAG_MISMATCH",
            )
        await record_change(self._conn, policy.shop_id, resource, policy_to_row(before), row)


def policy_from_row(row: Any) -> ShopPolicy:
    return ShopPolicy(
        shop_id=row["shop_id"],
        contact_limits=tuple(
            ContactLimit(
                MessageChannel(item["channel"]),
                int(item["max_messages"]),
                ContactWindow(item["window"]),
                bool(item.get("caps_grants", False)),
            )
            for item in row["contact_limits"]
        ),
        approval_threshold=int(row["approval_threshold"]),
        revision=row["revision"],
        update_by=row["update_by"],
        update_time=row["update_time"],
    )


def policy_to_row(policy: ShopPolicy) -> dict[str, Any]:
    return {
        "shop_id": policy.shop_id,
        "contact_limits": [
            {
                "channel": lim.channel.value,
                "max_messages": lim.max_messages,
                "window": lim.window.value,
                "caps_grants": lim.caps_grants,
            }
            for lim in policy.contact_limits
        ],
        "approval_threshold": policy.approval_threshold,
        "revision": policy.revision,
        "update_by": policy.update_by,
        "update_time": policy.update_time,
    }
