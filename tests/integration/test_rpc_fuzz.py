"""Hostile input to every RPC of the public port, generated from the service
descriptors: arbitrary messages (oversized strings and lists, every enum
number, NaN, deep nesting), bytes that are not protobuf, messages and
metadata over the port's caps. The answer is always one of the documented
codes, never INTERNAL or UNKNOWN and never a hang, and the server stays up.
A new RPC is fuzzed without a line here."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custops.audience.v1 import audience_pb2
from custops.plan.v1 import plan_pb2 as pb
from server.app import MAX_MESSAGE_BYTES
from server.auth.callers import new_token, token_hash
from server.message_checks import MAX_ITEMS, MAX_STRING_CHARS
from tests.integration.conftest import public_methods
from tests.integration.conftest import settings as platform_settings
from tests.integration.threaded import platform_in_thread

CI = os.environ.get("CI") == "true"
# Requests per RPC: about 2,000 in all under CI (scripts/test); scripts/fuzz
# sets CUSTOPS_FUZZ_EXAMPLES for about 50,000.
EXAMPLES = int(os.environ.get("CUSTOPS_FUZZ_EXAMPLES", "40" if CI else "15"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# What a call may answer to input it cannot use (docs/errors.md); OK when
# the input happens to be valid.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# Mostly values a call accepts, so that requests get past the first check
# often enough to reach the deeper ones; the rest hostile.
_PLAUSIBLE = st.sampled_from(["shop-1", "p1", "m00000001", "order-1", "Asia/Shanghai", "V1"])
texts = st.one_of(
    _PLAUSIBLE,
    _PLAUSIBLE,
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "*", "../x", "a" * 65, "%_"]),
    st.just("x" * (MAX_STRING_CHARS + 1)),
)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: texts,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=20),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 12),
}


def _fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    """Set a random subset of `message`'s fields, nested at most `depth` deep."""
    descriptor: Any = message.DESCRIPTOR
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                continue
            kind: Any = field.message_type
            if kind.GetOptions().map_entry:
                key_field, value_field = kind.fields
                for _ in range(draw(st.integers(0, 2))):
                    key = draw(_SCALARS[key_field.type])
                    target = getattr(message, field.name)
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        _fill(draw, target[key], depth - 1)
                    else:
                        target[key] = draw(_SCALARS[value_field.type])
            elif field.is_repeated:
                for _ in range(draw(st.integers(0, 2))):
                    _fill(draw, getattr(message, field.name).add(), depth - 1)
            else:
                _fill(draw, getattr(message, field.name), depth - 1)
                getattr(message, field.name).SetInParent()
        elif field.is_repeated:
            values = draw(st.lists(_SCALARS[field.type], max_size=3))
            if draw(st.integers(0, 20)) == 0:  # now and then, one list too long
                values = values[:1] * (MAX_ITEMS + 1) if values else []
            getattr(message, field.name).extend(values)
        elif field.containing_oneof is None or draw(st.booleans()):
            setattr(message, field.name, draw(_SCALARS[field.type]))


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    _fill(draw, message, depth=draw(st.integers(0, 4)))
    return message


def _deep_plan(depth: int) -> bytes:
    """CreatePlan bytes whose audience rule is `depth` negations deep, built
    by hand: protobuf itself refuses to build more than 100 levels."""
    rule = audience_pb2.AudienceRule(levels=audience_pb2.LevelCondition(levels=["V1"]))
    raw = rule.SerializeToString()
    negate = audience_pb2.AudienceRule.DESCRIPTOR.fields_by_name["negate"].number
    for _ in range(depth):
        raw = _field(negate, raw)
    audience = pb.Plan.DESCRIPTOR.fields_by_name["audience"].number
    plan = pb.Plan(display_name="d").SerializeToString() + _field(audience, raw)
    request = pb.CreatePlanRequest(shop_id="s").SerializeToString()
    return request + _field(pb.CreatePlanRequest.DESCRIPTOR.fields_by_name["plan"].number, plan)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = Path(tmp_path_factory.mktemp("rpc-fuzz"))
    with platform_in_thread(
        platform_settings(f"sqlite+aiosqlite:///{folder}/fuzz.db", stubs_population=1000)
    ) as platform:
        yield platform.port


# What a known caller may also be answered: not its role, not its shop.
_REFUSED = frozenset({grpc.StatusCode.PERMISSION_DENIED})


def _send(
    port: int,
    method: MethodDescriptor,
    payload: bytes,
    metadata: Any = (),
    also: frozenset[grpc.StatusCode] = frozenset(),
) -> Any:
    """The status code of `payload` sent as the method's request (raw bytes)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE_BYTES)]
    ) as channel:
        kinds = channel.unary_stream if method.server_streaming else channel.unary_unary
        rpc = kinds(path)  # bytes in, bytes out
        try:
            answer = rpc(payload, timeout=30, metadata=metadata)
            if method.server_streaming:
                list(answer)  # a stream's status comes at its end
        except grpc.RpcError as err:
            code = err.code()
            assert code in DOCUMENTED | also, f"{method.name}: {code.name} {err.details()}"
            return code
    return grpc.StatusCode.OK


def _serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("method", public_methods(), ids=lambda m: m.name)
def test_generated_requests_get_documented_answers(port: int, method: MethodDescriptor) -> None:
    seen: Counter[str] = Counter()

    @FUZZ
    @given(request=messages(method.input_type))
    def call(request: Message) -> None:
        seen[_send(port, method, request.SerializeToString()).name] += 1

    call()
    assert _serving(port)
    # The generator reaches past the first checks: most requests are refused.
    assert seen["INVALID_ARGUMENT"] > 0, seen


@pytest.mark.parametrize("method", public_methods(), ids=lambda m: m.name)
def test_bytes_that_are_not_protobuf_are_invalid_argument(
    port: int, method: MethodDescriptor
) -> None:
    for payload in (b"\xff\xff\xff\xff", b"\x0a\xff", b"\x08" + b"\x80" * 11, b"\x12\x05ab"):
        assert _send(port, method, payload) is grpc.StatusCode.INVALID_ARGUMENT, payload
    assert _serving(port)


def test_oversized_messages_metadata_and_nesting_are_refused(port: int) -> None:
    create = descriptor_pool.Default().FindMethodByName(
        "custops.plan.v1.OperationPlanService.CreatePlan"
    )
    huge = pb.CreatePlanRequest(shop_id="s", plan=pb.Plan(description="x" * MAX_MESSAGE_BYTES))
    assert _send(port, create, huge.SerializeToString()) is grpc.StatusCode.RESOURCE_EXHAUSTED
    small = pb.CreatePlanRequest(shop_id="s", plan=pb.Plan(display_name="ok")).SerializeToString()
    padding = (("x-padding", "y" * 32 * 1024),)
    assert _send(port, create, small, padding) is grpc.StatusCode.RESOURCE_EXHAUSTED
    # Deeper than the audience rules allow: named; deeper than protobuf
    # parses (100 levels): not a valid message. Either way INVALID_ARGUMENT.
    for depth in (40, 150):
        assert _send(port, create, _deep_plan(depth)) is grpc.StatusCode.INVALID_ARGUMENT, depth
    assert _serving(port)


# Each role of a known caller, for shop-1: past authentication, the rules
# and the shop checks meet generated requests too.
ROLES = ("front_office", "merchant_admin", "operator", "approver")
ROLE_TOKENS = {role: new_token() for role in ROLES}
BY_ROLE = settings(
    max_examples=max(2, EXAMPLES // 4),
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def guarded_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder = Path(tmp_path_factory.mktemp("rpc-fuzz-roles"))
    callers = folder / "callers.toml"
    callers.write_text(
        "\n".join(
            f'[[callers]]\nname = "{role}"\nroles = ["{role}"]\nshops = ["shop-1"]\n'
            f'token_sha256 = "{token_hash(token)}"\n'
            for role, token in ROLE_TOKENS.items()
        )
    )
    with platform_in_thread(
        platform_settings(
            f"sqlite+aiosqlite:///{folder}/fuzz.db",
            stubs_population=1000,
            callers_file=str(callers),
        )
    ) as platform:
        yield platform.port


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", public_methods(), ids=lambda m: m.name)
def test_each_callers_role_gets_documented_answers(
    guarded_port: int, method: MethodDescriptor, role: str
) -> None:
    metadata = (("authorization", f"Bearer {ROLE_TOKENS[role]}"),)

    @BY_ROLE
    @given(request=messages(method.input_type))
    def call(request: Message) -> None:
        _send(guarded_port, method, request.SerializeToString(), metadata, also=_REFUSED)

    call()
    assert _serving(guarded_port)
