"""Who may call what: callers, their roles and the shops they act for.

A caller is a front office, a merchant's admin tool or a platform operator,
known by the credential it presents (a bearer token or a client
certificate). Each has roles and the shops it may act for (or every shop).
Permission is decided before existence (AIP-193): a caller asking for a shop
it may not act for is refused whatever the shop holds, so it learns nothing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass

from domain.errors import PermissionDenied


class Role(enum.Enum):
    FRONT_OFFICE = "front_office"  # the shoppers' side: pages, checkout, use, give-back
    MERCHANT_ADMIN = "merchant_admin"  # operation plans and their runs, for its shops
    OPERATOR = "operator"  # throttles, retries, every shop's statistics
    APPROVER = "approver"  # approves or rejects large plans, for its shops


ALL_SHOPS = "*"
# What a shop id is: 1-64 letters, digits, '_' or '-', the whole string.
SHOP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_shop_id(text: str) -> bool:
    return SHOP_ID.fullmatch(text) is not None


# Calls a caller may make per second, and at once, unless its entry says
# otherwise: well above one front office's honest load, well below what
# would starve the others.
DEFAULT_RATE = 1000.0
DEFAULT_BURST = 2000


@dataclass(frozen=True)
class Caller:
    name: str
    roles: frozenset[Role]
    shops: frozenset[str]  # {"*"}: every shop
    rate_per_second: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST

    @property
    def every_shop(self) -> bool:
        return ALL_SHOPS in self.shops

    def may_act_for(self, shop_id: str) -> bool:
        return self.every_shop or shop_id in self.shops

    def require(self, roles: Collection[Role], shop_id: str | None) -> None:
        """PermissionDenied unless the caller has one of `roles` and (when the
        call is about one shop) may act for `shop_id`; "" is the whole
        platform, which only a caller of every shop may act for."""
        if self.roles.isdisjoint(roles):
            needed = " or ".join(sorted(role.value for role in roles))
            raise PermissionDenied(
                f"caller {self.name!r} lacks the {needed} role this call needs",
                reason="ROLE_MISSING",
            )
        if shop_id is not None and not self.may_act_for(shop_id):
            what = f"shop {shop_id!r}" if shop_id else "the whole platform (every shop)"
            raise PermissionDenied(
                f"caller {self.name!r} may not act for {what}", reason="SHOP_NOT_ALLOWED"
            )
