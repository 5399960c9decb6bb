"""One load-generating process of scripts/bench/scenario.py (grpc.aio, loopback).

Started by the benchmark with its settings as JSON in argv[1]. It connects,
prints "ready", reads the measurement's start (a wall-clock instant) from
stdin, runs a warm-up and the measured window, and prints one line
"result {json}": OK answers per second, latencies in ms, errors by status
code. Requests and responses travel as bytes (no client-side parsing of the
answers), so that the client costs the same per call for every method.

- closed loop: `concurrency` callers, each sending its next request when
  the last one answered; latency from send to answer;
- open loop: `rate` requests per second on a fixed schedule, whatever the
  answers do; latency from the scheduled send time, so that a server (or a
  generator) that falls behind shows as queueing, not as a lower rate.

Both are bounded by time and by `max_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from custops.plan.v1 import plan_pb2 as pb
from custops.scenario.v1 import scenario_pb2 as spb

METHODS = {
    "health": "/grpc.health.v1.Health/Check",
    "view": "/custops.scenario.v1.ScenarioAggregationService/GetMemberView",
    "checkout": "/custops.scenario.v1.ScenarioAggregationService/GetCheckoutBenefits",
}
FRONT_OFFICES = (pb.FRONT_OFFICE_MICRO_MALL, pb.FRONT_OFFICE_RETAIL, pb.FRONT_OFFICE_RETAIL_CHAIN)
STORES = 20
ORDER_AMOUNTS = (3_000, 5_000, 9_900, 12_000, 20_000, 50_000)  # minor units; coupon from 10,000
SESSIONS_OPEN = 64  # shoppers browsing at once in an open loop with page sessions


@dataclass
class Shopper:
    """Who asks next: a member and a front office (or store) for `left` more requests."""

    member: str = ""
    office: int = 0
    store: str = ""
    left: int = 0


class Requests:
    """Serialized requests of one call, members picked uniformly or in sessions."""

    def __init__(self, cfg: dict[str, Any], rnd: random.Random) -> None:
        self.call: str = cfg["call"]
        self.shop: str = cfg["shop"]
        self.members: int = cfg["members"]
        self.sessions: bool = cfg["pattern"] == "sessions"
        self.length: int = cfg["session_length"]
        self.rnd = rnd

    def _renew(self, s: Shopper) -> None:
        rnd = self.rnd
        s.member = f"m{rnd.randrange(self.members):08d}"
        s.office = rnd.choice(FRONT_OFFICES)
        s.store = f"store-{rnd.randrange(STORES)}"
        # Sessions of about `length` pages (length/2 .. 3*length/2).
        s.left = rnd.randint(max(1, self.length // 2), max(1, self.length * 3 // 2))

    def next(self, s: Shopper) -> bytes:
        if self.call == "health":
            return b""  # HealthCheckRequest(service=""): the server as a whole
        if not self.sessions or s.left <= 0:
            self._renew(s)
        if not self.sessions:  # uniform: every request a new member, office, store
            s.left = 0
        s.left -= 1
        if self.call == "view":
            return spb.GetMemberViewRequest(
                shop_id=self.shop,
                member_id=s.member,
                front_office=s.office,  # type: ignore[arg-type]
            ).SerializeToString()
        return spb.GetCheckoutBenefitsRequest(
            shop_id=self.shop,
            member_id=s.member,
            store_id=s.store,
            order_amount=self.rnd.choice(ORDER_AMOUNTS),
        ).SerializeToString()


@dataclass
class Tally:
    latencies: list[float]  # ms, OK answers in the window
    errors: Counter[str]
    details: dict[str, str] = field(default_factory=dict)  # the first error of each code
    waits: dict[str, list[float]] = field(default_factory=dict)  # ms to each error, by code
    sent: int = 0  # requests sent, warm-up included
    dropped: int = 0  # open loop: not sent, too many in flight
    lags: list[float] | None = None  # open loop: ms the send was behind schedule


def _code(exc: BaseException, tally: Tally, sent: float) -> str:
    """The error's status code name (or exception class); the first one's
    details and how long after its sending each came are kept."""
    if isinstance(exc, grpc.aio.AioRpcError):
        code = str(exc.code().name)
        detail = f"{exc.details()} [{exc.debug_error_string()}]"
    else:
        code, detail = type(exc).__name__, str(exc)
    tally.details.setdefault(code, detail[:300])
    tally.waits.setdefault(code, []).append((time.time() - sent) * 1000)
    return code


async def closed_loop(
    call: Callable[..., Any], requests: Requests, cfg: dict[str, Any], start: float, end: float
) -> Tally:
    tally = Tally([], Counter())
    timeout, cap = cfg["timeout"], cfg["max_requests"]

    async def caller() -> None:
        shopper = Shopper()
        while tally.sent < cap:
            t0 = time.time()
            if t0 >= end:
                return
            tally.sent += 1
            request = requests.next(shopper)
            error = ""
            try:
                await call(request, timeout=timeout)
            except Exception as exc:
                error = _code(exc, tally, t0)
            t1 = time.time()
            if t0 >= start and t1 <= end:
                if error:
                    tally.errors[error] += 1
                else:
                    tally.latencies.append((t1 - t0) * 1000)

    await asyncio.gather(*(caller() for _ in range(cfg["concurrency"])))
    return tally


async def open_loop(
    call: Callable[..., Any], requests: Requests, cfg: dict[str, Any], start: float, end: float
) -> Tally:
    tally = Tally([], Counter(), lags=[])
    lags = tally.lags
    assert lags is not None
    rate, timeout, cap = cfg["rate"], cfg["timeout"], cfg["max_requests"]
    # A server that cannot keep up meets its deadlines first: only a client
    # whose deadlines do not fire would drop.
    most = int(rate * (timeout + 1)) + 100
    shoppers = [Shopper() for _ in range(SESSIONS_OPEN if requests.sessions else 1)]
    pending: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, request: bytes) -> None:
        error, sent = "", time.time()
        try:
            await call(request, timeout=timeout)
        except Exception as exc:
            error = _code(exc, tally, sent)
        if scheduled >= start:
            if error:
                tally.errors[error] += 1
            else:
                tally.latencies.append((time.time() - scheduled) * 1000)

    first = start - cfg["warmup"]
    i = 0
    while i < cap:
        scheduled = first + i / rate
        if scheduled >= end:
            break
        ahead = scheduled - time.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
        if scheduled >= start:
            lags.append(max(0.0, time.time() - scheduled) * 1000)
        i += 1
        if len(pending) >= most:
            tally.dropped += scheduled >= start
            continue
        tally.sent += 1
        shopper = shoppers[requests.rnd.randrange(len(shoppers))]
        task = asyncio.create_task(one(scheduled, requests.next(shopper)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=timeout + 2)
        for task in list(pending):  # bounded: whatever is left is abandoned
            task.cancel()
            tally.errors["UNANSWERED"] += 1
    return tally


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    rnd = random.Random(cfg["seed"])
    requests = Requests(cfg, rnd)
    # Several connections when several processes serve the port: each is
    # placed on one of them by the kernel (SO_REUSEPORT), the calls take turns.
    options = [("grpc.so_reuseport", 0), ("grpc.use_local_subchannel_pool", 1)]
    async with contextlib.AsyncExitStack() as stack:
        channels = [
            await stack.enter_async_context(
                grpc.aio.insecure_channel(cfg["address"], options=options)
            )
            for _ in range(cfg.get("channels", 1))
        ]
        turns = itertools.cycle([c.unary_unary(METHODS[cfg["call"]]) for c in channels])

        def call(request: Any, timeout: float) -> Any:
            return next(turns)(request, timeout=timeout)

        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 30)
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = float(line)
        end = start + cfg["duration"]
        if cfg["mode"] == "closed":
            await asyncio.sleep(max(0.0, start - cfg["warmup"] - time.time()))
            tally = await closed_loop(call, requests, cfg, start, end)
        else:
            await asyncio.sleep(max(0.0, start - cfg["warmup"] - time.time() - 0.05))
            tally = await open_loop(call, requests, cfg, start, end)
        # The window actually measured: shorter when the request cap ended it.
        window = max(1e-3, min(end, time.time()) - start)
    lags = sorted(tally.lags or [0.0])
    return {
        "ok": len(tally.latencies),
        "window": window,
        "latencies": [round(x, 3) for x in tally.latencies],
        "errors": dict(tally.errors),
        "details": {
            code: f"{detail!r}, after {_spread(tally.waits.get(code, []))} ms"
            for code, detail in tally.details.items()
        },
        "sent": tally.sent,
        "dropped": tally.dropped,
        "capped": tally.sent >= cfg["max_requests"],
        "lag_p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))],
    }


def _spread(values: list[float]) -> str:
    """min/median/max"""
    if not values:
        return "-"
    values = sorted(values)
    return f"{values[0]:.0f}/{values[len(values) // 2]:.0f}/{values[-1]:.0f}"


def main() -> int:
    cfg = json.loads(sys.argv[1])
    result = asyncio.run(run(cfg))
    print("result " + json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
