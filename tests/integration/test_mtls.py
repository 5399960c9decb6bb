"""Mutual TLS on the public port: a caller is known by its client
certificate's common name; a client without a certificate the configured CA
signed is refused at the handshake. The certificates are made here."""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custops.client import AsyncCustopsClient, CustopsError, RetryPolicy
from custops.plan.v1 import plan_pb2 as pb
from server.app import Platform, StartupError
from server.auth import tls
from server.auth.callers import new_token, token_hash
from tests.commands import run_python
from tests.integration.conftest import settings
from tests.integration.test_runs import publish_to_everyone

# Short: a refused handshake must fail the call, never leave it waiting.
TIMEOUT = 5.0
TOKEN = new_token()


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def issue(
    common_name: str,
    by: Issued | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> Issued:
    """A certificate for `common_name` signed by `by` (self-signed without)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(by.certificate.subject if by else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    signer = by.key if by else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    admin: Issued  # "mall-admin", in the callers file
    stranger: Issued  # signed by the real CA, not in the callers file
    rogue: Issued  # "mall-admin" again, signed by another CA
    folder: Path

    def write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = issue("custops test CA", ca=True)
    rogue_ca = issue("rogue CA", ca=True)
    return Pki(
        ca=ca,
        server=issue("localhost", ca, server=True),
        admin=issue("mall-admin", ca),
        stranger=issue("mall-stranger", ca),
        rogue=issue("mall-admin", rogue_ca),
        folder=tmp_path_factory.mktemp("pki"),
    )


def _callers(pki: Pki) -> str:
    return pki.write(
        "callers.toml",
        f"""
[[callers]]
name = "mall-admin"
roles = ["merchant_admin"]
shops = ["shop-1"]
certificate = "mall-admin"

[[callers]]
name = "token-admin"
roles = ["merchant_admin"]
shops = ["shop-1"]
token_sha256 = "{token_hash(TOKEN)}"
""".encode(),
    )


async def _start(pki: Pki, tmp_path: Path, *, client_ca: bool) -> Platform:
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/a.db",
            callers_file=_callers(pki),
            tls_cert_file=pki.write("server.pem", pki.server.cert_pem),
            tls_key_file=pki.write("server.key", pki.server.key_pem),
            tls_client_ca_file=pki.write("ca.pem", pki.ca.cert_pem) if client_ca else "",
            stubs_population=40,  # `runs watch` sees a run to its end in a moment
        )
    )
    await platform.start()
    return platform


@pytest.fixture
async def mutual(pki: Pki, tmp_path: Path) -> AsyncIterator[Platform]:
    platform = await _start(pki, tmp_path, client_ca=True)
    yield platform
    await platform.stop(grace=1)


def _credentials(pki: Pki, client: Issued | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )


def _client(
    platform: Platform,
    credentials: grpc.ChannelCredentials | None,
    *metadata: tuple[str, str],
) -> AsyncCustopsClient:
    # One attempt: a refused handshake is UNAVAILABLE, which would be retried.
    return AsyncCustopsClient(
        f"127.0.0.1:{platform.port}",
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=1),
        metadata=metadata,
        credentials=credentials,
    )


async def _list(platform: Platform, credentials: grpc.ChannelCredentials | None) -> None:
    async with _client(platform, credentials) as client:
        await client.plans.list_plans(pb.ListPlansRequest(shop_id="shop-1")).first_page()


async def test_a_listed_client_certificate_is_the_caller(mutual: Platform, pki: Pki) -> None:
    # Whatever the caller claims, the change is made by the certificate's caller.
    async with _client(
        mutual, _credentials(pki, pki.admin), ("x-custops-actor", "mallory")
    ) as client:
        listed = await client.plans.list_plans(pb.ListPlansRequest(shop_id="shop-1")).first_page()
        assert list(listed.plans) == []
        created = await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id="shop-1", plan=pb.Plan(display_name="by certificate"))
        )
    assert (created.plan.create_by, created.plan.update_by) == ("mall-admin", "mall-admin")


async def test_health_over_mutual_tls(mutual: Platform, pki: Pki) -> None:
    target = f"127.0.0.1:{mutual.port}"
    async with grpc.aio.secure_channel(target, _credentials(pki, pki.admin)) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("client", ["no certificate", "rogue CA", "plaintext"])
async def test_the_handshake_refuses(mutual: Platform, pki: Pki, client: str) -> None:
    credentials = {
        "no certificate": _credentials(pki, None),
        "rogue CA": _credentials(pki, pki.rogue),
        "plaintext": None,
    }[client]
    with pytest.raises(CustopsError) as err:
        await _list(mutual, credentials)
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    # Health is open to every caller, but only past the handshake.
    target = f"127.0.0.1:{mutual.port}"
    channel = (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    )
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
            )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_no_caller_holds_is_unauthenticated(mutual: Platform, pki: Pki) -> None:
    with pytest.raises(CustopsError) as err:
        await _list(mutual, _credentials(pki, pki.stranger))
    assert err.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert err.value.reason == "CREDENTIALS_UNKNOWN"
    assert "mall-stranger" in err.value.message


async def test_tls_without_a_client_ca_serves_bearer_tokens(pki: Pki, tmp_path: Path) -> None:
    platform = await _start(pki, tmp_path, client_ca=False)
    try:
        async with _client(
            platform, _credentials(pki, None), ("authorization", f"Bearer {TOKEN}")
        ) as client:
            created = await client.plans.create_plan(
                pb.CreatePlanRequest(shop_id="shop-1", plan=pb.Plan(display_name="by token"))
            )
        assert created.plan.create_by == "token-admin"
        # No client CA: a certificate is not asked for, so it names nobody.
        with pytest.raises(CustopsError) as err:
            await _list(platform, _credentials(pki, pki.admin))
        assert err.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert err.value.reason == "CREDENTIALS_MISSING"
        with pytest.raises(CustopsError) as plain:
            await _list(platform, None)
        assert plain.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        await platform.stop(grace=1)


def test_unusable_tls_files_are_named(pki: Pki) -> None:
    def credentials(cert: bytes, key: bytes, ca: bytes | None) -> None:
        tls.server_credentials(
            settings(
                "sqlite+aiosqlite:///unused.db",
                callers_file="callers.toml",
                tls_cert_file=pki.write("checked.pem", cert),
                tls_key_file=pki.write("checked.key", key),
                tls_client_ca_file=pki.write("checked-ca.pem", ca) if ca is not None else "",
            )
        )

    server, ca = pki.server, pki.ca.cert_pem
    credentials(server.cert_pem, server.key_pem, ca)  # the good ones pass
    with pytest.raises(tls.TlsError, match="CUSTOPS_TLS_CERT_FILE"):
        credentials(b"not a certificate", server.key_pem, ca)
    with pytest.raises(tls.TlsError, match="CUSTOPS_TLS_KEY_FILE"):
        credentials(server.cert_pem, pki.admin.key_pem, ca)  # another certificate's key
    encrypted = server.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(tls.TlsError, match="unencrypted"):
        credentials(server.cert_pem, encrypted, ca)
    with pytest.raises(tls.TlsError, match="CUSTOPS_TLS_CLIENT_CA_FILE"):
        credentials(server.cert_pem, server.key_pem, b"not a CA")
    with pytest.raises(tls.TlsError, match="CUSTOPS_TLS_CLIENT_CA_FILE"):
        credentials(server.cert_pem, server.key_pem, b"")


async def test_a_missing_tls_file_refuses_to_start(pki: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.key")
    platform = Platform(
        settings(
            f"sqlite+aiosqlite:///{tmp_path}/a.db",
            callers_file=_callers(pki),
            tls_cert_file=pki.write("server.pem", pki.server.cert_pem),
            tls_key_file=missing,
        )
    )
    expected = f"CUSTOPS_TLS_KEY_FILE: {missing} cannot be read"
    with pytest.raises(StartupError, match=re.escape(expected)):
        await platform.start()


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`custops ARGS` in a process of its own: exit status, stdout, stderr."""
    return await run_python("-m", "server.cli", *args, env=env)


async def _runs_list(client: AsyncCustopsClient, platform: Platform) -> tuple[str, ...]:
    """`custops runs list` of a new plan of shop-1, made by `client`."""
    async with client:
        made = await client.plans.create_plan(
            pb.CreatePlanRequest(shop_id="shop-1", plan=pb.Plan(display_name="cli"))
        )
    target = f"127.0.0.1:{platform.port}"
    return ("runs", "list", "--target", target, "--shop", "shop-1", "--plan", made.plan.plan_id)


async def _runs_watch(client: AsyncCustopsClient, platform: Platform) -> tuple[str, ...]:
    """`custops runs watch` of a new plan of shop-1 that runs at once, published by `client`."""
    async with client:
        plan = await publish_to_everyone(client, "shop-1")
    target = f"127.0.0.1:{platform.port}"
    return (
        *("runs", "watch", "--target", target, "--shop", "shop-1", "--plan", plan.plan_id),
        *("--interval", "0.2", "--timeout", "100"),
    )


def _watched_to_its_end(code: int, out: str, err: str) -> None:
    assert code == 0 and "Traceback" not in err, (code, out, err)
    assert "SUCCEEDED" in out.upper(), out


async def test_runs_watch_follows_a_run_on_a_server_that_requires_a_token(
    pki: Pki, tmp_path: Path
) -> None:
    platform = await _start(pki, tmp_path, client_ca=False)
    try:
        bearer = ("authorization", f"Bearer {TOKEN}")
        watch = await _runs_watch(_client(platform, _credentials(pki, None), bearer), platform)
        ca = pki.write("ca.pem", pki.ca.cert_pem)
        code, _, err = await _cli(*watch, "--ca", ca)
        assert code == 1 and "[CREDENTIALS_MISSING]" in err and "--token" in err, err
        _watched_to_its_end(*await _cli(*watch, "--ca", ca, "--token", TOKEN))
    finally:
        await platform.stop(grace=1)


async def test_runs_watch_follows_a_run_over_mutual_tls(mutual: Platform, pki: Pki) -> None:
    watch = await _runs_watch(_client(mutual, _credentials(pki, pki.admin)), mutual)
    ca = pki.write("ca.pem", pki.ca.cert_pem)
    cert = pki.write("admin.pem", pki.admin.cert_pem)
    key = pki.write("admin.key", pki.admin.key_pem)
    _watched_to_its_end(*await _cli(*watch, "--ca", ca, "--cert", cert, "--key", key))
    code, _, err = await _cli(*watch, "--ca", ca)  # no client certificate: refused, one line
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


async def test_the_runs_commands_authenticate_with_a_token(pki: Pki, tmp_path: Path) -> None:
    """`custops runs` takes --token (or CUSTOPS_TOKEN) and --ca; a refusal is
    one line with its reason and a hint, never a traceback (issue 24)."""
    platform = await _start(pki, tmp_path, client_ca=False)
    try:
        bearer = ("authorization", f"Bearer {TOKEN}")
        listing = await _runs_list(_client(platform, _credentials(pki, None), bearer), platform)
        ca = pki.write("ca.pem", pki.ca.cert_pem)

        code, _, err = await _cli(*listing, "--ca", ca)
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "UNAUTHENTICATED" in err and "[CREDENTIALS_MISSING]" in err and "--token" in err
        assert (await _cli(*listing, "--ca", ca, "--token", TOKEN))[0] == 0
        assert (await _cli(*listing, "--ca", ca, env={"CUSTOPS_TOKEN": TOKEN}))[0] == 0
        code, _, err = await _cli(*listing, "--token", TOKEN)  # plaintext to a TLS port
        assert code == 1 and "UNAVAILABLE" in err and "--ca" in err, err
    finally:
        await platform.stop(grace=1)


async def test_the_runs_commands_speak_mutual_tls(mutual: Platform, pki: Pki) -> None:
    listing = await _runs_list(_client(mutual, _credentials(pki, pki.admin)), mutual)
    ca = pki.write("ca.pem", pki.ca.cert_pem)
    cert = pki.write("admin.pem", pki.admin.cert_pem)
    key = pki.write("admin.key", pki.admin.key_pem)
    code, _, err = await _cli(*listing, "--ca", ca, "--cert", cert, "--key", key)
    assert code == 0, err
    code, _, err = await _cli(*listing, "--ca", ca, "--cert", cert)
    assert code == 2 and "--cert and --key go together" in err
