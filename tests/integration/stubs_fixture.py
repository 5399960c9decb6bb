"""The stand-ins on a random loopback port, with clients for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest

from custops.audience.v1 import audience_pb2_grpc
from custops.benefit.v1 import benefit_pb2_grpc
from custops.notify.v1 import notify_pb2_grpc
from custops.stubadmin.v1 import stubadmin_pb2_grpc
from server.stand_ins.app import StubOptions, Stubs

EPOCH = datetime(2026, 11, 24, tzinfo=UTC)
POPULATION = 3000


@dataclass
class StubClients:
    stubs: Stubs
    audience: audience_pb2_grpc.AudienceServiceStub
    benefit: benefit_pb2_grpc.BenefitServiceStub
    notify: notify_pb2_grpc.NotificationServiceStub
    admin: stubadmin_pb2_grpc.StubAdminServiceStub


class SteppingClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock(EPOCH)


@pytest.fixture
async def stubs(clock: SteppingClock) -> AsyncIterator[StubClients]:
    running = Stubs(StubOptions(seed=7, population=POPULATION, epoch=EPOCH), clock)
    port = await running.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield StubClients(
            running,
            audience_pb2_grpc.AudienceServiceStub(channel),
            benefit_pb2_grpc.BenefitServiceStub(channel),
            notify_pb2_grpc.NotificationServiceStub(channel),
            stubadmin_pb2_grpc.StubAdminServiceStub(channel),
        )
    await running.stop(None)
