"""How the `custops` client commands reach the platform, the same on every
command: the target, a bearer token (`--token`, or `CUSTOPS_TOKEN`), TLS
(`--ca`) and mutual TLS (`--cert`, `--key`); and a failed call said in one
line, with its reason and a hint, never a traceback."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from custops.client._clients import AsyncCustopsClient
from custops.client._errors import CustopsError

TOKEN_ENV = "CUSTOPS_TOKEN"

_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: (
        f"pass --token (or set {TOKEN_ENV}); a server with mutual TLS needs --cert and --key"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "this caller's roles or shops do not cover the call (the server's callers file)"
    ),
    grpc.StatusCode.UNAVAILABLE: "is the server up at that address? a TLS port needs --ca",
}


def add_connection(verb: argparse.ArgumentParser) -> None:
    verb.add_argument(
        "--target",
        default="127.0.0.1:50051",
        metavar="HOST:PORT",
        help="the platform's public port (default: %(default)s)",
    )
    verb.add_argument(
        "--token",
        default=None,
        help=f"the caller's bearer token (default: ${TOKEN_ENV}; none when unset)",
    )
    verb.add_argument("--ca", type=Path, help="PEM CA to trust: the port speaks TLS")
    verb.add_argument("--cert", type=Path, help="PEM client certificate (mutual TLS)")
    verb.add_argument("--key", type=Path, help="PEM key of --cert")


def check_connection(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Flags that cannot work together, refused before any call."""
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    for flag in ("ca", "cert", "key"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            parser.error(f"--{flag} {path}: no such file")


def connect(args: argparse.Namespace, timeout: float) -> AsyncCustopsClient:
    """A client of the target, as the flags (and CUSTOPS_TOKEN) say."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    credentials = None
    if args.ca or args.cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.ca.read_bytes() if args.ca else None,
            private_key=args.key.read_bytes() if args.key else None,
            certificate_chain=args.cert.read_bytes() if args.cert else None,
        )
    return AsyncCustopsClient(
        args.target, timeout=timeout, metadata=metadata, credentials=credentials
    )


def one_line(exc: Exception, target: str) -> str:
    """A failed call in one line: the status, the message, the reason and
    the fields it names, and a hint where one helps."""
    if not isinstance(exc, CustopsError):
        return str(exc)
    message = " ".join(exc.message.split())
    if exc.code is grpc.StatusCode.UNAVAILABLE:
        message = f"cannot reach {target}: {message}"
    missing = [
        f"{v.field}: {v.description}"
        for v in exc.field_violations
        if f"{v.field}: {v.description}" not in message
    ]
    line = f"{exc.code.name}: {message}"
    if missing:
        line += f" ({'; '.join(missing)})"
    if exc.reason and exc.reason != exc.code.name:
        line += f" [{exc.reason}]"
    hint = _HINTS.get(exc.code)
    return f"{line} — hint: {hint}" if hint else line
