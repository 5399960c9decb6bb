"""The callers file (`CUSTOPS_CALLERS_FILE`, TOML): who may call the
platform, with which credential, in which roles, for which shops.

    [[callers]]
    name = "mall-front-office"
    roles = ["front_office"]
    shops = ["shop-1", "shop-2"]          # or ["*"]: every shop
    token_sha256 = "9f86d0…"              # a bearer token's SHA-256, never the token
    certificate = "mall-front-office"     # and/or a client certificate's common name
    rate_per_second = 1000                # optional: its calls per second (default 1000)
    burst = 2000                          # optional: calls at once (twice the rate, >= 2000)

Tokens are random 32-byte secrets (`new_token`), so a fast hash is enough:
a slow key-derivation function protects guessable passwords and would cost
milliseconds per call. Only hashes are stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.access import ALL_SHOPS, DEFAULT_BURST, DEFAULT_RATE, Caller, Role

_HASH = re.compile(r"^[0-9a-f]{64}\Z")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
_ROLES = {r.value: r for r in Role}


class CallersError(ValueError):
    """The callers file cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class Callers:
    by_token_hash: dict[str, Caller] = field(default_factory=dict)
    by_certificate: dict[str, Caller] = field(default_factory=dict)

    def with_token(self, token: str) -> Caller | None:
        """The caller whose token this is (looked up by its hash)."""
        return self.by_token_hash.get(token_hash(token))

    def with_certificate(self, common_name: str) -> Caller | None:
        return self.by_certificate.get(common_name)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_callers(path: Path) -> Callers:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CallersError(f"the callers file {path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CallersError(f"the callers file {path} is not valid TOML: {exc}") from exc
    return parse_callers(data, str(path))


def parse_callers(data: dict[str, Any], where: str = "the callers file") -> Callers:
    entries = data.get("callers")
    if not isinstance(entries, list) or not entries:
        raise CallersError(f"{where}: expected one or more [[callers]] tables")
    problems: list[str] = []
    tokens: dict[str, Caller] = {}
    certificates: dict[str, Caller] = {}
    names: set[str] = set()
    for n, entry in enumerate(entries):
        at = f"callers[{n}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: expected a table")
            continue
        unknown = set(entry) - {
            "name",
            "roles",
            "shops",
            "token_sha256",
            "certificate",
            "rate_per_second",
            "burst",
        }
        if unknown:
            problems.append(f"{at}: unknown keys {sorted(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{at}.name: 1-64 letters, digits or '_.:-'")
            continue
        if name in names:
            problems.append(f"{at}.name: {name!r} is listed twice")
        names.add(name)
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in _ROLES for r in roles):
            problems.append(f"{at}.roles: one or more of {sorted(_ROLES)}")
            roles = []
        shops = entry.get("shops")
        if not isinstance(shops, list) or not shops or not all(isinstance(s, str) for s in shops):
            problems.append(f'{at}.shops: a list of shop ids, or ["{ALL_SHOPS}"] for every shop')
            shops = []
        elif any(s != ALL_SHOPS and not _NAME.match(s) for s in shops):
            problems.append(f"{at}.shops: shop ids of 1-64 letters, digits or '_.:-'")
        rate = entry.get("rate_per_second", DEFAULT_RATE)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1e6:
            problems.append(f"{at}.rate_per_second: calls per second, > 0 and at most 1,000,000")
            rate = DEFAULT_RATE
        burst = entry.get("burst", max(DEFAULT_BURST, int(2 * rate)))
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 10**6:
            problems.append(f"{at}.burst: calls at once, 1-1,000,000")
            burst = DEFAULT_BURST
        caller = Caller(
            name, frozenset(_ROLES[r] for r in roles), frozenset(shops), float(rate), burst
        )
        digest, certificate = entry.get("token_sha256"), entry.get("certificate")
        if digest is None and certificate is None:
            problems.append(f"{at}: needs token_sha256 or certificate (or both)")
        if digest is not None:
            if not isinstance(digest, str) or not _HASH.match(digest):
                problems.append(f"{at}.token_sha256: 64 lowercase hex digits (`custops token`)")
            elif digest in tokens:
                problems.append(f"{at}.token_sha256: the same token as {tokens[digest].name!r}")
            else:
                tokens[digest] = caller
        if certificate is not None:
            if not isinstance(certificate, str) or not certificate:
                problems.append(f"{at}.certificate: a certificate's common name")
            elif certificate in certificates:
                problems.append(
                    f"{at}.certificate: {certificate!r} is {certificates[certificate].name!r}'s"
                )
            else:
                certificates[certificate] = caller
    if problems:
        raise CallersError(f"{where}: " + "; ".join(problems))
    return Callers(tokens, certificates)


def every_caller(callers: Callers) -> list[Caller]:
    """Each configured caller once, by name."""
    known = {c.name: c for c in (*callers.by_token_hash.values(), *callers.by_certificate.values())}
    return [known[name] for name in sorted(known)]
