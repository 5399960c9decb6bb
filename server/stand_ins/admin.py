"""custops.stubadmin.v1.StubAdminService: settings and counters of the stand-ins."""

from __future__ import annotations

import math

import grpc
from google.protobuf.duration_pb2 import Duration

from custops.notify.v1 import notify_pb2
from custops.stubadmin.v1 import stubadmin_pb2 as pb
from custops.stubadmin.v1 import stubadmin_pb2_grpc
from server.stand_ins.population import Population
from server.stand_ins.pressure import CapacitySettings, FaultSettings, Pressure

_SYSTEMS: dict[int, str] = {
    pb.STUB_SYSTEM_AUDIENCE: "audience",
    pb.STUB_SYSTEM_BENEFIT: "benefit",
    pb.STUB_SYSTEM_NOTIFICATION: "notification",
}
_PATHS = {
    "capacity.items_per_second",
    "capacity.burst",
    "faults.error_rate",
    "faults.lost_response_rate",
    "faults.timeout_rate",
    "faults.latency_min",
    "faults.latency_max",
}


class StubAdmin(stubadmin_pb2_grpc.StubAdminServiceServicer):
    def __init__(self, pressures: dict[str, Pressure], population: Population) -> None:
        self._pressures = pressures
        self._population = population

    async def SetMemberConsent(
        self, request: pb.SetMemberConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetMemberConsentResponse:
        if self._population.index_of(request.member_id, request.shop_id) is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no member {request.member_id!r} in the population"
            )
        if request.channel not in notify_pb2.MessageChannel.values() or not request.channel:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "channel: a MessageChannel")
        key = (request.shop_id, request.member_id)
        channels = self._population.opted_out.setdefault(key, set())
        if request.opted_out:
            channels.add(request.channel)
        else:
            channels.discard(request.channel)
        return pb.SetMemberConsentResponse()

    async def _pressure(self, system: int, context: grpc.aio.ServicerContext) -> Pressure:
        name = _SYSTEMS.get(system)
        if name is None or name not in self._pressures:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "system: STUB_SYSTEM_AUDIENCE, STUB_SYSTEM_BENEFIT or STUB_SYSTEM_NOTIFICATION, "
                "that this process runs",
            )
        assert name is not None
        return self._pressures[name]

    async def GetStubSettings(
        self, request: pb.GetStubSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStubSettingsResponse:
        pressure = await self._pressure(request.system, context)
        return pb.GetStubSettingsResponse(settings=_settings(request.system, pressure))

    async def UpdateStubSettings(
        self, request: pb.UpdateStubSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateStubSettingsResponse:
        new = request.settings
        pressure = await self._pressure(new.system, context)
        paths = list(request.update_mask.paths) or sorted(_PATHS)
        unknown = [p for p in paths if p not in _PATHS]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"update_mask: unknown paths {unknown}; use {sorted(_PATHS)}",
            )
        merged = _settings(new.system, pressure)
        for path in paths:
            group, name = path.split(".")
            source, target = getattr(new, group), getattr(merged, group)
            value = getattr(source, name)
            if isinstance(value, Duration):
                getattr(target, name).CopyFrom(value)
            else:
                setattr(target, name, value)
        f, c = merged.faults, merged.capacity
        problems = [
            f"faults.{n} must be 0-1"
            for n in ("error_rate", "lost_response_rate", "timeout_rate")
            if not 0 <= getattr(f, n) <= 1
        ]
        low, high = f.latency_min.ToTimedelta(), f.latency_max.ToTimedelta()
        if low.total_seconds() < 0 or high < low or high.total_seconds() > 60:
            problems.append("faults.latency_min <= latency_max <= 60s, both >= 0")
        if not math.isfinite(c.items_per_second) or c.items_per_second < 0 or c.burst < 0:
            problems.append("capacity values must be finite and >= 0")
        if not all(
            math.isfinite(getattr(f, n))
            for n in ("error_rate", "lost_response_rate", "timeout_rate")
        ):
            problems.append("fault rates must be finite")
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        pressure.configure(
            CapacitySettings(c.items_per_second, int(c.burst)),
            FaultSettings(
                f.error_rate,
                f.lost_response_rate,
                f.timeout_rate,
                low.total_seconds(),
                high.total_seconds(),
            ),
        )
        return pb.UpdateStubSettingsResponse(settings=_settings(new.system, pressure))

    async def GetStubCounters(
        self, request: pb.GetStubCountersRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStubCountersResponse:
        pressure = await self._pressure(request.system, context)
        return pb.GetStubCountersResponse(counters=_counters(request.system, pressure))

    async def ResetStubCounters(
        self, request: pb.ResetStubCountersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetStubCountersResponse:
        pressure = await self._pressure(request.system, context)
        pressure.reset_counters()
        return pb.ResetStubCountersResponse(counters=_counters(request.system, pressure))


def _settings(system: int, p: Pressure) -> pb.StubSettings:
    low, high = Duration(), Duration()
    low.FromNanoseconds(int(p.faults.latency_min * 1e9))
    high.FromNanoseconds(int(p.faults.latency_max * 1e9))
    return pb.StubSettings(
        system=system,  # type: ignore[arg-type]
        capacity=pb.Capacity(items_per_second=p.capacity.items_per_second, burst=p.capacity.burst),
        faults=pb.Faults(
            error_rate=p.faults.error_rate,
            lost_response_rate=p.faults.lost_response_rate,
            timeout_rate=p.faults.timeout_rate,
            latency_min=low,
            latency_max=high,
        ),
    )


def _counters(system: int, p: Pressure) -> pb.StubCounters:
    c = p.counters
    return pb.StubCounters(
        system=system,  # type: ignore[arg-type]
        calls=c.calls,
        items=c.items,
        succeeded=c.succeeded,
        duplicates=c.duplicates,
        failed=c.failed,
        rejected_for_capacity=c.rejected_for_capacity,
        injected_errors=c.injected_errors,
        lost_responses=c.lost_responses,
        timeouts=c.timeouts,
        failures_by_reason=dict(c.failures_by_reason),
    )
