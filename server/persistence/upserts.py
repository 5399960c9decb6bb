"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL spell the same way
but SQLAlchemy builds per dialect."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Float, Integer, String, Table, Text, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.persistence.tables import UtcDateTime


def _insert(conn: AsyncConnection, table: Table) -> Any:
    module = sqlite if conn.dialect.name == "sqlite" else postgresql
    return module.insert(table)


async def insert_new(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], key: str
) -> set[Any]:
    """Insert the rows whose primary key is not taken yet; the `key` values of
    those that were new. Writing the same rows twice changes nothing."""
    if not rows:
        return set()
    if conn.dialect.name == "postgresql" and _unnest_fits(table, rows[0]):
        return await _insert_new_unnest(conn, table, rows, key)
    statement = _insert(conn, table).on_conflict_do_nothing().returning(table.c[key])
    result = await conn.execute(statement, rows)
    return {row[0] for row in result.all()}


def _unnest_fits(table: Table, row: dict[str, Any]) -> bool:
    """The raw statement skips SQLAlchemy's Python-side defaults and knows
    only a few column types: anything else takes the portable path."""
    for column in table.columns:
        if column.name not in row:
            if column.default is not None:
                return False
        elif _array_of(column) is None:
            return False
    return True


async def _insert_new_unnest(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], key: str
) -> set[Any]:
    """PostgreSQL: one array per column and one statement, however many rows
    — binding a parameter per row and column cost more CPU than the rest of
    a plan run's batch."""
    columns = [c for c in table.columns if c.name in rows[0]]
    arrays: dict[str, Any] = {}
    casts: list[str] = []
    for column in columns:
        array_type, convert = _array_of(column) or ("", _as_is)
        values = [convert(row[column.name]) for row in rows]
        if array_type == "TEXT[]" and all(v and _SEPARATOR not in v for v in values):
            # Ids and keys: one joined string, split by the server, which
            # costs the driver a fraction of encoding an array element by element.
            arrays[column.name] = _SEPARATOR.join(values)
            casts.append(f"string_to_array(CAST(:{column.name} AS TEXT), chr(31))")
        else:
            arrays[column.name] = values
            casts.append(f"CAST(:{column.name} AS {array_type})")
    names = ", ".join(f'"{c.name}"' for c in columns)
    statement = text(
        f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({", ".join(casts)}) '
        f'ON CONFLICT DO NOTHING RETURNING "{key}"'
    )
    result = await conn.execute(statement, arrays)
    return {row[0] for row in result.all()}


def _array_of(column: Column[Any]) -> tuple[str, Callable[[Any], Any]] | None:
    """The PostgreSQL array type of a column, and how a value goes into it."""
    kind = column.type
    if isinstance(kind, JSON):
        return "JSON[]", json.dumps
    if isinstance(kind, UtcDateTime):
        return "TIMESTAMPTZ[]", _utc
    if isinstance(kind, BigInteger):
        return "BIGINT[]", _as_is
    if isinstance(kind, Integer):
        return "INTEGER[]", _as_is
    if isinstance(kind, Float):
        return "DOUBLE PRECISION[]", _as_is
    if type(kind) in (String, Text):  # not Enum and other String kinds
        return "TEXT[]", _as_is
    return None


_SEPARATOR = chr(31)  # ASCII unit separator: never in an id or a key


def _as_is(value: Any) -> Any:
    return value


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: every stored instant must be aware")
    return value.astimezone(UTC)


async def add_counts(
    conn: AsyncConnection, table: Table, keys: dict[str, Any], counts: dict[str, int]
) -> None:
    """Add to named counters (rows of `keys` + name + value), made on first use."""
    rows = [{**keys, "name": name, "value": n} for name, n in counts.items() if n]
    if not rows:
        return
    statement = _insert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=[*keys, "name"],
        set_={"value": table.c.value + statement.excluded.value},
    )
    await conn.execute(statement, rows)


async def upsert(conn: AsyncConnection, table: Table, row: dict[str, Any], keys: list[str]) -> None:
    """Insert the row, or update the one with the same `keys` to it."""
    statement = _insert(conn, table).values(row)
    changed = {name: statement.excluded[name] for name in row if name not in keys}
    await conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))
