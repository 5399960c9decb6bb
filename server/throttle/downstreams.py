"""The downstream systems the platform throttles, their buckets' names and
what a fresh deployment allows each before an operator says otherwise."""

from __future__ import annotations

from server.throttle.buckets import BucketSettings

DOWNSTREAMS = ("audience", "benefit", "notification")
DEFAULTS = {
    "audience": BucketSettings(rate=5000.0, capacity=5000),
    "benefit": BucketSettings(rate=1000.0, capacity=5000),
    "notification": BucketSettings(rate=1000.0, capacity=5000),
}


def bucket_name(downstream: str, shop_id: str = "") -> str:
    """The platform-wide bucket ("benefit") or a shop's share ("benefit:SHOP")."""
    return f"{downstream}:{shop_id}" if shop_id else downstream


def is_downstream(name: str) -> bool:
    """Whether a bucket is a downstream's (kept in the database), not a caller's."""
    return name.split(":", 1)[0] in DOWNSTREAMS
