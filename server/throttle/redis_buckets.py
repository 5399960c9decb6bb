"""Token buckets in Redis, shared by every replica.

Each decision is one Lua script, so check-and-take is atomic however many
processes ask at once; it reads the clock with Redis `TIME` (or, for Redis
services that forbid TIME in scripts, and for tests, a time passed in),
works in integer microseconds, clamps time that runs backwards, and keeps
the state in one hash with a PEXPIRE. Settings (rate, capacity) and the
adaptive factor live in a second hash that every replica reads on every
decision, so a changed rate is in force at once everywhere. A decision for
a shop's share also keeps the running shops' levels in the state hash and
reads their weights from the settings hash (`w:<shop>` fields), so the
shares are one atomic decision too.

Both keys of a bucket carry its name as a hash tag (`custops:bucket:{benefit}`
and `custops:bucket:{benefit}:settings`), so on a Redis Cluster they hash to
one slot and each decision's script runs on the one node that owns them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.redis_store import MAX_CONNECTIONS, RedisClient
from server.throttle.buckets import (
    ACTIVE_US,
    BACKOFF,
    LATE_S,
    MIN_FACTOR,
    RECOVERY_STEP,
    UNSET,
    BucketSettings,
    BucketUnavailable,
    Decision,
    SettingsSource,
)

log = logging.getLogger("custops.throttle")

# A bucket's state outlives a week of silence; after that it starts again
# (empty, for a bucket whose settings are kept in the database; full for a
# caller's rate limit).
STATE_TTL_MS = 7 * 24 * 3600 * 1000
# The answer of _TAKE for a kept bucket whose cached settings are gone.
_NO_SETTINGS = -2

_TAKE = (
    f"local LATE_S = {LATE_S!r}\n"
    + """
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local kept = ARGV[6] == '1'
local s = redis.call('HMGET', KEYS[2], 'rate', 'capacity', 'factor')
if kept and not s[1] then
  return {-2, 0}
end
local rate = tonumber(s[1]) or tonumber(ARGV[3])
local capacity = tonumber(s[2]) or tonumber(ARGV[4])
local factor = tonumber(s[3]) or 1
local st = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local level = tonumber(st[1])
if not level then
  if kept then level = 0 else level = capacity end
end
local stamp = tonumber(st[2]) or now
local elapsed = now - stamp
if elapsed < 0 then elapsed = 0 end
local r = rate * factor
level = math.min(capacity, level + elapsed * r / 1000000)
-- buckets.largest_take: room for LATE_S of the rate, at most half of it.
local function largest(room, rt)
  return math.max(1, math.floor(math.max(room / 2, room - rt * LATE_S)))
end
local want = math.min(tonumber(ARGV[1]), largest(capacity, r))
local granted = 0
local wait = 0
if ARGV[7] == '1' then
  -- A shop's share (buckets.share_decide says the same in Python): the
  -- running shops' levels ('l:' fields) and when each last asked ('t:').
  local shop = ARGV[8]
  local fields = redis.call('HGETALL', KEYS[1])
  local seen, levels, names, gone = {}, {}, {}, {}
  for i = 1, #fields, 2 do
    local head, name = string.sub(fields[i], 1, 2), string.sub(fields[i], 3)
    if head == 't:' then seen[name] = tonumber(fields[i + 1])
    elseif head == 'l:' then levels[name] = tonumber(fields[i + 1]) end
  end
  for name, t in pairs(seen) do
    if now - t > tonumber(ARGV[9]) and name ~= shop then
      table.insert(gone, 't:' .. name)
      table.insert(gone, 'l:' .. name)
    else
      table.insert(names, name)
    end
  end
  if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
  local joined = seen[shop] == nil
  if joined then table.insert(names, shop) end
  local asked = {}
  for i, name in ipairs(names) do asked[i] = 'w:' .. name end
  local stored = redis.call('HMGET', KEYS[2], unpack(asked))
  local weight, total = {}, 0
  for i, name in ipairs(names) do
    weight[name] = tonumber(stored[i]) or 1
    total = total + weight[name]
  end
  local others = 0
  for _, name in ipairs(names) do
    local part = weight[name] / total
    if name == shop and joined then
      levels[name] = 0
    else
      levels[name] = math.min(capacity * part, (levels[name] or 0) + elapsed * r * part / 1000000)
    end
    if name ~= shop then others = others + levels[name] end
  end
  local part = weight[shop] / total
  want = math.min(want, largest(capacity * part, r * part))
  if level - want >= others - 1e-9 then
    level = level - want
    granted = want
    levels[shop] = math.max(0, math.min(levels[shop] - want, level - others))
  else
    local share_rate = r * part
    if share_rate <= 0 then
      wait = -1
    else
      wait = math.max(1, math.ceil((want - levels[shop]) / share_rate * 1000000))
    end
  end
  local writes = {'t:' .. shop, string.format('%.0f', now)}
  for _, name in ipairs(names) do
    table.insert(writes, 'l:' .. name)
    table.insert(writes, string.format('%.6f', levels[name]))
  end
  redis.call('HSET', KEYS[1], unpack(writes))
elseif level >= want then
  level = level - want
  granted = want
else
  if r <= 0 then wait = -1 else wait = math.ceil((want - level) / r * 1000000) end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', level),
           'stamp', string.format('%.0f', math.max(stamp, now)))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {granted, wait}
"""
)

_ADAPT = """
local f = tonumber(redis.call('HGET', KEYS[1], 'factor')) or 1
if ARGV[1] == 'down' then
  f = math.max(tonumber(ARGV[2]), f * tonumber(ARGV[3]))
else
  f = math.min(1, f + tonumber(ARGV[4]))
end
redis.call('HSET', KEYS[1], 'factor', string.format('%.6f', f))
return string.format('%.6f', f)
"""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisBuckets:
    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        defaults: dict[str, BucketSettings],
        use_time: bool = True,
        source: SettingsSource | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._defaults = defaults
        self._use_time = use_time
        # Settings that must survive Redis (the downstreams'): Redis only
        # caches them, and a decision that finds them gone reads them here.
        self._source = source
        self._take = client.register_script(_TAKE)
        self._adapt = client.register_script(_ADAPT)
        # Decisions beyond the connections at hand wait for one here: the
        # client would refuse them (MaxConnectionsError), which a caller
        # would take for an outage.
        self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)

    def _keys(self, name: str) -> tuple[str, str]:
        base = f"{self._prefix}:bucket:{{{name}}}"
        return base, f"{base}:settings"

    async def adopt_untagged_settings(self) -> int:
        """Settings an operator stored before the keys carried hash tags
        (`custops:bucket:benefit:settings`) are copied to their tagged key
        once, so an upgrade keeps the configured rates instead of falling back
        to the defaults. Only a single Redis can hold them: the untagged keys
        never worked on a cluster. Returns how many were adopted."""
        if not isinstance(self._redis, Redis):
            return 0
        adopted = 0
        head = f"{self._prefix}:bucket:"
        async for raw in self._redis.scan_iter(match=f"{head}*:settings", count=500):
            key = raw.decode()
            name = key[len(head) : -len(":settings")]
            if name.startswith("{"):
                continue
            stored = await self._redis.hgetall(key)
            target = self._keys(name)[1]
            if stored and not await self._redis.exists(target):
                await self._redis.hset(target, mapping=dict(stored.items()))
                adopted += 1
            await self._redis.delete(key)
        return adopted

    async def cached(self) -> dict[str, BucketSettings]:
        """The settings Redis holds for kept buckets (what a version that kept
        them in Redis only had configured), by bucket name."""
        found: dict[str, BucketSettings] = {}
        if self._source is None:
            return found
        head, tail = f"{self._prefix}:bucket:{{", "}:settings"
        async for raw in self._redis.scan_iter(match=f"{head}*{tail}", count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            name = key[len(head) : -len(tail)]
            stored = await self._redis.hgetall(key)
            if self._source.keeps(name) and b"rate" in stored and b"capacity" in stored:
                found[name] = BucketSettings(
                    float(stored[b"rate"]), int(float(stored[b"capacity"]))
                )
        return found

    async def take(
        self, name: str, tokens: int, now_us: int | None = None, shop: str | None = None
    ) -> Decision:
        default = self._defaults.get(name, UNSET)
        if now_us is None and not self._use_time:
            raise ValueError("this store forbids TIME in scripts: pass now_us")
        kept = self._source is not None and self._source.keeps(name)
        args = [
            tokens,
            "" if now_us is None else now_us,
            default.rate,
            default.capacity,
            STATE_TTL_MS,
            "1" if kept else "0",
            "0" if shop is None else "1",
            shop or "",
            ACTIVE_US,
        ]
        for _ in range(3):  # a flush between seeding and deciding: seed again
            try:
                async with self._in_flight:
                    granted, wait = await self._take(keys=list(self._keys(name)), args=args)
            except (RedisError, OSError) as exc:
                raise BucketUnavailable(f"bucket {name}: {exc.__class__.__name__}") from exc
            if int(granted) != _NO_SETTINGS:
                return Decision(int(granted), int(wait))
            await self._seed(name)
        raise BucketUnavailable(f"bucket {name}: its settings keep disappearing from Redis")

    async def prime(self) -> None:
        """At start: cache every kept bucket's settings from their source, so
        that a re-seed logged later means Redis lost them, not a first start."""
        for name in self._defaults:
            if self._source is not None and self._source.keeps(name):
                await self._seed(name, quiet=True)

    async def _seed(self, name: str, quiet: bool = False) -> None:
        """Cache a kept bucket's settings (and its shops' weights) again from
        their source, unless a configure got there first; one log line says so."""
        assert self._source is not None
        try:
            settings = await self._source.load(name)
            weights = await self._source.weights(name)
        except Exception as exc:  # the database away: nothing goes through
            raise BucketUnavailable(f"bucket {name}: settings unreadable ({exc})") from exc
        key = self._keys(name)[1]
        try:
            for shop, weight in weights.items():
                await self._redis.hsetnx(key, f"w:{shop}", weight)
            await self._redis.hsetnx(key, "capacity", settings.capacity)
            # The rate last: a decision finding it takes the cache as whole.
            await self._redis.hsetnx(key, "rate", settings.rate)
        except (RedisError, OSError) as exc:
            raise BucketUnavailable(f"bucket {name}: {exc.__class__.__name__}") from exc
        if quiet:
            return
        log.warning(
            "throttle settings were missing in Redis; re-seeded from the database",
            extra={"bucket": name, "rate": settings.rate, "burst": settings.capacity},
        )

    async def configure(self, name: str, settings: BucketSettings) -> None:
        await self._redis.hset(
            self._keys(name)[1], mapping={"rate": settings.rate, "capacity": settings.capacity}
        )

    async def configure_weight(self, name: str, shop: str, weight: float) -> None:
        await self._redis.hset(self._keys(name)[1], f"w:{shop}", weight)

    async def running(self, name: str) -> dict[str, float]:
        state, settings = self._keys(name)
        fields = await self._redis.hgetall(state)
        now = time.time() * 1e6  # Redis TIME stamps them; on one host, close enough
        seen = {_text(k): float(v) for k, v in fields.items()}
        shops = [k[2:] for k, t in seen.items() if k.startswith("t:") and now - t <= ACTIVE_US]
        if not shops:
            return {}
        weights = await self._redis.hmget(settings, [f"w:{s}" for s in shops])
        return {s: float(w) if w is not None else 1.0 for s, w in zip(shops, weights, strict=True)}

    async def settings(self, name: str) -> tuple[BucketSettings, float]:
        stored = await self._redis.hgetall(self._keys(name)[1])
        if b"rate" not in stored and self._source is not None and self._source.keeps(name):
            await self._seed(name)
            stored = await self._redis.hgetall(self._keys(name)[1])
        default = self._defaults.get(name, UNSET)
        rate = float(stored.get(b"rate", default.rate))
        capacity = int(float(stored.get(b"capacity", default.capacity)))
        return BucketSettings(rate, capacity), float(stored.get(b"factor", 1.0))

    async def penalize(self, name: str) -> float:
        return await self._adjust(name, "down")

    async def reward(self, name: str) -> float:
        return await self._adjust(name, "up")

    async def _adjust(self, name: str, way: str) -> float:
        args: list[str | float] = [way, MIN_FACTOR, BACKOFF, RECOVERY_STEP]
        try:
            async with self._in_flight:
                return float(await self._adapt(keys=[self._keys(name)[1]], args=args))
        except (RedisError, OSError) as exc:
            raise BucketUnavailable(f"bucket {name}: {exc.__class__.__name__}") from exc
