"""Configuration from CUSTOPS_* environment variables and command-line flags.

Every setting has an embedded default that runs on a fresh machine; every
value is checked at start, and a bad one stops the start with a message that
says what is wrong and how to fix it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from server.persistence.database import SUPPORTED_DRIVERS, normalize_url

ENV_PREFIX = "CUSTOPS_"


class ConfigError(Exception):
    """A setting is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    # host:port of the public port (plan and scenario services, health, reflection).
    listen: str = "127.0.0.1:50051"
    # TOML file of the callers allowed in (docs/security.md); empty: nobody is
    # asked for credentials, which only a loopback address allows.
    callers_file: str = ""
    # TLS on the public port (PEM files): the server's certificate chain and
    # its key; with a client CA, mutual TLS: a caller must present a
    # certificate that chains to it, and is known by its common name.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db.
    database_url: str = "sqlite+aiosqlite:///var/custops.db"
    # Apply migrations at start; "auto" = only for SQLite.
    auto_migrate: str = "auto"
    # redis://host:port/db; empty = in-process stand-ins (one process only).
    redis_url: str = ""
    # Prefix of every Redis key, so that deployments sharing a Redis never collide.
    redis_prefix: str = "custops"
    # "embedded" = stand-ins in this process on their own loopback port;
    # "external" = call the downstream targets below.
    stubs: str = "embedded"
    # host:port of the embedded stand-ins; loopback only.
    stubs_listen: str = "127.0.0.1:50061"
    # A folder of extra business-product templates (*.toml) beside the built-in ones.
    product_templates: str = ""
    # The embedded stand-ins' synthetic population: members per shop, and seed.
    stubs_population: int = 100_000
    stubs_seed: int = 1
    # Shops with a population of their own, "SHOP=N,SHOP=N" (the rest: stubs_population).
    stubs_shop_populations: str = ""
    audience_target: str = ""
    benefit_target: str = ""
    notification_target: str = ""
    # Seconds a downstream call may take when the caller set no shorter deadline.
    downstream_timeout: float = 5.0
    # host:port of the Prometheus scrape endpoint (docs/operations.md); empty: none.
    metrics_listen: str = "127.0.0.1:9464"
    # on: label members' outcomes by shop too (as many series as shops).
    metrics_shop_labels: str = "off"
    # Seconds between readiness checks of the database and Redis.
    health_interval: float = 2.0
    # off | console | otlp
    tracing: str = "off"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    log_level: str = "INFO"
    # json | text
    log_format: str = "json"
    # On SIGTERM: seconds health reports NOT_SERVING before the port closes
    # (so load balancers stop sending), then seconds in-flight calls may finish.
    shutdown_delay: float = 0.0
    shutdown_grace: float = 10.0
    # Task engine: shards this process runs at once, and seconds between
    # looks for new work when idle (and between retry sweeps, times five).
    engine_concurrency: int = 4  # one per shard of a plan run
    engine_poll: float = 1.0
    # Seconds between the scheduler's looks for due plans (one indexed range
    # scan each: looking often keeps a fire's lateness well under a second).
    scheduler_poll: float = 0.2
    # Seconds a worker holds a shard between heartbeats (sent every third of
    # it): how long a crashed replica's shard waits before another takes it.
    engine_lease: float = 30.0
    # Days each store keeps its rows (0: for ever), and seconds between the
    # purges that delete older ones (docs/outcomes.md, "Privacy").
    retention_outcomes_days: int = 365
    retention_events_days: int = 365
    retention_orders_days: int = 365
    purge_interval: float = 3600.0
    # Processes serving the public port (SO_REUSEPORT), for machines with more
    # cores; the first runs the scheduler, the task engine, the purge and the
    # embedded stand-ins, the others only answer calls (server/workers.py).
    workers: int = 1

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Defaults, overridden by CUSTOPS_* variables, overridden by flags."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, raw, f.type)
        for name, value in flags.items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        problems: list[str] = []
        _address(self.listen, "listen", problems)
        if not self.callers_file and not _listens_on_loopback(self.listen):
            problems.append(
                f"CUSTOPS_LISTEN={self.listen!r} is not a loopback address and no callers are "
                "configured: anyone who reaches it could call. Set CUSTOPS_CALLERS_FILE "
                "(docs/security.md) or listen on 127.0.0.1"
            )
        self._check_tls(problems)
        if self.metrics_listen:
            _address(self.metrics_listen, "metrics_listen", problems)
        _choice("metrics_shop_labels", self.metrics_shop_labels, ("off", "on"), problems)
        if not 0.01 <= self.scheduler_poll <= 60:
            problems.append("CUSTOPS_SCHEDULER_POLL must be 0.01-60 seconds")
        if not 0.1 <= self.health_interval <= 300:
            problems.append("CUSTOPS_HEALTH_INTERVAL must be 0.1-300 seconds")
        _address(self.stubs_listen, "stubs_listen", problems, loopback_only=True)
        if self.stubs == "embedded" and _same_port(self.listen, self.stubs_listen):
            problems.append(
                "CUSTOPS_STUBS_LISTEN must differ from CUSTOPS_LISTEN: the downstream "
                "stand-ins never share the platform's public port"
            )
        try:
            driver = make_url(normalize_url(self.database_url)).drivername
            if driver not in SUPPORTED_DRIVERS:
                problems.append(
                    f"CUSTOPS_DATABASE_URL uses {driver!r}; use sqlite+aiosqlite:///file.db "
                    "or postgresql+asyncpg://user@host:5432/db"
                )
        except ArgumentError:
            problems.append(
                f"CUSTOPS_DATABASE_URL {self.database_url!r} is not a database URL; "
                "e.g. sqlite+aiosqlite:///var/custops.db"
            )
        _choice("auto_migrate", self.auto_migrate, ("auto", "true", "false"), problems)
        _choice("stubs", self.stubs, ("embedded", "external"), problems)
        _choice("tracing", self.tracing, ("off", "console", "otlp"), problems)
        _choice("log_format", self.log_format, ("json", "text"), problems)
        _choice(
            "log_level", self.log_level.upper(), ("DEBUG", "INFO", "WARNING", "ERROR"), problems
        )
        if self.stubs == "external":
            for name in ("audience_target", "benefit_target", "notification_target"):
                if not getattr(self, name):
                    problems.append(
                        f"CUSTOPS_{name.upper()} is required with CUSTOPS_STUBS=external "
                        "(host:port of that system)"
                    )
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(
                f"CUSTOPS_REDIS_URL {self.redis_url!r} must start with redis://, rediss:// or "
                "unix://, e.g. redis://127.0.0.1:6379/0 (or leave it empty for in-process)"
            )
        if not self.redis_prefix or ":" in self.redis_prefix:
            problems.append("CUSTOPS_REDIS_PREFIX must be a non-empty word without ':'")
        for name in ("retention_outcomes_days", "retention_events_days", "retention_orders_days"):
            if not 0 <= getattr(self, name) <= 36_500:
                problems.append(f"CUSTOPS_{name.upper()} must be 0 (keep for ever) to 36500 days")
        if not self.purge_interval > 0:
            problems.append("CUSTOPS_PURGE_INTERVAL must be > 0 seconds")
        if not 0 <= self.engine_concurrency <= 64:
            problems.append("CUSTOPS_ENGINE_CONCURRENCY must be 0-64 shards at once (0: no worker)")
        for name in ("downstream_timeout", "shutdown_grace", "engine_poll", "engine_lease"):
            if getattr(self, name) <= 0:
                problems.append(f"CUSTOPS_{name.upper()} must be > 0 seconds")
        if not 0 <= self.stubs_population <= 100_000_000:
            problems.append("CUSTOPS_STUBS_POPULATION must be 0-100000000 members per shop")
        try:
            self.shop_populations()
        except ValueError as exc:
            problems.append(f"CUSTOPS_STUBS_SHOP_POPULATIONS: {exc}")
        if self.product_templates and not Path(self.product_templates).is_dir():
            problems.append(
                f"CUSTOPS_PRODUCT_TEMPLATES={self.product_templates!r} is not a folder "
                "of *.toml templates"
            )
        if self.shutdown_delay < 0:
            problems.append("CUSTOPS_SHUTDOWN_DELAY must be >= 0 seconds")
        self._check_workers(problems)
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))

    def _check_workers(self, problems: list[str]) -> None:
        if not 1 <= self.workers <= 64:
            problems.append("CUSTOPS_WORKERS must be 1-64 processes")
        elif self.workers > 1:
            if not self.redis_url:
                problems.append(
                    "CUSTOPS_WORKERS > 1 needs CUSTOPS_REDIS_URL: the processes share the "
                    "callers' rate limits and the shops' plan versions through Redis"
                )
            if self.database_url.startswith("sqlite"):
                problems.append(
                    "CUSTOPS_WORKERS > 1 needs PostgreSQL (CUSTOPS_DATABASE_URL="
                    "postgresql+asyncpg://...): SQLite takes one writer at a time"
                )

    @property
    def plaintext_beyond_loopback(self) -> bool:
        """Listening beyond loopback without TLS: bearer tokens cross the
        network in the clear."""
        return not self.tls_cert_file and not _listens_on_loopback(self.listen)

    def _check_tls(self, problems: list[str]) -> None:
        # Whether the files exist and hold PEM is checked at start
        # (server.auth.tls), like the callers file.
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append(
                "CUSTOPS_TLS_CERT_FILE and CUSTOPS_TLS_KEY_FILE go together: set both (the "
                "server's PEM certificate chain and its private key) or neither"
            )
        if self.tls_client_ca_file and not (self.tls_cert_file and self.tls_key_file):
            problems.append(
                "CUSTOPS_TLS_CLIENT_CA_FILE needs CUSTOPS_TLS_CERT_FILE and CUSTOPS_TLS_KEY_FILE: "
                "client certificates are asked for only in a TLS handshake"
            )
        if self.tls_client_ca_file and not self.callers_file:
            problems.append(
                "CUSTOPS_TLS_CLIENT_CA_FILE needs CUSTOPS_CALLERS_FILE: a client certificate's "
                'common name is only a caller if the callers file lists it (certificate = "<name>")'
            )

    def shop_populations(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in self.stubs_shop_populations.split(","))):
            shop, _, size = part.partition("=")
            if not shop or not size.isdecimal() or int(size) > 100_000_000:
                raise ValueError(f"{part!r} is not SHOP=N with N 0-100000000")
            sizes[shop] = int(size)
        return sizes

    def target(self, system: str, stubs_address: str) -> str:
        """Where to reach a downstream system: the embedded stand-ins or its configured target."""
        if self.stubs == "embedded":
            return stubs_address
        target: str = getattr(self, f"{system}_target")
        return target


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"CUSTOPS_{name.upper()}={raw!r} is not a whole number") from None
    if kind in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(
                f"CUSTOPS_{name.upper()}={raw!r} is not a number of seconds, e.g. 10"
            ) from None
    return raw


def _choice(name: str, value: str, allowed: tuple[str, ...], problems: list[str]) -> None:
    if value not in allowed:
        problems.append(f"CUSTOPS_{name.upper()}={value!r}: use one of {', '.join(allowed)}")


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(address)
    return host.strip("[]"), int(port)


def _address(value: str, name: str, problems: list[str], loopback_only: bool = False) -> None:
    try:
        host, port = split_address(value)
    except ValueError:
        problems.append(f"CUSTOPS_{name.upper()}={value!r} must be host:port, e.g. 127.0.0.1:50051")
        return
    if not 0 <= port <= 65535:
        problems.append(f"CUSTOPS_{name.upper()}: port {port} is out of range")
    if loopback_only and not _is_loopback(host):
        problems.append(
            f"CUSTOPS_{name.upper()}={value!r}: the downstream stand-ins are unauthenticated "
            "and listen on loopback only (127.0.0.1, ::1 or localhost)"
        )


def _listens_on_loopback(address: str) -> bool:
    try:
        return _is_loopback(split_address(address)[0])
    except ValueError:
        return True  # reported as a malformed address instead


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_port(a: str, b: str) -> bool:
    try:
        return split_address(a)[1] == split_address(b)[1] != 0
    except ValueError:
        return False
