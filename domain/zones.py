"""IANA time zones: which names are valid, and the zone of a name."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_TIME_ZONE = "Asia/Shanghai"


@lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    # Only names from the zone database: ZoneInfo() alone would also try
    # directories ("America") and over-long paths, which fail with OS errors.
    return frozenset(available_timezones())


def is_time_zone(name: str) -> bool:
    return name in _names()


def zone(name: str) -> ZoneInfo:
    """The zone of a name already checked with is_time_zone."""
    if not is_time_zone(name):
        raise ValueError(f"not an IANA time zone: {name!r}")
    return ZoneInfo(name)
