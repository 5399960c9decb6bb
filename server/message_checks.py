"""Checks every request gets before its servicer sees it: limits no honest
caller comes near, so that a hostile or broken one is answered with
INVALID_ARGUMENT naming the field instead of costing memory, time or a
database error. Each call's own validation then applies its tighter rules
(shop ids of 64 characters, names of 200, …)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from domain.errors import FieldViolation

MAX_STRING_CHARS = 10_000
MAX_ITEMS = 1_000  # in one repeated field or map
_MAX_VIOLATIONS = 20
# Enums whose unknown numbers the call itself answers, item by item: a member
# event of a type this version does not know (a newer front office's) is
# refused alone with the allowed list, its batch goes in.
_JUDGED_BY_THE_CALL = frozenset({"custops.scenario.v1.MemberEvent.type"})


def request_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Strings holding U+0000 (which no database here can store and no
    caller means to send), strings over MAX_STRING_CHARS, lists or maps
    over MAX_ITEMS, enum numbers the contract does not define, and
    Timestamps and Durations out of their types' range; named by their
    field path."""
    out: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        repeated = bool(field.is_repeated)
        if repeated and len(value) > MAX_ITEMS:
            out.append(FieldViolation(path, f"at most {MAX_ITEMS:,} items, got {len(value):,}"))
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            for where, text in _each(path, value, repeated):
                out += _text(where, text)
        elif (
            field.type == FieldDescriptor.TYPE_ENUM
            and field.enum_type is not None
            and field.full_name not in _JUDGED_BY_THE_CALL
        ):
            enum = field.enum_type
            out += [
                FieldViolation(where, f"one of {', '.join(v.name for v in enum.values)}")
                for where, number in _each(path, value, repeated)
                if number not in enum.values_by_number
            ]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str):
                        out += _text(f"{path} key", key)
                    if isinstance(item, str):
                        out += _text(f"{path}[{key!r}]", item)
                    elif isinstance(item, Message):
                        out += request_violations(item, f"{path}[{key!r}].")
            else:
                for where, item in _each(path, value, repeated):
                    out += _well_known(where, item) or request_violations(item, f"{where}.")
        if len(out) >= _MAX_VIOLATIONS:
            break
    return out[:_MAX_VIOLATIONS]


# Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z; Duration:
# about ±10,000 years (the ranges the types' own definitions give).
_TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)
_DURATION_SECONDS = 315_576_000_000
_RANGED = ("google.protobuf.Timestamp", "google.protobuf.Duration")


def _well_known(where: str, item: Message) -> list[FieldViolation]:
    """A Timestamp or Duration out of its type's range (which converting it
    would otherwise fail on, deep in a call, as an internal error)."""
    name = item.DESCRIPTOR.full_name
    value: Any = item  # either type: seconds and nanos
    seconds, nanos = (value.seconds, value.nanos) if name in _RANGED else (0, 0)
    if name == "google.protobuf.Timestamp":
        low, high = _TIMESTAMP_SECONDS
        if not (low <= seconds <= high and 0 <= nanos <= 999_999_999):
            return [
                FieldViolation(
                    where, "a time from 0001-01-01 to 9999-12-31, nanos 0 to 999,999,999"
                )
            ]
    elif name == "google.protobuf.Duration":
        same_sign = seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0)
        if not (abs(seconds) <= _DURATION_SECONDS and abs(nanos) <= 999_999_999 and same_sign):
            return [
                FieldViolation(where, "a duration within 10,000 years, nanos of the seconds' sign")
            ]
    return []


def _each(path: str, value: Any, repeated: bool) -> list[tuple[str, Any]]:
    if not repeated:
        return [(path, value)]
    return [(f"{path}[{i}]", item) for i, item in enumerate(value)]


def _text(where: str, text: str) -> list[FieldViolation]:
    if len(text) > MAX_STRING_CHARS:
        return [FieldViolation(where, f"at most {MAX_STRING_CHARS:,} characters")]
    if "\x00" in text:
        return [FieldViolation(where, "must not contain the NUL character")]
    return []
