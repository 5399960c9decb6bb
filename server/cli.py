"""The `custops` command: serve, migrate, stand-ins, token; `custops runs` is the SDK's
(custops.client.runs_cli), a gRPC client of the platform."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import fields

from custops.client import runs_cli
from server import logs, workers
from server.app import Platform, StartupError
from server.config import ConfigError, Settings
from server.stand_ins.app import SYSTEMS, StubOptions, Stubs
from server.stand_ins.pressure import CapacitySettings, FaultSettings

log = logging.getLogger("custops")

# Members of one shop's population (the bound of CUSTOPS_STUBS_POPULATION).
MAX_POPULATION = 100_000_000


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
    "callers_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
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
    "engine_concurrency",
    "engine_poll",
    "engine_lease",
    "workers",
)


def _token(name: str) -> int:
    """A new random token, shown this once; the callers file keeps its hash."""
    from server.auth.callers import new_token, token_hash

    secret = new_token()
    print(f"token for {name} (shown once; give it to the caller, keep no copy):")
    print(f"  {secret}")
    print("its entry in the callers file (CUSTOPS_CALLERS_FILE), roles and shops to fill in:")
    print(
        f'  [[callers]]\n  name = "{name}"\n  roles = ["front_office"]\n'
        f'  shops = ["shop-1"]\n  token_sha256 = "{token_hash(secret)}"'
    )
    return 0


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
    # "stubs" was its first name (a gRPC stub is a client; these are servers).
    stubs = commands.add_parser(
        "stand-ins",
        aliases=["stubs"],
        help="run the downstream stand-ins alone (audience, benefit, notification)",
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
        "--shop-population",
        type=_shop_population,
        action="append",
        metavar="SHOP=N",
        help="this shop has N members (repeatable; other shops: --stubs-population)",
    )
    stubs.add_argument(
        "--only",
        choices=SYSTEMS,
        action="append",
        help="run only this stand-in (repeatable; default: all three on one port)",
    )
    runs_cli.add_commands(commands)
    token = commands.add_parser(
        "token", help="make a bearer token for a caller: the token once, and its callers-file line"
    )
    token.add_argument("name", help="the caller's name in the callers file")
    args = parser.parse_args(argv)
    if args.command in ("runs", "plans"):
        return runs_cli.run(args, parser)
    if args.command == "token":
        return _token(args.name)
    own = (
        "command",
        "only",
        "capacity",
        "error_rate",
        "lost_response_rate",
        "timeout_rate",
        "latency_ms",
        "shop_population",
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
            shop_populations: dict[str, int] = {}
            for shop, size in args.shop_population or ():
                if shop in shop_populations:
                    print(f"custops: --shop-population {shop} given twice", file=sys.stderr)
                    return 2
                shop_populations[shop] = size
            faults = FaultSettings(*rates, low / 1000, high / 1000)
            asyncio.run(
                _stubs(
                    settings,
                    tuple(args.only or SYSTEMS),
                    CapacitySettings(args.capacity),
                    faults,
                    shop_populations,
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

        tracer_provider = make_provider(settings.tracing, settings.otlp_endpoint)
    platform = Platform(settings, tracer_provider=tracer_provider)
    if workers.is_started_worker():
        workers.follow_parent()
    await platform.start()  # it logs where it serves
    others = None
    if settings.workers > 1 and not workers.is_started_worker():
        others = workers.Workers(settings, platform.port, platform.stubs_port)
        await others.start()
    await _until_signalled()
    log.info("shutting down: health NOT_SERVING, draining in-flight calls")
    if others is not None:  # theirs and this one's drain side by side
        await asyncio.gather(
            others.stop(settings.shutdown_delay + settings.shutdown_grace + 5),
            platform.stop(delay=settings.shutdown_delay),
        )
    else:
        await platform.stop(delay=settings.shutdown_delay)
    log.info("stopped")


def _shop_population(text: str) -> tuple[str, int]:
    """`SHOP=N` of --shop-population: a shop id and its members, 0-100000000."""
    shop, sep, size = text.partition("=")
    if not sep or not shop:
        raise argparse.ArgumentTypeError(f"expected SHOP=N, got {text!r}")
    if not (size.isascii() and size.isdigit()) or int(size) > MAX_POPULATION:
        raise argparse.ArgumentTypeError(
            f"N must be an integer 0-{MAX_POPULATION} (members), got {size!r} in {text!r}"
        )
    return shop, int(size)


async def _stubs(
    settings: Settings,
    systems: tuple[str, ...],
    capacity: CapacitySettings,
    faults: FaultSettings,
    shop_populations: dict[str, int] | None = None,
) -> None:
    stubs = Stubs(
        StubOptions(
            seed=settings.stubs_seed,
            population=settings.stubs_population,
            shop_populations=dict(shop_populations or {}),
            systems=systems,
        )
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
