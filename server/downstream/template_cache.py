"""Benefit template values for the shopper's side, cached.

A template version never changes (a change makes a new version), so a
versioned lookup is kept until the cache is full. The latest version of a
template is the benefit platform's to change, and nothing tells this
platform when it does: it is kept `ttl` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from domain.downstream_ports import BenefitLedger, TemplateValue


class TemplateValues:
    def __init__(
        self,
        ledger: BenefitLedger,
        ttl: float = 60.0,
        size: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._ttl = ttl
        self._size = size
        self._monotonic = monotonic
        self._kept: OrderedDict[tuple[str, str, int], tuple[float, TemplateValue]] = OrderedDict()

    async def get(self, shop_id: str, template_id: str, version: int = 0) -> TemplateValue:
        """`version` 0 is the latest."""
        key = (shop_id, template_id, version)
        kept = self._kept.get(key)
        now = self._monotonic()
        if kept is not None and (version or now - kept[0] < self._ttl):
            self._kept.move_to_end(key)
            return kept[1]
        value = await self._ledger.template(shop_id, template_id, version)
        self._kept[key] = (now, value)
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return value
