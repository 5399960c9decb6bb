"""INSERT ... ON CONFLICT, which SQLite and PostgreSQL spell the same way
but SQLAlchemy builds per dialect."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String, Table, Text, text
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
        names = [c.name for c in table.columns if c.name in rows[0]]
        return await _insert_new_unnest(conn, table, {n: [r[n] for r in rows] for n in names}, key)
    return await _insert_new_rows(conn, table, rows, key)


async def insert_new_columns(
    conn: AsyncConnection,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    key: str,
    *,
    report: bool = True,
) -> set[Any]:
    """insert_new with the rows given column by column, as a run's batch has
    them at hand: on PostgreSQL no dict is made per row. With `report` off
    the new keys are not sent back (an empty set): for a caller that counts
    nothing by them."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal lengths for {table.name}: {sorted(lengths)}")
    if not lengths or lengths == {0}:
        return set()
    if conn.dialect.name == "postgresql" and _unnest_fits(table, columns):
        return await _insert_new_unnest(conn, table, columns, key, report)
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    new = await _insert_new_rows(conn, table, rows, key)
    return new if report else set()


async def _insert_new_rows(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], key: str
) -> set[Any]:
    """The portable path: SQLAlchemy's INSERT ... ON CONFLICT DO NOTHING."""
    statement = _insert(conn, table).on_conflict_do_nothing().returning(table.c[key])
    result = await conn.execute(statement, rows)
    return {row[0] for row in result.all()}


def _unnest_fits(table: Table, row: Mapping[str, Any]) -> bool:
    """The raw statement skips SQLAlchemy's Python-side defaults and knows
    only a few column types (exactly: not Enum and other String kinds):
    anything else takes the portable path."""
    for column in table.columns:
        if column.name not in row:
            if column.default is not None:
                return False
        elif type(column.type) not in _ENCODINGS:
            return False
    return True


async def _insert_new_unnest(
    conn: AsyncConnection,
    table: Table,
    given: Mapping[str, Sequence[Any]],
    key: str,
    report: bool = True,
) -> set[Any]:
    """PostgreSQL: one statement however many rows, each column sent as one
    text that the server splits and casts (`string_to_array(...)::type[]`).
    Binding a parameter per row and column, or an array the driver encodes
    element by element, cost more CPU than the rest of a plan run's batch.
    A column with one value in every row (a run's shop, plan, time) is sent
    once and repeated by the server: most of a run's columns are."""
    columns = [c for c in table.columns if c.name in given]
    params: dict[str, Any] = {}
    selected: list[str] = []
    arrays: list[tuple[str, str]] = []  # (column, its unnest argument)
    for column in columns:
        name = column.name
        array_type, to_text = _ENCODINGS[type(column.type)]
        values = given[name]
        instants = array_type == "TIMESTAMPTZ[]"
        if instants:  # microseconds since the epoch: half an ISO text, cheaper both ends
            to_text, array_type = _micros, "BIGINT[]"
        if name != key and _one_value(values):
            params[name] = _scalar(values[0], to_text, array_type)
            element = f"CAST(CAST(:{name} AS TEXT) AS {array_type[:-2]})"
        else:
            element = f'u."{name}"'
            prefix = _shared_prefix(values) if array_type == "TEXT[]" else ""
            if prefix:  # keys that start alike ("plans/P/runs/R/members/..."): sent once
                params[f"{name}__prefix"] = prefix
                element = f"CAST(:{name}__prefix AS TEXT) || {element}"
                values = [v[len(prefix) :] for v in values]
            joined = _joined(values, to_text, array_type)
            if joined is not None:
                params[name] = joined
                unnest = f"string_to_array(CAST(:{name} AS TEXT), chr(31), chr(30))"
                arrays.append((name, f"CAST({unnest} AS {array_type})"))
            else:  # a separator inside a value: the driver encodes the array
                params[name] = [_stored(v, array_type) for v in values]
                arrays.append((name, f"CAST(:{name} AS {array_type})"))
        if instants:
            element = f"(TIMESTAMPTZ 'epoch' + {element} * INTERVAL '1 microsecond')"
        selected.append(element)
    names = ", ".join(f'"{c.name}"' for c in columns)
    unnested = ", ".join(argument for _, argument in arrays)
    aliases = ", ".join(f'"{name}"' for name, _ in arrays)
    statement = text(
        f'INSERT INTO "{table.name}" ({names}) SELECT {", ".join(selected)} '
        f"FROM unnest({unnested}) AS u({aliases}) ON CONFLICT DO NOTHING"
        + (f' RETURNING "{key}"' if report else "")
    )
    result = await conn.execute(statement, params)
    return {row[0] for row in result.all()} if report else set()


def _shared_prefix(values: Sequence[Any]) -> str:
    """The start every value shares, when worth sending apart (none if a
    value is not a text)."""
    try:  # the lowest and the highest share what every value between them does
        low, high = min(values), max(values)
    except TypeError:
        return ""
    if not isinstance(low, str) or not isinstance(high, str):
        return ""
    shared = 0
    for a, b in zip(low, high, strict=False):
        if a != b:
            break
        shared += 1
    return low[:shared] if shared >= 16 else ""


def _one_value(values: Sequence[Any]) -> bool:
    """Every row holds the same value (counted in C: == as Python means it)."""
    return len(values) > 1 and values.count(values[0]) == len(values)


def _scalar(value: Any, to_text: Callable[[Any], str], array_type: str) -> str | None:
    """One value as the text the server casts; None is NULL (but JSON's null
    in a JSON column, as the driver stores it)."""
    if value is None and array_type != "JSON[]":
        return None
    return to_text(value)


_SEPARATOR, _NULL = chr(31), chr(30)  # ASCII unit and record separators


def _joined(values: Sequence[Any], to_text: Callable[[Any], str], array_type: str) -> str | None:
    """The column's values as one text, None as _NULL (but in JSON, where
    None is JSON's null, as the driver stored it); None when a value holds a
    separator, or when the text would be empty (one empty string, which
    string_to_array reads as no element at all)."""
    nulls = 0
    if array_type == "TEXT[]":
        try:  # ids, keys, names: joined as they are, in one C call
            return _checked(_SEPARATOR.join(values), len(values), 0)
        except TypeError:  # a None, or a value of another type
            pass
    if array_type == "JSON[]":
        # Most details are empty: their text is known.
        texts = ["{}" if type(v) is dict and not v else to_text(v) for v in values]
    else:
        # Timestamps and numbers repeat within a batch (the batch's time, a
        # quantity): each distinct value is turned into text once.
        distinct = set(values)
        nulls = values.count(None) if None in distinct else 0
        distinct.discard(None)
        if len(distinct) * 2 > len(values):  # mostly their own (grant times): no table
            texts = [_NULL if v is None else to_text(v) for v in values]
        else:
            text_of: dict[Any, str] = {v: to_text(v) for v in distinct}
            text_of[None] = _NULL
            texts = [text_of[v] for v in values]
    return _checked(_SEPARATOR.join(texts), len(texts), nulls)


def _checked(joined: str, count: int, nulls: int) -> str | None:
    """`joined` if it splits back into its `count` values with `nulls` NULLs."""
    if not joined or joined.count(_SEPARATOR) != count - 1 or joined.count(_NULL) != nulls:
        return None
    return joined


def _stored(value: Any, array_type: str) -> Any:
    if array_type == "JSON[]":
        return json.dumps(value)
    if isinstance(value, datetime):  # sent as microseconds (_micros)
        return int(_micros(value))
    return value


_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


def _micros(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime: every stored instant must be aware")
    return str((value - _EPOCH) // _MICROSECOND)


def _integer(value: Any) -> str:
    return str(int(value))  # a bool is stored as 0 or 1


# Each column type insert_new writes in one statement: its PostgreSQL array
# type, and its values as text the server casts back.
_ENCODINGS: dict[type[Any], tuple[str, Callable[[Any], str]]] = {
    JSON: ("JSON[]", json.dumps),  # JSON text never holds a raw control character
    UtcDateTime: ("TIMESTAMPTZ[]", datetime.isoformat),  # with its offset
    BigInteger: ("BIGINT[]", _integer),
    Integer: ("INTEGER[]", _integer),
    Float: ("DOUBLE PRECISION[]", repr),
    String: ("TEXT[]", str),
    Text: ("TEXT[]", str),
}


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
