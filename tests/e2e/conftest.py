"""The audit witness: every state-changing call an end-to-end test makes to a
`custops serve` process must be in that server's audit log.

Each channel a test opens gets an interceptor that tags every attempt of a
unary call to a started server (tests/e2e/process.py `DATABASES`) with an
`x-request-id` of its own and records how the attempt ended. After the test
the audit_entries table of the server's database is read directly and every
recorded change, and every failure the server itself decided, must be there
under the attempt's request id.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from server.auth.rules import RULES
from server.interceptors import REQUEST_ID_KEY
from server.persistence.database import create_engine, is_sqlite
from server.persistence.tables import audit_entries
from tests.conftest import run_sync
from tests.e2e import process

# Failures the server decides and records itself. The others (UNAVAILABLE,
# DEADLINE_EXCEEDED, CANCELLED, ...) may come from a server killed mid-call.
DECIDED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
WITNESSED = [0, 0]  # state-changing attempts checked, tests that made any: for the summary


@dataclass
class Attempt:
    database: str
    method: str  # "/package.Service/Method"
    request_id: str  # the attempt's x-request-id
    message_request_id: str  # the message's own request_id field, "" if none
    code: grpc.StatusCode | None = None  # None: still in flight when the test ended


@dataclass
class Witness:
    attempts: list[Attempt] = field(default_factory=list)

    def changing(self) -> list[Attempt]:
        return [a for a in self.attempts if (rule := RULES.get(a.method)) and rule.changes]

    def check(self) -> None:
        """AssertionError listing every change or decided failure not on record."""
        changing = self.changing()
        missing: list[str] = []
        for database in sorted({a.database for a in changing}):
            on_record = _entries(database)
            # One logical call: the attempts of one message request_id (the
            # SDK's retries, a test's replays); only the first that got
            # through changes anything, the others are answered from it.
            logical: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
            for a in (a for a in changing if a.database == database):
                logical[(a.method, a.message_request_id or uuid.uuid4().hex)].append(a)
            for (method, _), attempts in logical.items():
                rpc = method.lstrip("/")
                if any(a.code == grpc.StatusCode.OK for a in attempts) and not any(
                    (rpc, a.request_id, "OK") in on_record for a in attempts
                ):
                    ids = [a.request_id for a in attempts]
                    missing.append(f"{rpc} OK, x-request-id one of {ids}, in {database}")
                for a in attempts:
                    code = a.code.name if a.code in DECIDED and a.code is not None else ""
                    if code and (rpc, a.request_id, code) not in on_record:
                        missing.append(f"{rpc} {code}, x-request-id {a.request_id}, in {database}")
        assert not missing, "state-changing calls missing from the audit log:\n" + "\n".join(
            missing
        )
        WITNESSED[0] += len(changing)
        WITNESSED[1] += bool(changing)


def _entries(database: str) -> set[tuple[str, str, str]]:
    """(rpc, request_id, outcome) of every entry; fails if the database is gone."""
    if is_sqlite(database) and not Path(make_url(database).database or "").is_file():
        # Opening it would make an empty file, and then only "no such table".
        raise AssertionError(f"audit witness: the server's database {database} is gone")

    async def read() -> set[tuple[str, str, str]]:
        engine = create_engine(database)
        try:
            async with engine.connect() as conn:
                a = audit_entries.c
                rows = await conn.execute(select(a.rpc, a.request_id, a.outcome))
                return {(str(r[0]), str(r[1]), str(r[2])) for r in rows}
        finally:
            await engine.dispose()

    try:
        # In a loop of its own: the test's loop is done by now.
        return run_sync(read)
    except Exception as exc:
        raise AssertionError(f"audit witness: cannot read the audit log of {database}") from exc


class _Recorder(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Tags and records each attempt of a unary call to a started server."""

    def __init__(self, target: str, witness: Witness) -> None:
        self._target, self._witness = target, witness

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        # Looked up per call: the port is known only once start() returned.
        host, _, port = self._target.rpartition(":")
        database = process.DATABASES.get(int(port)) if port.isdigit() else None
        if database is None or host not in ("127.0.0.1", "localhost"):
            return await (await continuation(details, request))
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if not metadata.get(REQUEST_ID_KEY):
            metadata[REQUEST_ID_KEY] = uuid.uuid4().hex
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        attempt = Attempt(
            database,
            method,
            str(metadata[REQUEST_ID_KEY]),
            str(getattr(request, "request_id", "") or ""),
        )
        self._witness.attempts.append(attempt)
        tagged = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        try:
            response = await (await continuation(tagged, request))
        except grpc.aio.AioRpcError as exc:
            attempt.code = exc.code()
            raise
        attempt.code = grpc.StatusCode.OK
        return response


_WITNESS = pytest.StashKey[Witness]()


@pytest.fixture(autouse=True)
def audit_witness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Witness:
    """Records the test's calls; pytest_runtest_call below checks them."""
    process.DATABASES.clear()  # no port of an earlier test's (dead) server
    witness = Witness()
    request.node.stash[_WITNESS] = witness
    # The SDK and the tests open their channels with this function; looked
    # up on grpc.aio at each call, so replacing it there reaches them all.
    plain = grpc.aio.insecure_channel

    def recorded(
        target: str, options: Any = None, compression: Any = None, interceptors: Any = None
    ) -> Any:
        return plain(
            target, options, compression, [*(interceptors or ()), _Recorder(target, witness)]
        )

    monkeypatch.setattr(grpc.aio, "insecure_channel", recorded)
    return witness


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # Right after the test's body, not in the fixture's teardown: a test's own
    # database fixture (test_run_processes.py) drops the database in its
    # teardown, which comes before an autouse fixture's.
    yield  # raises when the test failed: then that failure is the report
    witness = item.stash.get(_WITNESS, None)
    if witness is not None:
        witness.check()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if WITNESSED[1]:
        terminalreporter.write_line(
            f"audit witness: {WITNESSED[0]} state-changing calls of {WITNESSED[1]} "
            "end-to-end tests found in the audit log"
        )
