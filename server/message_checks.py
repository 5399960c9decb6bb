"""Checks every request gets before its servicer sees it."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from domain.errors import FieldViolation

_MAX_VIOLATIONS = 20


def nul_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Strings holding U+0000, which no database here can store and no
    caller means to send; named by their field path."""
    out: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if _is_repeated(field) else [value]
            for i, text in enumerate(values):
                if "\x00" in text:
                    where = f"{path}[{i}]" if _is_repeated(field) else path
                    out.append(FieldViolation(where, "must not contain the NUL character"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str) and "\x00" in key:
                        out.append(FieldViolation(path, "map keys must not contain NUL"))
                    if isinstance(item, str) and "\x00" in item:
                        out.append(FieldViolation(f"{path}[{key!r}]", "must not contain NUL"))
                    elif isinstance(item, Message):
                        out += nul_violations(item, f"{path}[{key!r}].")
            elif _is_repeated(field):
                for i, item in enumerate(value):
                    out += nul_violations(item, f"{path}[{i}].")
            else:
                out += nul_violations(value, f"{path}.")
        if len(out) >= _MAX_VIOLATIONS:
            break
    return out[:_MAX_VIOLATIONS]


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
