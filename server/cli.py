"""The `custops` command: serve, migrate, stubs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import fields

from server import logs
from server.app import Platform, StartupError
from server.config import ConfigError, Settings
from server.stubs.app import SYSTEMS, StubOptions, Stubs
from server.stubs.pressure import CapacitySettings, FaultSettings

log = logging.getLogger("custops")


def _add_setting_flags(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    defaults = {f.name: f.default for f in fields(Settings)}
    for name in names:
        default = defaults[name]
        kind = type(default) if isinstance(default, int | float) else str
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"env CUSTOPS_{name.upper()} (default: {defaults[name]!r})",
        )


SERVE_FLAGS = (
    "listen",
    "database_url",
    "auto_migrate",
    "redis_url",
    "redis_prefix",
    "stubs",
    "stubs_listen",
    "stubs_population",
    "stubs_seed",
    "product_templates",
    "audience_target",
    "benefit_target",
    "notification_target",
    "downstream_timeout",
    "tracing",
    "otlp_endpoint",
    "log_level",
    "log_format",
    "shutdown_delay",
    "shutdown_grace",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="custops",
        description="custops: customer-operations middle platform (gRPC).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the platform (plan and scenario services, stand-ins embedded by default)",
        description="Run the platform. Every flag can also be set by its CUSTOPS_* variable.",
    )
    _add_setting_flags(serve, SERVE_FLAGS)
    migrate = commands.add_parser("migrate", help="apply the database migrations")
    _add_setting_flags(migrate, ("database_url", "log_level", "log_format"))
    stubs = commands.add_parser(
        "stubs", help="run the downstream stand-ins alone (audience, benefit, notification)"
    )
    _add_setting_flags(
        stubs, ("stubs_listen", "stubs_population", "stubs_seed", "log_level", "log_format")
    )
    stubs.add_argument(
        "--capacity", type=float, default=0.0, help="items per second (0 = unlimited)"
    )
    stubs.add_argument("--error-rate", type=float, default=0.0, help="share answered UNAVAILABLE")
    stubs.add_argument(
        "--lost-response-rate", type=float, default=0.0, help="share applied, then UNAVAILABLE"
    )
    stubs.add_argument("--timeout-rate", type=float, default=0.0, help="share left to time out")
    stubs.add_argument(
        "--latency-ms", type=float, nargs=2, default=(0.0, 0.0), metavar=("MIN", "MAX")
    )
    stubs.add_argument(
        "--only",
        choices=SYSTEMS,
        action="append",
        help="run only this stand-in (repeatable; default: all three on one port)",
    )
    args = parser.parse_args(argv)
    own = (
        "command",
        "only",
        "capacity",
        "error_rate",
        "lost_response_rate",
        "timeout_rate",
        "latency_ms",
    )
    flags = {k: v for k, v in vars(args).items() if k not in own}
    try:
        settings = Settings.load(**flags)
    except ConfigError as exc:
        print(f"custops: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            asyncio.run(_serve(settings))
        elif args.command == "migrate":
            from server.persistence.migrate import upgrade_blocking

            upgrade_blocking(settings.database_url)
            print("database schema is up to date")
        else:
            rates = (args.error_rate, args.lost_response_rate, args.timeout_rate)
            low, high = args.latency_ms
            if not all(0 <= r <= 1 for r in rates) or not 0 <= low <= high or args.capacity < 0:
                print(
                    "custops: rates must be 0-1, latency 0 <= MIN <= MAX, capacity >= 0",
                    file=sys.stderr,
                )
                return 2
            faults = FaultSettings(*rates, low / 1000, high / 1000)
            asyncio.run(
                _stubs(
                    settings, tuple(args.only or SYSTEMS), CapacitySettings(args.capacity), faults
                )
            )
    except StartupError as exc:
        print(f"custops: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(settings: Settings) -> None:
    tracer_provider = None
    if settings.tracing != "off":
        from server.tracing import make_provider

        tracer_provider = make_provider(settings.tracing, settings.otlp_endpoint, "custops")
    platform = Platform(settings, tracer_provider=tracer_provider)
    await platform.start()
    print(
        f"custops serving on {settings.listen.rpartition(':')[0]}:{platform.port}"
        + (f"; stand-ins on port {platform.stubs_port}" if platform.stubs_port else ""),
        file=sys.stderr,
        flush=True,
    )
    await _until_signalled()
    log.info("shutting down: health NOT_SERVING, draining in-flight calls")
    await platform.stop(delay=settings.shutdown_delay)
    log.info("stopped")


async def _stubs(
    settings: Settings,
    systems: tuple[str, ...],
    capacity: CapacitySettings,
    faults: FaultSettings,
) -> None:
    stubs = Stubs(
        StubOptions(seed=settings.stubs_seed, population=settings.stubs_population, systems=systems)
    )
    for pressure in stubs.pressures.values():
        pressure.configure(CapacitySettings(capacity.items_per_second), faults)
    try:
        port = await stubs.start(settings.stubs_listen)
    except RuntimeError as exc:
        raise StartupError(f"{exc}; is the port in use?") from exc
    print(
        f"custops stand-ins ({', '.join(systems)}) serving on port {port}",
        file=sys.stderr,
        flush=True,
    )
    await _until_signalled()
    await stubs.stop(settings.shutdown_grace)


if __name__ == "__main__":
    sys.exit(main())
