"""A deterministic synthetic population of members, generated from their index.

Nothing is stored: member `i` of a shop is computed from (seed, shop, i)
with a splitmix64 stream, so ten million members cost no memory and the
same settings give the same people every time. Event times are placed
before the population's epoch (by default the start of the current UTC day).
Every shop has `size` members (m00000000 up), unless `shop_sizes` gives it
its own size: an id past a shop's size is unknown to that shop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import cached_property

_MASK = (1 << 64) - 1
LEVELS = ("V0", "V1", "V2", "V3", "V4", "V5")
_LEVEL_WEIGHTS = (40, 25, 15, 10, 7, 3)  # percent
TAGS = ("beauty", "baby", "sports", "digital", "food", "fashion", "home", "books")
_ID_PREFIX = "m"
_ID_DIGITS = 8
# No population reaches 10**18 members; longer digit strings are not parsed
# (int() refuses over 4300 digits, and a long one costs time).
_MAX_ID_DIGITS = 18
# Day-of-year in a leap year, so that 29 February is somebody's birthday.
_LEAP_YEAR_DAYS = [date(2000, 1, 1) + timedelta(days=i) for i in range(366)]


def _mix(x: int) -> int:
    """splitmix64: one well-spread 64-bit number from another."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Member:
    """One synthetic member. Only the id and the level are worked out when it
    is made; every other field on first reading, so scanning a large
    population for a level (the common rule) stays cheap."""

    def __init__(self, index: int, member_id: str, bits: int, epoch: datetime) -> None:
        self.index = index
        self.member_id = member_id
        self._a = bits
        self._epoch = epoch
        roll = bits % 100
        self.level = LEVELS[-1]
        for code, weight in zip(LEVELS, _LEVEL_WEIGHTS, strict=True):
            if roll < weight:
                self.level = code
                break
            roll -= weight

    def __repr__(self) -> str:
        return f"Member({self.member_id}, {self.level})"

    @cached_property
    def _birth(self) -> tuple[int, int, int]:
        birthday = _LEAP_YEAR_DAYS[(self._a >> 8) % 366]
        year = 1960 + (self._a >> 20) % 46
        if birthday.month == 2 and birthday.day == 29:
            year -= year % 4  # a leap year for the 29 February-born
        return year, birthday.month, birthday.day

    @property
    def birth_year(self) -> int:
        return self._birth[0]

    @property
    def birth_month(self) -> int:
        return self._birth[1]

    @property
    def birth_day(self) -> int:
        return self._birth[2]

    @cached_property
    def _b(self) -> int:
        return _mix(self._a)

    @cached_property
    def _c(self) -> int:
        return _mix(self._a ^ 0x5555)

    @cached_property
    def _d(self) -> int:
        return _mix(self._a ^ 0xAAAA)

    @property
    def follower(self) -> bool:
        return (self._b % 100) < 35

    @property
    def last_browse(self) -> datetime | None:
        b = self._b
        return self._before((b >> 8) % 100 < 70, (b >> 16) % (90 * 86_400))

    @property
    def last_order(self) -> datetime | None:
        c = self._c
        return self._before((c % 100) < 50, (c >> 8) % (180 * 86_400))

    @property
    def last_cart(self) -> datetime | None:
        return self._before((self._c >> 40) % 100 < 40, (self._d >> 8) % (60 * 86_400))

    @cached_property
    def tags(self) -> frozenset[str]:
        # Each tag with a one-in-five chance, from its own byte of `d`.
        d = self._d
        return frozenset(t for i, t in enumerate(TAGS) if ((d >> (8 * i)) & 0xFF) % 5 == 0)

    @property
    def join_time(self) -> datetime:
        return self._epoch - timedelta(seconds=(self._d >> 4) % (1500 * 86_400))

    def _before(self, present: bool, seconds: int) -> datetime | None:
        return self._epoch - timedelta(seconds=seconds) if present else None


class Population:
    def __init__(
        self,
        seed: int,
        size: int,
        epoch: datetime,
        shop_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        sizes = dict(shop_sizes or {})
        bad = sorted(shop for shop, n in sizes.items() if n < 0)
        if bad:
            raise ValueError(f"shop sizes must be >= 0 (shops {', '.join(map(repr, bad))})")
        self.seed = seed
        # Channels members opted out of marketing messages on, by (shop, member):
        # none unless set (StubAdminService/SetMemberConsent).
        self.opted_out: dict[tuple[str, str], set[int]] = {}
        # The default size, of every shop without its own.
        self.size = size
        self.shop_sizes = sizes
        self.epoch = epoch

    def size_of(self, shop_id: str) -> int:
        """How many members a shop has: its own size, or the default."""
        return self.shop_sizes.get(shop_id, self.size)

    def _base(self, shop_id: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}:{shop_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def member_id(self, index: int) -> str:
        return f"{_ID_PREFIX}{index:0{_ID_DIGITS}d}"

    def index_of(self, member_id: str, shop_id: str | None = None) -> int | None:
        """The index of an id of the shop's population (of the default size
        when no shop is given), or None."""
        digits = member_id[len(_ID_PREFIX) :]
        if (
            not member_id.startswith(_ID_PREFIX)
            or not _ID_DIGITS <= len(digits) <= _MAX_ID_DIGITS
            or not (digits.isascii() and digits.isdigit())
        ):
            return None
        size = self.size if shop_id is None else self.shop_sizes.get(shop_id, self.size)
        index = int(digits)
        return index if index < size and self.member_id(index) == member_id else None

    def member(self, shop_id: str, index: int, base: int | None = None) -> Member:
        """Member `index` of a shop (pass `base` when generating many)."""
        r = _mix((self._base(shop_id) if base is None else base) ^ (index * 0xD1B54A32D192ED03))
        return Member(index, self.member_id(index), r, self.epoch)

    def base(self, shop_id: str) -> int:
        return self._base(shop_id)
