"""The Redis connection, through redis.asyncio (redis-py >= 5).

Not aioredis: it is archived, merged into redis-py, and fails to import on
Python >= 3.11 ("duplicate base class TimeoutError"). Without a Redis URL the
server uses in-process stand-ins for what Redis backs (the token bucket), which
are right for one process only, and says so at start.

The URL may name a single Redis or any one node of a Redis Cluster: the node
is asked (INFO cluster) and, when it is part of a cluster, the client learns
the other nodes from it and routes each key to the node owning its slot.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError

log = logging.getLogger("custops.redis")

# Connections per Redis node; redis-py refuses a command beyond them, so the
# users of the client (the buckets) queue for one instead.
MAX_CONNECTIONS = 64
# What the platform keeps in Redis speaks to either through the same commands.
RedisClient = redis.Redis | RedisCluster


class RedisUnavailable(Exception):
    pass


async def connect(url: str) -> RedisClient | None:
    if not url:
        log.info(
            "no CUSTOPS_REDIS_URL: using in-process stand-ins for Redis-backed state "
            "(token buckets); correct for a single process only"
        )
        return None
    shown = _without_password(url)
    options = {"socket_connect_timeout": 2, "socket_timeout": 2, "max_connections": MAX_CONNECTIONS}
    single = redis.from_url(url, **options)
    client: RedisClient = single
    try:
        clustered = await _is_cluster_node(single)
        if clustered:
            await single.aclose()
            client = RedisCluster.from_url(url, **options)
            await client.initialize()
        await client.ping()
    except (RedisError, RedisClusterException, OSError) as exc:
        await client.aclose()
        raise RedisUnavailable(
            f"Redis at {shown} cannot be reached ({exc}); start it, fix CUSTOPS_REDIS_URL, "
            "or unset it to use in-process stand-ins"
        ) from exc
    log.info(
        "Redis connected",
        extra={"redis_url": shown, "redis_mode": "cluster" if clustered else "single"},
    )
    return client


async def _is_cluster_node(client: redis.Redis) -> bool:
    try:
        info = await client.info("cluster")
    except ResponseError:
        return False  # a service that hides INFO: it is used as a single Redis
    return bool(int(info.get("cluster_enabled", 0)))


def mode(client: RedisClient | None) -> str:
    if client is None:
        return "in-process stand-ins"
    return "redis cluster" if isinstance(client, RedisCluster) else "redis"


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
