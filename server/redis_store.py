"""The Redis connection, through redis.asyncio (redis-py >= 5).

Not aioredis: it is archived, merged into redis-py, and fails to import on
Python >= 3.11 ("duplicate base class TimeoutError"). Without a Redis URL the
server uses in-process stand-ins for what Redis backs (the token bucket), which
are right for one process only, and says so at start.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger("custops.redis")


class RedisUnavailable(Exception):
    pass


async def connect(url: str) -> redis.Redis | None:
    if not url:
        log.info(
            "no CUSTOPS_REDIS_URL: using in-process stand-ins for Redis-backed state "
            "(token buckets); correct for a single process only"
        )
        return None
    client = redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(
            f"Redis at {url} cannot be reached ({exc}); start it, fix CUSTOPS_REDIS_URL, "
            "or unset it to use in-process stand-ins"
        ) from exc
    log.info("Redis connected", extra={"redis_url": _without_password(url)})
    return client


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
