"""A shop's policy: reading it, and replacing it (once per request id)."""

from __future__ import annotations

from domain import shop_policy
from domain.errors import require
from domain.ports import Clock, RequestKey, UnitOfWork
from domain.shop_policy import ContactLimit, ShopPolicy
from server.usecases.once import once
from server.usecases.plans import UnitOfWorkFactory


class ShopPolicyUseCases:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def get(self, shop_id: str) -> ShopPolicy:
        async with self._uow() as uow:
            return await uow.shop_policies.get(shop_id)

    async def update(
        self,
        shop_id: str,
        limits: tuple[ContactLimit, ...],
        threshold: int,
        etag: str,
        actor: str,
        key: RequestKey | None,
    ) -> ShopPolicy:
        """The shop's policy replaced whole (etag-checked when given); it holds
        for every decision made after it, in every plan of the shop."""
        require(shop_policy.violations(limits, threshold))

        async def change(uow: UnitOfWork) -> ShopPolicy:
            current = await uow.shop_policies.get(shop_id)
            updated = current.replaced(limits, threshold, etag, actor, self._clock.now())
            await uow.shop_policies.save(updated, current)
            return updated

        return await once(self._uow, shop_id, key, change)
