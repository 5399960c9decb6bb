"""The stand-ins' own gRPC server: audience, benefit and notification (all
three, or one), with health, reflection and StubAdminService, on loopback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custops.audience.v1 import audience_pb2, audience_pb2_grpc
from custops.benefit.v1 import benefit_pb2, benefit_pb2_grpc
from custops.notify.v1 import notify_pb2, notify_pb2_grpc
from custops.stubadmin.v1 import stubadmin_pb2, stubadmin_pb2_grpc
from domain.ports import Clock
from server.clock import SystemClock
from server.serving import add_health_and_reflection
from server.stand_ins.admin import StubAdmin
from server.stand_ins.audience import AudienceStub
from server.stand_ins.benefit import BenefitStub
from server.stand_ins.benefit_book import BenefitBook
from server.stand_ins.notify import NotificationStub
from server.stand_ins.population import Population
from server.stand_ins.pressure import Pressure
from server.tracing import server_interceptors

SYSTEMS = ("audience", "benefit", "notification")


@dataclass(frozen=True)
class StubOptions:
    seed: int = 1
    population: int = 100_000
    # Shops with their own population size (shop id -> members); every other
    # shop has `population` members.
    shop_populations: dict[str, int] = field(default_factory=dict)
    # Event times of the population lie before this; None = today 00:00 UTC.
    epoch: datetime | None = None
    systems: tuple[str, ...] = SYSTEMS


def _service_name(descriptor: object, name: str) -> str:
    return descriptor.services_by_name[name].full_name  # type: ignore[attr-defined,no-any-return]


class Stubs:
    def __init__(
        self,
        options: StubOptions,
        clock: Clock | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.options = options
        # With tracing on, each call the stand-ins serve is a span in its
        # caller's trace (a run's batch, a shopper's call).
        self._tracer_provider = tracer_provider
        self.clock = clock or SystemClock()
        self.benefits = BenefitBook(self.clock)
        self.pressures = {name: Pressure(name, options.seed) for name in options.systems}
        epoch = options.epoch or datetime.now(UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        self.population = Population(
            options.seed, options.population, epoch, options.shop_populations
        )
        self.notifications: NotificationStub | None = None
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self, listen: str) -> int:
        server = grpc.aio.server(
            interceptors=server_interceptors(self._tracer_provider),
            options=[("grpc.so_reuseport", 0)],
        )
        names = [_service_name(stubadmin_pb2.DESCRIPTOR, "StubAdminService")]
        if "audience" in self.pressures:
            stub = AudienceStub(self.population, self.pressures["audience"])
            audience_pb2_grpc.add_AudienceServiceServicer_to_server(stub, server)
            names.append(_service_name(audience_pb2.DESCRIPTOR, "AudienceService"))
        if "benefit" in self.pressures:
            benefit = BenefitStub(self.benefits, self.pressures["benefit"])
            benefit_pb2_grpc.add_BenefitServiceServicer_to_server(benefit, server)
            names.append(_service_name(benefit_pb2.DESCRIPTOR, "BenefitService"))
        if "notification" in self.pressures:
            notification = NotificationStub(
                self.population, self.pressures["notification"], self.clock
            )
            self.notifications = notification
            notify_pb2_grpc.add_NotificationServiceServicer_to_server(notification, server)
            names.append(_service_name(notify_pb2.DESCRIPTOR, "NotificationService"))
        stubadmin_pb2_grpc.add_StubAdminServiceServicer_to_server(
            StubAdmin(self.pressures, self.population), server
        )
        await add_health_and_reflection(server, tuple(names))
        self.port = server.add_insecure_port(listen)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {listen}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace: float | None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
