"""Configuration is checked at start, with messages that say how to fix it."""

from __future__ import annotations

import pytest

from server.config import ConfigError, Settings


def test_defaults_run_on_a_fresh_machine() -> None:
    s = Settings.load(env={})
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.redis_url == "" and s.stubs == "embedded"


def test_environment_then_flags() -> None:
    s = Settings.load(
        env={"CUSTOPS_LISTEN": "0.0.0.0:7000", "CUSTOPS_SHUTDOWN_GRACE": "3"},
        listen="127.0.0.1:7001",
    )
    assert s.listen == "127.0.0.1:7001" and s.shutdown_grace == 3.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUSTOPS_LISTEN": "50051"}, "CUSTOPS_LISTEN='50051' must be host:port"),
        ({"CUSTOPS_STUBS_LISTEN": "0.0.0.0:50061"}, "loopback only"),
        ({"CUSTOPS_STUBS_LISTEN": "127.0.0.1:50051"}, "never share the platform's public port"),
        ({"CUSTOPS_DATABASE_URL": "mysql://x/y"}, "use sqlite+aiosqlite"),
        ({"CUSTOPS_DATABASE_URL": "not a url"}, "is not a database URL"),
        ({"CUSTOPS_REDIS_URL": "127.0.0.1:6379"}, "must start with redis://"),
        ({"CUSTOPS_TRACING": "jaeger"}, "use one of off, console, otlp"),
        ({"CUSTOPS_STUBS": "external"}, "CUSTOPS_AUDIENCE_TARGET is required"),
        ({"CUSTOPS_SHUTDOWN_GRACE": "soon"}, "is not a number of seconds"),
        ({"CUSTOPS_DOWNSTREAM_TIMEOUT": "0"}, "must be > 0 seconds"),
    ],
)
def test_bad_settings_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env=env)
    assert message in str(err.value)


def test_all_problems_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(
            env={"CUSTOPS_LISTEN": "x", "CUSTOPS_TRACING": "y", "CUSTOPS_LOG_FORMAT": "z"}
        )
    assert str(err.value).count("\n  - ") == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUSTOPS_TLS_CERT_FILE": "s.pem"}, "CUSTOPS_TLS_CERT_FILE and CUSTOPS_TLS_KEY_FILE go"),
        ({"CUSTOPS_TLS_KEY_FILE": "s.key"}, "CUSTOPS_TLS_CERT_FILE and CUSTOPS_TLS_KEY_FILE go"),
        (
            {"CUSTOPS_TLS_CLIENT_CA_FILE": "ca.pem", "CUSTOPS_CALLERS_FILE": "c.toml"},
            "CUSTOPS_TLS_CLIENT_CA_FILE needs CUSTOPS_TLS_CERT_FILE and CUSTOPS_TLS_KEY_FILE",
        ),
        (
            {
                "CUSTOPS_TLS_CERT_FILE": "s.pem",
                "CUSTOPS_TLS_KEY_FILE": "s.key",
                "CUSTOPS_TLS_CLIENT_CA_FILE": "ca.pem",
            },
            "CUSTOPS_TLS_CLIENT_CA_FILE needs CUSTOPS_CALLERS_FILE",
        ),
        # TLS alone says nothing about who calls: a public address still needs callers.
        (
            {
                "CUSTOPS_LISTEN": "0.0.0.0:50051",
                "CUSTOPS_TLS_CERT_FILE": "s.pem",
                "CUSTOPS_TLS_KEY_FILE": "s.key",
            },
            "not a loopback address and no callers",
        ),
    ],
)
def test_tls_settings_go_together(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env=env)
    assert message in str(err.value)


def test_mutual_tls_settings_from_environment_and_flags() -> None:
    s = Settings.load(
        env={
            "CUSTOPS_LISTEN": "0.0.0.0:50051",
            "CUSTOPS_CALLERS_FILE": "callers.toml",
            "CUSTOPS_TLS_CERT_FILE": "server.pem",
            "CUSTOPS_TLS_KEY_FILE": "server.key",
        },
        tls_client_ca_file="clients-ca.pem",
    )
    assert (s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file) == (
        "server.pem",
        "server.key",
        "clients-ca.pem",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUSTOPS_WORKERS": "0"}, "CUSTOPS_WORKERS must be 1-64"),
        (
            {"CUSTOPS_WORKERS": "2", "CUSTOPS_DATABASE_URL": "postgresql+asyncpg://h/d"},
            "CUSTOPS_WORKERS > 1 needs CUSTOPS_REDIS_URL",
        ),
        ({"CUSTOPS_WORKERS": "2", "CUSTOPS_REDIS_URL": "redis://h"}, "needs PostgreSQL"),
    ],
)
def test_several_workers_need_what_they_share(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)


def test_a_started_worker_serves_the_port_without_the_singletons() -> None:
    from server.workers import worker_settings

    first = Settings.load(
        env={
            "CUSTOPS_WORKERS": "2",
            "CUSTOPS_REDIS_URL": "redis://h",
            "CUSTOPS_DATABASE_URL": "postgresql+asyncpg://h/d",
            "CUSTOPS_LISTEN": "127.0.0.1:0",
            "CUSTOPS_METRICS_LISTEN": "127.0.0.1:9464",
        }
    )
    second = worker_settings(first, 1, port=50051, stubs_port=40000)
    assert second.listen == "127.0.0.1:50051" and second.engine_concurrency == 0
    assert second.stubs == "external" and second.benefit_target == "127.0.0.1:40000"
    assert second.metrics_listen == "127.0.0.1:9465" and second.auto_migrate == "false"
    second.check()  # what it loads from its environment is valid
