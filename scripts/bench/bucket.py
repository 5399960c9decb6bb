"""The Redis token bucket under four processes: the admitted rate against
the configured one, and how soon a rate change is obeyed everywhere.

Four worker processes (each with several concurrent acquirers asking for
batches) share one bucket for `--seconds`. Then the rate is set to 0 from
outside and, a second later, back: the pick-up delay is the last admission
after the stop and the first after the restart, measured from the moment
the change was written. A Redis PING round trip, measured in the same run,
is the baseline those delays are put against.

    .venv/bin/python scripts/bench/bucket.py [--seconds 20] [--rate 2000]
        [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import redis.asyncio as redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from server.throttle.buckets import BucketSettings, acquire  # noqa: E402
from server.throttle.redis_buckets import RedisBuckets  # noqa: E402

PROCESSES = 4
ACQUIRERS = 4  # per process
BATCH = 10
CAPACITY = 100
BUCKET = "bench"


async def worker(url: str, prefix: str, start: float, end: float) -> None:
    """Acquire batches until `end`; print every admission's time as JSON."""
    client = redis.from_url(url)
    buckets = RedisBuckets(client, prefix, {})
    admitted: list[float] = []

    async def loop() -> None:
        while time.time() < end:
            await acquire(buckets, BUCKET, BATCH)
            admitted.append(time.time())

    await asyncio.sleep(max(0.0, start - time.time()))
    await asyncio.gather(*(loop() for _ in range(ACQUIRERS)))
    await client.aclose()
    print(json.dumps(admitted))


async def ping_us(client: redis.Redis, rounds: int = 200) -> float:
    began = time.perf_counter()
    for _ in range(rounds):
        await client.ping()
    return (time.perf_counter() - began) / rounds * 1e6


async def main(url: str, seconds: float, rate: float) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    client = redis.from_url(url)
    buckets = RedisBuckets(client, prefix, {})
    await buckets.configure(BUCKET, BucketSettings(rate, CAPACITY))
    start = time.time() + 1.5  # every process has imported and connected by then
    # 1.37 s stopped: not a multiple of any retry interval, so no lucky alignment.
    stop_at, restart_at, end = start + seconds, start + seconds + 1.37, start + seconds + 2.5
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            url,
            prefix,
            str(start),
            str(end),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        for _ in range(PROCESSES)
    ]
    await asyncio.sleep(stop_at - time.time())
    await buckets.configure(BUCKET, BucketSettings(0.0, CAPACITY))
    stopped = time.time()
    await asyncio.sleep(restart_at - time.time())
    await buckets.configure(BUCKET, BucketSettings(rate, CAPACITY))
    restarted = time.time()
    times: list[float] = []
    for w in workers:
        out, _ = await asyncio.wait_for(w.communicate(), seconds + 60)
        if w.returncode != 0:
            raise SystemExit(f"a worker process failed ({w.returncode})")
        times += json.loads(out)
    ping = await ping_us(client)
    await client.delete(*[k async for k in client.scan_iter(f"{prefix}:*")])
    await client.aclose()

    steady = sum(BATCH for t in times if start <= t < stopped)
    # The bucket starts full: its capacity is a burst on top of the rate.
    measured = (steady - CAPACITY) / (stopped - start)
    last_after_stop = max((t for t in times if stopped <= t < restarted), default=stopped)
    first_after_restart = min((t for t in times if t >= restarted), default=float("nan"))
    stop_delay = (last_after_stop - stopped) * 1e6
    start_delay = (first_after_restart - restarted) * 1e6
    print(f"{PROCESSES} processes x {ACQUIRERS} acquirers, batches of {BATCH}, {seconds:g} s")
    ratio = measured / rate
    print(f"configured rate   {rate:10.1f} tokens/s")
    print(f"measured rate     {measured:10.1f} tokens/s   ratio {ratio:.4f} (goal 0.97-1.03)")
    print(f"redis PING        {ping:10.0f} us   (baseline)")
    for what, delay in (("rate -> 0", stop_delay), ("0 -> rate", start_delay)):
        print(f"{what} obeyed  {delay:10.0f} us   {delay / ping:8.1f} x PING (goal < 1 s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, prefix, begin, finish = sys.argv[2:6]
        asyncio.run(worker(url, prefix, float(begin), float(finish)))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.seconds, args.rate))
