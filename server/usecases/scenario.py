"""The shoppers' side: what front offices ask about one member of one shop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.errors import NotFound
from domain.ports import AudienceDirectory
from server.scenario.records import MemberRecord, RecordReader


class ScenarioUseCases:
    def __init__(self, records: RecordReader, audience: AudienceDirectory) -> None:
        self._records = records
        self._audience = audience

    async def records(
        self,
        shop_id: str,
        member_id: str,
        kinds: Sequence[str],
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[MemberRecord]:
        """A member's timeline, newest first. A member the shop's audience
        system does not know is NOT_FOUND, never an empty page: a front
        office learns nothing about ids outside its shop."""
        await self._member(shop_id, member_id)
        return await self._records.page(shop_id, member_id, kinds, before, limit)

    async def _member(self, shop_id: str, member_id: str) -> None:
        if member_id not in await self._audience.known(shop_id, [member_id]):
            raise NotFound(
                f"no member {member_id!r} in shop {shop_id!r}", reason="MEMBER_NOT_FOUND"
            )
