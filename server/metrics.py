"""Metrics with the OpenTelemetry SDK: what the people who run custops watch.

Exported in the Prometheus text format on a port of their own
(`CUSTOPS_METRICS_LISTEN`, loopback by default, empty: none) by the
maintained exporter (opentelemetry-exporter-prometheus), and over OTLP when
an endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, as the specification names them).

The RPC durations are named as the OpenTelemetry semantic conventions say
(`rpc.server.call.duration`, `rpc.client.call.duration`, in seconds); the
rest are `custops.*` (the conventions' `db.client.connection.count` would be
scraped as `db_client_connection_count`, a gauge ending in `_count`, which
promtool refuses). Label sets are
bounded: a method, a status code, an outcome and its reason, a bucket, never
a member id, and a shop id only when `CUSTOPS_METRICS_SHOP_LABELS` is on.
`docs/operations.md` lists every metric.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from server.telemetry import resource

log = logging.getLogger("custops.metrics")

# Seconds: the boundaries the RPC conventions advise for call durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
COUNT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


class Metrics:
    """Every instrument, behind methods named for what happened, so that the
    code that measures never builds attribute sets (and cannot unbound them)."""

    def __init__(self, meter: Meter, shop_labels: bool = False) -> None:
        self._shop_labels = shop_labels
        self._server = meter.create_histogram(
            "rpc.server.call.duration", unit="s", description="Calls served, by method and status"
        )
        self._client = meter.create_histogram(
            "rpc.client.call.duration",
            unit="s",
            description="Calls to the downstream systems, by method and status",
        )
        self._members = meter.create_counter(
            "custops.run.members",
            unit="{member}",
            description="Members whose outcome in a run was recorded, by outcome and reason",
        )
        self._batches = meter.create_counter(
            "custops.run.batches", unit="{batch}", description="Batches recorded, by job kind"
        )
        self._dead = meter.create_counter(
            "custops.run.dead_letters",
            unit="{item}",
            description="Items that failed every attempt, by job kind",
        )
        self._in_flight = meter.create_gauge(
            "custops.runs.in_flight", unit="{run}", description="Jobs pending or running"
        )
        self._retrying = meter.create_gauge(
            "custops.run.items.retrying", unit="{item}", description="Items waiting for a retry"
        )
        self._dead_now = meter.create_gauge(
            "custops.run.items.dead", unit="{item}", description="Dead-lettered items kept"
        )
        self._lateness = meter.create_histogram(
            "custops.scheduler.fire.lateness",
            unit="s",
            description="How long after its fire time a plan's run started",
        )
        self._due = meter.create_histogram(
            "custops.scheduler.due_plans", unit="{plan}", description="Due plans found per poll"
        )
        self._asked = meter.create_counter(
            "custops.throttle.tokens.requested", unit="{token}", description="Tokens asked for"
        )
        self._granted = meter.create_counter(
            "custops.throttle.tokens.granted", unit="{token}", description="Tokens taken"
        )
        self._wait = meter.create_histogram(
            "custops.throttle.wait.duration",
            unit="s",
            description="Time a call waited for its tokens",
        )
        self._rate = meter.create_gauge(
            "custops.throttle.rate",
            unit="{token}/s",
            description="The rate in force, the adaptive factor included",
        )
        self._pushed_back = meter.create_counter(
            "custops.throttle.push_backs",
            unit="{call}",
            description="Calls a downstream refused for capacity",
        )
        self._up = meter.create_gauge(
            "custops.dependency.up",
            unit="1",
            description="1 while a dependency answers the readiness check, 0 while it does not",
        )
        self._meter = meter

    def start_at_zero(self, buckets: Iterable[str], kinds: Iterable[str]) -> None:
        """The counters a dashboard or an alert rates, at 0 from the start, so
        that rate() and increase() have a series before the first event."""
        for bucket in buckets:
            labels = {"bucket": _bucket(bucket)}
            for counter in (self._asked, self._granted, self._pushed_back):
                counter.add(0, labels)
        for kind in kinds:
            self._batches.add(0, {"kind": kind})
            self._dead.add(0, {"kind": kind})

    def dependency(self, name: str, up: bool) -> None:
        self._up.set(1 if up else 0, {"dependency": name})

    # --- the RPCs ---------------------------------------------------------

    def served(self, method: str, code: str, seconds: float) -> None:
        self._server.record(seconds, _rpc(method, code))

    def called(self, method: str, code: str, seconds: float) -> None:
        self._client.record(seconds, _rpc(method, code))

    # --- runs and the engine ----------------------------------------------

    def members(self, outcome: str, reason: str, count: int, shop: str = "") -> None:
        if count:
            labels = {"outcome": outcome, "reason": reason} | self._shop(shop)
            self._members.add(count, labels)

    def batch(self, kind: str) -> None:
        self._batches.add(1, {"kind": kind})

    def dead_lettered(self, kind: str, count: int) -> None:
        if count:
            self._dead.add(count, {"kind": kind})

    def engine_state(self, in_flight: int, retrying: int, dead: int) -> None:
        self._in_flight.set(in_flight)
        self._retrying.set(retrying)
        self._dead_now.set(dead)

    def fired(self, lateness_seconds: float) -> None:
        self._lateness.record(max(0.0, lateness_seconds))

    def polled(self, due_plans: int) -> None:
        self._due.record(due_plans)

    # --- the token buckets --------------------------------------------------

    def tokens(self, bucket: str, asked: int, granted: int) -> None:
        labels = {"bucket": _bucket(bucket)}
        if asked:
            self._asked.add(asked, labels)
        if granted:
            self._granted.add(granted, labels)

    def waited(self, bucket: str, seconds: float) -> None:
        self._wait.record(seconds, {"bucket": _bucket(bucket)})

    def rate_in_force(self, bucket: str, rate: float) -> None:
        self._rate.set(rate, {"bucket": _bucket(bucket)})

    def pushed_back(self, bucket: str) -> None:
        self._pushed_back.add(1, {"bucket": _bucket(bucket)})

    # --- the database pool ------------------------------------------------

    def watch_pool(self, name: str, read: Callable[[], tuple[int, int, int | None]]) -> None:
        """`read` gives (connections in use, idle, calls waiting for one or
        None when the pool cannot tell)."""

        def connections(_: CallbackOptions) -> Iterable[Observation]:
            used, idle, _waiting = read()
            yield Observation(used, {"pool": name, "state": "used"})
            yield Observation(idle, {"pool": name, "state": "idle"})

        def waiting(_: CallbackOptions) -> Iterable[Observation]:
            count = read()[2]
            if count is not None:
                yield Observation(count, {"pool": name})

        self._meter.create_observable_gauge(
            "custops.db.pool.connections",
            [connections],
            unit="{connection}",
            description="Database connections of the pool, in use and idle",
        )
        self._meter.create_observable_gauge(
            "custops.db.pool.waiting",
            [waiting],
            unit="{request}",
            description="Calls waiting for a database connection",
        )

    def _shop(self, shop: str) -> dict[str, str]:
        return {"shop": shop} if self._shop_labels and shop else {}


@functools.lru_cache(maxsize=1024)
def _rpc(method: str, code: str) -> dict[str, Any]:
    # One dict per (method, code), made once: both sets are bounded (only
    # methods a handler serves, and our own downstream calls, reach here).
    # Never changed after: the SDK only reads it.
    return {
        "rpc.system.name": "grpc",
        "rpc.method": method.lstrip("/"),
        "rpc.response.status_code": code,
    }


def _bucket(name: str) -> str:
    """A downstream's bucket by its name; a caller's rate limit as one label."""
    return name if ":" not in name else name.split(":", 1)[0]


NO_METRICS = Metrics(NoOpMeterProvider().get_meter("custops"))


@dataclass
class Exporting:
    """The metrics pipeline of one process: its provider, and what serves
    the Prometheus scrape (stopped with the process)."""

    provider: MeterProvider
    metrics: Metrics
    port: int = 0  # the scrape port, 0 when none is served
    _stop: Callable[[], None] | None = None

    def shutdown(self) -> None:
        if self._stop is not None:
            self._stop()
        self.provider.shutdown(timeout_millis=2000)


def start(listen: str, shop_labels: bool) -> Exporting:
    """The metrics pipeline: a scrape endpoint on `listen` ("" for none) and
    OTLP when its endpoint is configured. Raises OSError when `listen` cannot
    be bound."""
    readers: list[MetricReader] = []
    stop: Callable[[], None] | None = None
    port = 0
    if listen:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        # A registry of this process's own: a test starting two servers in
        # one process serves each its own metrics.
        registry = CollectorRegistry(auto_describe=True)
        readers.append(PrometheusMetricReader(registry=registry))
        host, _, wanted = listen.rpartition(":")
        server, thread = start_http_server(int(wanted), host or "127.0.0.1", registry=registry)
        port = int(server.server_address[1])

        def stop_serving() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=2)

        stop = stop_serving
    if any(os.environ.get(v) for v in _OTLP_VARIABLES):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    provider = MeterProvider(metric_readers=readers, resource=resource(), views=_views())
    metrics = Metrics(provider.get_meter("custops"), shop_labels)
    return Exporting(provider, metrics, port, stop)


def _views() -> list[View]:
    seconds = ExplicitBucketHistogramAggregation(DURATION_BUCKETS)
    return [
        View(instrument_name="rpc.server.call.duration", aggregation=seconds),
        View(instrument_name="rpc.client.call.duration", aggregation=seconds),
        View(instrument_name="custops.throttle.wait.duration", aggregation=seconds),
        View(
            instrument_name="custops.scheduler.fire.lateness",
            aggregation=ExplicitBucketHistogramAggregation(LATENESS_BUCKETS),
        ),
        View(
            instrument_name="custops.scheduler.due_plans",
            aggregation=ExplicitBucketHistogramAggregation(COUNT_BUCKETS),
        ),
    ]
