"""The running platform: composes persistence, Redis, the downstream
channels, the public gRPC server and the embedded stand-ins, and stops them
in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from custops.audit.v1 import audit_pb2, audit_pb2_grpc
from custops.plan.v1 import plan_pb2, plan_pb2_grpc
from custops.scenario.v1 import scenario_pb2, scenario_pb2_grpc
from domain.ports import Clock
from server import bootstrap, redis_store
from server import metrics as metrics_pipeline
from server.auth import tls
from server.auth.callers import Callers, CallersError, load_callers
from server.auth.rate_limits import CallerLimits, caller_buckets
from server.bootstrap import Channels
from server.clock import SystemClock
from server.config import Settings
from server.interceptors import CallInterceptor
from server.metrics import Exporting, Metrics
from server.persistence import migrate
from server.persistence.database import (
    create_engine,
    is_sqlite,
    normalize_url,
    pool_usage,
)
from server.persistence.task_store import TaskStore
from server.persistence.throttle_settings import (
    KeptThrottleSettings,
    SqlThrottleSettings,
    adopt,
)
from server.plan_versions import RedisPlanVersions
from server.products.catalog import TemplateError, load_catalog
from server.readiness import Complaints, Dependency, Readiness
from server.servicers.audit_service import AuditService
from server.servicers.plan_service import OperationPlanService
from server.servicers.scenario_service import ScenarioAggregationService
from server.serving import add_health_and_reflection, generic_only
from server.stand_ins.app import StubOptions, Stubs
from server.tasks.kinds import JobKind
from server.tasks.runner import TaskRunner
from server.tasks.worker import Worker
from server.throttle.buckets import Buckets, LocalBuckets
from server.throttle.redis_buckets import RedisBuckets
from server.tracing import (
    DownstreamInterceptor,
    client_interceptors,
    server_interceptors,
    tracer_of,
)
from server.usecases.member_data import Retention
from server.usecases.runs import RunUseCases
from server.usecases.scenario import ScenarioUseCases
from server.usecases.throttle import DEFAULTS as THROTTLE_DEFAULTS

log = logging.getLogger("custops")

PUBLIC_SERVICES = (
    plan_pb2.DESCRIPTOR.services_by_name["OperationPlanService"].full_name,
    scenario_pb2.DESCRIPTOR.services_by_name["ScenarioAggregationService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)
# Caps on what one call may send, far above any honest request; beyond them
# gRPC itself answers RESOURCE_EXHAUSTED. Per field: server.message_checks.
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024
_NO_CALLERS = (
    "none: every caller on loopback is served (to require credentials: "
    "CUSTOPS_CALLERS_FILE, docs/security.md)"
)


class StartupError(Exception):
    """The platform cannot start; the message says why and what to do."""


@dataclass
class Platform:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    tracer_provider: TracerProvider | None = None
    # Job kinds this process runs on the task engine, by name.
    job_kinds: dict[str, JobKind] = field(default_factory=dict)

    port: int = 0
    stubs_port: int = 0
    _server: grpc.aio.Server | None = None
    _stubs: Stubs | None = None
    _health: health.aio.HealthServicer | None = None
    _engine: AsyncEngine | None = None
    _read_engine: AsyncEngine | None = None
    _redis: redis_store.RedisClient | None = None
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    buckets: Buckets | None = None
    jobs: TaskStore | None = None
    runs: RunUseCases | None = None
    scenario: ScenarioUseCases | None = None
    _runner: TaskRunner | None = None
    _metrics: Exporting | None = None
    _readiness: Readiness | None = None
    metrics_port: int = 0

    async def start(self) -> None:
        """Start everything, or nothing: a failure stops what had started."""
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> None:
        s = self.settings
        try:
            self._metrics = metrics_pipeline.start(s.metrics_listen, s.metrics_shop_labels == "on")
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on CUSTOPS_METRICS_LISTEN={s.metrics_listen!r} ({exc}); "
                "choose another port, or set it empty for none"
            ) from exc
        self.metrics_port = self._metrics.port
        metrics = self._metrics.metrics
        await self._prepare_database()
        try:
            self._redis = await redis_store.connect(s.redis_url)
        except redis_store.RedisUnavailable as exc:
            raise StartupError(str(exc)) from exc

        stubs_address = ""
        if s.stubs == "embedded":
            # The platform's clock, so that what the stand-ins stamp (grant
            # times, validity) agrees with what the platform decides by.
            self._stubs = Stubs(
                StubOptions(
                    seed=s.stubs_seed,
                    population=s.stubs_population,
                    shop_populations=s.shop_populations(),
                ),
                self.clock,
                self.tracer_provider,
            )
            try:
                self.stubs_port = await self._stubs.start(s.stubs_listen)
            except RuntimeError as exc:
                raise StartupError(f"{exc}; is the port in use?") from exc
            host = s.stubs_listen.rpartition(":")[0]
            stubs_address = f"{host}:{self.stubs_port}"
            log.info("downstream stand-ins listening", extra={"address": stubs_address})

        tracer = tracer_of(self.tracer_provider)
        downstream = [
            *client_interceptors(self.tracer_provider),
            DownstreamInterceptor(self.tracer_provider is not None, s.downstream_timeout, metrics),
        ]
        audience_channel = grpc.aio.insecure_channel(
            s.target("audience", stubs_address), interceptors=downstream
        )
        benefit_channel = grpc.aio.insecure_channel(
            s.target("benefit", stubs_address), interceptors=downstream
        )
        notification_channel = grpc.aio.insecure_channel(
            s.target("notification", stubs_address), interceptors=downstream
        )
        self._channels += [audience_channel, benefit_channel, notification_channel]

        assert self._engine is not None
        engine, clock = self._engine, self.clock
        folders = [Path(s.product_templates)] if s.product_templates else []
        try:
            catalog = load_catalog(*folders)
        except TemplateError as exc:
            raise StartupError(f"a business-product template is unusable: {exc}") from exc
        callers = self._callers()
        # The downstream throttles and the callers' rate limits, in one store.
        buckets = {**THROTTLE_DEFAULTS, **caller_buckets(callers)}
        # The downstreams' settings come from the database, their source of truth.
        # One store of the settings, for the buckets and for the use cases.
        kept_store = SqlThrottleSettings(engine)
        kept = KeptThrottleSettings(kept_store)
        if self._redis is None:
            self.buckets = LocalBuckets(
                buckets, clock_us=lambda: int(time.time() * 1_000_000), source=kept
            )
        else:
            shared = RedisBuckets(self._redis, s.redis_prefix, buckets, source=kept)
            self.buckets = shared
            if adopted := await shared.adopt_untagged_settings():
                log.info("throttle settings moved to hash-tagged keys", extra={"count": adopted})
            if adopted := await adopt(kept_store, await shared.cached(), clock.now()):
                log.info("throttle settings moved into the database", extra={"count": adopted})
            await shared.prime()
        channels = Channels(audience_channel, benefit_channel, notification_channel)
        retention = Retention(
            timedelta(days=s.retention_outcomes_days),
            timedelta(days=s.retention_events_days),
            timedelta(days=s.retention_orders_days),
        )
        versions = None if self._redis is None else RedisPlanVersions(self._redis, s.redis_prefix)
        parts = bootstrap.build(
            engine,
            clock,
            channels,
            self.buckets,
            catalog,
            retention,
            kept_store,
            metrics,
            plan_versions=versions,
        )
        metrics.watch_pool("primary", pool_usage(engine))
        metrics.start_at_zero(THROTTLE_DEFAULTS, parts.job_kinds)
        self._read_engine = parts.read_engine
        self.jobs, self.runs, self.scenario = parts.jobs, parts.runs, parts.scenario
        parts.runs.metrics, parts.runs.tracer = metrics, tracer
        parts.scenario.pages.tracer = tracer
        parts.scenario.pages.span_name = "member view batch"
        for name, kind in parts.job_kinds.items():
            self.job_kinds.setdefault(name, kind)
        interceptors = server_interceptors(self.tracer_provider)
        interceptors.append(
            CallInterceptor(callers, parts.audit, CallerLimits(self.buckets), metrics)
        )
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                # Off, so that a port in use is an error at start; on when
                # several processes serve the port (server/workers.py).
                ("grpc.so_reuseport", 1 if s.workers > 1 else 0),
            ],
        )
        # RPCs not built yet fall through to the generated base classes (abstract
        # to mypy), which the call interceptor answers with UNIMPLEMENTED.
        plan_service = OperationPlanService(
            parts.plans,
            clock,
            parts.throttle,
            parts.policies,
            parts.runs,
            parts.outcomes,
            parts.effects,
        )
        scenario_service = ScenarioAggregationService(parts.scenario, parts.member_data)
        public = generic_only(server)
        plan_pb2_grpc.add_OperationPlanServiceServicer_to_server(plan_service, public)
        scenario_pb2_grpc.add_ScenarioAggregationServiceServicer_to_server(scenario_service, public)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(parts.audit), public)
        self._health = await add_health_and_reflection(server, PUBLIC_SERVICES)
        self._readiness = self._watch(self._health, metrics)
        self.port = _bind(server, s)
        await server.start()
        self._server = server
        complaints = self._readiness.complaints or Complaints()
        if s.engine_concurrency:
            worker = Worker(
                self.jobs,
                self.job_kinds,
                clock.now,
                self.buckets,
                lease=timedelta(seconds=s.engine_lease),
                metrics=metrics,
                complaints=complaints,
                tracer=tracer,
            )
            self._runner = TaskRunner(
                worker,
                s.engine_concurrency,
                s.engine_poll,
                sweep_every=5 * s.engine_poll,
                # The due-plans query is one indexed range scan: looking
                # often keeps a fire's lateness well under a second.
                complaints=complaints,
                periodic=[
                    ("plan scheduler", parts.runs.tick, s.scheduler_poll),
                    # Members' waits for event-triggered plans, due ones by index.
                    ("trigger sweep", parts.runs.sweep, s.scheduler_poll),
                    ("retention purge", parts.member_data.purge, s.purge_interval),
                ],
            )
            parts.runs.wake = self._runner.wake
            self._runner.start()
        # What start-up made (modules, classes, the contracts' descriptors,
        # the engines) lives as long as the process: keep the collector from
        # walking it again in every full collection, each of which otherwise
        # stopped the event loop for 40-80 ms under load (docs/scenario.md).
        # Garbage first: a frozen cycle would never be collected.
        gc.collect()
        gc.freeze()
        address = f"{s.listen.rpartition(':')[0]}:{self.port}"
        stubs = f"; stand-ins on port {self.stubs_port}" if self.stubs_port else ""
        log.log(
            # One line (JSON like every other) that says where it serves,
            # written whatever the log level: it is how a supervisor (or a
            # person) knows the start is over.
            max(logging.INFO, logging.getLogger().getEffectiveLevel()),
            "custops serving on %s%s",
            address,
            stubs,
            extra={
                "address": address,
                "metrics_port": self.metrics_port,
                "database": make_url(normalize_url(s.database_url)).render_as_string(),
                "redis": redis_store.mode(self._redis),
                "callers": s.callers_file or _NO_CALLERS,
                "tls": tls.mode(s),
            },
        )
        if s.plaintext_beyond_loopback:
            log.warning(
                "the public port is reachable beyond loopback without TLS: bearer tokens "
                "cross the network in the clear; set CUSTOPS_TLS_CERT_FILE and "
                "CUSTOPS_TLS_KEY_FILE (docs/security.md)"
            )

    def _callers(self) -> Callers | None:
        """Who may call (None: nobody is asked, which config allows on loopback only)."""
        if not self.settings.callers_file:
            return None
        try:
            return load_callers(Path(self.settings.callers_file))
        except CallersError as exc:
            raise StartupError(str(exc)) from exc

    async def _prepare_database(self) -> None:
        url = self.settings.database_url
        if is_sqlite(url):
            database = make_url(normalize_url(url)).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        auto = self.settings.auto_migrate
        try:
            if auto == "true" or (auto == "auto" and is_sqlite(url)):
                await migrate.upgrade(url)
            current = await migrate.current_revision(url)
        except (OSError, Exception) as exc:
            if isinstance(exc, StartupError):
                raise
            raise StartupError(
                f"the database at {make_url(normalize_url(url)).render_as_string()} cannot be "
                f"used: {exc.__class__.__name__}: {exc}"
            ) from exc
        head = migrate.head_revision()
        if current != head:
            raise StartupError(
                f"the database schema is at revision {current}, the code needs {head}: "
                "run `custops migrate` (or set CUSTOPS_AUTO_MIGRATE=true)"
            )
        self._engine = create_engine(url)

    async def stop(self, grace: float | None = None, delay: float = 0.0) -> None:
        """Health NOT_SERVING, wait `delay`, then drain calls for up to `grace` seconds."""
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._readiness is not None:
            await self._readiness.stop()
            self._readiness = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._runner is not None:
            await self._runner.stop(grace)
            self._runner = None
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        if self._stubs is not None:
            await self._stubs.stop(grace)
            self._stubs = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._read_engine is not None:
            await self._read_engine.dispose()
            self._read_engine = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self._metrics is not None:
            self._metrics.shutdown()
            self._metrics = None

    def _watch(self, servicer: health.aio.HealthServicer, metrics: Metrics) -> Readiness:
        """Health that follows the database and Redis (server.readiness),
        and, while both answer, the engine's and the buckets' gauges."""
        assert self._engine is not None and self.jobs is not None and self.buckets is not None
        engine, jobs, buckets, redis_client = self._engine, self.jobs, self.buckets, self._redis

        async def database() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        dependencies = [Dependency("database", database)]
        if redis_client is not None:
            dependencies.append(Dependency("redis", redis_client.ping))
        needs = {service: tuple(d.name for d in dependencies) for service in PUBLIC_SERVICES}

        async def sample() -> None:
            metrics.engine_state(*await jobs.engine_state())
            for name in THROTTLE_DEFAULTS:
                settings, factor = await buckets.settings(name)
                metrics.rate_in_force(name, settings.rate * factor)

        readiness = Readiness(
            servicer,
            needs,
            dependencies,
            self.settings.health_interval,
            after=[sample],
            report=metrics.dependency,
            complaints=Complaints(),
        )
        readiness.start()
        return readiness

    @property
    def stubs(self) -> Stubs | None:
        """The embedded stand-ins (their books are a test's witness)."""
        return self._stubs

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Listen on the public port: over TLS (mutual with a client CA) if configured."""
    address = settings.listen
    try:
        credentials = tls.server_credentials(settings)
    except tls.TlsError as exc:
        raise StartupError(str(exc)) from exc
    try:
        port: int = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc}; is the port in use?") from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}; is the port in use?")
    return port
