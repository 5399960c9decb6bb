"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL spell the same way
but SQLAlchemy builds per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


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
    statement = _insert(conn, table).on_conflict_do_nothing().returning(table.c[key])
    result = await conn.execute(statement, rows)
    return {row[0] for row in result.all()}


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
