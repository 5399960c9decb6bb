"""TLS on the public port, from CUSTOPS_TLS_CERT_FILE, CUSTOPS_TLS_KEY_FILE
and CUSTOPS_TLS_CLIENT_CA_FILE (PEM files).

With a client CA the TLS is mutual: the handshake refuses a client without a
certificate that chains to that CA, and the call interceptor knows a caller
by its certificate's common name (the callers file's `certificate`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from server.config import Settings


class TlsError(ValueError):
    """A TLS file cannot be used; the message names the setting and the file."""


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The public port's credentials, or None when TLS is not configured."""
    if not settings.tls_cert_file:
        return None
    cert = _read("CUSTOPS_TLS_CERT_FILE", settings.tls_cert_file)
    key = _read("CUSTOPS_TLS_KEY_FILE", settings.tls_key_file)
    ca = (
        _read("CUSTOPS_TLS_CLIENT_CA_FILE", settings.tls_client_ca_file)
        if settings.tls_client_ca_file
        else None
    )
    _check(settings, ca)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def mode(settings: Settings) -> str:
    """What the start log says: off, tls, or mtls (client certificates required)."""
    if not settings.tls_cert_file:
        return "off"
    return "mtls" if settings.tls_client_ca_file else "tls"


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"{name}: {path} cannot be read: {exc.strerror}") from exc


def _check(settings: Settings, ca: bytes | None) -> None:
    # gRPC takes any bytes here and fails only in each handshake, saying
    # little; the standard library's OpenSSL parses them now, so a wrong
    # file stops the start with its name instead.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback, so that an encrypted key fails instead of
        # prompting on the terminal (gRPC cannot use one either).
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=b"")
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(
            f"CUSTOPS_TLS_CERT_FILE ({settings.tls_cert_file}) and CUSTOPS_TLS_KEY_FILE "
            f"({settings.tls_key_file}) must be a PEM certificate chain and its unencrypted "
            f"PEM private key: {exc}"
        ) from exc
    if ca is None:
        return
    try:
        context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise TlsError(
            f"CUSTOPS_TLS_CLIENT_CA_FILE ({settings.tls_client_ca_file}) must hold one or more "
            f"PEM CA certificates: {exc}"
        ) from exc
